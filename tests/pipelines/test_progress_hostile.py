"""The progress bars read files other processes write: a damaged one is skipped, not fatal."""

from __future__ import annotations

import json

from pipelines.progress import RunProgress
from pipelines.stage_counts import PROGRESS_DIR, read_counts
from shards.store import Store


def _stats(task: int, rows: int, failed: dict[str, int]) -> str:
    return json.dumps({"task": task, "rows": rows, "failed_by_stage": failed, "written": rows})


def test_bars_skip_damaged_stats_files_and_count_the_good_ones(tmp_path):
    stats = tmp_path / "stats"
    stats.mkdir(parents=True)
    (stats / "000000.json").write_text(_stats(0, 4, {"probe": 1}))
    (stats / "000001.json").write_text("null")  # each of these stopped the bars' thread
    (stats / "000002.json").write_text('{"task": 2}')
    (stats / "000003.json").write_bytes(b'{"task": 3, "rows": \xff')
    (stats / "000004.json").mkdir()  # unreadable: once hid every other file from the bars
    (stats / "000005.json").write_text(_stats(5, 2, {}))
    # entering polls once; the hour-long interval keeps the thread's polls out of the test
    with RunProgress(str(tmp_path), total_rows=20, interval=3600, stages=["probe"]) as bars:
        assert bars.rows_done == 6 and dict(bars.failed) == {"probe": 1}
        (stats / "000001.json").write_text(_stats(1, 3, {}))  # mended: counted next poll
        bars.poll()
        assert bars.rows_done == 9


def test_stage_counts_leave_out_files_that_are_not_counts(tmp_path):
    progress = tmp_path / PROGRESS_DIR
    progress.mkdir()
    (progress / "a-1.json").write_text(json.dumps({"probe": [5, 1], "clip": [4, 0]}))
    (progress / "b-2.json").write_text(json.dumps({"probe": [2, 0], "clip": 7, "write": [1]}))
    (progress / "c-3.json").write_text("[1, 2]")
    (progress / "d-4.json").write_bytes(b"\xff\xfe")
    (progress / "e-5.json").mkdir()
    assert read_counts(Store(str(tmp_path))) == {"probe": [7, 1], "clip": [4, 0]}
