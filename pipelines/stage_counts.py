"""Live counts of clips through each stage, for one progress bar per stage.

A task's stats file says what it did only once the whole task is done (1000 rows by default);
a bar per stage should move while the rows go through. So each worker process counts the clips
leaving each stage and, at most every ``interval`` seconds, writes its running totals to
``progress/<host>-<pid>.json`` in the run folder (any engine, any machine that can write there).
The driver (``pipelines.progress``) sums the files. Counts are for display only: what a run did
is what its stats files say.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterable

from pipelines.record import Clip
from shards.store import Store

PROGRESS_DIR = "progress"
CARRIED = "carried"


class StageCounts:
    """Clips through each stage in this process: ``{stage: [through, failed there]}``.

    A clip is through a stage once it passed it, failed in it, or failed before it (it skips the
    rest): so every stage's bar ends at the run's row count, failures shown beside it.
    """

    def __init__(self, out: str) -> None:
        self.store = Store(out)
        # a file per process: no two writers ever share one
        self.rel = f"{PROGRESS_DIR}/{socket.gethostname()}-{os.getpid()}.json"
        # each write is a request on an object store; on a disk it costs nothing
        self.interval = 0.5 if self.store.local else 10.0
        self.counts: dict[str, list[int]] = {}
        self.dirty = False
        self.last = 0.0

    def note(self, stage: str, clips: Iterable[Clip]) -> None:
        """Count ``clips`` as through ``stage``, and those that failed in it."""
        entry = self.counts.setdefault(stage, [0, 0])
        for clip in clips:
            entry[0] += 1
            if clip.error is not None and clip.error.stage == stage:
                entry[1] += 1
        self.dirty = True
        if time.monotonic() - self.last >= self.interval:
            self.flush()

    def carried(self, n: int) -> None:
        """``n`` rows a retry copied from its earlier attempt: they passed every stage then
        (the driver adds ``CARRIED`` to every stage's bar)."""
        self.counts.setdefault(CARRIED, [0, 0])[0] += n
        self.dirty = True

    def flush(self) -> None:
        if not self.dirty:
            return
        self.store.put_bytes(self.rel, json.dumps(self.counts).encode())
        self.dirty, self.last = False, time.monotonic()


class _NoCounts(StageCounts):
    """The counter when nobody draws the bars: counts nothing, writes nothing."""

    def __init__(self) -> None:
        pass

    def note(self, stage: str, clips: Iterable[Clip]) -> None:
        pass

    def carried(self, n: int) -> None:
        pass

    def flush(self) -> None:
        pass


_NONE = _NoCounts()
_COUNTS: dict[tuple[str, int], StageCounts] = {}


def stage_counts(out: str, live: bool) -> StageCounts:
    """This process's counter for the run at ``out``; one that does nothing when not ``live``."""
    if not live:
        return _NONE
    key = (out, os.getpid())  # a forked child counts apart from its parent
    if key not in _COUNTS:
        _COUNTS[key] = StageCounts(out)
    return _COUNTS[key]


def read_each(store: Store, rels: list[str]) -> dict[str, bytes]:
    """``store.read_many``, less what cannot be read now (listed but gone, a folder where a
    file belongs): one such name must not hide every other file from the bars."""
    try:
        return store.read_many(rels)
    except OSError:
        pass
    found = {}
    for rel in rels:
        with contextlib.suppress(OSError):
            found[rel] = store.read_bytes(rel)
    return found


def read_counts(store: Store) -> dict[str, list[int]]:
    """Every process's counts summed: ``{stage: [through, failed there]}``. A file that is not
    such counts (cut by a store without atomic puts, or edited) is left out: display only."""
    names = [n for n in store.list(PROGRESS_DIR) if n.endswith(".json")]
    found = read_each(store, [f"{PROGRESS_DIR}/{n}" for n in names])
    total: dict[str, list[int]] = {}
    for data in found.values():
        try:
            counts = json.loads(data)
        except ValueError:  # caught mid-write on a store without atomic puts: next poll
            continue
        if not isinstance(counts, dict):
            continue
        for stage, pair in counts.items():
            if not (isinstance(pair, list) and len(pair) == 2 and all(_count(n) for n in pair)):
                continue
            entry = total.setdefault(stage, [0, 0])
            entry[0] += pair[0]
            entry[1] += pair[1]
    return total


def _count(n: object) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n >= 0
