"""Replay: answer from a retained index version (``as_of``), and say what every answer came from.

A version asked for by name is downloaded from the store into ``LAKERAG_INDEX_DIR/replay/``,
verified (checksums, model) and loaded like the served one, beside it. At most
``LAKERAG_REPLAY_CACHE_VERSIONS`` such versions stay loaded (least recently used goes first,
with its local copy), so memory stays bounded however many versions are asked for. Versions
are immutable, so the same question against the same version gets the same chunks, and an
extractive answer the same bytes, across runs and restarts.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections import OrderedDict
from pathlib import Path

from fastapi import HTTPException

from ..encoder_identity import check_served_encoder
from ..index.artifacts import IndexRejected, LoadedIndex, load_index_dir
from ..index.publish import published_versions, read_store_manifest
from ..index.sync import IndexDirError, download_local
from ..store import StoreError

log = logging.getLogger(__name__)
REPLAY_DIR = "replay"
_create_lock = threading.Lock()


def lineage(index: LoadedIndex, served: LoadedIndex | None = None) -> dict:
    manifest = index.manifest
    return {"index_version": index.version, "model": index.model, "gold_version": manifest.get("gold_version"),
            "embeddings_version": manifest.get("embeddings_version"), "created_at": manifest.get("created_at"),
            "replayed": served is not None and served.version != index.version}


class VersionGone(LookupError):
    """The version is not (or no longer) in the store."""


class RetainedVersions:
    """A bounded LRU of loaded index versions, filled from the store on demand."""

    def __init__(self, store, root: Path, expected_model: str, expected_dimension: int, capacity: int,
                 embedder):
        self.store, self.root, self.embedder = store, Path(root), embedder
        self.expected_model, self.expected_dimension = expected_model, expected_dimension
        self.capacity = max(1, capacity)
        self._loaded: OrderedDict[str, LoadedIndex] = OrderedDict()
        self._lock = threading.Lock()  # one load at a time; loads are rare and each is bounded

    def get(self, version: str) -> LoadedIndex:
        with self._lock:
            if version in self._loaded:
                self._loaded.move_to_end(version)
                return self._loaded[version]
            if read_store_manifest(self.store, version) is None:
                raise VersionGone(version)
            path = download_local(self.store, version, self.root / version, self.root)  # verifies every checksum
            loaded = load_index_dir(path, self.expected_model, self.expected_dimension)
            check_served_encoder(loaded, self.embedder)  # the same checks as a served version
            self._loaded[version] = loaded
            while len(self._loaded) > self.capacity:
                old, _ = self._loaded.popitem(last=False)
                shutil.rmtree(self.root / old, ignore_errors=True)  # requests holding it keep their objects
                log.info("replay: unloaded index %s (LRU, capacity %d)", old, self.capacity)
            log.info("replay: loaded retained index %s", version)
            return loaded

    @property
    def versions(self) -> list[str]:
        return list(self._loaded)


def retained_versions(state) -> RetainedVersions:
    cache = getattr(state, "retained", None)
    if cache is None:
        with _create_lock:
            cache = getattr(state, "retained", None)
            if cache is None:
                settings = state.settings
                cache = RetainedVersions(state.lake.store, Path(settings.index_dir) / REPLAY_DIR,
                                         state.embedder.name, state.embedder.dimension,
                                         settings.replay_cache_versions, state.embedder)
                state.retained = cache
    return cache


def names_another_version(as_of: str | None, served: LoadedIndex) -> bool:
    """Whether ``as_of`` asks for a version other than the served one (a replay)."""
    return bool(as_of) and as_of != served.version


def index_for(state, served: LoadedIndex, as_of: str | None) -> LoadedIndex:
    """The served index, or the retained version ``as_of`` names (404 when pruned, 409 when unusable, 507
    when the local index directory cannot hold it)."""
    if not names_another_version(as_of, served):
        return served
    try:
        return retained_versions(state).get(as_of)
    except VersionGone:
        try:
            retained = published_versions(state.lake.store)
        except StoreError:
            retained = []
        raise HTTPException(404, detail=f"index version {as_of} is not retained (never published, or pruned by "
                                        f"LAKERAG_INDEX_KEEP_VERSIONS); retained: {', '.join(retained) or 'none'}") \
            from None
    except IndexRejected as exc:
        raise HTTPException(409, detail=f"index version {as_of} cannot be served: {exc}") from None
    except IndexDirError as exc:
        raise HTTPException(507, detail=f"index version {as_of} cannot be replayed: {exc}") from None
    except StoreError as exc:
        raise HTTPException(503, detail=f"cannot read index version {as_of} from the store: {exc}",
                            headers={"Retry-After": "10"}) from None
