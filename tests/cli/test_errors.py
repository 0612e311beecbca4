"""How a command that cannot go on says so: one line on stderr, exit status 2, no traceback."""

from __future__ import annotations

import json

from clipvip.cli import main


def test_a_system_error_such_as_an_out_under_a_file_is_one_line(tmp_path, capsys):
    """Before, only FileNotFoundError was one line; NotADirectoryError, PermissionError and a
    full disk printed a traceback."""
    (tmp_path / "notes").write_text("mine")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"video": str(tmp_path / "v.mp4"), "text": "x"}) + "\n")
    out = tmp_path / "notes" / "out"
    code = main(["prepare", str(manifest), "--out", str(out), "--runner", "local"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "Traceback" not in "\n".join(err)
    assert err[-1].startswith("clipvip: error: [Errno 20] Not a directory: ")
    assert err[-1].endswith("(--debug shows where)")
    assert (tmp_path / "notes").read_text() == "mine"
