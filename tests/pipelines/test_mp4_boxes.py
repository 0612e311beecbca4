"""``mp4_boxes``: whether an MP4 track has composition offsets, or None when it cannot say."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import pytest

from pipelines.mp4_boxes import has_composition_offsets

SRC = ["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-t", "2"]
X264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p"]


def _make(path: Path, *args: str) -> Path:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *SRC, *args, str(path)], check=True)
    return path


def _track_id(path: Path) -> int:
    with av.open(str(path)) as c:
        return c.streams.video[0].id


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((*X264, "-bf", "0"), False),
        ((*X264, "-bf", "2"), True),
        ((*X264, "-bf", "0", "-movflags", "+faststart"), False),  # moov before mdat
        ((*X264, "-bf", "0", "-movflags", "+frag_keyframe+empty_moov"), None),  # fragmented
    ],
    ids=["no-b-frames", "b-frames", "faststart", "fragmented"],
)
def test_composition_offsets_are_read_from_the_tracks_sample_table(tmp_path, args, expected):
    path = _make(tmp_path / "v.mp4", *args)
    track = _track_id(path)
    assert has_composition_offsets(str(path), track) is expected
    assert has_composition_offsets(path.read_bytes(), track) is expected


def test_a_file_it_cannot_read_as_mp4_is_unknown_not_an_answer(tmp_path):
    path = _make(tmp_path / "v.mp4", *X264, "-bf", "0")
    track = _track_id(path)
    assert has_composition_offsets(str(path), track + 1) is None, "no such track"
    data = path.read_bytes()
    assert has_composition_offsets(data[: len(data) // 2], track) is None, "cut: no moov"
    broken = bytearray(data)
    broken[0:4] = (len(data) * 2).to_bytes(4, "big")  # the first box claims twice the file
    assert has_composition_offsets(bytes(broken), track) is None
    assert has_composition_offsets(b"", track) is None
    assert has_composition_offsets(str(tmp_path / "gone.mp4"), track) is None
