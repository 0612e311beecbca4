"""The local Ray's reaper (``local_cluster.reaped_temp_dir``), without Ray: a driver process
that made the temp dir, a child that writes a log under it from a session of its own (as a Ray
worker leads its own process group) and a reader of that log. End to end with a real Ray, the
driver killed alone: ``test_crash_resume.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

DRIVER = r"""
import json, os, subprocess, sys, time
from pipelines.local_cluster import reaped_temp_dir

temp_dir = reaped_temp_dir()
log = temp_dir + "/worker.out"
hold = "import sys, time; f = open(sys.argv[1], sys.argv[2]); time.sleep(600)"
writer = subprocess.Popen([sys.executable, "-c", hold, log, "a"], start_new_session=True)
while not os.path.exists(log):
    time.sleep(0.01)
reader = subprocess.Popen([sys.executable, "-c", hold, log, "r"], start_new_session=True)
print(json.dumps({"temp_dir": temp_dir, "writer": writer.pid, "reader": reader.pid}), flush=True)
if sys.argv[1] == "wait":
    time.sleep(600)
"""


def _driver(mode: str) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, mode],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
        start_new_session=True,
    )
    started = json.loads(proc.stdout.readline())
    deadline = time.monotonic() + 60
    for name in ("writer", "reader"):  # both hold the log open before the driver goes
        p = psutil.Process(started[name])
        while not any(f.path.endswith("worker.out") for f in p.open_files()):
            assert p.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline, name
            time.sleep(0.01)
    return proc, started


def _gone(pid: int, wait_s: float = 20.0) -> bool:
    try:
        psutil.Process(pid).wait(timeout=wait_s)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        return False
    return True


def _dir_gone(path: str, wait_s: float = 20.0) -> bool:
    deadline = time.monotonic() + wait_s
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not os.path.exists(path)


def _stop(pid: int) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(pid).kill()


def test_a_driver_killed_alone_takes_what_writes_under_its_temp_dir_and_the_dir():
    proc, started = _driver("wait")
    try:
        os.kill(proc.pid, signal.SIGKILL)  # the driver alone, not its group
        proc.wait()
        assert _gone(started["writer"]), "the writer outlived its driver"
        assert _dir_gone(started["temp_dir"])
        assert psutil.Process(started["reader"]).is_running(), "a reader of a log is spared"
    finally:
        for name in ("writer", "reader"):
            _stop(started[name])


def test_a_driver_that_ends_normally_leaves_nothing_behind():
    proc, started = _driver("exit")
    try:
        assert proc.wait(timeout=30) == 0
        assert _gone(started["writer"])
        assert _dir_gone(started["temp_dir"])
    finally:
        for name in ("writer", "reader"):
            _stop(started[name])
