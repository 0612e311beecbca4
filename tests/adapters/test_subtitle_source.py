"""Whole-video subtitle files found by video id: which language wins, and a bad file stops."""

from __future__ import annotations

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
