"""Progress of a run as seen from its output folder, so it works for every engine.

Engines run tasks in other processes (or on other machines); each finished task leaves its stats
file, and each worker process its running per-stage counts (``pipelines.stage_counts``). A
background thread polls them. On a terminal it moves a ``tqdm`` bar of finished rows, with
failures by stage, and under it a bar per stage: clips through it so far, and how many it failed.

Without a terminal (stderr to a log file, a cluster job) bars would write a ``\\r`` or cursor
move for every redraw: measured, ~31 lines of escape codes a second, ~85 MB for a day-long job.
There the run logs one plain line instead, every ``staging.PLAIN_EVERY_S`` seconds and only
when the counts moved: rows done of the total, failures by stage, rate.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

from tqdm import tqdm

from clipvip.terminal import stderr_is_terminal
from pipelines import staging
from pipelines.stage_counts import CARRIED, PROGRESS_DIR, read_counts, read_each
from pipelines.tasks import STATS_DIR
from shards.store import Store

log = logging.getLogger(__name__)


class RunProgress:
    """``with RunProgress(out, total_rows): engine.run(...)``.

    ``terminal`` (default: whether stderr is one) chooses bars or plain log lines; the stage
    bars, and so the polls of the workers' stage counts, exist only on a terminal.
    """

    def __init__(
        self,
        out: str,
        total_rows: int,
        interval: float | None = None,
        stages: Sequence[str] = (),
        terminal: bool | None = None,
        plain_every: float | None = None,
    ) -> None:
        self.store = Store(out)
        self.store.remove(PROGRESS_DIR)  # an earlier run's counts: this run counts afresh
        self.seen: set[str] = set()
        # Each poll lists stats/: cheap on a disk, a paid request on an object store.
        self.interval = interval or (0.5 if self.store.local else 5.0)
        self.total_rows = total_rows
        self.rows_done = 0  # rows of finished tasks, this run's and earlier runs'
        self.failed: Counter[str] = Counter()
        self.terminal = stderr_is_terminal() if terminal is None else terminal
        self.done_before: int | None = None  # rows of tasks an earlier run finished
        self._stop = threading.Event()
        self._bar = _row_bar(total_rows) if self.terminal else None
        self._stage_bars = _stage_bars(stages, total_rows) if self.terminal else {}
        self._stage_shown: dict[str, tuple[int, int]] = {}  # stage -> (through, failed) drawn
        self._plain = _PlainLines(staging.PLAIN_EVERY_S if plain_every is None else plain_every)
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @property
    def counts_stages(self) -> bool:
        """Whether the workers' live stage counts are read (so worth writing)."""
        return bool(self._stage_bars)

    def poll(self) -> None:
        self._poll_tasks()
        if self.done_before is None:
            self.done_before = self.rows_done
            self._plain.start(self._state())
        if self._stage_bars:
            self._poll_stages()
        if not self.terminal:
            self._plain.maybe_log(self._state(), self.plain_line)

    def _poll_tasks(self) -> None:
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
            self.rows_done += stats["rows"]
            if self._bar is not None:
                self._bar.update(stats["rows"])
                self._bar.set_postfix(
                    written=self.rows_done - sum(self.failed.values()),
                    failed=_failures(self.failed) or "0",
                )

    def _poll_stages(self) -> None:
        counts = read_counts(self.store)
        carried = counts.pop(CARRIED, [0, 0])[0]
        for stage, bar in self._stage_bars.items():
            through, failed = counts.get(stage, [0, 0])
            # rows an earlier run finished went through every stage; so did carried ones
            shown = (min(bar.total, (self.done_before or 0) + carried + through), failed)
            if shown == self._stage_shown.get(stage):
                continue  # an unchanged bar is not redrawn: tqdm's own mininterval is bypassed
            self._stage_shown[stage] = shown
            bar.n = shown[0]
            bar.set_postfix(failed=failed, refresh=False)
            bar.refresh()

    def stage_totals(self) -> dict[str, int]:
        """What each stage bar shows now (for tests and the log)."""
        return {stage: bar.n for stage, bar in self._stage_bars.items()}

    def _state(self) -> tuple[int, int]:
        return self.rows_done, sum(self.failed.values())

    def plain_line(self, seconds: float) -> str:
        """One progress line for a log: ``seconds`` since the run began gives the rate of the
        rows this run processed (rows an earlier run finished took no time now)."""
        pct = 100 * self.rows_done / self.total_rows if self.total_rows else 100.0
        ran = self.rows_done - (self.done_before or 0)
        rate = ran / seconds if seconds > 0 else 0.0
        failed = sum(self.failed.values())
        by_stage = f" ({_failures(self.failed, ': ', ', ')})" if failed else ""
        return (
            f"progress: {self.rows_done:,} / {self.total_rows:,} rows done ({pct:.1f} %), "
            f"failed {failed:,}{by_stage}, {rate:.2f} rows/s"
        )

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
        if self._bar is not None:
            self._bar.close()
        self.store.remove(PROGRESS_DIR)  # display only; the stats files are the record


class _PlainLines:
    """When to log a plain progress line: ``every`` seconds at most, and only when the counts
    moved since the last line (a stalled run does not repeat itself all night)."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.began = time.monotonic()
        self.last_at = self.began
        self.last_state: tuple[int, int] | None = None

    def start(self, state: tuple[int, int]) -> None:
        """What the run starts from (an earlier run's tasks): not news worth a line."""
        self.last_state = state

    def maybe_log(self, state: tuple[int, int], line: Callable[[float], str]) -> None:
        now = time.monotonic()
        if state == self.last_state or now - self.last_at < self.every:
            return
        self.last_state, self.last_at = state, now
        log.info("%s", line(now - self.began))


def _row_bar(total_rows: int) -> tqdm:
    return tqdm(total=total_rows, unit="row", desc="prepare", dynamic_ncols=True)


def _stage_bars(stages: Sequence[str], total_rows: int) -> dict[str, tqdm]:
    width = max((len(s) for s in stages), default=0)
    return {
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


def _failures(failed: Counter[str], sep: str = ":", join: str = ",") -> str:
    return join.join(f"{k}{sep}{v}" for k, v in sorted(failed.items()) if v)


def _counts_rows(stats: object) -> bool:
    """Whether a parsed stats file has the row count and failures by stage the bars add up."""
    if not isinstance(stats, dict) or not isinstance(stats.get("failed_by_stage"), dict):
        return False
    numbers = [stats.get("rows"), *stats["failed_by_stage"].values()]
    return all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers)
