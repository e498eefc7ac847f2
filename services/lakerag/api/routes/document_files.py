"""GET /documents/{doc_id}/content: the stored file itself, so a citation can open its source.

Served sandboxed: an uploaded HTML file must not run script in the API's origin (the
console keeps the session's API key there).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Response

from ...extract import FILE_TYPES
from ...lake import RAW_PREFIX, raw_keys_for
from ...store import NotFound, StoreError
from ..deps import Store

router = APIRouter(tags=["documents"])

# HTML and Markdown as text: shown as written, nothing rendered in the API's origin.
MEDIA_TYPES = {ext: {"pdf": "application/pdf", "json": "application/json"}.get(kind, "text/plain; charset=utf-8")
               for ext, kind in FILE_TYPES.items()}


@router.get("/documents/{doc_id}/content", response_class=Response,
            responses={200: {"content": {t.split(";")[0]: {} for t in [*MEDIA_TYPES.values(), "application/octet-stream"]},
                             "description": "the raw file"},
                       404: {"description": "no raw object has this doc_id"}})
def document_content(doc_id: str, store: Store) -> Response:
    key = None
    try:
        keys = raw_keys_for(store, doc_id)
        if not keys:
            raise NotFound(doc_id)
        key = keys[0]
        data = store.get(key)
    except NotFound:
        raise HTTPException(404, detail=f"no document with doc_id {doc_id} in {RAW_PREFIX} (GET /documents "
                                        "lists them)") from None
    except StoreError as exc:
        raise HTTPException(502, detail=f"could not read from the store: {exc}") from None
    except OSError as exc:  # a file:// store: a symlink loop, a file this user may not read
        raise HTTPException(502, detail=f"could not read {key or RAW_PREFIX} from the store: {exc.strerror}") from None
    name = PurePosixPath(key).name
    media_type = MEDIA_TYPES.get(PurePosixPath(name).suffix.lower(), "application/octet-stream")
    return Response(data, media_type=media_type, headers={
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}",
        "Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"})
