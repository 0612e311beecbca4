import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clipvip.cli import main
from pipelines.manifest import ManifestError, read_manifest


def _reasons(clips):
    return {c.row: c.error.reason for c in clips if c.error}


def test_csv_rows_become_clips_with_spans_keys_and_text(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text(
        "video,start,end,text,key,dataset\n/v/a.mp4,1.5,3,hello there,k1,hdvila\n/v/b.mp4,,,a title,,\n"
    )
    a, b = read_manifest(str(m))
    assert (a.key, a.video, a.start, a.end, a.text, a.dataset) == (
        "k1",
        "/v/a.mp4",
        1.5,
        3.0,
        "hello there",
        "hdvila",
    )
    assert b.start is None and b.end is None and b.key.startswith("b-") and b.ok


def test_bad_rows_are_recorded_not_dropped(tmp_path):
    m = tmp_path / "m.csv"
    m.write_bytes(
        b"video,start,end,text,key\n"
        b"/v/ok.mp4,0,1,fine,ok\n"
        b"/v/latin.mp4,0,1,caf\xe9,latin1\n"
        b"/v/empty.mp4,0,1,,empty\n"
        b"/v/num.mp4,zero,1,x,badnum\n"
        b"/v/short.mp4,0\n"
        b"/v/dup.mp4,0,1,again,ok\n"
        b",0,1,no video,novideo\n"
    )
    clips = read_manifest(str(m))
    assert len(clips) == 7, "every row is kept, good or bad"
    reasons = _reasons(clips)
    assert clips[0].ok
    assert "not valid UTF-8" in reasons[1]
    assert "empty text" in reasons[2]
    assert "start is not a number" in reasons[3]
    assert "fields" in reasons[4]
    assert "duplicate key 'ok'" in reasons[5]
    assert "no video" in reasons[6]
    assert all(r.startswith("line ") for r in reasons.values()), "reasons name the line"
    assert len({c.key for c in clips}) == 7


def test_empty_text_is_kept_when_allowed(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"video": "/v/a.mp4", "text": ""}) + "\n")
    assert read_manifest(str(m), allow_empty_text=True)[0].ok


def test_jsonl_bad_line_after_good_ones_is_a_row_failure(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text('{"video": "/v/a.mp4", "text": "x"}\n{not json\n[1, 2]\n')
    clips = read_manifest(str(m))
    assert clips[0].ok
    assert "line 2: unreadable JSON line" in clips[1].error.reason
    assert "not an object" in clips[2].error.reason


def test_jsonl_bad_first_lines_are_row_failures_and_a_bom_is_read_past(tmp_path):
    m = tmp_path / "m.jsonl"
    good = json.dumps({"video": "/v/a.mp4", "text": "x"}).encode()
    m.write_bytes(b"\xef\xbb\xbf{truncated\n\n" + good + b"\n")
    bad, ok = read_manifest(str(m))
    assert bad.error.reason.startswith("line 1: unreadable JSON line") and ok.ok
    m.write_bytes(b"\xef\xbb\xbf" + good + b"\n")
    assert read_manifest(str(m))[0].ok, "a UTF-8 byte order mark is not part of the first row"


def test_csv_unclosed_quote_stops_naming_its_line_instead_of_swallowing_rows(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text('video,text\n/v/a.mp4,"unterminated\n/v/b.mp4,ok\n/v/c.mp4,ok2\n')
    with pytest.raises(ManifestError, match=r"m\.csv:2: a quoted field opened on this line"):
        read_manifest(str(m))


def test_csv_malformed_quote_fails_that_row_only_and_multiline_fields_stay(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text('video,text\n/v/a.mp4,"said" more\n/v/b.mp4,"two\nlines"\n/v/c.mp4,ok\n')
    a, b, c = read_manifest(str(m))
    assert a.error.reason.startswith("line 2: unreadable CSV line")
    assert (b.text, c.text) == ("two\nlines", "ok") and b.ok and c.ok


def test_parquet_manifest(tmp_path):
    m = tmp_path / "m.parquet"
    pq.write_table(
        pa.table({"video": ["/v/a.mp4"], "start": [1.0], "end": [2.0], "text": ["t"]}), m
    )
    (clip,) = read_manifest(str(m))
    assert (clip.start, clip.end, clip.text) == (1.0, 2.0, "t")


def test_folder_of_videos_with_sidecar_subtitles(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "a.srt").write_text(
        "1\n00:00:00,000 --> 00:00:01,000\n<i>hello</i> [Music]\n\n2\n00:00:01,000 --> 00:00:02,000\nworld\n"
    )
    (tmp_path / "b.webm").write_bytes(b"x")
    (tmp_path / "b.txt").write_text("a title\n")
    a, b = read_manifest(str(tmp_path))
    assert (a.key, a.text) == ("a", "hello world")
    assert (b.key, b.text) == ("b", "a title")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("m.csv", "path,text\n/v/a.mp4,x\n", "m.csv:1: the header has no 'video' column"),
        ("m.jsonl", "this is not json\n", "m.jsonl:1: not JSON Lines"),
        ("m.parquet", "not parquet at all", "not a readable Parquet file"),
        ("m.xml", "<x/>", "unknown manifest type"),
    ],
)
def test_unparseable_manifest_stops_with_file_and_line(tmp_path, name, content, message):
    m = tmp_path / name
    m.write_text(content)
    with pytest.raises(ManifestError, match=message.replace(".", r"\.")):
        read_manifest(str(m))


def test_cli_reports_unparseable_manifest_in_one_line(tmp_path, capsys):
    m = tmp_path / "m.csv"
    m.write_text("path,text\n/v/a.mp4,x\n")
    assert main(["prepare", str(m), "--out", str(tmp_path / "out"), "--runner", "local"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"clipvip: error: {m}:1: the header has no 'video' column (found: path, text)"]
