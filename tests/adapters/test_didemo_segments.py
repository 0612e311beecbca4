"""DiDeMo's 5-second segment grid against videos that are not a multiple of 5 s long."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from pipelines.adapters import build_manifest
from pipelines.config import PrepareConfig
from pipelines.manifest import ManifestError
from pipelines.record import Clip
from pipelines.stages.base import StageError
from pipelines.stages.probe import probe


def _moments(tmp_path, video_folder, items):
    """Rows of DiDeMo ``items`` on ``videos/v.mp4`` (an empty file unless a test made one)."""
    (tmp_path / "d.json").write_text(json.dumps(items))
    folder = tmp_path / "videos"
    if not folder.exists():
        video_folder(folder, ["v.mp4"])
    return build_manifest("didemo", [str(tmp_path / "d.json")], str(folder))


@pytest.mark.parametrize(
    ("times", "num_segments", "span"),
    [
        ([[5, 5]], None, (25.0, None)),  # segment 5 is the last of any DiDeMo video
        ([[4, 5]], 6, (20.0, None)),
        ([[1, 1]], 2, (5.0, None)),  # a 10 s video: segment 1 is its last
        ([[1, 2]], 2, (5.0, None)),  # ends past the video's segments: at the video's end
        ([[0, 0]], 2, (0.0, 5.0)),
        ([[1, 2]], None, (5.0, 15.0)),  # no num_segments: the grid, unclamped
    ],
)
def test_a_moment_ending_in_the_last_segment_runs_to_the_video_end(
    tmp_path, video_folder, times, num_segments, span
):
    item = {"video": "v.mov", "description": "d", "times": times}
    if num_segments is not None:
        item["num_segments"] = num_segments
    rows, report = _moments(tmp_path, video_folder, [item])
    assert [(r["start"], r["end"]) for r in rows] == [span]
    assert report.kept == 1


def test_a_moment_after_the_last_segment_num_segments_allows_is_dropped_counted(
    tmp_path, video_folder
):
    items = [
        {"video": "v.mov", "description": "late", "times": [[2, 3]], "num_segments": 2},
        {"video": "v.mov", "description": "ok", "times": [[0, 1]], "num_segments": 2},
    ]
    rows, report = _moments(tmp_path, video_folder, items)
    assert [(r["text"], r["start"], r["end"]) for r in rows] == [("ok", 0.0, None)]
    assert dict(report.dropped) == {"moment after the video's last segment (num_segments)": 1}


@pytest.mark.parametrize(
    ("times", "shown"), [("[[1.7, 2]]", "1.7"), ("[[6, 6]]", "6"), ("[[-1, 0]]", "-1")]
)
def test_segment_indices_must_be_integers_0_to_5(tmp_path, video_folder, times, shown):
    (tmp_path / "d.json").write_text(
        '[{"video": "v.mov", "description": "d", "times": ' + times + "}]"
    )
    with pytest.raises(ManifestError) as info:
        build_manifest("didemo", [str(tmp_path / "d.json")], str(video_folder(tmp_path / "v", [])))
    assert str(info.value) == (
        f"{tmp_path / 'd.json'}: [0].times[0]: not a segment index 0-5: {shown}"
    )


def test_a_whole_number_written_as_a_float_is_a_segment_index(tmp_path, video_folder):
    item = {"video": "v.mov", "description": "d", "times": [[1.0, 2.0]]}
    rows, _ = _moments(tmp_path, video_folder, [item])
    assert (rows[0]["start"], rows[0]["end"]) == (5.0, 15.0)


def test_a_num_segments_that_is_no_count_names_the_field(tmp_path, video_folder):
    item = {"video": "v.mov", "description": "d", "times": [[0, 0]], "num_segments": 7}
    with pytest.raises(ManifestError, match=r"\[0\]\.num_segments: not a segment count 1-6: 7$"):
        _moments(tmp_path, video_folder, [item])


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_a_last_segment_moment_on_a_short_video_passes_the_probe(tmp_path, video_folder):
    """The review's repro: a 10 s video, a moment ending at its last segment. Before, the row
    ended at 15 s and the probe rejected it as past the video's end."""
    folder = tmp_path / "videos"
    folder.mkdir()
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
         "testsrc2=size=64x48:rate=5", "-t", "10", "-c:v", "libx264", "-pix_fmt", "yuv420p",
         str(folder / "v.mp4")],
        check=True,
    )  # fmt: skip
    items = [
        {"video": "v.mov", "description": "end", "times": [[1, 2]], "num_segments": 2},
        {"video": "v.mov", "description": "past", "times": [[2, 2]], "annotation_id": 9},
    ]
    rows, _ = _moments(tmp_path, video_folder, items)
    clips = [Clip(r["key"], i, r["video"], r["start"], r["end"]) for i, r in enumerate(rows)]
    assert (clips[0].start, clips[0].end) == (5.0, None)
    assert probe(clips[0], PrepareConfig()).info.duration == pytest.approx(10.0)
    # without num_segments the adapter cannot know: wholly past the video fails at probe, named
    with pytest.raises(StageError, match=r"span starts at 10 s, past the video's end \(10 s\)"):
        probe(clips[1], PrepareConfig())
