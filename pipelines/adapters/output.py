"""Writing adapter rows as a manifest ``pipelines.manifest.read_manifest`` reads back."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pipelines.adapters.base import Row

# Typed so an all-empty column (every span the whole video) still reads back as numbers.
BASE_COLUMNS: dict[str, str] = {
    "video": "string",
    "start": "float64",
    "end": "float64",
    "text": "string",
    "key": "string",
    "dataset": "string",
}


def _columns(rows: list[Row]) -> list[str]:
    extra: dict[str, None] = {}
    for row in rows:
        for name in row:
            if name not in BASE_COLUMNS:
                extra.setdefault(name, None)
    return [*BASE_COLUMNS, *sorted(extra)]


def write_manifest_parquet(rows: list[Row], path: str | Path) -> Path:
    """Rows -> one Parquet file (written to a temporary name, then renamed into place).

    Columns: ``video, start, end, text, key, dataset`` with fixed types, then every extra
    metadata column any row has (absent in a row = null), sorted by name.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    arrays: dict[str, Any] = {}
    for name in _columns(rows):
        values = [row.get(name) for row in rows]
        kind = BASE_COLUMNS.get(name)
        arrays[name] = pa.array(values, type=getattr(pa, kind)()) if kind else pa.array(values)
    table = (
        pa.table(arrays)
        if arrays
        else pa.table({n: pa.array([], getattr(pa, k)()) for n, k in BASE_COLUMNS.items()})
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def write_manifest_jsonl(rows: list[Row], path: str | Path) -> Path:
    """Rows -> JSON Lines, for manifests a person wants to read or diff."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path
