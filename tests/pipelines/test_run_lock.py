"""One `prepare` driver per output folder: a second is refused in one line, before it stages
anything; the lock goes with its holder however that ends (SIGKILL included)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clipvip.cli import main
from pipelines.run_lock import LOCK_FILE, RunBusy, driver_lock

from .conftest import make_video


@pytest.fixture()
def manifest(tmp_path: Path) -> Path:
    video = make_video(tmp_path / "v.mp4", seconds=2.0)
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"video": str(video), "text": "a test pattern"}) + "\n")
    return path


def _prepare(manifest: Path, out: Path) -> int:
    return main(["prepare", str(manifest), "--out", str(out), "--runner", "local",
                 "--captioner", "none", "--no-progress"])  # fmt: skip


def _holder(out: Path) -> subprocess.Popen:
    """Another driver holding ``out``'s lock (a record lock is per process: not this one)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pipelines.run_lock import driver_lock\n"
         f"with driver_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_driver_on_a_busy_out_is_refused_naming_the_holder(
    manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    holder = _holder(out)  # the first driver, still running
    try:
        assert _prepare(manifest, out) == 2
        err = capsys.readouterr().err
        assert f"is being prepared by another run (pid {holder.pid} on " in err
        assert "Traceback" not in err
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing staged
    finally:
        holder.terminate()
        holder.wait()
    assert _prepare(manifest, out) == 0  # once it has ended, the same command runs
    assert json.loads((out / "stats.json").read_text())["samples"] == 1


def test_a_child_forked_by_the_driver_does_not_keep_its_lock(tmp_path: Path) -> None:
    """An isolation child or forked worker outliving a killed driver must not block the rerun."""
    out = tmp_path / "out"
    read, write = os.pipe()
    with driver_lock(str(out)):
        pid = os.fork()
        if pid == 0:  # the child: it cannot take the lock while the parent holds it...
            try:
                with driver_lock(str(out)):
                    os.write(write, b"taken")
            except RunBusy:
                os.write(write, b"busy")
            time.sleep(3)  # ...and lives on after the parent has let go
            os._exit(0)
        assert os.read(read, 16) == b"busy"
    holder = _holder(out)  # another driver gets it while the forked child still lives
    holder.terminate()
    holder.wait()
    os.waitpid(pid, 0)


def test_a_killed_driver_leaves_no_lock_behind(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    holder = _holder(out)
    try:
        with pytest.raises(RunBusy, match=f"pid {holder.pid} on "), driver_lock(str(out)):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        deadline = time.monotonic() + 10
        while True:  # the kernel drops the lock with the process's last descriptor
            try:
                with driver_lock(str(out)):
                    break
            except RunBusy:
                assert time.monotonic() < deadline, "the killed driver's lock outlived it"
                time.sleep(0.1)
    finally:
        holder.kill()
        holder.wait()
    assert _prepare(manifest, out) == 0


def test_an_object_store_out_takes_no_local_lock(tmp_path: Path) -> None:
    with driver_lock("s3://bucket/run"), driver_lock("s3://bucket/run"):
        pass  # no flock there: one driver per folder is the user's to keep
    assert not any(tmp_path.iterdir())


POLL_STATUS = """
import sys, time
from pathlib import Path
from pipelines.run_lock import lock_holder
print("polling", flush=True)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    lock_holder(Path(sys.argv[1]))
"""


def test_asking_who_holds_the_lock_never_refuses_a_driver_starting_meanwhile(
    tmp_path: Path,
) -> None:
    """``clipvip status`` polling a starting run used to take a shared lock for a moment, and a
    driver starting in that moment was refused (335 of 3000 starts): it now only asks."""
    out = tmp_path / "out"
    with driver_lock(str(out)):
        pass  # the lock file exists, free
    poller = subprocess.Popen(
        [sys.executable, "-c", POLL_STATUS, str(out), "30"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    try:
        assert poller.stdout.readline() == "polling\n"
        for _ in range(500):
            with driver_lock(str(out)):  # RunBusy here is the bug
                pass
    finally:
        poller.kill()
        poller.wait()


def test_the_holders_own_process_is_answered_without_releasing_its_lock(tmp_path: Path) -> None:
    from pipelines.run_lock import lock_holder

    out = tmp_path / "out"
    with driver_lock(str(out)):
        assert lock_holder(out) == f"pid {os.getpid()} on {os.uname().nodename} (this process)"
        second = subprocess.run(
            [sys.executable, "-c", "from pipelines.run_lock import driver_lock\n"
             f"with driver_lock({str(out)!r}): pass"],
            capture_output=True, text=True, cwd=Path(__file__).parents[2],
        )  # fmt: skip
        assert "RunBusy" in second.stderr  # still held: asking released nothing
    assert lock_holder(out) is None


def test_a_filesystem_without_record_locks_runs_unguarded_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import errno
    import fcntl

    def no_locks(*args):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "lockf", no_locks)
    ran = False
    with driver_lock(str(tmp_path / "out")):
        ran = True
    assert ran and "cannot lock" in caplog.text and "without the one-driver guard" in caplog.text


def test_a_second_lock_in_the_same_process_is_refused_and_the_first_stays_held(
    tmp_path: Path,
) -> None:
    """A record lock belongs to the process: the kernel grants a second ``lockf`` in it, and
    closing that descriptor dropped the first holder's lock, so the folder was open to all."""
    out = tmp_path / "out"
    with driver_lock(str(out)):
        busy = rf"pid {os.getpid()} on .*, this process\)"
        with pytest.raises(RunBusy, match=busy), driver_lock(str(out)):
            pass
        other = subprocess.run(
            [sys.executable, "-c", "from pipelines.run_lock import driver_lock\n"
             f"with driver_lock({str(out)!r}): pass"],
            capture_output=True, text=True, cwd=Path(__file__).parents[2],
        )  # fmt: skip
        assert "RunBusy" in other.stderr  # the refused attempt released nothing
    holder = _holder(out)  # and the first block's end did release it
    holder.terminate()
    holder.wait()


def test_another_thread_is_refused_even_when_it_asks_to_reenter(tmp_path: Path) -> None:
    import threading

    out = tmp_path / "out"
    refused: list[str] = []

    def second_driver() -> None:
        try:
            with driver_lock(str(out), reenter=True):
                pass
        except RunBusy as exc:
            refused.append(str(exc))

    with driver_lock(str(out)):
        thread = threading.Thread(target=second_driver)
        thread.start()
        thread.join()
    assert len(refused) == 1 and "this process" in refused[0]


def test_the_holding_thread_may_reenter_and_keeps_the_lock_after(tmp_path: Path) -> None:
    """``clipvip prepare`` holds the lock around its ``--format`` adapter and ``prepare``, which
    takes it again with ``reenter=True``: the inner block must leave the outer one's lock."""
    out = tmp_path / "out"
    probe = [sys.executable, "-c", "from pipelines.run_lock import driver_lock\n"
             f"with driver_lock({str(out)!r}): pass"]  # fmt: skip
    with driver_lock(str(out)):
        with driver_lock(str(out), reenter=True):
            pass
        other = subprocess.run(probe, capture_output=True, text=True, cwd=Path(__file__).parents[2])
        assert "RunBusy" in other.stderr


def _msrvtt(tmp_path: Path, sentence: str) -> tuple[Path, Path]:
    """An MSR-VTT release of one video: its CSV and its videos folder."""
    folder = tmp_path / "msrvtt_videos"
    folder.mkdir(exist_ok=True)
    if not (folder / "video7.mp4").exists():
        make_video(folder / "video7.mp4", seconds=2.0)
    csv = tmp_path / "MSRVTT_JSFUSION_test.csv"
    csv.write_text(f"key,vid_key,video_id,sentence\nret0,msr7,video7,{sentence}\n")
    return csv, folder


def _prepare_format(csv: Path, folder: Path, out: Path) -> int:
    return main(["prepare", str(csv), "--format", "msrvtt", "--videos", str(folder),
                 "--out", str(out), "--runner", "local", "--captioner", "none",
                 "--no-progress"])  # fmt: skip


def test_a_format_prepare_on_a_busy_out_is_refused_before_it_rewrites_the_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The ``--format`` adapter used to write OUT/inputs/manifest.parquet (and OUT/_tmp) before
    the lock was taken: the running run's manifest was replaced under it."""
    csv, folder = _msrvtt(tmp_path, "a test card")
    out = tmp_path / "out"
    running = out / "inputs" / "manifest.parquet"  # the running run's manifest
    running.parent.mkdir(parents=True)
    running.write_bytes(b"the running run's manifest")
    before = running.stat().st_mtime_ns
    holder = _holder(out)  # the running run
    try:
        assert _prepare_format(csv, folder, out) == 2
        err = capsys.readouterr().err
        assert f"is being prepared by another run (pid {holder.pid} on " in err
        assert "Traceback" not in err
    finally:
        holder.terminate()
        holder.wait()
    assert running.read_bytes() == b"the running run's manifest"
    assert running.stat().st_mtime_ns == before
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE, "inputs"]  # no _tmp either
    assert [p.name for p in running.parent.iterdir()] == ["manifest.parquet"]  # nor a report


def test_rerunning_a_format_prepare_leaves_an_identical_manifest_file_alone(
    tmp_path: Path,
) -> None:
    """Same sources, same manifest bytes: the file keeps its mtime, so the rerun resumes on the
    quick same-file check; changed sources do replace it."""
    csv, folder = _msrvtt(tmp_path, "a test card")
    out = tmp_path / "out"
    manifest = out / "inputs" / "manifest.parquet"
    assert _prepare_format(csv, folder, out) == 0
    first = (manifest.read_bytes(), manifest.stat().st_mtime_ns)
    assert _prepare_format(csv, folder, out) == 0
    assert (manifest.read_bytes(), manifest.stat().st_mtime_ns) == first
    assert not list(out.glob("_tmp/manifest.*"))  # no scratch manifest left behind
    csv.write_text(csv.read_text().replace("a test card", "another caption"))
    _prepare_format(csv, folder, out)  # another manifest: replaced (the run may refuse it)
    assert manifest.read_bytes() != first[0]
