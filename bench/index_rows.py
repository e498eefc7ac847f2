"""Chunk rows of an index version: SQLite (what versions publish, ``index/rows.py``) against the
alternatives the API could read without pyarrow (one JSON document of columns) and the Parquet
file versions used to publish (read with pyarrow + pandas, as before), at 100k chunks.

Per format: file size, write time, load time (file -> ready to answer lookups; for Parquet and
JSON this includes the plain-Python columns the API used to build at load), the cost of the
lookups one query makes (the rows of 5 hits; a doc_id filter; a source-prefix filter), and the
SHA-256 of the file (what verification costs). One run, one machine; the last line is JSON.

    .venv/bin/python bench/index_rows.py [--chunks 100000] [--lookups 500]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


def timed(function, repeat: int = 1) -> float:
    """Median seconds of ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


class ColumnsJson:
    """Rows as one JSON object of columns, parsed whole at load (the stdlib alternative)."""

    def __init__(self, path: Path):
        import numpy as np

        self.columns = json.loads(path.read_bytes())
        self.doc_ids = np.array(self.columns["doc_id"])
        self.sources = np.array(self.columns["source"])

    def rows(self, ids):
        return [{name: values[i] for name, values in self.columns.items()} for i in ids]

    def matching(self, doc_id=None, source_prefix=None):
        import numpy as np

        mask = np.ones(len(self.doc_ids), dtype=bool)
        if doc_id:
            mask &= self.doc_ids == doc_id
        if source_prefix:
            mask &= np.char.startswith(self.sources, source_prefix)
        return np.flatnonzero(mask)


class ParquetPandas:
    """What the API did before: pyarrow -> pandas, then plain columns for hits."""

    def __init__(self, path: Path):
        import pyarrow.parquet as pq

        self.frame = pq.read_table(path).to_pandas()
        self.columns = {name: self.frame[name].tolist() for name in self.frame.columns}

    def rows(self, ids):
        return [{name: values[i] for name, values in self.columns.items()} for i in ids]

    def matching(self, doc_id=None, source_prefix=None):
        import numpy as np

        mask = np.ones(len(self.frame), dtype=bool)
        if doc_id:
            mask &= (self.frame["doc_id"] == doc_id).to_numpy()
        if source_prefix:
            mask &= self.frame["source"].str.startswith(source_prefix).to_numpy(dtype=bool, na_value=False)
        return np.flatnonzero(mask)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=500)
    args = parser.parse_args()

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from lakerag.index.artifacts import CHUNK_COLUMNS, plain_columns, sha256_file
    from lakerag.index.rows import ChunkRows, write_rows
    from search import build_frame

    frame = build_frame(args.chunks)
    columns = plain_columns(frame)
    rng = np.random.default_rng(3)
    hits = [rng.integers(0, args.chunks, 5).tolist() for _ in range(args.lookups)]
    doc_ids = [f"{d:016x}" for d in rng.integers(0, args.chunks // 20, args.lookups)]
    prefixes = [f"raw/bench/doc-{d:06d}" for d in rng.integers(0, args.chunks // 20, args.lookups)]
    results = {}
    with tempfile.TemporaryDirectory(prefix="lakerag-bench-rows-") as tmp:
        tmp = Path(tmp)
        paths = {"sqlite": tmp / "chunks.sqlite", "json": tmp / "chunks.json", "parquet": tmp / "chunks.parquet"}
        writers = {
            "sqlite": lambda: write_rows(paths["sqlite"], columns),
            "json": lambda: paths["json"].write_text(json.dumps(columns)),
            "parquet": lambda: pq.write_table(pa.Table.from_pandas(frame.loc[:, list(CHUNK_COLUMNS)],
                                                                   preserve_index=False), paths["parquet"]),
        }
        loaders = {"sqlite": lambda: ChunkRows.open(paths["sqlite"]), "json": lambda: ColumnsJson(paths["json"]),
                   "parquet": lambda: ParquetPandas(paths["parquet"])}
        for name in ("sqlite", "json", "parquet"):
            write_s = timed(writers[name])
            load_s = timed(loaders[name], repeat=3)
            rows = loaders[name]()
            assert [r["chunk_id"] for r in rows.rows(hits[0])] == [columns["chunk_id"][i] for i in hits[0]]
            rows_s = timed(lambda rows=rows: [rows.rows(h) for h in hits]) / len(hits)
            doc_s = timed(lambda rows=rows: [rows.matching(doc_id=d) for d in doc_ids]) / len(doc_ids)
            prefix_s = timed(lambda rows=rows: [rows.matching(source_prefix=p) for p in prefixes]) / len(prefixes)
            results[name] = {"bytes": os.path.getsize(paths[name]), "write_s": round(write_s, 3),
                             "load_s": round(load_s, 4), "rows_of_5_hits_us": round(rows_s * 1e6, 1),
                             "doc_id_filter_us": round(doc_s * 1e6, 1),
                             "source_prefix_filter_us": round(prefix_s * 1e6, 1),
                             "sha256_s": round(timed(lambda name=name: sha256_file(paths[name])), 3)}
            del rows
    print(f"Chunk rows at {args.chunks} chunks ({args.lookups} lookups each, load average "
          f"{os.getloadavg()[0]:.1f}):")
    print(f"  {'format':8} {'MB':>7} {'write s':>8} {'load s':>8} {'5 hits µs':>10} {'doc_id µs':>10} "
          f"{'prefix µs':>10} {'sha256 s':>9}")
    for name, r in results.items():
        print(f"  {name:8} {r['bytes'] / 1e6:7.1f} {r['write_s']:8.3f} {r['load_s']:8.4f} {r['rows_of_5_hits_us']:10.1f} "
              f"{r['doc_id_filter_us']:10.1f} {r['source_prefix_filter_us']:10.1f} {r['sha256_s']:9.3f}")
    print(json.dumps({"bench": "index_rows", "chunks": args.chunks, "load_average_1m": round(os.getloadavg()[0], 2),
                      **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
