"""A video that crashes (or hangs) the in-process decoder fails its row alone, on every engine.

The crash is real (the decoding process gets SIGSEGV) but injected: ``fault_injection/`` on
``PYTHONPATH`` makes the middle-frame decoder kill its own process on frames of one width, in
every Python process the run starts (Beam and Ray workers, the isolation child).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.commands import prepare_command
from pipelines import isolation
from pipelines.config import PrepareConfig
from pipelines.isolation import DEATHS_PER_ROW, ChildDied, IsolatedStages
from pipelines.record import Clip
from pipelines.stages import CPU_STAGES, apply
from pipelines.status import format_status, run_status
from shards import iter_samples

FAULTS = Path(__file__).parent / "fault_injection"
POISON_SIZE = "66x34"  # a width no other test video has
POISON_WIDTH = 66


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Five good clips and one whose middle frame crashes the decoder, in one manifest."""
    d = tmp_path_factory.mktemp("corpus")
    rows = []
    for i in range(5):
        video = make_video(d / f"good{i}.mp4", "96x64", seconds=1.0 + 0.2 * i)
        rows.append({"key": f"good{i}", "video": str(video), "text": f"clip {i}"})
    poison = make_video(d / "poison.mp4", POISON_SIZE, seconds=1.0)
    rows.insert(2, {"key": "poison", "video": str(poison), "text": "crashes the decoder"})
    manifest = d / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def make_video(path: Path, size: str, seconds: float) -> Path:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi"]
        + ["-i", f"testsrc2=size={size}:rate=25", "-t", str(seconds)]
        + ["-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )
    return path


def fault_env(**faults: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(FAULTS), env.get("PYTHONPATH")) if p)
    env.update({f"CLIPVIP_FAULT_{k.upper()}_WIDTH": str(v) for k, v in faults.items()})
    return env


def prepare_cmd(manifest: Path, out: Path, *args: str) -> list[str]:
    return prepare_command(manifest, out, "--shard-size", "3", "--captioner", "none", *args)


def run(cmd: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def samples(out: Path) -> dict[str, tuple]:
    return {s["key"]: (s["mp4"], s["jpg"], s["txt"]) for s in iter_samples(str(out))}


@pytest.fixture(scope="module")
def clean(corpus, tmp_path_factory) -> dict[str, tuple]:
    """The good rows' samples from a run without any fault."""
    out = tmp_path_factory.mktemp("clean") / "out"
    done = run(prepare_cmd(corpus, out, "--runner", "local"), dict(os.environ))
    assert done.returncode == 0, done.stderr
    got = samples(out)
    assert set(got) == {"good0", "good1", "poison", "good2", "good3", "good4"}
    del got["poison"]
    return got


def assert_poison_failed_alone(out: Path, clean: dict[str, tuple]) -> dict:
    assert samples(out) == clean  # every good row, byte for byte, once
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [(e["key"], e["stage"]) for e in errors] == [("poison", "middle_frame")]
    assert "SIGSEGV" in errors[0]["reason"] and "isolated" in errors[0]["reason"]
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["rows_done"], stats["samples"], stats["failed"]) == (6, 5, 1)
    return stats


def clip_of(manifest: Path, key: str) -> Clip:
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    row = next(r for r in rows if r["key"] == key)
    return Clip(key=key, row=0, video=row["video"], text=row["text"])


def test_stages_in_the_child_give_the_same_bytes_as_in_process(corpus, tmp_path):
    cfg = PrepareConfig(out=str(tmp_path))
    inside, isolated = clip_of(corpus, "good1"), clip_of(corpus, "good1")
    with IsolatedStages() as child:
        for name, stage in CPU_STAGES:
            inside = apply(name, stage, inside, cfg)
            isolated = child.apply(name, isolated, cfg)
        assert child.children_started == 1  # one child serves every stage and clip
    assert isolated.ok and inside.ok
    assert (isolated.mp4, isolated.jpg, isolated.frame_index) == (
        inside.mp4,
        inside.jpg,
        inside.frame_index,
    )


def test_a_row_that_kills_its_child_on_each_try_fails_with_the_signal_and_the_next_row_goes_on(
    corpus, tmp_path, monkeypatch
):
    monkeypatch.setenv("PYTHONPATH", fault_env(crash=POISON_WIDTH)["PYTHONPATH"])
    monkeypatch.setenv("CLIPVIP_FAULT_CRASH_WIDTH", str(POISON_WIDTH))
    cfg = PrepareConfig(out=str(tmp_path))
    with IsolatedStages() as child:
        poison, good = clip_of(corpus, "poison"), clip_of(corpus, "good0")
        for name, _ in CPU_STAGES:
            poison = child.apply(name, poison, cfg)
            good = child.apply(name, good, cfg)
        assert child.children_started == 1 + DEATHS_PER_ROW  # the first, two replacements
    assert poison.error.stage == "middle_frame"
    assert "killed by SIGSEGV" in poison.error.reason
    assert good.ok and good.jpg


def test_a_stage_that_hangs_is_killed_after_the_timeout_and_fails_its_row(
    corpus, tmp_path, monkeypatch
):
    monkeypatch.setenv("PYTHONPATH", fault_env()["PYTHONPATH"])
    monkeypatch.setenv("CLIPVIP_FAULT_HANG_WIDTH", str(POISON_WIDTH))
    cfg = PrepareConfig(out=str(tmp_path))
    with IsolatedStages(timeout_s=5) as child:
        clip = clip_of(corpus, "poison")
        for name, _ in CPU_STAGES:
            clip = child.apply(name, clip, cfg)
    assert clip.error.stage == "middle_frame"
    assert "did not answer within 5 s" in clip.error.reason


def test_a_runaway_allocation_in_the_child_fails_its_row_under_the_memory_cap(
    corpus, tmp_path, monkeypatch
):
    """Uncapped, 64 GB would be granted lazily here and, touched, bring the OOM killer."""
    monkeypatch.setenv("PYTHONPATH", fault_env()["PYTHONPATH"])
    monkeypatch.setenv("CLIPVIP_FAULT_ALLOC_WIDTH", str(POISON_WIDTH))
    cfg = PrepareConfig(out=str(tmp_path), tool_memory_mb=2048)
    with IsolatedStages() as child:
        poison, good = clip_of(corpus, "poison"), clip_of(corpus, "good0")
        for name, _ in CPU_STAGES:
            poison = child.apply(name, poison, cfg)
            good = child.apply(name, good, cfg)
        assert child.children_started == 1  # an error, not a death: the child lives on
    assert poison.error.stage == "middle_frame"
    assert poison.error.reason.startswith("ran out of memory")
    assert "--tool-memory-mb 2048" in poison.error.reason
    assert good.ok and good.jpg


def test_the_child_runs_under_the_tool_memory_cap(tmp_path):
    cfg = PrepareConfig(out=str(tmp_path), tool_memory_mb=1536)
    missing = Clip(key="k", row=0, video=str(tmp_path / "none.mp4"), text="t")
    with IsolatedStages() as child:
        assert child.apply("probe", missing, cfg).error.reason.startswith("file not found")
        limits = Path(f"/proc/{child.proc.pid}/limits").read_text()  # the child that answered
    row = next(line for line in limits.splitlines() if line.startswith("Max address space"))
    assert row.split()[3:5] == [str(1536 << 20), str(1536 << 20)]  # soft and hard, bytes


def test_local_run_killed_by_the_crash_resumes_with_the_crashing_row_failed_alone(
    corpus, clean, tmp_path
):
    out = tmp_path / "out"
    env = fault_env(crash=POISON_WIDTH)
    first = run(prepare_cmd(corpus, out, "--runner", "local"), env)
    assert first.returncode == -11, first.stderr  # SIGSEGV took the whole in-process run
    assert "Segmentation fault" in first.stderr  # faulthandler's traceback, not silence
    second = run(prepare_cmd(corpus, out, "--runner", "local"), env)
    assert second.returncode == 0, second.stderr
    assert "attempt 2" in second.stderr
    stats = assert_poison_failed_alone(out, clean)
    assert stats["tasks_retried"] == 1  # only the crashing row's task ran isolated
    assert not (out / "attempts").exists()  # complete: the counts live in the stats files
    assert "retried:  1 tasks" in format_status(run_status(str(out)))
    third = run(prepare_cmd(corpus, out, "--runner", "local"), env)
    assert "0 to run" in third.stderr
    assert samples(out) == clean


@pytest.mark.slow
def test_ray_retries_the_task_isolated_and_finishes_in_one_run(corpus, clean, tmp_path):
    out = tmp_path / "out"
    done = run(
        prepare_cmd(corpus, out, "--runner", "ray", "--workers", "2"), fault_env(crash=POISON_WIDTH)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    stats = assert_poison_failed_alone(out, clean)
    assert stats["tasks_retried"] == 1


@pytest.mark.slow
def test_beam_multiprocess_isolates_always_and_finishes_in_one_run(corpus, clean, tmp_path):
    out = tmp_path / "out"
    cmd = prepare_cmd(corpus, out, "--runner", "beam", "--workers", "2")
    done = run(cmd, fault_env(crash=POISON_WIDTH))
    assert done.returncode == 0, done.stderr[-3000:]
    stats = assert_poison_failed_alone(out, clean)
    assert stats["tasks_retried"] == 0  # never needed a retry: no worker died


HANGING_PARENT = """
import sys
from pipelines.config import PrepareConfig
from pipelines.isolation import IsolatedStages
from pipelines.record import Clip
from pipelines.stages import CPU_STAGES

clip = Clip(key="poison", row=0, video=sys.argv[1], text="hangs the decoder")
cfg = PrepareConfig(out=sys.argv[2])
with IsolatedStages(timeout_s=600) as child:  # the parent's bound: far beyond this test
    for name, _ in CPU_STAGES:
        clip = child.apply(name, clip, cfg)
"""


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, dead but not yet reaped by init, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux only (PR_SET_PDEATHSIG)")
def test_a_hanging_child_dies_with_its_parent_killed_outright(tmp_path):
    """The hang bound lives in the parent: a worker SIGKILLed while its child hung left the child
    running forever. The child now gets SIGKILL from the kernel when its parent goes."""
    video = make_video(tmp_path / "poison.mp4", POISON_SIZE, seconds=1.0)
    pidfile = tmp_path / "hanging.pid"
    env = fault_env(hang=POISON_WIDTH)
    env["CLIPVIP_FAULT_HANG_PIDFILE"] = str(pidfile)
    parent = subprocess.Popen(
        [sys.executable, "-c", HANGING_PARENT, str(video), str(tmp_path)],
        env=env, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    child = None
    try:
        deadline = time.monotonic() + 20
        while not pidfile.exists():  # the child is in the hang once it has written its pid
            assert parent.poll() is None and time.monotonic() < deadline, "the child never hung"
            time.sleep(0.05)
        child = int(pidfile.read_text())
        assert child != parent.pid and _running(child)
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _running(child):
            assert time.monotonic() < deadline, "the hanging child outlived its killed parent"
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait()
        if child is not None and _running(child):
            os.kill(child, signal.SIGKILL)


def test_a_child_that_will_not_end_when_killed_fails_the_exchange_not_the_task(
    tmp_path, monkeypatch, caplog
):
    """A child asleep in the kernel (a hung network mount) outlives SIGKILL: waiting for it
    raised ``TimeoutExpired``, which no one caught, and failed the whole task. It is now a
    ``ChildDied`` that says so, which fails the row alone (``apply``)."""
    monkeypatch.setattr(isolation, "KILL_WAIT_S", 0.2)
    stuck = subprocess.Popen(["sleep", "60"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        # no process started here outlives SIGKILL; one never sent it stands in for one that does
        monkeypatch.setattr(stuck, "kill", lambda: None)
        child = IsolatedStages(timeout_s=0)
        child.proc = stuck
        missing = Clip(key="k", row=0, video=str(tmp_path / "none.mp4"), text="t")
        with pytest.raises(ChildDied, match=r"did not answer within 0 s and would not end within"):
            child._call("probe", missing, PrepareConfig(out=str(tmp_path)))
        assert child.proc is None  # given up on: the next row starts a fresh child
        assert f"isolation child {stuck.pid} would not end" in caplog.text
    finally:
        os.kill(stuck.pid, signal.SIGKILL)
        stuck.wait()
