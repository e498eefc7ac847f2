"""The web console at / and the OpenAPI pages at /docs and /redoc, all served from this
process: no CDN, so they work offline (an air-gapped cluster, a laptop on a train).

The console is static HTML, CSS and plain JavaScript packaged with lakerag (api/static);
it calls the same JSON routes as every other client. Swagger UI and ReDoc come from the
fastapi-offline package, which ships their bundles.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

CONSOLE_DIR = Path(__file__).resolve().parents[1] / "static"
DOCS_ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
# The console's own files only: no inline script, nothing from another origin.
CONSOLE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")

router = APIRouter(include_in_schema=False)


def _root(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


@router.get("/")
def console() -> FileResponse:
    return FileResponse(CONSOLE_DIR / "index.html", headers={"Content-Security-Policy": CONSOLE_CSP,
                                                              "Cache-Control": "no-cache"})


@router.get("/docs")
def swagger_ui(request: Request):
    root = _root(request)
    return get_swagger_ui_html(openapi_url=f"{root}{request.app.openapi_url}", title="LakeRAG API",
                               swagger_js_url=f"{root}/static/docs/swagger-ui-bundle.js",
                               swagger_css_url=f"{root}/static/docs/swagger-ui.css",
                               swagger_favicon_url=f"{root}/static/docs/favicon.png")


@router.get("/redoc")
def redoc(request: Request):
    root = _root(request)
    return get_redoc_html(openapi_url=f"{root}{request.app.openapi_url}", title="LakeRAG API",
                          redoc_js_url=f"{root}/static/docs/redoc.standalone.js",
                          redoc_favicon_url=f"{root}/static/docs/favicon.png", with_google_fonts=False)


def install(app: FastAPI) -> None:
    """Serve the console and the offline docs (create the app with docs_url=None, redoc_url=None)."""
    app.mount("/static/docs", StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")
    app.mount("/static/console", StaticFiles(directory=CONSOLE_DIR), name="console-assets")
    app.include_router(router)
