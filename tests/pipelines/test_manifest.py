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
        (
            "m.json",
            '[{"video": "/v/a.mp4", "text": "x"}]',
            "m.json:1: a JSON array, not JSON Lines",
        ),
        ("m.csv", "video,video,text\n/v/a.mp4,/v/b.mp4,x\n", "column 'video' appears twice"),
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


def test_a_folder_with_one_stem_in_two_containers_gives_two_keys(tmp_path):
    for name in ("s1.mp4", "s1.webm", "s2.mp4"):
        (tmp_path / name).write_bytes(b"x")
    clips = read_manifest(str(tmp_path), allow_empty_text=True)
    keys = [c.key for c in clips]
    assert all(c.ok for c in clips) and len(set(keys)) == 3
    assert keys[2] == "s2" and keys[0].startswith("s1_mp4") and keys[1].startswith("s1_webm")


def test_hostile_values_in_any_column_fail_their_row_or_are_kept_writable(tmp_path):
    """Nothing a row holds can stop the run: every clip serialises as UTF-8 JSON."""
    lines = [
        '{"video": "/v/a.mp4", "text": "ok", "key": "k\\ud83d", "dataset": "d\\ud800"}',
        '{"video": "/v/a.mp4", "text": "ok", "key": "x1", "\\ud800": "\\ud800", "extra": ["\\udfff"]}',
        '{"video": "/v/a\\ud800.mp4", "text": "ok", "key": "x2"}',
        '{"video": "/v/a.mp4", "text": "ok", "key": "x3", "start": ' + "9" * 5000 + "}",
        '{"video": "/v/a.mp4", "text": "ok", "key": "x4", "start": 1' + "0" * 400 + "}",
        '{"video": "/v/a.mp4", "text": "ok", "key": "x5", "x": '
        + "[" * 100000
        + "]" * 100000
        + "}",
        '{"video": "/v/a.mp4", "text": "ok", "key": "x6", "start": true}',
        '{"video": "/v/a.mp4", "text": "ok", "key": "x7", "start": "1_0"}',
        '{"video": "/v/a.mp4", "text": {"a": 1}, "key": "x8"}',
        '{"video": "/v/a.mp4", "text": "ok", "key": "x9", "end": "inf"}',
    ]
    m = tmp_path / "m.jsonl"
    m.write_text("\n".join(lines) + "\n")
    clips = read_manifest(str(m))
    for clip in clips:
        json.dumps(clip.metadata(), ensure_ascii=False).encode("utf-8")
        if clip.error:
            json.dumps(clip.failure_row(), ensure_ascii=False).encode("utf-8")
    first, second, *failed = clips
    assert first.ok and first.dataset == "d\ufffd" and first.source_key == "k\ufffd"
    assert second.ok and second.extra == {"\ufffd": "\ufffd", "extra": ["\ufffd"]}
    assert all(not c.ok for c in failed), [c.key for c in failed if c.ok]
    reasons = {c.key: c.error.reason for c in failed}
    assert "not valid UTF-8" in reasons["x2"]
    assert "not a number" in reasons["x4"] and "not a number" in reasons["x6"]
    assert "not a number" in reasons["x7"] and "infinite" in reasons["x9"]
    assert "text is a dict" in reasons["x8"]
    unreadable = [c for c in failed if c.key.startswith("#row-")]
    assert len(unreadable) == 2  # the 5000 digits and the deep nesting: unreadable lines
    assert all("unreadable JSON line" in c.error.reason for c in unreadable)


def test_a_broken_rows_placeholder_key_never_takes_a_real_key(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text(
        'not json\n{"video": "/v/a.mp4", "text": "t", "key": "row-000000000"}\n'
        '{"video": "/v/a.mp4", "text": "t", "key": "p5", "end": "inf"}\n'
    )
    broken, real, bad_span = read_manifest(str(m))
    assert not broken.ok and real.ok and real.key == "row-000000000"
    assert bad_span.key == "p5", "a row with its own key is reported under it"


def test_a_line_with_no_end_stops_the_run_instead_of_filling_memory(tmp_path, monkeypatch):
    from pipelines import manifest

    monkeypatch.setattr(manifest, "MAX_LINE_BYTES", 1 << 20)
    for name in ("m.csv", "m.jsonl"):
        m = tmp_path / name
        m.write_bytes(b"video,text\n" + b"\0" * (3 << 20))
        with pytest.raises(ManifestError, match=rf"{name}:2: a line longer than 1 MiB"):
            read_manifest(str(m))


def test_long_csv_text_is_read_like_long_jsonl_text(tmp_path):
    text = "word " * 60_000  # 300 KB: past the csv module's default field limit
    m = tmp_path / "m.csv"
    m.write_text(f'video,text\n/v/a.mp4,"{text}"\n')
    (clip,) = read_manifest(str(m))
    assert clip.ok and clip.text == text


def test_csv_with_old_mac_line_ends_reads_its_rows(tmp_path):
    m = tmp_path / "m.csv"
    m.write_bytes(b"video,text\r/v/a.mp4,one\r/v/b.mp4,two\r")
    assert [c.text for c in read_manifest(str(m))] == ["one", "two"]


def test_a_csv_record_of_empty_fields_is_a_failed_row_and_a_blank_line_no_row(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("video,text\n/v/a.mp4,one\n,\n\n  ,  \n/v/b.mp4,two\n")
    clips = read_manifest(str(m))
    assert [c.ok for c in clips] == [True, False, False, True]
    assert all("no video" in r for r in _reasons(clips).values())


def test_a_failed_repeat_of_a_clip_keeps_its_own_reason(tmp_path):
    """The third row of a clip (no key given) has empty text: it fails for that, not as a
    duplicate of the first row."""
    m = tmp_path / "m.jsonl"
    rows = [{"video": "/v/a.mp4", "text": t} for t in ("one", "two", "")]
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    clips = read_manifest(str(m))
    assert [c.ok for c in clips] == [True, True, False]
    assert "empty text" in clips[2].error.reason and "duplicate" not in clips[2].error.reason
    assert len({c.key for c in clips}) == 3 and "#" in clips[2].key
