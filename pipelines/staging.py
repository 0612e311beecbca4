"""Staging: the manifest streamed once into per-task row groups in the run's own folder.

At 100M rows the manifest fits neither in the driver's memory nor in an engine's job graph (a
Beam ``Create`` of every row would be pickled into the pipeline; Dataflow refuses graphs over
10 MB). So ``prepare`` streams the manifest once, validates each row into a ``Clip`` and writes
the rows to ``inputs/rows/part-NNNNNN.parquet``: task ``i``'s rows are row group
``i % TASKS_PER_PART`` of part ``i // TASKS_PER_PART``. Engines then carry task indices only, and
a worker reads just its task's rows (one ranged read on object storage).

Duplicate keys must fail every row but the first, which needs the whole manifest. Instead of a
set of 100M strings, staging keeps an 8-byte hash per row (800 MB at 100M rows, freed after),
finds hashes seen twice by sorting, and settles those few candidates exactly by reading their
keys back. The result, usually empty, is ``inputs/rows/duplicates.json``, applied as tasks load.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import tempfile
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from clipvip.terminal import stderr_is_terminal
from pipelines.config import PrepareConfig
from pipelines.manifest import Repeats, iter_clips, settle_repeat
from pipelines.record import Clip, Failure
from shards.store import Store

ROWS_DIR = "inputs/rows"
DUPLICATES = f"{ROWS_DIR}/duplicates.json"
TASKS_PER_PART = 64  # 64 tasks of 1,000 rows: parts of a few MB, 1,600 parts at 100M rows
SCHEMA = pa.schema([("row", pa.int64()), ("line", pa.int64()), ("clip", pa.string())])
# Without a terminal, progress is one log line per this many seconds, not a bar (whose redraws
# fill a log file with escape codes); ``pipelines.progress`` uses it too.
PLAIN_EVERY_S = 30.0

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class Staged:
    rows: int
    tasks: int
    fingerprint: str


def part_rel(part: int) -> str:
    return f"{ROWS_DIR}/part-{part:06d}.parquet"


def clip_to_json(clip: Clip) -> str:
    """The manifest-level fields of a clip; ASCII JSON, so undecodable paths survive the trip."""
    return json.dumps(
        {
            "key": clip.key,
            "video": clip.video,
            "start": clip.start,
            "end": clip.end,
            "text": clip.text,
            "dataset": clip.dataset,
            "source_key": clip.source_key,
            "extra": clip.extra,
            "error": [clip.error.stage, clip.error.reason] if clip.error else None,
        },
        ensure_ascii=True,
        sort_keys=True,
    )


def clip_from_json(row: int, data: str) -> Clip:
    d = json.loads(data)
    error = d.pop("error")
    return Clip(row=row, error=Failure(*error) if error else None, **d)


class _Fingerprint:
    """sha256 over the settings that shape samples and every validated row, in order."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())

    def add(self, row: int, clip_json: str) -> None:
        self.h.update(f"{row}\t{clip_json}\n".encode())  # clip_json is ASCII

    def hexdigest(self) -> str:
        return self.h.hexdigest()


def _rows(
    manifest: str, cfg: PrepareConfig, desc: str, progress: bool
) -> Iterator[tuple[int, Clip]]:
    """The manifest's clips, with progress of rows read (staging 100M rows takes minutes): a
    bar on a terminal, else a log line now and then."""
    rows = iter_clips(manifest, cfg.allow_empty_text)
    if not progress:
        yield from rows
        return
    first = next(rows, None)  # an unreadable manifest fails here, before any bar is drawn
    if first is None:
        return
    rows = itertools.chain([first], rows)
    if not stderr_is_terminal():
        yield from _logged(rows, desc)
        return
    with tqdm(desc=desc, unit=" rows", dynamic_ncols=True, mininterval=1) as bar:
        for item in rows:
            yield item
            bar.update()


def _logged(rows: Iterator[tuple[int, Clip]], desc: str) -> Iterator[tuple[int, Clip]]:
    """``rows``, with a log line of how many were read every ``PLAIN_EVERY_S`` seconds."""
    due = time.monotonic() + PLAIN_EVERY_S
    for n, item in enumerate(rows, 1):
        yield item
        if n % 1024 == 0 and time.monotonic() >= due:  # the clock read, not every row
            log.info("%s: %s rows read", desc, f"{n:,}")
            due = time.monotonic() + PLAIN_EVERY_S


def fingerprint(
    manifest: str, cfg: PrepareConfig, progress: bool = False, *others: dict[str, Any]
) -> tuple[list[str], int]:
    """Fingerprints of a manifest without staging it (a rerun's check): under ``cfg``'s sample
    settings, then under each of ``others`` (a run's recorded settings, to tell a changed
    manifest from changed settings), in one read; and the number of rows."""
    fps = [_Fingerprint(cfg.sample_settings()), *(_Fingerprint(o) for o in others)]
    rows = 0
    for _, clip in _rows(manifest, cfg, "checking manifest", progress):
        line = clip_to_json(clip)
        for fp in fps:
            fp.add(clip.row, line)
        rows += 1
    return [fp.hexdigest() for fp in fps], rows


def _key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


class _PartWriter:
    """Writes row groups (one per task) into parts of TASKS_PER_PART, each uploaded when full."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.part = 0
        self.groups = 0
        self.writer: pq.ParquetWriter | None = None
        self.local = ""

    def add_task(self, rows: list[tuple[int, int, str]]) -> None:
        if self.writer is None:
            fd, self.local = tempfile.mkstemp(suffix=".parquet", dir=self.store.scratch_dir())
            os.close(fd)
            self.writer = pq.ParquetWriter(self.local, SCHEMA, compression="zstd")
        columns = list(zip(*rows, strict=True))
        table = pa.Table.from_arrays([pa.array(c) for c in columns], schema=SCHEMA)
        self.writer.write_table(table, row_group_size=len(rows))
        self.groups += 1
        if self.groups == TASKS_PER_PART:
            self.close()

    def close(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        self.store.put_file(part_rel(self.part), self.local)
        self.writer, self.groups, self.part = None, 0, self.part + 1


def stage(manifest: str, cfg: PrepareConfig, progress: bool = False) -> Staged:
    """Stream ``manifest`` into ``inputs/rows/`` under ``cfg.out``; settle duplicate keys."""
    store = Store(cfg.out)
    store.remove(ROWS_DIR)
    size = max(1, cfg.shard_size)
    fp = _Fingerprint(cfg.sample_settings())
    hashes = array("Q")
    writer = _PartWriter(store)
    task: list[tuple[int, int, str]] = []
    for line, clip in _rows(manifest, cfg, "staging manifest", progress):
        data = clip_to_json(clip)
        fp.add(clip.row, data)
        hashes.append(_key_hash(clip.key))
        task.append((clip.row, line, data))
        if len(task) == size:
            writer.add_task(task)
            task = []
    if task:
        writer.add_task(task)
    writer.close()
    rows = len(hashes)
    duplicates = _settle_duplicates(store, np.frombuffer(hashes, dtype=np.uint64), size)
    del hashes
    store.put_bytes(DUPLICATES, (json.dumps(duplicates, sort_keys=True) + "\n").encode())
    return Staged(rows, -(-rows // size), fp.hexdigest())


def _settle_duplicates(store: Store, hashes: np.ndarray, size: int) -> dict[str, list]:
    """``{row: [line, first row, n, key]}`` for every row whose key an earlier row already has
    (it is the key's n-th row; ``manifest.settle_repeat`` decides what that means, and ``key``
    is its new key when it is another text of a clip, None when it fails as a duplicate)."""
    if len(hashes) < 2:
        return {}
    ordered = np.sort(hashes)
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    if not len(repeated):
        return {}
    by_task: dict[int, set[int]] = {}
    for r in np.nonzero(np.isin(hashes, repeated))[0]:  # candidate rows, in manifest order
        by_task.setdefault(int(r) // size, set()).add(int(r))

    def held(key: str) -> bool:  # by hash: a false yes only lengthens a repeat's key
        h = np.uint64(_key_hash(key))
        i = int(np.searchsorted(ordered, h))
        return i < len(ordered) and ordered[i] == h

    repeats = Repeats(held)
    out: dict[str, list] = {}
    for task, wanted in sorted(by_task.items()):
        for row, line, data in _task_rows(store, task):
            if row not in wanted:
                continue
            settled = repeats.settle(clip_from_json(row, data))
            if settled is not None:
                out[str(row)] = [line, *settled]
    return out


def _task_rows(store: Store, index: int) -> Iterator[tuple[int, int, str]]:
    with store.fs.open(store.path(part_rel(index // TASKS_PER_PART)), "rb") as f:
        table = pq.ParquetFile(f).read_row_group(index % TASKS_PER_PART)
    yield from zip(
        table.column("row").to_pylist(),
        table.column("line").to_pylist(),
        table.column("clip").to_pylist(),
        strict=True,
    )


def load_clips(cfg: PrepareConfig, index: int) -> list[Clip]:
    """Task ``index``'s clips as staged, repeated keys settled as ``read_manifest`` settles
    them."""
    store = Store(cfg.out)
    duplicates = json.loads(store.read_text(DUPLICATES))  # a few bytes: usually "{}"
    clips = []
    for row, _, data in _task_rows(store, index):
        clip = clip_from_json(row, data)
        if str(row) in duplicates:
            settle_repeat(clip, *duplicates[str(row)])
        clips.append(clip)
    return clips
