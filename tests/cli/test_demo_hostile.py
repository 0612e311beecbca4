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
    assert f"cannot write the sample corpus to {out}/corpus: [Errno 20] Not a directory" in err
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


@pytest.mark.xfail(
    strict=True,
    reason="pipelines/cli.py cmd_demo deletes OUT/RUNNER on --fresh before the runner name is "
    "checked; a runner of '' deletes OUT itself",
)
@pytest.mark.parametrize("runner", ["Documents", ""])
def test_fresh_never_deletes_a_folder_that_names_no_runner(tmp_path, runner):
    out = tmp_path / "home"
    _made_corpus(out)
    (out / "Documents").mkdir()
    (out / "Documents" / "thesis.txt").write_text("years of work")
    code = main(["demo", "--out", str(out), "--runners", runner, "--fresh", "--captioner", "none"])
    assert code == 2
    assert (out / "Documents" / "thesis.txt").read_text() == "years of work"
