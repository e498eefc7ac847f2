"""GET /index (what is served) and POST /admin/reload (sync and swap now)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException

from ...config import SEARCH_MODES
from ...index.sync import INDEX_DIR_UNUSABLE, STORE_UNREACHABLE
from ..deps import ApiKey, State
from ..schemas import IndexStatus, ReloadResponse

router = APIRouter(tags=["index"])


def _age_seconds(created_at: str | None) -> float | None:
    if not created_at:
        return None
    try:
        created = datetime.fromisoformat(created_at)
    except ValueError:
        return None
    return round((datetime.now(UTC) - created).total_seconds(), 1)


@router.get("/index", response_model=IndexStatus)
async def index_status(state: State) -> IndexStatus:
    watcher = state.watcher
    index = state.index
    common = {"reloads": watcher.reloads if watcher else 0, "reload_failures": watcher.failures if watcher else 0,
              "store_errors": watcher.store_errors if watcher else 0,
              "sync_state": watcher.sync_state if watcher else "ok",
              "rejected_version": watcher.rejected_version if watcher else None,
              "last_error": watcher.last_error if watcher else None, "index_dir": state.settings.index_dir,
              "message": state.index_message()}
    if index is None:
        return IndexStatus(loaded=False, **common)
    manifest = index.manifest
    return IndexStatus(
        loaded=True, version=index.version, model=index.model, dimension=index.dimension,
        vectors=index.vector_count, index_type=manifest.get("index_type"), gold_version=manifest.get("gold_version"),
        search_modes=list(SEARCH_MODES) if index.has_lexical else ["dense"],
        created_at=manifest.get("created_at"), age_seconds=_age_seconds(manifest.get("created_at")),
        encoder_check=index.encoder_check,
        loaded_at=watcher.loaded_at.isoformat(timespec="seconds") if watcher.loaded_at else None, **common)


@router.post("/admin/reload", response_model=ReloadResponse, dependencies=[ApiKey],
             responses={503: {"description": "the model is not loaded yet, or the store cannot be reached"}})
def reload_index(state: State) -> ReloadResponse:
    if state.watcher is None:
        raise HTTPException(503, detail="the API is still starting (model loading); retry in a few seconds")
    changed, message = state.watcher.check(force=True)
    if state.watcher.sync_state == STORE_UNREACHABLE:
        raise HTTPException(503, detail=f"store unreachable; nothing reloaded, the local copy is served: "
                                        f"{state.watcher.last_error}", headers={"Retry-After": "30"})
    if state.watcher.sync_state == INDEX_DIR_UNUSABLE:
        raise HTTPException(503, detail=f"nothing reloaded: {state.watcher.last_error}")
    index = state.index
    return ReloadResponse(changed=changed, version=index.version if index else None, message=message)
