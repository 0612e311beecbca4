"""Progress without a terminal (a log file, a cluster job): plain log lines, never bar redraws."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from pipelines import staging
from pipelines.config import PrepareConfig
from pipelines.prepare import EngineOptions, prepare
from pipelines.progress import RunProgress
from pipelines.stage_counts import PROGRESS_DIR


def _manifest(videos, tmp_path, n: int = 3):
    rows = [{"key": f"k{i}", "video": str(videos["h264"]), "text": f"row {i}"} for i in range(n)]
    rows.append({"key": "bad", "video": str(videos["corrupt"]), "text": "broken"})
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return m


def _stats(task: int, rows: int, failed: dict[str, int]) -> str:
    return json.dumps({"task": task, "rows": rows, "failed_by_stage": failed, "written": rows})


def test_prepare_into_a_log_file_writes_no_bar_redraws_and_still_prints_its_summary(
    videos, tmp_path
):
    manifest = _manifest(videos, tmp_path)
    argv = [sys.executable, "-m", "clipvip", "prepare", str(manifest), "--out"]
    opts = ["--runner", "local", "--captioner", "none", "--shard-size", "1"]
    done = subprocess.run(  # stderr a pipe, as `2> p1.err` makes it: not a terminal
        [*argv, str(tmp_path / "out"), *opts], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\x1b[" not in done.stderr
    assert "prepared 3 samples from 4 rows" in done.stdout
    assert "failed: 1 (probe: 1)" in done.stdout


def test_without_a_terminal_a_plain_line_is_logged_only_when_the_counts_moved(tmp_path, caplog):
    stats = tmp_path / "stats"
    stats.mkdir()
    (stats / "000000.json").write_text(_stats(0, 4, {}))  # an earlier run's: not news
    caplog.set_level(logging.INFO, logger="pipelines.progress")
    # no wait between lines; the hour-long interval keeps the thread's polls out of the test
    with RunProgress(str(tmp_path), 10, interval=3600, terminal=False, plain_every=0) as bars:
        assert caplog.messages == []
        (stats / "000001.json").write_text(_stats(1, 3, {"probe": 1}))
        bars.poll()
        bars.poll()  # nothing moved: no second line
    [line] = caplog.messages
    assert line.startswith("progress: 7 / 10 rows done (70.0 %), failed 1 (probe: 1), ")
    assert line.endswith(" rows/s")


def test_prepare_without_a_terminal_logs_plain_progress_and_no_progress_silences_it(
    videos, tmp_path, caplog, capfd, monkeypatch
):
    monkeypatch.setattr(staging, "PLAIN_EVERY_S", 0)  # a line whenever the counts move
    manifest = str(_manifest(videos, tmp_path))
    caplog.set_level(logging.INFO)
    for out, progress in (("shown", True), ("silent", False)):
        caplog.clear()
        cfg = PrepareConfig(out=str(tmp_path / out), shard_size=2, captioner="none")
        prepare(manifest, cfg, EngineOptions(runner="local"), progress=progress)
        lines = [m for m in caplog.messages if m.startswith("progress: ")]
        if progress:
            assert lines[-1].startswith("progress: 4 / 4 rows done (100.0 %), failed 1 (probe: 1)")
        else:
            assert lines == []
        # no bars, so no worker wrote live stage counts for them
        assert not (tmp_path / out / PROGRESS_DIR).exists()
    err = capfd.readouterr().err
    assert "\r" not in err and "\x1b[" not in err


def test_staging_without_a_terminal_logs_rows_read_instead_of_a_bar(
    tmp_path, caplog, capfd, monkeypatch
):
    monkeypatch.setattr(staging, "PLAIN_EVERY_S", 0)
    rows = [{"key": f"k{i}", "video": "v.mp4", "text": "t"} for i in range(2048)]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    caplog.set_level(logging.INFO, logger="pipelines.staging")
    _, n = staging.fingerprint(str(manifest), PrepareConfig(out=str(tmp_path / "out")), True)
    assert n == 2048
    assert caplog.messages == [
        "checking manifest: 1,024 rows read",
        "checking manifest: 2,048 rows read",
    ]
    assert capfd.readouterr().err == ""


def test_on_a_terminal_an_unchanged_stage_bar_is_not_redrawn(tmp_path, capsys):
    counts = tmp_path / PROGRESS_DIR / "host-1.json"
    with RunProgress(str(tmp_path), 10, interval=3600, stages=["probe"], terminal=True) as bars:
        counts.parent.mkdir()  # a worker's live counts (entering removed an earlier run's)
        counts.write_text(json.dumps({"probe": [2, 0]}))
        bars.poll()
        capsys.readouterr()
        bars.poll()
        assert capsys.readouterr().err == "", "same counts: nothing drawn"
        counts.write_text(json.dumps({"probe": [5, 1]}))
        bars.poll()
        assert "failed=1" in capsys.readouterr().err
        assert bars.stage_totals() == {"probe": 5}
