"""Whole-video subtitle files found by video id: which language wins, and a bad file stops."""

from __future__ import annotations

import json

import pytest

from pipelines.adapters import build_manifest
from pipelines.adapters.subtitle_source import SubtitleSource
from pipelines.manifest import ManifestError


def _vtt(text: str) -> str:
    return f"WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n{text}\n"


def test_english_wins_over_a_language_that_sorts_first(tmp_path):
    (tmp_path / "vid.de.vtt").write_text(_vtt("hallo"))
    (tmp_path / "vid.en.vtt").write_text(_vtt("hello"))
    (tmp_path / "us.de.vtt").write_text(_vtt("hallo"))
    (tmp_path / "us.en-US.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nhowdy\n")
    (tmp_path / "fr.fr.vtt").write_text(_vtt("bonjour"))
    (tmp_path / "fr.it.vtt").write_text(_vtt("ciao"))
    (tmp_path / "plain.de.vtt").write_text(_vtt("hallo"))
    (tmp_path / "plain.vtt").write_text(_vtt("untagged"))
    source = SubtitleSource(str(tmp_path))
    assert [c.text for c in source.cues("vid")] == ["hello"]
    assert [c.text for c in source.cues("us")] == ["howdy"]
    assert [c.text for c in source.cues("fr")] == ["bonjour"]  # no English: the first file
    assert [c.text for c in source.cues("plain")] == ["untagged"]  # no tag beats another language
    assert source.cues("missing") is None


def test_a_malformed_subtitle_file_stops_the_adapter_naming_file_and_line(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    bad = subs / "talk.en.srt"
    bad.write_text("1\n00:00:01,000 --> 00:00:02,000\nhi\n\n2\n00:00:03,000 --> soon\nthere\n")
    (tmp_path / "clips.csv").write_text("video,start,end\ntalk.mp4,0,4\n")
    with pytest.raises(ManifestError) as info:
        build_manifest("clips", [str(tmp_path / "clips.csv")], None, subtitles=str(subs))
    message = str(info.value)
    assert message.startswith(f"{bad}: line 6: not a cue timing") and "\n" not in message


def test_a_file_that_is_not_subtitles_stops_instead_of_giving_empty_text(tmp_path):
    (tmp_path / "talk.vtt").write_text("this is not a subtitle file at all\n")
    (tmp_path / "clips.csv").write_text("video,start,end\ntalk.mp4,0,4\n")
    with pytest.raises(ManifestError, match=r"talk\.vtt: line 1: no subtitle cues"):
        build_manifest("clips", [str(tmp_path / "clips.csv")], None, subtitles=str(tmp_path))


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (_vtt("hello").encode("utf-16"), "NUL bytes: looks like UTF-16; save it as UTF-8"),
        (b"\xff\xfe bad utf8\n", "byte 0 is 0xff"),
        (_vtt("caf\xe9").encode("latin-1"), "byte 41 is 0xe9"),
    ],
    ids=["utf-16", "utf-16-bom-then-latin-1", "latin-1"],
)
def test_a_subtitle_file_that_is_not_utf8_stops_naming_it(tmp_path, data, why):
    """Not "no subtitle cues" (UTF-16) nor text with U+FFFD in it (Latin-1): its encoding."""
    (tmp_path / "talk.vtt").write_bytes(data)
    (tmp_path / "clips.csv").write_text("video,start,end\ntalk.mp4,0,4\n")
    with pytest.raises(ManifestError) as info:
        build_manifest("clips", [str(tmp_path / "clips.csv")], None, subtitles=str(tmp_path))
    assert str(info.value).startswith(f"{tmp_path / 'talk.vtt'}:")
    assert str(info.value).endswith(f"not UTF-8 text ({why})")


def test_yt_dlp_info_and_live_chat_json_are_not_subtitles(tmp_path, video_folder):
    """yt-dlp writes ID.info.json (a dict) and ID.live_chat.json beside the videos."""
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "AAAAAAAAAAA.info.json").write_text(json.dumps({"id": "AAAAAAAAAAA", "title": "t"}))
    (subs / "AAAAAAAAAAA.live_chat.json").write_text('{"replayChatItemAction": {}}\n')
    (subs / "BBBBBBBBBBB.info.json").write_text("{}")
    (subs / "BBBBBBBBBBB.en.vtt").write_text(_vtt("hello"))
    source = SubtitleSource(str(subs))
    assert source.cues("AAAAAAAAAAA") is None
    assert [c.text for c in source.cues("BBBBBBBBBBB")] == ["hello"]
    (tmp_path / "clips.csv").write_text(
        "video,start,end\nAAAAAAAAAAA.mp4,0,4\nBBBBBBBBBBB.mp4,0,4\n"
    )
    rows, report = build_manifest("clips", [str(tmp_path / "clips.csv")], None, subtitles=str(subs))
    assert [r["text"] for r in rows] == ["", "hello"]
    assert dict(report.notes) == {"kept its own text: the video has no subtitles": 1}


@pytest.mark.parametrize("name", ["talk.json", "talk.en.json"])
def test_a_malformed_transcript_json_still_stops_naming_it(tmp_path, name):
    (tmp_path / name).write_text(json.dumps({"not": "a list"}))
    (tmp_path / "clips.csv").write_text("video,start,end\ntalk.mp4,0,4\n")
    with pytest.raises(ManifestError, match=rf"{name}: transcript: expected a list of cues"):
        build_manifest("clips", [str(tmp_path / "clips.csv")], None, subtitles=str(tmp_path))


def test_videos_with_dotted_names_get_their_own_subtitles(tmp_path):
    (tmp_path / "lecture.part1.en.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\none\n")
    (tmp_path / "lecture.part2.en.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\ntwo\n")
    (tmp_path / "notes.v2.vtt").write_text(_vtt("untagged"))
    source = SubtitleSource(str(tmp_path))
    assert [c.text for c in source.cues("lecture.part1")] == ["one"]
    assert [c.text for c in source.cues("lecture.part2")] == ["two"]
    assert source.cues("lecture") is None
    assert [c.text for c in source.cues("notes.v2")] == ["untagged"]
    (tmp_path / "clips.csv").write_text(
        "video,start,end\nlecture.part1.mp4,0,4\nlecture.part2.mp4,0,4\nlecture.part3.mp4,0,4\n"
    )
    rows, _ = build_manifest("clips", [str(tmp_path / "clips.csv")], None, subtitles=str(tmp_path))
    assert [r["text"] for r in rows] == ["one", "two", ""]


def test_hdvila_cut_clips_still_find_their_whole_video_subtitles(tmp_path):
    """ID.1.mp4 is clip 1 of video ID: its subtitles are ID.en.vtt (docs/adapters.md)."""
    (tmp_path / "vidA.en.vtt").write_text(_vtt("hello"))
    (tmp_path / "vidB.2.vtt").write_text(_vtt("own file"))
    (tmp_path / "vidB.vtt").write_text(_vtt("whole video"))
    (tmp_path / "clips.csv").write_text(
        "video,start,end\nvidA.1.mp4,0,4\nvidA.mp4,0,4\nvidB.1.mp4,0,4\nvidB.2.mp4,0,4\n"
    )
    rows, _ = build_manifest("clips", [str(tmp_path / "clips.csv")], None, subtitles=str(tmp_path))
    assert [r["text"] for r in rows] == ["hello", "hello", "whole video", "own file"]


@pytest.mark.parametrize("name", ["talk.srt", "talk.en.vtt"])
def test_one_subtitle_file_as_subtitles_says_what_the_option_takes(tmp_path, name):
    (tmp_path / name).write_text("1\n00:00:01,000 --> 00:00:02,000\nhello\n")
    with pytest.raises(ManifestError) as info:
        SubtitleSource(str(tmp_path / name))
    assert str(info.value) == (
        f"{tmp_path / name}: --subtitles expects a folder of subtitle files or a {{id: [...]}} "
        "transcript JSON, not one subtitle file (name it ID.srt in a folder)"
    )


def test_a_subtitles_file_that_is_not_json_says_what_the_option_takes(tmp_path):
    (tmp_path / "subs.txt").write_text("1\n00:00:01,000 --> 00:00:02,000\nhello\n")
    with pytest.raises(ManifestError, match=r"not valid JSON \(Extra data\) \(--subtitles expects"):
        SubtitleSource(str(tmp_path / "subs.txt"))
