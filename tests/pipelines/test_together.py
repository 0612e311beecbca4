"""Cutting a video's spans together gives each row the bytes cutting it alone gives."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipelines.config import PrepareConfig
from pipelines.record import Clip
from pipelines.stages import apply, cut_clip, probe
from pipelines.stages.cut import plan_cut
from pipelines.stages.together import GAP_S, MAX_GROUP, cut_together, groups

from .conftest import SHARED, ffmpeg, make_video
from .test_stages import with_display_rotation

SPANS = [(0.0, 1.5), (0.4, 1.3), (1.0, 2.72), (2.5, 4.0), (3.3, 4.0)]  # overlapping, to the end


def probed(video: Path, spans, cfg: PrepareConfig) -> list[Clip]:
    clips = [
        Clip(key=f"k{i}", row=i, video=str(video), start=s, end=e) for i, (s, e) in enumerate(spans)
    ]
    for clip in clips:
        apply("probe", probe, clip, cfg)
        assert clip.ok, clip.error
    return clips


def assert_same_as_alone(video: Path, spans, cfg: PrepareConfig) -> list[Clip]:
    together = probed(video, spans, cfg)
    assert cut_together(together, cfg) == len(spans), "every span is cut in the one run"
    alone = probed(video, spans, cfg)
    for clip in alone:
        apply("clip", cut_clip, clip, cfg)
    for a, b in zip(together, alone, strict=True):
        assert a.mp4 == b.mp4, f"span {a.start}-{a.end}: not the bytes cut_clip writes"
        assert a.clip_info == b.clip_info
    return together


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("together")
    bframes = ("-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-pix_fmt", "yuv420p")
    out = {
        "bframes": make_video(d / "b.mp4", "testsrc2", size="320x240", seconds=4.0, codec=bframes),
        "vp9": make_video(
            d / "v.webm",
            "testsrc2",
            size="192x144",
            rate=24,
            seconds=4.0,
            codec=("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-g", "24"),
        ),
    }
    # AVI, the third keyframe-seeking demuxer (MPEG-4 Part 2 with B-frames, as old downloads).
    out["avi"] = make_video(
        d / "a.avi",
        "testsrc2",
        size="192x144",
        rate=25,
        seconds=4.0,
        codec=("-c:v", "mpeg4", "-g", "25", "-bf", "2"),
    )
    # A file whose timestamps start at 1.4 s (cut from a stream), and an anamorphic one.
    ffmpeg("-i", str(out["bframes"]), "-c", "copy", "-output_ts_offset", "1.4", str(d / "o.mp4"))
    out["offset"] = d / "o.mp4"
    ffmpeg("-i", str(out["bframes"]), "-vf", "scale=240:240,setsar=4/3", str(d / "sar.mp4"))
    out["sar"] = d / "sar.mp4"
    out["rotated"] = with_display_rotation(out["bframes"], d / "r.mp4", 90)
    return out


@pytest.mark.parametrize("name", ["bframes", "vp9", "avi", "offset", "sar", "rotated"])
def test_spans_cut_together_are_the_bytes_of_each_cut_alone(sources, name):
    cfg = PrepareConfig(fps=3, max_short_side=96)
    assert_same_as_alone(sources[name], SPANS, cfg)


def test_spans_kept_at_the_source_frame_rate_are_cut_one_by_one(sources):
    """Without the fps filter the shifted branch gives ffmpeg another frame rate to keep: a
    0.8 s span came out 20 frames long instead of cut_clip's 19, so such rows are not grouped."""
    rows = probed(sources["bframes"], [(0.3, 1.1), (1.7, 3.3)], PrepareConfig())
    assert {plan_cut(c, PrepareConfig()).copy for c in rows} == {False}
    assert groups(rows, PrepareConfig()) == []


def test_a_real_video_cut_together_is_the_bytes_of_each_cut_alone():
    video = SHARED / "videos" / "moviepy_chaplin.mp4"
    if not video.exists():
        pytest.skip("shared sample videos not present")
    assert_same_as_alone(video, [(0.5, 3.5), (3.5, 6.0), (5.0, 9.6)], PrepareConfig(fps=3))


def test_groups_take_nearby_reencoded_spans_of_one_video(videos, sources):
    cfg = PrepareConfig(fps=3)
    far = 2 * GAP_S
    long = make_video(Path(sources["bframes"]).parent / "long.mp4", seconds=far + 4, size="64x48")
    spans = [(0, 1), (far + 1, far + 2), (1, 2), (far + 2, far + 3)]
    rows = probed(long, spans, cfg) + probed(videos["vp9_webm"], [(0.5, 1), (1, 2)], cfg)
    found = {tuple((Path(c.video).name, c.row) for c, _ in run) for run in groups(rows, cfg)}
    # Each of the second video's rows counts from 0 again: rows are numbered per call here.
    assert found == {(("long.mp4", 0), ("long.mp4", 2)), (("long.mp4", 1), ("long.mp4", 3))} | {
        ((videos["vp9_webm"].name, 0), (videos["vp9_webm"].name, 1))
    }


def test_groups_hold_at_most_max_group_spans(sources):
    cfg = PrepareConfig(fps=3)
    spans = [(0.1 * i, 0.1 * i + 1) for i in range(MAX_GROUP + 3)]
    sizes = [len(run) for run in groups(probed(sources["bframes"], spans, cfg), cfg)]
    assert sizes == [MAX_GROUP, 3]


def test_whole_videos_and_non_keyframe_seeking_containers_are_left_alone(videos, tmp_path):
    cfg = PrepareConfig(fps=3)
    ts = tmp_path / "t.ts"
    ffmpeg("-i", str(videos["h264_long"]), "-c", "copy", str(ts))
    rows = probed(videos["h264_long"], [(None, None), (None, None)], cfg)
    rows += probed(ts, [(0.3, 1), (1.3, 2)], cfg)  # MPEG-TS: cut_clip seeks short of the start
    assert groups(rows, cfg) == []


def test_a_failing_group_leaves_its_rows_to_cut_clip(sources, tmp_path):
    """The shared run fails as a whole (here: the file turns unreadable after probe); nothing
    is set, so the per-row cut runs and records the row's own error."""
    video = tmp_path / "gone.mp4"
    video.write_bytes(Path(sources["bframes"]).read_bytes())
    cfg = PrepareConfig(fps=3)
    rows = probed(video, [(0.2, 1), (1, 2)], cfg)
    video.write_bytes(b"not a video any more")
    assert cut_together(rows, cfg) == 0
    assert all(c.mp4 is None and c.ok for c in rows)
    # the failed run's seconds are counted, split over its rows (per-video sums see them)
    assert all(c.timings.get("clip", 0.0) > 0 for c in rows)
    for clip in rows:
        apply("clip", cut_clip, clip, cfg)
    assert not any(c.ok for c in rows) and {c.error.stage for c in rows} == {"clip"}


def test_process_cuts_a_tasks_spans_together(sources, tmp_path, monkeypatch):
    """The task's CPU phase uses the shared run; the samples it writes are the ones a per-row
    cut would (the same bytes), and each clip's time share is recorded under ``clip``."""
    from pipelines import tasks

    cfg = PrepareConfig(out=str(tmp_path / "out"), fps=3, captioner="none")
    clips = [
        Clip(key=f"k{i}", row=i, video=str(sources["bframes"]), start=s, end=e, text="t")
        for i, (s, e) in enumerate(SPANS)
    ]
    cut = []
    monkeypatch.setattr(tasks, "cut_together", lambda c, g: cut.append(cut_together(c, g)))
    task = tasks.process(tasks.Task(0, clips), cfg)
    assert cut == [len(SPANS)], "all five spans in one ffmpeg run"
    alone = probed(sources["bframes"], SPANS, cfg)
    for a, clip in zip(alone, task.clips, strict=True):
        apply("clip", cut_clip, a, cfg)
        assert clip.ok and clip.mp4 == a.mp4 and clip.jpg is not None
        assert clip.timings["clip"] > 0


def test_ffmpeg_reads_every_grouped_clip_as_a_whole_mp4(sources, tmp_path):
    cfg = PrepareConfig(fps=3, max_short_side=96)
    clips = probed(sources["bframes"], SPANS, cfg)
    cut_together(clips, cfg)
    for clip in clips:
        path = tmp_path / f"{clip.key}.mp4"
        path.write_bytes(clip.mp4)
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-count_frames", "-show_entries"]
            + ["stream=nb_read_frames", "-of", "csv=p=0", str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        expected = round(3 * (min(clip.end, 4.0) - clip.start))
        assert abs(int(out.strip()) - expected) <= 1
