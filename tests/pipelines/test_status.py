"""``clipvip status``: a run's progress, failures, rate and time left, from its folder alone."""

from __future__ import annotations

import json
import subprocess
import sys

from pipelines.status import format_status, run_status

from .conftest import prepared_run


def _run(videos, tmp_path):
    return prepared_run(videos, tmp_path, good=4)


def test_status_of_a_run_stopped_halfway_says_what_is_left_and_why_rows_failed(videos, tmp_path):
    out = _run(videos, tmp_path)
    stats = sorted((out / "stats").glob("*.json"))
    for i, path in enumerate(stats):  # task i finished at t = 100 + 10 i, as if 10 s a task
        data = json.loads(path.read_text())
        path.write_text(json.dumps({**data, "finished_at": 100.0 + 10 * i}))
    stats[1].unlink()  # task 1 never finished: the run was stopped
    st = run_status(str(out), now=200.0)
    assert (st["rows"], st["rows_done"], st["tasks_done"], st["samples"]) == (5, 4, 4, 3)
    assert st["failed_by_stage"] == {"probe": 1} and st["failure_examples"]["probe"].startswith(
        "bad: "
    )
    # tasks 0, 2, 3, 4 finished at 100, 120, 130, 140: 3 rows in 40 s, 1 row left
    assert st["rows_per_s"] == 3 / 40 and round(st["eta_s"], 3) == round(40 / 3, 3)
    assert st["last_task_s_ago"] == 60.0 and not st["complete"]
    text = format_status(st)
    assert "4 / 5 done (80.0 %)" in text and "probe: 1" in text and "to resume" in text


def test_status_cli_on_a_finished_run_and_on_a_folder_without_one(videos, tmp_path):
    out = _run(videos, tmp_path)
    cmd = [sys.executable, "-m", "clipvip", "status"]
    done = subprocess.run([*cmd, str(out), "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and json.loads(done.stdout)["complete"] is True
    missing = tmp_path / "nowhere"
    none = subprocess.run([*cmd, str(missing)], capture_output=True, text=True, timeout=120)
    assert none.returncode == 2 and "no run here" in none.stderr
    assert not missing.exists(), "asking for a status creates nothing"


def test_status_rate_leaves_out_rows_a_retry_carried_instead_of_processing(videos, tmp_path):
    out = _run(videos, tmp_path)
    stats = sorted((out / "stats").glob("*.json"))
    for i, path in enumerate(stats):
        data = json.loads(path.read_text())
        path.write_text(json.dumps({**data, "finished_at": 100.0 + 10 * i}))
    last = json.loads(stats[-1].read_text())  # as if a retry of 3 rows carried 2 of them
    stats[-1].write_text(json.dumps({**last, "rows": 3, "carried": 2}))
    st = run_status(str(out), now=200.0)
    # tasks 1..4 finished after task 0, in 40 s; they processed 1 + 1 + 1 + (3 - 2) rows
    assert st["rows_per_s"] == 4 / 40


def test_status_names_the_running_driver_and_says_stopped_when_none_holds_the_folder(
    videos, tmp_path
):
    """A local run's driver holds the folder's lock: status tells a running run (who runs it)
    from a stopped one, which gets no time left (nothing is running) but the resume hint."""
    from pipelines.run_lock import driver_lock

    out = _run(videos, tmp_path)
    stats = sorted((out / "stats").glob("*.json"))
    for i, path in enumerate(stats):
        data = json.loads(path.read_text())
        path.write_text(json.dumps({**data, "finished_at": 100.0 + 10 * i}))
    stats[1].unlink()
    stopped = format_status(run_status(str(out), now=200.0))
    assert "stopped: no `clipvip prepare` holds the folder" in stopped
    assert "left:" not in stopped and "to resume it" in stopped
    with driver_lock(str(out)):
        running = format_status(run_status(str(out), now=200.0))
    assert "running: `clipvip prepare` (pid " in running and "left:" in running
    assert "to resume" not in running
