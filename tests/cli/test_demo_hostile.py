"""`clipvip demo` with an --out it cannot use, or an ffmpeg that fails: one line, no debris."""

from __future__ import annotations

import pytest

from clipvip.cli import UserError, main
from pipelines.demo import SOURCES, build_corpus


def test_an_out_that_is_a_file_is_one_line_and_left_alone(tmp_path, capsys):
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    code = main(["demo", "--out", str(out), "--runners", "local", "--captioner", "none"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"--out {out}: a file is there; name a folder" in err  # checked before any write
    assert out.read_text() == "mine"


def test_an_ffmpeg_that_dies_mid_write_leaves_no_video_a_rerun_would_take_as_made(
    tmp_path, monkeypatch
):
    """Before, the next demo run kept the cut file (it exists and is not empty) for good."""
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    # writes part of its output file (the last argument), then fails as a killed ffmpeg would
    fake.write_text('#!/bin/sh\nfor a; do last="$a"; done\nprintf half > "$last"\nexit 1\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    corpus = tmp_path / "corpus"
    with pytest.raises(UserError, match=f"cannot make the sample videos in {corpus}"):
        build_corpus(str(corpus))
    assert list(corpus.iterdir()) == []


def _made_corpus(out):
    """Stand-in videos under the names the demo makes, so that it skips ffmpeg."""
    (out / "corpus").mkdir(parents=True)
    for name, *_ in SOURCES:
        (out / "corpus" / name).write_bytes(b"made")


@pytest.mark.parametrize("runner", ["Documents", "", "local,", "beam,beam"])
def test_runners_that_name_no_engine_stop_before_anything_is_made_or_deleted(
    tmp_path, runner, capsys
):
    """Before, --fresh deleted OUT/RUNNER before the name was checked (a runner of '' deleted
    OUT itself), then failed with a traceback."""
    out = tmp_path / "home"
    _made_corpus(out)
    (out / "Documents").mkdir()
    (out / "Documents" / "thesis.txt").write_text("years of work")
    with pytest.raises(SystemExit) as stop:
        main(["demo", "--out", str(out), "--runners", runner, "--fresh", "--captioner", "none"])
    assert stop.value.code == 2
    assert "argument --runners:" in capsys.readouterr().err
    assert (out / "Documents" / "thesis.txt").read_text() == "years of work"


def test_fresh_refuses_a_runner_folder_that_holds_no_demo_run(tmp_path, capsys):
    out = tmp_path / "home"
    _made_corpus(out)
    (out / "local").mkdir()
    (out / "local" / "results.csv").write_text("mine")
    code = main(["demo", "--out", str(out), "--runners", "local", "--fresh", "--captioner", "none"])
    assert code == 2
    assert f"{out / 'local'} is not one" in capsys.readouterr().err
    assert (out / "local" / "results.csv").read_text() == "mine"


def test_fresh_removes_a_demo_run_cut_short_before_its_run_json(tmp_path):
    from pipelines.cli import _deletable_demo_run

    run = tmp_path / "beam"
    (run / "inputs" / "rows").mkdir(parents=True)
    (run / "_tmp").mkdir()
    assert _deletable_demo_run(run, str(tmp_path / "corpus" / "manifest.jsonl"))
    (run / "notes.md").write_text("mine")
    assert not _deletable_demo_run(run, str(tmp_path / "corpus" / "manifest.jsonl"))


def test_a_demo_run_is_recognised_whether_out_was_relative_or_absolute(tmp_path, monkeypatch):
    """Before, `--out demo` after `--out /abs/demo` stopped on 'another manifest'."""
    import json

    from pipelines.cli import _is_demo_run

    run = tmp_path / "demo" / "local"
    run.mkdir(parents=True)
    manifest = tmp_path / "demo" / "corpus" / "manifest.jsonl"
    settings = {"name": "demo"}
    (run / "run.json").write_text(json.dumps({"manifest": str(manifest), "settings": settings}))
    monkeypatch.chdir(tmp_path)
    assert _is_demo_run(run, "demo/corpus/manifest.jsonl")
    assert not _is_demo_run(run, "other/corpus/manifest.jsonl")
