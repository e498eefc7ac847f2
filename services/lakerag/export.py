"""``lakerag export-jsonl OUT``: the gold chunks as a JSONL dataset (the original's fine-tuning
dataset builder): one record per chunk, with the citation metadata, in document order."""

from __future__ import annotations

import json
from pathlib import Path

from .config import Settings
from .lake import Lake

COLUMNS = ["chunk_id", "doc_id", "chunk_index", "text", "title", "source", "page", "token_count"]


class ExportError(RuntimeError):
    pass


def export_jsonl(settings: Settings, out: str | Path) -> int:
    """Write every gold chunk to ``out`` (``-`` for stdout); return the number of records."""
    import sys

    from deltalake import DeltaTable

    lake = Lake.open(settings)
    uri, options = lake.table_uri("gold"), lake.storage_options()
    if not DeltaTable.is_deltatable(uri, storage_options=options):
        raise ExportError(f"no gold table at {uri}: run `lakerag pipeline etl` first")
    table = DeltaTable(uri, storage_options=options).to_pyarrow_table(columns=COLUMNS)
    rows = table.sort_by([("source", "ascending"), ("chunk_index", "ascending")]).to_pylist()
    lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if str(out) == "-":
        sys.stdout.write(lines)
    else:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(lines, encoding="utf-8")
        tmp.replace(path)  # a reader never sees half a dataset
    return len(rows)
