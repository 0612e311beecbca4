"""Writing adapter rows as a manifest ``pipelines.manifest.read_manifest`` reads back, streamed.

HD-VILA-100M is 100M clips: holding them as Python rows and one table (~800 B each) takes ~80 GB.
So rows flow from the adapter to the file in batches of ``BATCH_ROWS``: each batch becomes one
Arrow table appended to a ``ParquetWriter`` (or lines appended to a JSONL file), and memory is
one batch whatever the row count.

Two things need the whole manifest, and are settled after it is written, in a scratch folder
beside the output (the file appears under its name only when complete: ``os.replace``):

- **Column types.** A batch's column types are inferred from its rows, as they were for the
  whole table. A later batch may widen them (a metadata column that was null in every row of the
  first batch, a column the first batch did not have): the file then continues as a new part, and
  the parts are rewritten once, row group by row group, under the merged schema, which is the one
  inference over all rows gives (null -> any type, int -> float, struct fields merged).
- **Unique keys** (``unique_keys=True``: a release listing one id twice would make two samples
  with one key). Each key's 8-byte blake2b hash goes to one of 256 bucket files on disk (and, in
  row order, to one more file); after the last row each bucket, 1/256 of the hashes, is sorted in
  memory to find hashes seen twice. Usually there are none and the file is renamed into place.
  Otherwise one more pass keeps every row but the later ones of an exactly equal key (a shared
  hash alone is not enough: candidates are compared by key), as the in-memory check did.

For a manifest that fits one batch and needs neither step the bytes written are those of
``pq.write_table`` on the whole table, as before streaming.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.adapters.base import Row
from pipelines.manifest import ManifestError

# Typed so an all-empty column (every span the whole video) still reads back as numbers.
BASE_COLUMNS: dict[str, str] = {
    "video": "string",
    "start": "float64",
    "end": "float64",
    "text": "string",
    "key": "string",
    "dataset": "string",
}
# Rows per batch (and per Parquet row group): ~35 MB of Python rows at HD-VILA's ~500 B a row.
BATCH_ROWS = 65_536
_BUCKETS = 256


@dataclass(slots=True, frozen=True)
class Written:
    """What ``stream_manifest`` wrote: rows in the file; later rows of a repeated key left out."""

    path: Path
    rows: int
    duplicates: int
    # of ``duplicates``, rows whose text is empty (``AdapterReport.empty_text`` counted them)
    empty_duplicates: int = 0


def write_manifest_parquet(
    rows: Iterable[Row], path: str | Path, batch_rows: int = BATCH_ROWS
) -> Path:
    """Rows -> one Parquet file, streamed (written to a temporary name, then renamed into place).

    Columns: ``video, start, end, text, key, dataset`` with fixed types, then every extra
    metadata column any row has (absent in a row = null), sorted by name. Keys are not checked.
    """
    return stream_manifest(rows, path, batch_rows=batch_rows, unique_keys=False, jsonl=False).path


def write_manifest_jsonl(rows: Iterable[Row], path: str | Path) -> Path:
    """Rows -> JSON Lines, for manifests a person wants to read or diff. Keys are not checked."""
    return stream_manifest(rows, path, unique_keys=False, jsonl=True).path


def stream_manifest(
    rows: Iterable[Row],
    path: str | Path,
    *,
    batch_rows: int = BATCH_ROWS,
    unique_keys: bool = True,
    jsonl: bool | None = None,
) -> Written:
    """Write ``rows`` to ``path`` in batches; memory is one batch, not the manifest.

    Parquet, or JSON Lines when ``jsonl`` (default: the name ends in ``.jsonl``). With
    ``unique_keys`` a row whose key an earlier row has is left out and counted in
    ``duplicates``. The file appears at ``path`` only once complete; on an error nothing is left.
    """
    path = Path(path)
    if jsonl is None:
        jsonl = path.suffix.lower() == ".jsonl"
    check_out(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.tmp-", dir=path.parent) as scratch:
        work = Path(scratch)
        sink: _JsonlSink | _ParquetSink = _JsonlSink(work) if jsonl else _ParquetSink(work)
        hashes = _KeyHashes(work) if unique_keys else None
        try:
            for batch in _batches(rows, batch_rows):
                if hashes is not None:
                    hashes.add([row["key"] for row in batch])
                sink.write(batch)
                del batch  # let it go before the next is read: one batch in memory, not two
            repeated = hashes.repeated() if hashes is not None else np.empty(0, np.uint64)
            done = work / f"out{path.suffix}"
            count, duplicates, empty = sink.finish(done, repeated)
            os.replace(done, path)
        finally:  # an adapter error mid-way: close what is open; the folder goes with it
            sink.close()
            if hashes is not None:
                hashes.close()
    return Written(path, count, duplicates, empty)


def check_out(path: str | Path) -> None:
    """Stop at once when ``path`` cannot become the manifest file: ``os.replace`` onto a folder
    (or under a file) fails only after every row was read. Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise ManifestError(f"{path}: is a folder; give the manifest's file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise ManifestError(f"{path}: {parent} is a file, not a folder")


def _batches(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    it = iter(rows)
    while True:
        batch = list(itertools.islice(it, max(1, size)))
        if not batch:
            return
        yield batch
        del batch  # not held while the next one is read


def _key_hash(key: str) -> int:
    """``pipelines.staging``'s key hash: 8 bytes of blake2b."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


class _KeyHashes:
    """Every key's hash on disk: by bucket (to find repeats) and in row order (to find the rows)."""

    def __init__(self, work: Path) -> None:
        self.dir = work / "hashes"
        self.dir.mkdir()
        # Files kept open across batches (closed in ``repeated``), hence no ``with``.
        names = [self.dir / f"{b:03d}.u64" for b in range(_BUCKETS)]
        self.buckets = [open(name, "wb") for name in names]  # noqa: SIM115
        self.order = open(self.dir / "order.u64", "wb")  # noqa: SIM115

    def add(self, keys: list[str]) -> None:
        hashes = np.fromiter((_key_hash(k) for k in keys), dtype=np.uint64, count=len(keys))
        hashes.tofile(self.order)
        bucket = (hashes >> np.uint64(56)).astype(np.intp)  # the top byte picks the bucket
        by_bucket = hashes[np.argsort(bucket, kind="stable")]
        ends = np.cumsum(np.bincount(bucket, minlength=_BUCKETS))
        for b, (lo, hi) in enumerate(zip(np.r_[0, ends[:-1]], ends, strict=True)):
            if hi > lo:
                by_bucket[lo:hi].tofile(self.buckets[b])

    def close(self) -> None:
        for f in (*self.buckets, self.order):
            f.close()

    def repeated(self) -> np.ndarray:
        """The hashes seen more than once, sorted (usually none); one bucket in memory at a time."""
        self.close()
        found = []
        for f in self.buckets:
            bucket = np.sort(np.fromfile(f.name, dtype=np.uint64))
            found.append(np.unique(bucket[1:][bucket[1:] == bucket[:-1]]))
        return np.concatenate(found)


class _Duplicates:
    """Which rows to leave out: a row whose hash repeats is compared by key with earlier ones.

    Reads the hashes in row order from ``order`` alongside the rows; remembers only the keys of
    candidate rows, so memory is the repeated keys, not the manifest.
    """

    def __init__(self, work: Path, repeated: np.ndarray) -> None:
        self.repeated = repeated
        self.order = open(work / "hashes" / "order.u64", "rb")  # noqa: SIM115 (closed in close)
        self.seen: set[str] = set()
        self.dropped = 0
        self.dropped_empty = 0

    def keep(
        self, n: int, keys: Callable[[np.ndarray], list[tuple[str, Any]]]
    ) -> np.ndarray | None:
        """A mask of the next ``n`` rows to keep (None: all); ``keys(rows)`` reads their
        ``(key, text)``."""
        hashes = np.fromfile(self.order, dtype=np.uint64, count=n)
        candidates = np.nonzero(np.isin(hashes, self.repeated))[0]
        if not len(candidates):
            return None
        mask = np.ones(n, dtype=bool)
        for i, (key, text) in zip(candidates, keys(candidates), strict=True):
            if key in self.seen:
                mask[i] = False
                self.dropped += 1
                self.dropped_empty += not str(text or "").strip()
            else:
                self.seen.add(key)
        return mask

    def close(self) -> None:
        self.order.close()


def _json_keys(lines: list[str]) -> Callable[[np.ndarray], list[tuple[str, Any]]]:
    def keys(rows: np.ndarray) -> list[tuple[str, Any]]:
        parsed = [json.loads(lines[i]) for i in rows]
        return [(row["key"], row.get("text")) for row in parsed]

    return keys


def _arrow_keys(table: pa.Table) -> Callable[[np.ndarray], list[tuple[str, Any]]]:
    def keys(rows: np.ndarray) -> list[tuple[str, Any]]:
        picked = table.take(rows)
        return list(
            zip(picked.column("key").to_pylist(), picked.column("text").to_pylist(), strict=True)
        )

    return keys


class _JsonlSink:
    """Lines appended to one file as batches come; rewritten only to leave out duplicates."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.path = work / "rows.jsonl"
        self.f = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 (closed in finish)
        self.rows = 0

    def write(self, batch: list[Row]) -> None:
        self.f.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in batch))
        self.rows += len(batch)

    def close(self) -> None:
        self.f.close()

    def finish(self, done: Path, repeated: np.ndarray) -> tuple[int, int, int]:
        self.close()
        if not len(repeated):
            os.replace(self.path, done)
            return self.rows, 0, 0
        dups = _Duplicates(self.work, repeated)
        with (
            open(self.path, encoding="utf-8", newline="\n") as src,
            open(done, "w", encoding="utf-8") as out,
        ):
            while lines := list(itertools.islice(src, BATCH_ROWS)):
                mask = dups.keep(len(lines), _json_keys(lines))
                out.write("".join(lines if mask is None else itertools.compress(lines, mask)))
        dups.close()
        return self.rows - dups.dropped, dups.dropped, dups.dropped_empty


def _columns(rows: list[Row]) -> list[str]:
    extra: dict[str, None] = {}
    for row in rows:
        for name in row:
            if name not in BASE_COLUMNS:
                extra.setdefault(name, None)
    return [*BASE_COLUMNS, *sorted(extra)]


def _table(rows: list[Row]) -> pa.Table:
    """One batch as a table: base columns typed, the others inferred from these rows."""
    arrays: dict[str, Any] = {}
    for name in _columns(rows):
        values = [row.get(name) for row in rows]
        kind = BASE_COLUMNS.get(name)
        try:
            arrays[name] = pa.array(values, type=getattr(pa, kind)()) if kind else pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ManifestError(f"column {name!r}: values of mixed types ({exc})") from None
    return pa.table(arrays)


def _merge(a: pa.Schema, b: pa.Schema) -> pa.Schema:
    """What inference over both batches' rows gives: types widened, columns in manifest order."""
    try:
        merged = pa.unify_schemas([a, b], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ManifestError(f"a metadata column changes type between rows ({exc})") from None
    order = [*BASE_COLUMNS, *sorted(n for n in merged.names if n not in BASE_COLUMNS)]
    return pa.schema([merged.field(n) for n in order])


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` under ``schema``: missing columns null, types widened."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


class _ParquetSink:
    """Batches appended to a ``ParquetWriter``; a batch that widens the schema starts a new part."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.parts: list[Path] = []
        self.schema: pa.Schema | None = None
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, batch: list[Row]) -> None:
        table = _table(batch)
        if self.schema is not None and not table.schema.equals(self.schema):
            merged = _merge(self.schema, table.schema)
            if not merged.equals(self.schema):  # wider than the part being written: a new part
                self.close()
                self.schema = merged
            table = _conform(table, self.schema)
        if self.writer is None:
            self.schema = table.schema
            self.parts.append(self.work / f"part-{len(self.parts):04d}.parquet")
            self.writer = pq.ParquetWriter(self.parts[-1], self.schema)
        self.writer.write_table(table)
        self.rows += len(batch)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def finish(self, done: Path, repeated: np.ndarray) -> tuple[int, int, int]:
        if not self.parts:  # no rows at all: the base columns, typed
            self.write([])
        self.close()
        if len(self.parts) == 1 and not len(repeated):
            os.replace(self.parts[0], done)
            return self.rows, 0, 0
        dups = _Duplicates(self.work, repeated) if len(repeated) else None
        with pq.ParquetWriter(done, self.schema) as out:
            for part in self.parts:  # row group by row group: one batch in memory
                f = pq.ParquetFile(part)
                for group in range(f.num_row_groups):
                    table = f.read_row_group(group)
                    if dups is not None:
                        mask = dups.keep(table.num_rows, _arrow_keys(table))
                        table = table if mask is None else table.filter(mask)
                    if table.num_rows:
                        out.write_table(_conform(table, self.schema))
                f.close()
        if dups is None:
            return self.rows, 0, 0
        dups.close()
        return self.rows - dups.dropped, dups.dropped, dups.dropped_empty
