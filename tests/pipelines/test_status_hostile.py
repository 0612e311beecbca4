"""``clipvip status`` on folders that are not a healthy run: one line naming what is wrong."""

from __future__ import annotations

import json
import shutil

import pytest

from clipvip.cli import main
from pipelines.status import format_status, run_status

from .conftest import prepared_run


@pytest.fixture(scope="module")
def finished_run(videos, tmp_path_factory):
    """A real finished run of 3 tasks (one row failing at probe); tests damage copies of it."""
    return prepared_run(videos, tmp_path_factory.mktemp("status_run"), good=2)


def _copy(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def _status(capsys, *argv: str) -> tuple[int, str]:
    code = main(["status", *argv])
    return code, capsys.readouterr().err


# damage -> (the file the message must name, what it must say)
DAMAGES = {
    "run.json cut short": ("run.json", lambda p: p.write_bytes(p.read_bytes()[:40]), "not JSON"),
    "run.json not UTF-8": ("run.json", lambda p: p.write_bytes(b"\xff\xfe\x00\x81"), "not JSON"),
    "run.json without counts": ("run.json", lambda p: p.write_text("{}"), "no row and task"),
    "stats cut on its last line": (
        "stats/000001.json",
        lambda p: p.write_bytes(p.read_bytes()[:-30]),
        "not JSON",
    ),
    "stats not UTF-8": ("stats/000001.json", lambda p: p.write_bytes(b"\x81\xff"), "not JSON"),
    "stats null": ("stats/000001.json", lambda p: p.write_text("null"), "not a JSON object"),
    "stats without counts": (
        "stats/000001.json",
        lambda p: p.write_text('{"task": 1}'),
        "rows, written, failed_by_stage, failures",
    ),
    "stats with a text time": (
        "stats/000001.json",
        lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "finished_at": "noon"})),
        "finished_at",
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_run_file_is_named_in_one_line_with_what_to_do(
    finished_run, tmp_path, capsys, damage
):
    rel, spoil, says = DAMAGES[damage]
    out = _copy(finished_run, tmp_path)
    spoil(out / rel)
    code, err = _status(capsys, str(out))
    assert code == 2
    assert err.startswith(f"clipvip: error: {out}/{rel} is damaged") and says in err
    assert "rerun the same `clipvip prepare`" in err and err.count("\n") == 1


def test_a_file_or_a_folder_where_the_other_belongs_is_said_so(finished_run, tmp_path, capsys):
    out = _copy(finished_run, tmp_path)
    code, err = _status(capsys, str(out / "run.json"))
    assert code == 2 and "run.json is a file; give the --out folder" in err
    shutil.rmtree(out / "stats")
    (out / "stats").write_text("not a folder")
    code, err = _status(capsys, str(out))
    assert code == 2 and f"{out}/stats is damaged (a file, not the folder of task stats)" in err


def test_a_uri_no_filesystem_can_open_is_one_line(capsys):
    code, err = _status(capsys, "nosuchscheme://bucket/run")
    assert code == 2
    assert (
        err
        == "clipvip: error: nosuchscheme://bucket/run: cannot open (Protocol not known: nosuchscheme)\n"
    )


def test_status_text_keeps_each_failure_on_one_printable_line(finished_run, tmp_path):
    out = _copy(finished_run, tmp_path)
    stats = out / "stats" / "000002.json"  # the task of the row that failed at probe
    data = json.loads(stats.read_text())
    data["failures"][0]["key"] = "bad\x1b[2J"  # an escape code in a manifest key
    data["failures"][0]["reason"] = "ffprobe failed:\nline two of stderr"
    stats.write_text(json.dumps(data))
    text = format_status({**run_status(str(out)), "out": "run-\udcff"})  # a non-UTF-8 name
    text.encode("utf-8")  # a strict stdout prints it
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("probe:"))
    assert line.endswith(r"e.g. bad\x1b[2J: ffprobe failed: line two of stderr")
    assert text.splitlines()[0] == r"run-\udcff: complete"


def test_a_worker_clock_ahead_of_this_one_gives_no_negative_age(finished_run, tmp_path):
    out = _copy(finished_run, tmp_path)
    finished = max(json.loads(p.read_text())["finished_at"] for p in (out / "stats").iterdir())
    st = run_status(str(out), now=finished - 30.0)
    assert st["last_task_s_ago"] == 0.0
