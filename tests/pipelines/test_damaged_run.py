"""A rerun over a run folder whose own files were damaged (a disk that filled, a hand edit) stops
with one line naming the file and the remedy, and following the remedy finishes the run."""

from __future__ import annotations

import json

from clipvip.cli import main


def _prepare(videos, tmp_path) -> list[str]:
    rows = [{"key": f"k{i}", "video": str(videos["h264"]), "text": f"row {i}"} for i in range(3)]
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    return ["prepare", str(m), "--out", str(out), "--runner", "local", "--shard-size", "1"] + [
        "--captioner",
        "none",
        "--frame-short-side",
        "64",
        "--no-progress",
    ]


def test_a_stats_file_cut_short_is_named_and_deleting_it_redoes_that_task(videos, tmp_path, capsys):
    args = _prepare(videos, tmp_path)
    assert main(args) == 0
    stats = tmp_path / "out" / "stats" / "000001.json"
    stats.write_text(stats.read_text()[:40])
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"clipvip: error: {stats} is damaged (not JSON: ")
    assert err.endswith("delete it and rerun the same `clipvip prepare` command to redo that task")
    stats.unlink()
    assert main(args) == 0
    summary = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert (summary["rows_done"], summary["samples"], summary["complete"]) == (3, 3, True)


def test_a_stats_file_without_its_shard_list_is_named_before_the_merge(videos, tmp_path, capsys):
    args = _prepare(videos, tmp_path)
    assert main(args) == 0
    stats = tmp_path / "out" / "stats" / "000002.json"
    data = json.loads(stats.read_text())
    del data["shards"]
    stats.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(args) == 2
    assert f"{stats} is damaged (bad or missing shards)" in capsys.readouterr().err


def test_a_run_json_that_is_not_json_is_named(videos, tmp_path, capsys):
    args = _prepare(videos, tmp_path)
    assert main(args) == 0
    run = tmp_path / "out" / "run.json"
    run.write_bytes(b"\xff\xfe garbage")
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{run} is damaged (not JSON: " in err and "Traceback" not in err


def test_a_resumed_run_reports_the_rate_of_the_rows_it_ran_not_of_those_it_skipped(
    videos, tmp_path
):
    from pipelines.config import PrepareConfig
    from pipelines.prepare import EngineOptions, format_summary, prepare

    _prepare(videos, tmp_path)  # writes the manifest
    cfg = PrepareConfig(out=str(tmp_path / "out"), shard_size=1, captioner="none")
    first = prepare(str(tmp_path / "m.jsonl"), cfg, EngineOptions(runner="local"))
    assert first["rows_run"] == 3
    (tmp_path / "out" / "stats" / "000000.json").unlink()
    again = prepare(str(tmp_path / "m.jsonl"), cfg, EngineOptions(runner="local"))
    assert (again["rows_done"], again["rows_run"], again["resumed_tasks"]) == (3, 1, 2)
    done = prepare(str(tmp_path / "m.jsonl"), cfg, EngineOptions(runner="local"))
    assert done["rows_run"] == 0 and "(0.00 rows/s" in format_summary(done, cfg.out)
    assert "rows_run" not in (tmp_path / "out" / "stats.json").read_text()


def test_without_run_json_finished_tasks_of_other_settings_are_refused_not_skipped(
    videos, tmp_path, capsys
):
    """run.json's damage message says to delete it and rerun. A rerun with another --shard-size
    cuts other tasks: taking the old task files for the new tasks skipped rows with no trace and
    called the run complete. Finished tasks are kept only when the same manifest and settings
    made them."""
    args = _prepare(videos, tmp_path)
    assert main(args) == 0
    (tmp_path / "out" / "run.json").unlink()
    (tmp_path / "out" / "stats" / "000002.json").unlink()  # one task still to do
    capsys.readouterr()
    assert main([*args, "--shard-size", "2"]) == 2
    err = capsys.readouterr().err
    assert "holds 2 finished and 0 reopened tasks but no run.json" in err and "--out" in err
    assert main(args) == 0  # the settings that made them: resumes, keeps them, redoes task 2
    summary = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert (summary["rows_done"], summary["samples"], summary["complete"]) == (3, 3, True)
