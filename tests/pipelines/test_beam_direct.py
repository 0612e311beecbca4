"""``--runner beam`` runs Beam's FnApiRunner in this process, never a downloaded Prism.

Beam 2.77's DirectRunner first tries the PrismRunner, which fetches a Go binary from GitHub at
every run: offline that fails and falls back (leaving a ``beam-temp*`` folder), online the run
would silently move to another engine. ``pipelines.beam.direct_runner`` skips the attempt.
"""

from __future__ import annotations

import json

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability import prism_runner
from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner

from pipelines.beam import direct_runner
from pipelines.config import PrepareConfig
from pipelines.prepare import EngineOptions, prepare


def test_the_direct_runner_is_the_fn_api_runner_and_named_runners_are_left_to_beam():
    for runner in ([], ["--runner=DirectRunner"], ["--runner=direct"]):
        assert isinstance(direct_runner(PipelineOptions(runner)), FnApiRunner)
    for runner in ("PrismRunner", "FlinkRunner", "BundleBasedDirectRunner", "DataflowRunner"):
        assert direct_runner(PipelineOptions([f"--runner={runner}"])) is None
    assert direct_runner(PipelineOptions(["--streaming"])) is None


def test_every_spelling_of_the_direct_runner_counts_as_direct_for_isolation():
    from pipelines.beam import _is_direct

    for runner in ("DirectRunner", "direct", "DIRECT", "SwitchingDirectRunner"):
        assert _is_direct(PipelineOptions([f"--runner={runner}"]))
    assert not _is_direct(PipelineOptions(["--runner=FlinkRunner"]))


def test_a_beam_run_never_starts_prism(videos, tmp_path, monkeypatch):
    tried = []
    monkeypatch.setattr(
        prism_runner.PrismRunner, "run_pipeline", lambda *a, **k: tried.append(a) or 1 / 0
    )
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"key": "a", "video": str(videos["h264"]), "text": "x"}) + "\n")
    cfg = PrepareConfig(out=str(tmp_path / "out"), frame_short_side=64, captioner="none")
    summary = prepare(str(manifest), cfg, EngineOptions(runner="beam"), progress=False)
    assert summary["samples"] == 1 and summary["runner"] == "beam"
    assert tried == []


def test_ctrl_c_during_a_beam_step_is_an_interrupt_not_a_runtime_error():
    """Beam reports Ctrl-C inside a step as ``RuntimeError: KeyboardInterrupt [while running
    ...]``; clipvip's CLI turns only a KeyboardInterrupt into "interrupted; rerun" (exit 130)."""
    import pytest

    from pipelines.beam import _ctrl_c_is_an_interrupt

    with pytest.raises(KeyboardInterrupt), _ctrl_c_is_an_interrupt():
        raise RuntimeError("KeyboardInterrupt [while running 'ProbeClipFrame']")
    with pytest.raises(RuntimeError, match="Pipeline failed"), _ctrl_c_is_an_interrupt():
        raise RuntimeError("Pipeline failed")


def test_ctrl_c_on_a_beam_run_exits_130_with_the_resume_hint(tmp_path):
    """The whole path, as a user at a terminal: SIGINT to the run's process group while the
    steps cut clips (the first shard is written, the other 39 rows still to go)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.pipelines.conftest import make_video

    video = make_video(tmp_path / "long.mp4", size="640x360", seconds=20.0)
    rows = [
        {"video": str(video), "start": i % 10, "end": i % 10 + 9, "text": "t"} for i in range(40)
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = [sys.executable, "-c", "import sys; from clipvip.cli import main; sys.exit(main())"]
    cmd += ["prepare", str(manifest), "--out", str(tmp_path / "run"), "--runner", "beam"]
    cmd += ["--captioner", "none", "--shard-size", "1", "--max-short-side", "360"]
    proc = subprocess.Popen(
        cmd,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    shards = tmp_path / "run" / "shards"
    deadline = time.monotonic() + 300
    while not any(shards.glob("*.tar")):  # the steps are cutting clips (not a timing assertion)
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130, rest
    # Beam itself prints the step's traceback first (in-process runner); the last word is ours
    assert rest.strip().splitlines()[-1] == "clipvip: interrupted; rerun the same command to resume"
