"""A folder of videos with a malformed sidecar subtitle file: that video fails, the rest go on."""

from __future__ import annotations

from pipelines.manifest import read_manifest


def test_a_malformed_sidecar_fails_its_video_only_naming_the_file(tmp_path):
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "a.srt").write_text("1\n00:00:01,000 --> garbage\nhello\n")
    (tmp_path / "b.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nhi\n")
    a, b = read_manifest(str(tmp_path), allow_empty_text=True)
    assert not a.ok and "a.srt" in a.error.reason and "line 2" in a.error.reason
    assert (a.key, a.video) == ("a", str(tmp_path / "a.mp4")), "reported under its own name"
    assert b.ok and b.text == "hi"


def test_absurd_cue_times_fail_their_video_not_the_run(tmp_path):
    """Hours of 400 or 5,000 digits overflow a float or pass int()'s digit limit."""
    for name, hours in (("big", "9" * 400), ("huge", "9" * 5000)):
        (tmp_path / f"{name}.mp4").write_bytes(b"")
        (tmp_path / f"{name}.srt").write_text(f"1\n{hours}:00:00,000 --> 00:00:01,000\nhi\n")
    (tmp_path / "ok.mp4").write_bytes(b"")
    (tmp_path / "ok.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nfine\n")
    big, huge, ok = read_manifest(str(tmp_path), allow_empty_text=True)
    for clip in (big, huge):
        assert not clip.ok and "line 2: not a cue timing" in clip.error.reason
    assert ok.ok and ok.text == "fine"


def test_a_transcript_time_past_a_float_is_not_a_time():
    import pytest

    from pipelines.subtitles import SubtitleError, parse_time

    with pytest.raises(SubtitleError, match="start: not a time"):
        parse_time(10**400, "start")


def test_a_utf8_bom_in_a_txt_sidecar_is_not_text(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "a.txt").write_bytes("\ufeffhello there\n".encode())
    (clip,) = read_manifest(str(tmp_path))
    assert clip.ok and clip.text == "hello there"
