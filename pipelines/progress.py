"""Progress of a run as seen from its output folder, so it works for every engine.

Engines run tasks in other processes (or on other machines); each finished task leaves its stats
file. A background thread polls them and moves a ``tqdm`` bar of rows, with failures by stage.
"""

from __future__ import annotations

import json
import threading
from collections import Counter

from tqdm import tqdm

from pipelines.tasks import STATS_DIR
from shards.store import Store


class RunProgress:
    """``with RunProgress(out, total_rows): engine.run(...)``."""

    def __init__(self, out: str, total_rows: int, interval: float | None = None) -> None:
        self.store = Store(out)
        self.seen: set[str] = set()
        # Each poll lists stats/: cheap on a disk, a paid request on an object store.
        self.interval = interval or (0.5 if self.store.local else 5.0)
        self.failed: Counter[str] = Counter()
        self._stop = threading.Event()
        self._bar = tqdm(total=total_rows, unit="row", desc="prepare", dynamic_ncols=True)
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def poll(self) -> None:
        new = [n for n in self.store.list(STATS_DIR) if n not in self.seen and n.endswith(".json")]
        try:
            found = self.store.read_many([f"{STATS_DIR}/{n}" for n in new])
        except OSError:
            return  # listed but gone or unreadable for a moment: the next poll gets it
        for rel, data in found.items():
            try:
                stats = json.loads(data)
            except ValueError:
                continue
            self.seen.add(rel.rsplit("/", 1)[-1])
            self.failed.update(stats["failed_by_stage"])
            self._bar.update(stats["rows"])
            self._bar.set_postfix(
                written=self._bar.n - sum(self.failed.values()),
                failed=",".join(f"{k}:{v}" for k, v in sorted(self.failed.items())) or "0",
            )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def __enter__(self) -> RunProgress:
        self.poll()  # tasks finished by an earlier, interrupted run
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()
        self._bar.close()
