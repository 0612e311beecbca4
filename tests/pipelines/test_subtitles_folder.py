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
    assert b.ok and b.text == "hi"
