"""``lakerag export-jsonl OUT``: the gold chunks as a JSONL dataset (the original's fine-tuning
dataset builder): one record per chunk, with the citation metadata, in document order."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from .config import Settings
from .lake import Lake, tables

COLUMNS = ["chunk_id", "doc_id", "chunk_index", "text", "title", "source", "page", "token_count"]


class ExportError(RuntimeError):
    pass


def export_jsonl(settings: Settings, out: str | Path) -> int:
    """Write every gold chunk to ``out`` (``-`` for stdout); return the number of records."""
    lake = Lake.open(settings)
    gold = tables.snapshot(lake, "gold")
    if gold is None:
        raise ExportError(f"no gold table at {lake.table_uri('gold')}: run `lakerag pipeline etl` first")
    table = gold.arrow(COLUMNS)
    rows = table.sort_by([("source", "ascending"), ("chunk_index", "ascending")]).to_pylist()
    # each chunk once, though gold may hold one twice (runs that overlapped, before the run lock)
    rows = list({row["chunk_id"]: row for row in rows}.values())
    lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if str(out) == "-":
        sys.stdout.write(lines)
    else:
        path = Path(out)
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(lines, encoding="utf-8")
            tmp.replace(path)  # a reader never sees half a dataset
        except OSError as exc:
            with contextlib.suppress(OSError):  # its directory may be what failed
                tmp.unlink(missing_ok=True)
            raise ExportError(f"cannot write {path}: {exc.strerror or exc}; choose an OUT this user can write "
                              "(or - for stdout)") from None
    return len(rows)
