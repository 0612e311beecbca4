"""Every kind of source reads to sentences; every bad source is an error that names it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.hygiene import TextHygiene, clean_sentences
from analysis.sources import SourceError, SourceSpec, read_source

YOUTUBE_VTT = (
    Path(__file__).resolve().parents[2]
    / ".."
    / "shared"
    / "data"
    / "captions"
    / "youtube_dl_autocaption.vtt"
)


def read(arg: str) -> list[str]:
    return read_source(SourceSpec.parse(arg))


@pytest.mark.parametrize(
    "arg, expected",
    [
        ("msr=a/b.csv:sentence", SourceSpec("msr", "a/b.csv", "sentence")),
        ("msr=a/b.csv", SourceSpec("msr", "a/b.csv", None)),
        ("x=s3://bucket/b.csv", SourceSpec("x", "s3://bucket/b.csv", None)),
        ("x=s3://bucket/b.parquet:text", SourceSpec("x", "s3://bucket/b.parquet", "text")),
        ("caps=runs/hd:caption.txt", SourceSpec("caps", "runs/hd", "caption.txt")),
    ],
)
def test_source_spec_parsing(arg, expected):
    assert SourceSpec.parse(arg) == expected


def test_bad_source_spec_says_what_is_expected():
    with pytest.raises(SourceError, match="NAME=PATH"):
        SourceSpec.parse("just/a/path.txt")


def test_text_csv_jsonl_parquet_sources(tmp_path):
    (tmp_path / "a.txt").write_text("one sentence\nanother one\n")
    (tmp_path / "a.csv").write_text('id,sentence\n1,"a man, talking"\n2,a dog\n')
    (tmp_path / "a.jsonl").write_text('{"text": "first"}\n\n{"text": "second", "x": 1}\n')
    pq.write_table(pa.table({"caption": ["p one", "p two"], "n": [1, 2]}), tmp_path / "a.parquet")
    assert read(f"t={tmp_path / 'a.txt'}") == ["one sentence", "another one"]
    assert read(f"c={tmp_path / 'a.csv'}:sentence") == ["a man, talking", "a dog"]
    assert read(f"c={tmp_path / 'a.csv'}") == ["a man, talking", "a dog"]  # default column
    assert read(f"j={tmp_path / 'a.jsonl'}:text") == ["first", "second"]
    assert read(f"p={tmp_path / 'a.parquet'}") == ["p one", "p two"]


def test_dataset_json_layouts(tmp_path):
    coco = {"images": [], "annotations": [{"image_id": 1, "caption": "A cat on a mat."}]}
    anet = {
        "v_1": {"duration": 3.0, "timestamps": [[0, 1]], "sentences": [" A man walks.", "He sits."]}
    }
    yt = {
        "vid": [
            {"text": "[Music]", "start": 0.5, "duration": 2},
            {"text": "hello", "start": 3, "duration": 1},
        ]
    }
    for name, data in {"coco": coco, "anet": anet, "yt": yt, "list": ["x", "y"]}.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    assert read(f"c={tmp_path / 'coco.json'}") == ["A cat on a mat."]
    assert read(f"a={tmp_path / 'anet.json'}") == [" A man walks.", "He sits."]
    assert read(f"y={tmp_path / 'yt.json'}") == ["[Music]", "hello"]
    assert read(f"l={tmp_path / 'list.json'}") == ["x", "y"]


def test_subtitle_file_gives_one_sentence_a_cue(tmp_path):
    (tmp_path / "s.srt").write_text(
        "1\n00:00:01,000 --> 00:00:02,000\nhello\nthere\n\n2\n00:00:03,000 --> 00:00:04,000\n[Music]\n"
    )
    assert read(f"s={tmp_path / 's.srt'}") == ["hello there", "[Music]"]


# YouTube auto-caption layout: the next cue's timing line follows the text with no blank line.
BACK_TO_BACK_VTT = """WEBVTT

00:00:01.000 --> 00:00:02.000 align:start position:0%
yeah
<c.colorCCCCCC>what</c>
00:00:02.000 --> 00:00:03.000 align:start position:0%
this<00:00:02.500><c> will</c> happen
00:00:03.000 --> 00:00:04.000
this will happen

00:00:05.000 --> 00:00:06.000
bye
"""


def test_a_cue_ends_at_the_next_timing_line_without_a_blank_line(tmp_path):
    (tmp_path / "yt.vtt").write_text(BACK_TO_BACK_VTT)
    texts = read(f"yt={tmp_path / 'yt.vtt'}")
    assert texts == [
        "yeah <c.colorCCCCCC>what</c>",
        "this<00:00:02.500><c> will</c> happen",
        "this will happen",
        "bye",
    ]
    kept, stats = clean_sentences(texts, TextHygiene())
    assert kept == ["yeah what", "this will happen", "bye"] and stats.duplicates == 1


@pytest.mark.shared_data
@pytest.mark.skipif(not YOUTUBE_VTT.is_file(), reason="../shared/data is absent")
def test_real_youtube_autocaption_vtt_keeps_every_cue():
    texts = read(f"yt={YOUTUBE_VTT}")
    assert len(texts) == 4  # 4 cues, two of them back to back
    kept, stats = clean_sentences(texts, TextHygiene())
    assert kept == ["yeah", "yeah what", "this will happen is I'm telling"]
    assert stats.duplicates == 1


def test_shard_source_reads_subtitles_or_captions(demo_run):
    subs = read(f"s={demo_run}:txt")
    caps = read(f"c={demo_run}:caption.txt")
    default = read(f"d={demo_run}")
    assert len(subs) == len(caps) == 7 and default == subs
    assert "so um today we're gonna look at this test pattern [Music]" in subs
    assert subs != caps
    tar = sorted((demo_run / "shards").glob("*.tar"))[0]
    assert 0 < len(read(f"one={tar}:caption")) < 7


@pytest.mark.parametrize(
    "content, arg_suffix, message",
    [
        (None, "", "no such file"),
        (b"id,text\n1,x\n", ":sentence", "no column 'sentence'; columns: id, text"),
        (b"id,other\n1,x\n", "", "say which column"),
        (b"\n  \n", "", "empty"),
        (b"caf\xe9 au lait\n", "", "not UTF-8 text"),
    ],
)
def test_bad_sources_give_a_clear_error_naming_the_source(tmp_path, content, arg_suffix, message):
    path = tmp_path / ("corpus.csv" if b"," in (content or b"") else "corpus.txt")
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceError) as err:
        read(f"mycorpus={path}{arg_suffix}")
    assert "source 'mycorpus'" in str(err.value) and message in str(err.value)


def test_shards_without_the_field_and_unknown_fields_are_errors(demo_run, tmp_path):
    with pytest.raises(SourceError, match="no text field 'audio'"):
        read(f"s={demo_run}:audio")
    (tmp_path / "plain").mkdir()
    with pytest.raises(SourceError, match="not a prepared run"):
        read(f"s={tmp_path / 'plain'}")


def test_remote_sources_are_read_through_fsspec():
    fs = fsspec.filesystem("memory")
    fs.pipe("/gap_test/a.txt", b"remote one\nremote two\n")
    fs.pipe("/gap_test/b.csv", b"id,sentence\n1,a remote row\n")
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": ["pq row"]}), buf)
    fs.pipe("/gap_test/c.parquet", buf.getvalue())
    assert read("a=memory://gap_test/a.txt") == ["remote one", "remote two"]
    assert read("b=memory://gap_test/b.csv:sentence") == ["a remote row"]
    assert read("c=memory://gap_test/c.parquet:text") == ["pq row"]
    with pytest.raises(SourceError, match="source 'd'.*no such file"):
        read("d=memory://gap_test/missing.txt")


def test_a_csv_header_padded_with_spaces_reads_its_column(tmp_path):
    (tmp_path / "spaced.csv").write_text("id, text\n1, a man cooks\n2, a dog runs\n")
    expected = [" a man cooks", " a dog runs"]  # the cell as written; hygiene trims later
    assert read(f"c={tmp_path / 'spaced.csv'}:text") == expected
    assert read(f"c={tmp_path / 'spaced.csv'}") == expected  # the default column too


def test_activitynet_sentences_that_are_a_string_are_refused_not_split_into_letters(tmp_path):
    path = tmp_path / "anet.json"
    path.write_text(json.dumps({"v1": {"sentences": "a man cooks"}, "v2": {"sentences": ["x"]}}))
    with pytest.raises(SourceError) as err:
        read(f"a={path}")
    message = str(err.value)
    assert f"source 'a' ({path})" in message and "'sentences' of 'v1' is a str" in message
    assert "expected a list" in message and "\n" not in message


def test_a_colon_in_a_file_name_is_part_of_the_path_when_only_the_whole_exists(tmp_path):
    (tmp_path / "asr_10:00.txt").write_text("first line\nsecond line\n")
    (tmp_path / "t.csv").write_text("id,text\n1,hello\n")
    assert read(f"x={tmp_path / 'asr_10:00.txt'}") == ["first line", "second line"]
    assert read(f"c={tmp_path / 't.csv'}:text") == ["hello"]  # PATH exists: FIELD is a column
    with pytest.raises(SourceError, match=r"no such file or folder \(nor is there a file .*10:01"):
        read(f"x={tmp_path / 'asr_10:01.txt'}")


def test_a_prepared_run_in_which_every_row_failed_says_it_has_no_text(failed_run):
    with pytest.raises(SourceError) as err:
        read(f"r={failed_run}")
    assert f"source 'r' ({failed_run}): no text: no samples" in str(err.value)
    assert "errors.jsonl" in str(err.value)


def test_a_column_of_numbers_is_read_with_a_warning(tmp_path, caplog):
    (tmp_path / "t.csv").write_text("id,text\n1,a dog runs\n2,a cat sits\n3,4.5\n")
    with caplog.at_level("WARNING", logger="clipvip"):
        assert read(f"n={tmp_path / 't.csv'}:id") == ["1", "2", "3"]
    assert "source 'n'" in caplog.text and "3 of 3 values of column 'id' are numbers" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="clipvip"):
        read(f"t={tmp_path / 't.csv'}:text")  # one number among sentences is text
    assert caplog.text == ""
