"""``clipvip status`` while a prepare is still staging its manifest: no run.json yet, but a run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from clipvip.cli import main

ROOT = Path(__file__).resolve().parents[2]
HOLD_LOCK = """
import sys
from pipelines.run_lock import driver_lock
with driver_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


def _driver_holding_the_lock(out: Path) -> subprocess.Popen:
    """Another process holding ``out``'s driver lock, as a prepare does from its first step."""
    driver = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert driver.stdout.readline() == "held\n"
    return driver


def test_status_while_a_driver_stages_the_manifest_names_it_and_exits_0(tmp_path, capsys):
    out = tmp_path / "out"
    driver = _driver_holding_the_lock(out)
    try:
        (out / "inputs" / "rows").mkdir(parents=True)  # staging's first parts on their way
        (out / "_tmp").mkdir()
        code = main(["status", str(out)])
        text = capsys.readouterr().out
        assert main(["status", str(out), "--json"]) == 0
        st = json.loads(capsys.readouterr().out)
    finally:
        driver.stdin.close()
        driver.wait(timeout=60)
    assert code == 0
    assert text.startswith(f"{out}: starting: `clipvip prepare` (pid {driver.pid} on ")
    assert "is staging the manifest" in text
    assert st["state"] == "staging" and st["driver"].startswith(f"pid {driver.pid} on ")
    assert st["found"] == ["inputs", "_tmp"] and st["complete"] is False


def test_status_just_after_the_driver_took_its_lock_already_says_starting(tmp_path, capsys):
    out = tmp_path / "out"
    driver = _driver_holding_the_lock(out)  # the folder holds only .lock yet
    try:
        code = main(["status", str(out)])
    finally:
        driver.stdin.close()
        driver.wait(timeout=60)
    assert code == 0 and "is staging the manifest" in capsys.readouterr().out


def test_status_of_staged_inputs_without_a_driver_says_starting_or_stopped(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "inputs").mkdir(parents=True)  # an adapter's manifest, or a staging that was killed
    (out / "inputs" / "manifest.parquet").write_bytes(b"")
    # a killed driver's record: the kernel released its lock when it died
    (out / ".lock").write_text(json.dumps({"pid": 1, "host": "h", "since": "t"}))
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{out}: starting, or stopped while starting: ")
    assert "(inputs/ but no run.json yet)" in text and "rerun the same `clipvip prepare`" in text


def test_status_of_a_folder_with_only_a_released_lock_is_still_no_run(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").write_text("")  # a prepare that stopped before staging anything
    assert main(["status", str(out)]) == 2
    assert "no run here" in capsys.readouterr().err
