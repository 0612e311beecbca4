"""A truncated source (a download cut short) fails its rows at ``clip``, naming the truncation.

Its header still states the full length (a faststart MP4's ``moov`` indexes every frame, a
Matroska header holds the segment's duration), so the probe passes the span and ffmpeg, out of
data early, writes a short clip and exits 0. Before, such a clip became a sample recorded as
the whole span. Spans inside the data that survived, and every clip of an intact file (a span
ending exactly at the video's end, a whole video), still become samples.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import av
import pytest

from pipelines.config import PrepareConfig
from pipelines.prepare import EngineOptions, prepare
from pipelines.record import Clip
from pipelines.stages import apply, cpu_stages, cut_clip, probe
from pipelines.stages.cut import clip_seconds
from pipelines.stages.together import cut_together
from shards import iter_samples

from .conftest import ffmpeg, make_video

SECONDS = 6.0
H264 = ("-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p")


def truncate(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("truncated")
    faststart = (*H264, "-movflags", "+faststart")  # the index first: it survives the cut
    out = {
        "mp4": make_video(d / "full.mp4", size="320x240", seconds=SECONDS, codec=faststart),
        "mkv": make_video(d / "full.mkv", size="320x240", seconds=SECONDS, codec=H264),
    }
    out["mp4_half"] = truncate(out["mp4"], d / "half.mp4")
    out["mkv_half"] = truncate(out["mkv"], d / "half.mkv")
    # Audio running 2 s past the video: the file states 6 s, its video track 4 s.
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4",
        "-f", "lavfi", "-i", "sine=duration=6", *H264, "-c:a", "aac", str(d / "long_audio.mp4"),
    )  # fmt: skip
    out["long_audio"] = d / "long_audio.mp4"
    return out


def run_cpu_stages(video: Path, start=None, end=None, **cfg) -> Clip:
    config = PrepareConfig(captioner="none", **cfg)
    clip = Clip(key="k", row=0, video=str(video), start=start, end=end, text="t")
    for name, stage in cpu_stages(config):
        apply(name, stage, clip, config)
    return clip


def demuxed_seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        packets = [(p.pts, p.duration) for p in container.demux(stream) if p.size]
    end = max(pts + duration for pts, duration in packets)
    return float((end - min(pts for pts, _ in packets)) * stream.time_base)


def test_the_header_of_a_truncated_file_still_states_its_full_length(sources):
    for name in ("mp4_half", "mkv_half"):
        clip = Clip(key="k", row=0, video=str(sources[name]))
        apply("probe", probe, clip, PrepareConfig())
        assert clip.ok and clip.info.duration == pytest.approx(SECONDS, abs=0.05), name


@pytest.mark.parametrize(
    ("start", "end", "fps"), [(None, None, None), (1.3, 4.1, None), (0.4, 5.9, 3), (None, None, 3)]
)
def test_clip_length_read_from_the_boxes_is_the_demuxed_length(sources, start, end, fps):
    clip = run_cpu_stages(sources["mp4"], start, end, fps=fps)
    assert clip.ok, clip.error
    assert clip_seconds(clip.mp4) == pytest.approx(demuxed_seconds(clip.mp4), abs=1e-6)
    assert clip_seconds(b"not an mp4 at all") is None


@pytest.mark.parametrize("name", ["mp4_half", "mkv_half"])
@pytest.mark.parametrize(
    ("start", "end", "fps"),
    [
        (None, None, None),  # the whole video: stream copy (MP4), re-encode (Matroska)
        (None, None, 3),
        (2.0, 5.0, None),  # a span across the end of the data
        (2.0, 5.0, 3),
        (5.0, 5.8, None),  # a span wholly past it: no frame (or ffmpeg finds a partial file)
        (5.0, 5.8, 3),
    ],
)
def test_truncated_source_fails_its_row_at_clip_naming_the_truncation(
    sources, name, start, end, fps
):
    clip = run_cpu_stages(sources[name], start, end, fps=fps)
    assert clip.error is not None and clip.error.stage == "clip", clip.error or clip.clip_info
    reason = clip.error.reason
    assert "truncated file?" in reason and f"{start or 0:.2f}-{end or SECONDS:.2f} s" in reason
    assert "the file states 6.00 s" in reason
    assert clip.mp4 is None and clip.jpg is None


def test_the_reason_says_where_the_data_ends(sources):
    reason = run_cpu_stages(sources["mp4_half"], 2.0, 5.0).error.reason
    ends = float(reason.split("the source ends at ")[1].split(" s")[0])
    assert 2.0 < ends < 4.0, reason  # half the bytes: about half the frames
    size = sources["mp4_half"].stat().st_size
    with av.open(str(sources["mp4_half"])) as c:  # the frames whose bytes are all there
        frames = sum(1 for p in c.demux(video=0) if p.size and p.pos + p.size <= size)
    assert ends == pytest.approx(frames / 25, abs=0.1)


@pytest.mark.parametrize("fps", [None, 3])
def test_a_span_inside_what_survived_of_a_truncated_file_is_kept(sources, fps):
    clip = run_cpu_stages(sources["mp4_half"], 0.5, 2.0, fps=fps)
    assert clip.ok, clip.error
    assert clip.clip_info["duration"] == 1.5
    assert clip.clip_info["num_frames"] == pytest.approx(1.5 * (fps or 25), abs=1)


@pytest.mark.parametrize("fps", [None, 3])
@pytest.mark.parametrize("name", ["mp4", "mkv"])
@pytest.mark.parametrize(
    ("start", "end"), [(None, None), (0.0, SECONDS), (4.7, SECONDS), (5.0, None), (4.63, 6.3)]
)
def test_clips_reaching_the_end_of_an_intact_video_do_not_fail(sources, name, fps, start, end):
    clip = run_cpu_stages(sources[name], start, end, fps=fps)
    assert clip.ok, clip.error
    want_end = min(end or SECONDS, SECONDS)  # a span a little past the end is clamped
    assert clip.clip_info["end"] == pytest.approx(want_end, abs=0.05)
    assert clip.clip_info["duration"] == pytest.approx(want_end - (start or 0), abs=0.05)
    length = clip_seconds(clip.mp4)
    assert length == pytest.approx(clip.clip_info["duration"], abs=1 / (fps or 25))


@pytest.mark.parametrize("name", ["h264", "mpeg4_avi", "vp9_webm", "no_duration"])
def test_whole_videos_of_the_shared_fixtures_do_not_fail(videos, name):
    """With audio (``h264``), and a WebM whose container states no duration (frames counted)."""
    for fps in (None, 3):
        clip = run_cpu_stages(videos[name], fps=fps)
        assert clip.ok, (name, fps, clip.error)


def test_audio_running_past_the_video_is_no_truncation(sources):
    whole = run_cpu_stages(sources["long_audio"])
    assert whole.ok, whole.error
    assert whole.info.duration == pytest.approx(6.0, abs=0.05)  # the file: its audio
    assert whole.clip_info["duration"] == pytest.approx(4.0, abs=0.05)  # what the clip holds
    assert whole.clip_info["clamped"] is False  # a whole video asks for no span
    near = run_cpu_stages(sources["long_audio"], 3.0, 4.3)  # past the video, within the probe's
    assert near.ok and near.clip_info["end"] == pytest.approx(4.0, abs=0.05)  # 0.5 s: clamped
    assert near.clip_info["clamped"] is True  # and says so: the json's span is 3.0-4.3
    inside = run_cpu_stages(sources["long_audio"], 1.0, 2.0)
    assert inside.ok and inside.clip_info["clamped"] is False
    past = run_cpu_stages(sources["long_audio"], 3.0, 5.5)
    assert past.error.stage == "clip"
    assert past.error.reason.startswith("the video track covers only 3.00-4.00 s of the span")


def test_spans_cut_together_leave_a_short_one_to_the_per_row_cut(sources):
    cfg = PrepareConfig(fps=3)
    spans = [(0.2, 1.5), (1.0, 2.5), (2.0, 5.0), (3.0, 4.0)]
    clips = [
        Clip(key=f"k{i}", row=i, video=str(sources["mp4_half"]), start=s, end=e)
        for i, (s, e) in enumerate(spans)
    ]
    for clip in clips:
        apply("probe", probe, clip, cfg)
    cut_together(clips, cfg)
    for clip in clips:
        if clip.mp4 is None:
            apply("clip", cut_clip, clip, cfg)
    assert [clip.ok for clip in clips] == [True, True, False, False]
    assert all("truncated file?" in clip.error.reason for clip in clips[2:]), [
        c.error for c in clips
    ]


def test_prepare_accounts_for_every_row_of_a_truncated_and_an_intact_video(sources, tmp_path):
    rows = [
        ("whole_cut", "mp4_half", None, None),
        ("span_across", "mp4_half", 2.0, 5.0),
        ("span_past", "mp4_half", 4.5, 5.5),
        ("span_kept", "mp4_half", 0.5, 2.0),
        ("mkv_span", "mkv_half", 1.0, 5.0),
        ("whole", "mp4", None, None),
        ("to_the_end", "mp4", 4.0, SECONDS),
        ("mkv_whole", "mkv", None, None),
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"key": k, "video": str(sources[v]), "start": s, "end": e, "text": k}) + "\n"
            for k, v, s, e in rows
        )
    )
    out = tmp_path / "out"
    cfg = PrepareConfig(out=str(out), shard_size=4, frame_short_side=64, captioner="none", fps=3)
    summary = prepare(str(manifest), cfg, EngineOptions(runner="local"), progress=False)
    errors = {e["key"]: e for e in map(json.loads, (out / "errors.jsonl").read_text().splitlines())}
    samples = {s["json"]["key"]: s["json"] for s in iter_samples(str(out))}
    assert set(errors) == {"whole_cut", "span_across", "span_past", "mkv_span"}
    assert set(samples) == {"span_kept", "whole", "to_the_end", "mkv_whole"}
    assert summary["samples"] + summary["failed"] == len(rows) and summary["complete"]
    for error in errors.values():
        assert error["stage"] == "clip" and "truncated file?" in error["reason"], error
    assert set(summary["failed_by_stage"]) == {"clip"}
    for meta in samples.values():
        start, end = meta["clip"]["start"], meta["clip"]["end"]
        assert meta["clip"]["num_frames"] == pytest.approx((end - start) * 3, abs=1)


def test_span_that_keeps_no_frame_at_the_new_fps_fails_at_clip_saying_why(videos):
    """A span shorter than a frame at ``--fps`` may hold no frame once resampled (the last
    frame of a video at 3 fps): the row fails at ``clip`` naming the rate, not later at
    ``middle_frame`` with "clip has no video frames"."""
    whole = run_cpu_stages(videos["h264"])
    assert whole.ok, whole.error
    end = whole.info.duration
    clip = run_cpu_stages(videos["h264"], end - 0.04, end, fps=3)
    assert clip.error is not None and clip.error.stage == "clip"
    assert "is kept at 3 fps" in clip.error.reason
    inside = run_cpu_stages(videos["h264"], 1.0, 1.04, fps=3)  # the same length mid-video
    assert inside.ok and inside.clip_info["num_frames"] == 1
