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
