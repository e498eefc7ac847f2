"""Delta vacuum that never removes data a retained index version points at.

Index retention is the one setting (`LAKERAG_INDEX_KEEP_VERSIONS`); the vacuum retention
follows from it: at least the age of the oldest retained index version (whole hours, rounded up),
so that version's `gold_version` and `embeddings_version` stay readable by Delta time
travel, and never less than `LAKERAG_VACUUM_MIN_HOURS` (168, Delta's own default).
A vacuum deletes only files removed from a table before now - retention; a version
created after that moment references none of them.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from .config import Settings
from .index.publish import published_versions, read_store_manifest
from .lake import TABLES, Lake, tables


def oldest_retained_created(store) -> datetime | None:
    created = []
    for version in published_versions(store):
        manifest = read_store_manifest(store, version) or {}
        try:
            created.append(datetime.fromisoformat(manifest["created_at"]))
        except (KeyError, ValueError, AttributeError):
            continue
    return min(created) if created else None


def vacuum_retention_hours(settings: Settings, store, now: datetime | None = None) -> int:
    oldest = oldest_retained_created(store)
    needed = 0
    if oldest is not None:
        needed = math.ceil(((now or datetime.now(UTC)) - oldest).total_seconds() / 3600)
    return max(settings.vacuum_min_hours, needed)


def vacuum(settings: Settings, dry_run: bool = False) -> dict:
    """Vacuum every lake table with the retention the retained index versions need."""
    lake = Lake.open(settings)
    hours = vacuum_retention_hours(settings, lake.store)
    removed = {}
    for name in TABLES:
        current = tables.snapshot(lake, name)
        if current is None:
            continue
        files = current.delta.vacuum(retention_hours=hours, dry_run=dry_run, enforce_retention_duration=False)
        removed[name] = len(files)
    return {"title": "pipeline vacuum", "ok": True, "retention_hours": hours, "dry_run": dry_run,
            "files_removed": removed}
