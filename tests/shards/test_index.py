"""Reading a run's index: a damaged index.json names the file and the fault, and reading never
creates the folder it was pointed at."""

from __future__ import annotations

import json

import pytest

from clipvip.cli import main
from shards import ShardIndexError, load_index, shard_urls


def _run_with_index(tmp_path, text: str | bytes):
    run = tmp_path / "run"
    run.mkdir()
    data = text.encode() if isinstance(text, str) else text
    (run / "index.json").write_bytes(data)
    return run


def _index(*entries) -> str:
    return json.dumps({"__kind__": "wids-shard-index-v1", "shardlist": list(entries)})


def test_a_good_index_lists_the_runs_tars_by_their_path(tmp_path):
    run = _run_with_index(tmp_path, _index({"url": "shards/x-000000.tar", "nsamples": 3}))
    assert shard_urls(str(run)) == [f"{run}/shards/x-000000.tar"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"shardlist": [', r"index\.json: not valid JSON \(line 1, column 16"),
        (b'{"name": "\xff"}', r"index\.json: not UTF-8 \(at byte offset 10\)"),
        ("[1, 2]", r"no 'shardlist' list"),
        ('{"shardlist": {"url": "a.tar"}}', r"no 'shardlist' list"),
        (_index("a.tar"), r"entry 0: not an object: 'a\.tar'"),
        (_index({"nsamples": 1}), r"entry 0: no 'url' string"),
        (_index({"url": "a.tar", "nsamples": -1}), r"entry 0: 'nsamples' is -1, not a count"),
        (_index({"url": "a.tar", "nsamples": True}), r"'nsamples' is True"),
        (_index({"url": "a.tar", "nsamples": 1.5}), r"'nsamples' is 1\.5"),
        (
            _index({"url": "a.tar", "nsamples": 1}, {"url": "../../etc/x.tar", "nsamples": 1}),
            r"entry 1: 'url' '\.\./\.\./etc/x\.tar' points outside the run folder",
        ),
        (_index({"url": "/etc/x.tar", "nsamples": 1}), r"points outside the run folder"),
        (_index({"url": "s3://other/x.tar", "nsamples": 1}), r"points outside the run folder"),
    ],
)
def test_a_damaged_index_names_the_file_and_the_fault(tmp_path, text, message):
    run = _run_with_index(tmp_path, text)
    with pytest.raises(ShardIndexError, match=message) as caught:
        load_index(str(run))
    assert str(caught.value).startswith(f"{run}/index.json: ")


def test_a_command_over_a_damaged_index_prints_one_error_line(tmp_path, capsys):
    run = _run_with_index(tmp_path, '{"shardlist": [')
    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert (
        err.strip()
        == f"clipvip: error: {run}/index.json: not valid JSON (line 1, column 16: Expecting value)"
    )


def test_reading_a_mistyped_run_folder_does_not_create_it(tmp_path):
    typo = tmp_path / "runs" / "tpyo"
    with pytest.raises(FileNotFoundError, match="has no index.json"):
        load_index(str(typo))
    assert not (tmp_path / "runs").exists()


def test_a_file_given_as_the_run_folder_is_called_a_file(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(FileNotFoundError, match=r"notes\.txt' is a file; give the --out folder"):
        load_index(str(notes))
