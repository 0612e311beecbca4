"""Progress of a run as seen from its output folder, so it works for every engine.

Engines run tasks in other processes (or on other machines); each finished task leaves its stats
file, and each worker process its running per-stage counts (``pipelines.stage_counts``). A
background thread polls them and moves a ``tqdm`` bar of finished rows, with failures by stage,
and under it a bar per stage: clips through it so far, and how many it failed.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from collections.abc import Sequence

from tqdm import tqdm

from pipelines.stage_counts import CARRIED, PROGRESS_DIR, read_counts, read_each
from pipelines.tasks import STATS_DIR
from shards.store import Store


class RunProgress:
    """``with RunProgress(out, total_rows): engine.run(...)``."""

    def __init__(
        self,
        out: str,
        total_rows: int,
        interval: float | None = None,
        stages: Sequence[str] = (),
    ) -> None:
        self.store = Store(out)
        self.store.remove(PROGRESS_DIR)  # an earlier run's counts: this run counts afresh
        self.seen: set[str] = set()
        # Each poll lists stats/: cheap on a disk, a paid request on an object store.
        self.interval = interval or (0.5 if self.store.local else 5.0)
        self.failed: Counter[str] = Counter()
        self._stop = threading.Event()
        self._bar = tqdm(total=total_rows, unit="row", desc="prepare", dynamic_ncols=True)
        width = max((len(s) for s in stages), default=0)
        self._stage_bars = {
            stage: tqdm(
                total=total_rows,
                unit="clip",
                desc=f"  {stage:<{width}}",
                position=i + 1,
                dynamic_ncols=True,
                leave=True,
            )
            for i, stage in enumerate(stages)
        }
        self.done_before: int | None = None  # rows of tasks an earlier run finished
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def poll(self) -> None:
        new = [n for n in self.store.list(STATS_DIR) if n not in self.seen and n.endswith(".json")]
        # what cannot be read or parsed now is left for the next poll; a damaged stats file
        # is for `clipvip status` and the final merge to name, not for the bars to die on
        found = read_each(self.store, [f"{STATS_DIR}/{n}" for n in new])
        for rel, data in found.items():
            try:
                stats = json.loads(data)
            except ValueError:
                continue
            if not _counts_rows(stats):
                continue
            self.seen.add(rel.rsplit("/", 1)[-1])
            self.failed.update(stats["failed_by_stage"])
            self._bar.update(stats["rows"])
            self._bar.set_postfix(
                written=self._bar.n - sum(self.failed.values()),
                failed=",".join(f"{k}:{v}" for k, v in sorted(self.failed.items())) or "0",
            )
        if self.done_before is None:
            self.done_before = self._bar.n
        if self._stage_bars:
            self._poll_stages()

    def _poll_stages(self) -> None:
        counts = read_counts(self.store)
        carried = counts.pop(CARRIED, [0, 0])[0]
        for stage, bar in self._stage_bars.items():
            through, failed = counts.get(stage, [0, 0])
            # rows an earlier run finished went through every stage; so did carried ones
            bar.n = min(bar.total, (self.done_before or 0) + carried + through)
            bar.set_postfix(failed=failed, refresh=False)
            bar.refresh()

    def stage_totals(self) -> dict[str, int]:
        """What each stage bar shows now (for tests and the log)."""
        return {stage: bar.n for stage, bar in self._stage_bars.items()}

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            # an object store's passing error (a timeout, a throttled list) must not stop the
            # bars for the rest of the run
            with contextlib.suppress(OSError):
                self.poll()

    def __enter__(self) -> RunProgress:
        self.poll()  # tasks finished by an earlier, interrupted run
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(OSError):  # the bars are display: the run's result stands
            self.poll()
        for bar in self._stage_bars.values():
            bar.close()
        self._bar.close()
        self.store.remove(PROGRESS_DIR)  # display only; the stats files are the record


def _counts_rows(stats: object) -> bool:
    """Whether a parsed stats file has the row count and failures by stage the bars add up."""
    if not isinstance(stats, dict) or not isinstance(stats.get("failed_by_stage"), dict):
        return False
    numbers = [stats.get("rows"), *stats["failed_by_stage"].values()]
    return all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers)
