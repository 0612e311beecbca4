"""The end-of-run summary of a resumed run: the run's totals, and what this invocation did."""

from __future__ import annotations

import json

from pipelines.config import PrepareConfig
from pipelines.prepare import EngineOptions, format_summary, prepare


def _run(manifest, cfg):
    return prepare(str(manifest), cfg, EngineOptions(runner="local"), progress=False)


def test_a_resumed_run_says_what_is_new_what_was_skipped_and_times_only_its_own_tasks(
    videos, tmp_path
):
    rows = [{"key": f"k{i}", "video": str(videos["h264"]), "text": f"row {i}"} for i in range(3)]
    rows.append({"key": "bad", "video": str(videos["corrupt"]), "text": "broken"})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    cfg = PrepareConfig(out=str(out), shard_size=1, frame_short_side=64, captioner="none")

    fresh = format_summary(_run(manifest, cfg), str(out))
    assert fresh.startswith("prepared 3 samples from 4 rows in ")
    assert "new this time" not in fresh and "\n  resumed:" not in fresh
    assert "\n  time by stage (summed over workers): " in fresh

    (out / "stats" / "000001.json").unlink()  # task 1 (row k1) must run again
    again = _run(manifest, cfg)
    text = format_summary(again, str(out))
    assert text.startswith("prepared 3 samples in the run (1 new this time) from 4 rows in ")
    assert "\n  resumed: 3 rows skipped (3 tasks already done)" in text
    # the seconds of the one task this invocation ran, not the whole run's
    redone = json.loads((out / "stats" / "000001.json").read_text())["seconds"]
    assert again["seconds_run_by_stage"] == {k: round(v, 3) for k, v in sorted(redone.items())}
    shown = ", ".join(f"{k} {v:.1f}s" for k, v in again["seconds_run_by_stage"].items())
    assert f"\n  time by stage this time (summed over workers): {shown}" in text
    assert "probe" in redone and "write" in redone

    nothing = format_summary(_run(manifest, cfg), str(out))
    assert nothing.startswith("prepared 3 samples in the run (0 new this time) from 4 rows in ")
    assert "\n  resumed: 4 rows skipped (4 tasks already done)" in nothing
    assert "time by stage" not in nothing, "no task ran: no time to show"


def test_a_resumed_run_of_one_earlier_row_says_row_and_task_in_the_singular(videos, tmp_path):
    rows = [{"key": f"k{i}", "video": str(videos["h264"]), "text": f"row {i}"} for i in range(2)]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    cfg = PrepareConfig(out=str(out), shard_size=1, frame_short_side=64, captioner="none")
    _run(manifest, cfg)
    (out / "stats" / "000001.json").unlink()
    text = format_summary(_run(manifest, cfg), str(out))
    assert "\n  resumed: 1 row skipped (1 task already done)" in text


def test_failures_no_stage_foresaw_are_counted_apart_and_point_to_retry_failed(
    videos, tmp_path, monkeypatch
):
    """An exception a stage did not expect (a bug, an input nobody handled) fails only its row,
    but the summary, stats.json and status say so apart from the rows' own faults: a rerun
    would skip those rows as done, so the way back (--retry-failed) is named."""
    import importlib

    from pipelines.status import format_status, run_status

    stage_module = importlib.import_module("pipelines.stages.middle_frame")

    def broken(*_a, **_k):
        raise KeyError("a bug")

    monkeypatch.setattr(stage_module, "decode_middle_frame", broken)
    rows = [{"key": f"k{i}", "video": str(videos["h264"]), "text": "t"} for i in range(2)]
    rows.append({"key": "bad", "video": str(videos["corrupt"]), "text": "broken"})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    cfg = PrepareConfig(out=str(out), shard_size=1, frame_short_side=64, captioner="none")
    summary = _run(manifest, cfg)
    assert (summary["failed"], summary["failed_unexpected"]) == (3, 2)
    text = format_summary(summary, str(out))
    assert "2 of the failures are errors no stage foresaw" in text and "--retry-failed" in text
    assert json.loads((out / "stats.json").read_text())["failed_unexpected"] == 2
    assert "2 failed on errors no stage foresaw" in format_status(run_status(str(out)))
