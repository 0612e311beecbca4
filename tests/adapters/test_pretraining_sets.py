"""HD-VILA-100M and WebVid release files -> pretraining manifest rows, subtitles aligned."""

from __future__ import annotations

import json

import pytest

from pipelines.adapters import build_manifest
from pipelines.adapters.webvid import parse_duration
from pipelines.manifest import ManifestError

VTT = """WEBVTT

00:00:01.000 --> 00:00:04.000
welcome to my kitchen

00:00:04.000 --> 00:00:08.000
welcome to my kitchen
today we bake bread

00:00:20.000 --> 00:00:22.000
[Music]
"""

HDVILA = [
    {
        "video_id": "vidA",
        "url": "https://www.youtube.com/watch?v=vidA",
        "clip": [
            {"clip_id": "vidA.1.mp4", "span": ["00:00:00.500", "00:00:05.000"]},
            {"clip_id": "vidA.2.mp4", "span": ["00:00:10.000", "00:00:25.000"]},
        ],
    },
    {
        "video_id": "vidB",
        "url": "u",
        "clip": [{"clip_id": "vidB.1.mp4", "span": ["0:00:01.0", "0:00:03.0"]}],
    },
    {
        "video_id": "gone",
        "url": "u",
        "clip": [{"clip_id": "gone.1.mp4", "span": ["00:00:00", "00:00:02"]}],
    },
]


@pytest.fixture
def hdvila_files(tmp_path, video_folder):
    meta = tmp_path / "hdvila_part0.jsonl"
    meta.write_text("\n".join(json.dumps(line) for line in HDVILA) + "\n")
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "vidA.en.vtt").write_text(VTT)
    videos = video_folder(tmp_path / "videos", ["vidA.mp4", "cut/vidB.1.mp4"])
    return meta, subs, videos


def test_hdvila_clips_get_the_subtitles_inside_their_span(hdvila_files):
    meta, subs, videos = hdvila_files
    rows, report = build_manifest("hdvila", [str(meta)], str(videos), subtitles=str(subs))
    got = [(r["key"], r["video"].rsplit("/", 1)[-1], r["start"], r["end"], r["text"]) for r in rows]
    assert got == [
        ("vidA.1", "vidA.mp4", 0.5, 5.0, "welcome to my kitchen today we bake bread"),
        ("vidA.2", "vidA.mp4", 10.0, 25.0, ""),  # only [Music] there: no speech
        ("vidB.1", "vidB.1.mp4", None, None, ""),  # the cut clip is used as is
    ]
    assert rows[0]["source_span"] == [0.5, 5.0] and rows[2]["source_span"] == [1.0, 3.0]
    assert (report.read, report.kept, report.empty_text) == (4, 3, 2)
    assert dict(report.dropped) == {"video not found": 1}
    assert dict(report.notes) == {"videos with no subtitles (their clips kept with empty text)": 1}


def test_hdvila_transcript_json_map_as_subtitles(hdvila_files, tmp_path):
    meta, _, videos = hdvila_files
    transcripts = {
        "vidA": [
            {"text": "hello", "start": 1.0, "duration": 2.0},
            {"text": "hello world", "start": 2.0, "duration": 9.0},
        ]
    }
    (tmp_path / "t.json").write_text(json.dumps(transcripts))
    rows, _ = build_manifest("hdvila", [str(meta)], str(videos), subtitles=str(tmp_path / "t.json"))
    assert [r["text"] for r in rows] == ["hello world", "world", ""]


def test_hdvila_bad_line_and_bad_span_name_the_place(tmp_path, video_folder):
    videos = str(video_folder(tmp_path / "v", []))
    meta = tmp_path / "m.jsonl"
    meta.write_text(json.dumps(HDVILA[0]) + "\n{oops\n")
    with pytest.raises(ManifestError, match=r"m\.jsonl:2: not a JSON line"):
        build_manifest("hdvila", [str(meta)], videos)
    bad = dict(HDVILA[0], clip=[{"clip_id": "x.mp4", "span": ["00:00:01", "soon"]}])
    meta.write_text(json.dumps(bad) + "\n")
    with pytest.raises(ManifestError, match=r"m\.jsonl:1: clip\[0\]\.span: not a time"):
        build_manifest("hdvila", [str(meta)], videos)


WEBVID = (
    "videoid,contentUrl,duration,page_dir,name\n"
    '1001,https://example.com/1001.mp4,PT00H00M11S,006001_006050,"Aerial  view, forest"\n'
    "1002,https://example.com/1002.mp4,PT00H01M02S,006001_006050,Sunset over sea\n"
)


def test_webvid_finds_page_dir_layout_and_falls_back_to_content_url(tmp_path, video_folder):
    (tmp_path / "w.csv").write_text(WEBVID)
    videos = str(video_folder(tmp_path / "v", ["006001_006050/1001.mp4"]))
    rows, report = build_manifest("webvid", [str(tmp_path / "w.csv")], videos)
    assert [(r["key"], r["text"], r["duration"]) for r in rows] == [
        ("1001", "Aerial view, forest", 11.0)
    ]
    assert rows[0]["video"].endswith("006001_006050/1001.mp4")
    assert dict(report.dropped) == {"video not found": 1}
    rows, report = build_manifest("webvid", [str(tmp_path / "w.csv")], None)
    assert [r["video"] for r in rows] == [
        "https://example.com/1001.mp4",
        "https://example.com/1002.mp4",
    ]
    assert rows[1]["duration"] == 62.0 and report.kept == 2


def test_webvid_durations():
    assert parse_duration("PT00H00M11S") == 11.0
    assert parse_duration("PT1H2M3.5S") == 3723.5
    assert parse_duration("12.5") == 12.5
    assert parse_duration("") is None
    assert parse_duration("nan") is None and parse_duration("inf") is None  # not numbers
    assert parse_duration("PT" + "9" * 400 + "H") is None


def test_webvid_unclosed_quote_stops_instead_of_swallowing_the_rows_after_it(tmp_path):
    (tmp_path / "w.csv").write_text(
        'videoid,contentUrl,duration,page_dir,name\nvideo1,u,1,p,"unterminated\nvideo2,u,1,p,x\n'
    )
    with pytest.raises(ManifestError) as info:
        build_manifest("webvid", [str(tmp_path / "w.csv")], None)
    assert str(info.value).startswith(
        f"{tmp_path / 'w.csv'}:2: a quoted field opened on this line is never closed"
    )


def test_webvid_csv_that_is_not_utf8_stops_naming_the_line(tmp_path):
    (tmp_path / "w.csv").write_bytes(
        b"videoid,contentUrl,duration,page_dir,name\n1,u,1,p,ok\n2,u,1,p,caf\xe9\n"
    )
    with pytest.raises(ManifestError) as info:
        build_manifest("webvid", [str(tmp_path / "w.csv")], None)
    assert str(info.value) == f"{tmp_path / 'w.csv'}:3: not UTF-8 text (byte 64 is 0xe9)"


def test_webvid_header_without_name_column_stops(tmp_path):
    (tmp_path / "w.csv").write_text("videoid,contentUrl\n1,u\n")
    with pytest.raises(ManifestError, match=r"w\.csv:1: header lacks name"):
        build_manifest("webvid", [str(tmp_path / "w.csv")], None)


def test_unchecked_video_folder_builds_paths_without_listing(hdvila_files):
    meta, _, _ = hdvila_files
    rows, report = build_manifest("hdvila", [str(meta)], "s3://bucket/videos", check_videos=False)
    assert [r["video"] for r in rows] == [
        "s3://bucket/videos/vidA.mp4",
        "s3://bucket/videos/vidA.mp4",
        "s3://bucket/videos/vidB.mp4",
        "s3://bucket/videos/gone.mp4",
    ]
    assert report.kept == 4


def test_unknown_format_and_option_are_one_line_errors():
    with pytest.raises(ManifestError, match="unknown format 'kinetics'"):
        build_manifest("kinetics", ["x"], None)
    with pytest.raises(ManifestError, match="unknown option"):
        build_manifest("webvid", ["x"], None, paragraph=True)
    with pytest.raises(
        ManifestError, match=r"webvid: option\(s\) --mode \(mode\) do not apply to this format"
    ):
        build_manifest("webvid", ["x"], None, mode="paragraph")


def test_an_option_that_does_not_apply_is_named_by_its_flag():
    with pytest.raises(ManifestError) as info:
        build_manifest("webvid", ["x"], None, min_overlap_s=0.2, per_sentence=True)
    assert str(info.value) == (
        "webvid: option(s) --per-sentence (per_sentence), --min-overlap (min_overlap_s) "
        "do not apply to this format"
    )


def test_own_clip_list_gets_text_from_whole_video_subtitles(tmp_path, video_folder):
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "cooking.vtt").write_text(VTT)
    (tmp_path / "clips.csv").write_text(
        "video,start,end,text,key\n"
        "cooking.mp4,0,4.5,old text,c1\n"
        "cooking.mp4,9,30,,c2\n"
        "other.mp4,0,2,kept as is,c3\n"
        "cooking.mp4,zero,2,,c4\n"
    )
    videos = str(video_folder(tmp_path / "v", ["cooking.mp4", "other.mp4"]))
    rows, report = build_manifest(
        "clips", [str(tmp_path / "clips.csv")], videos, subtitles=str(subs)
    )
    assert [(r["key"], r["text"]) for r in rows] == [
        ("c1", "welcome to my kitchen today we bake bread"),
        ("c2", ""),
        ("c3", "kept as is"),
    ]
    assert rows[0]["original_text"] == "old text" and rows[0]["video"] == f"{videos}/cooking.mp4"
    assert dict(report.dropped) == {"bad row: start is not a number": 1}
    assert report.empty_text == 1


def test_own_clip_list_drops_a_reversed_span_instead_of_emptying_its_text(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "cooking.vtt").write_text(VTT)
    (tmp_path / "clips.csv").write_text(
        "video,start,end,text,key\n"
        "cooking.mp4,2,1,reversed,r\n"
        "cooking.mp4,3,3,empty,e\n"
        "cooking.mp4,0,4.5,,ok\n"
    )
    rows, report = build_manifest("clips", [str(tmp_path / "clips.csv")], None, subtitles=str(subs))
    assert [r["key"] for r in rows] == ["ok"]
    assert dict(report.dropped) == {"reversed span (end before start)": 1, "empty span": 1}
    assert (report.read, report.kept) == (3, 1)


@pytest.mark.parametrize("fmt", ["webvid", "hdvila"])
def test_a_release_file_line_with_no_end_stops_instead_of_filling_memory(
    tmp_path, monkeypatch, fmt
):
    from pipelines import manifest

    monkeypatch.setattr(manifest, "MAX_LINE_BYTES", 1 << 20)
    release = tmp_path / ("r.csv" if fmt == "webvid" else "r.jsonl")
    header = b"videoid,contentUrl,duration,page_dir,name\n" if fmt == "webvid" else b""
    release.write_bytes(header + b"x" * (3 << 20))
    line = 2 if header else 1
    with pytest.raises(ManifestError, match=rf"r\.\w+:{line}: a line longer than 1 MiB"):
        build_manifest(fmt, [str(release)], str(tmp_path), check_videos=False)


def test_hdvila_videos_without_subtitles_are_counted_once_per_video(tmp_path, video_folder):
    """docs/adapters.md: videos without a subtitle file are counted, not each of their clips."""

    def clips(vid: str, n: int) -> list[dict]:
        return [
            {"clip_id": f"{vid}.{i}.mp4", "span": [f"0:00:0{i}", f"0:00:0{i + 1}"]}
            for i in range(n)
        ]

    lines = [
        {"video_id": "vidC", "clip": clips("vidC", 3)},
        {"video_id": "vidD", "clip": clips("vidD", 2)},
    ]
    (tmp_path / "meta.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    (tmp_path / "subs").mkdir()
    videos = video_folder(tmp_path / "videos", ["vidC.mp4", "vidD.mp4"])
    _, report = build_manifest(
        "hdvila", [str(tmp_path / "meta.jsonl")], str(videos), subtitles=str(tmp_path / "subs")
    )
    assert (report.kept, report.empty_text) == (5, 5)
    assert dict(report.notes) == {"videos with no subtitles (their clips kept with empty text)": 2}


def test_hdvila_span_with_minutes_past_59_stops_naming_the_clip(tmp_path, video_folder):
    bad = dict(HDVILA[0], clip=[{"clip_id": "x.mp4", "span": ["00:00:01", "00:99:00.000"]}])
    (tmp_path / "m.jsonl").write_text(json.dumps(bad) + "\n")
    with pytest.raises(ManifestError) as info:
        build_manifest("hdvila", [str(tmp_path / "m.jsonl")], str(video_folder(tmp_path / "v", [])))
    assert str(info.value) == (
        f"{tmp_path / 'm.jsonl'}:1: clip[0].span: '00:99:00.000': "
        "minutes and seconds must be below 60"
    )
