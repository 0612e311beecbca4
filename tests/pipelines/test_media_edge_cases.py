"""Sources the media stages met in review and once got wrong: odd frame sizes, variable frame
rates, an MPEG-TS taken up mid-GOP, a file name that is not UTF-8, a cover image listed before
a video of no stated duration, picture codecs used for moving video, MPEG-TS keyframes further
apart than the seek margin, and H.264 with B-frames in AVI.

Every input is made here with ffmpeg (a few seconds, 160x120 to 321x241); the assertions read
the clips themselves: frame counts (``ffprobe -count_frames``), sizes, which source frames they
show, and the reasons rows fail with.
"""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from pipelines.config import PrepareConfig
from pipelines.record import Clip, VideoInfo
from pipelines.stages import CPU_STAGES, apply, probe
from pipelines.stages.cut import clip_seconds, command, encode_size, plan_cut
from pipelines.stages.together import cut_together

from .conftest import ffmpeg
from .test_stages import source_frames_of

TESTSRC = "testsrc2=size=320x240:rate=25:duration=4"


def run_stages(video, start=None, end=None, **cfg) -> Clip:
    """probe, clip and middle_frame, as a reviewer ran them."""
    clip = Clip(key="k", row=0, video=str(video), start=start, end=end, text="t")
    config = PrepareConfig(**cfg)
    for name, stage in CPU_STAGES[:3]:
        apply(name, stage, clip, config)
    return clip


def counted(mp4: bytes, tmp_path: Path) -> tuple[int, int, int]:
    """(width, height, frames decoded) of a clip, by ffprobe."""
    path = tmp_path / "counted.mp4"
    path.write_bytes(mp4)
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames"]
        + ["-show_entries", "stream=width,height,nb_read_frames", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    width, height, frames = (int(x) for x in out.strip().split(","))
    return width, height, frames


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("edge")
    lavfi = ("-f", "lavfi", "-i")
    odd = ("-vf", "scale=321:241,setsar=1")
    ffmpeg(*lavfi, TESTSRC, *odd, "-c:v", "libx264", "-pix_fmt", "yuv444p", str(d / "odd.mp4"))
    ffmpeg(*lavfi, TESTSRC, *odd, "-c:v", "mpeg4", str(d / "odd.avi"))
    # frame N at N*N*2 ms: the gaps grow from 2 ms to 0.35 s
    ffmpeg(
        *lavfi, "testsrc2=size=320x240:rate=30:duration=3", "-vf", "setpts='(N*N*2)/1000/TB'",
        "-fps_mode", "vfr", "-c:v", "libx264", "-bf", "0", "-video_track_timescale", "1000",
        str(d / "vfr.mp4"),
    )  # fmt: skip
    ffmpeg(
        *lavfi, TESTSRC, "-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p", str(d / "cfr.mp4")
    )
    ffmpeg(
        *lavfi, "testsrc2=size=320x240:rate=25:duration=6", "-c:v", "libx264", "-bf", "2",
        "-g", "50", "-sc_threshold", "0", str(d / "gop2.ts"),
    )  # fmt: skip
    (d / "midgop.ts").write_bytes((d / "gop2.ts").read_bytes()[188 * 200 :])  # TS packets
    ffmpeg(*lavfi, TESTSRC, "-c:v", "libx264", "-pix_fmt", "yuv420p", str(d / "base.mp4"))
    Image.new("RGB", (64, 48), "red").save(d / "cover.png")
    piped = subprocess.run(  # to a pipe: the Matroska file states no duration, has no cues
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(d / "cover.png"), "-i", str(d / "base.mp4")]
        + ["-map", "0", "-map", "1", "-c:v:0", "mjpeg", "-c:v:1", "copy", "-map_metadata", "-1"]
        + ["-f", "matroska", "-"],
        capture_output=True,
        check=True,
    )
    (d / "cover_nodur.mkv").write_bytes(piped.stdout)
    ffmpeg(*lavfi, TESTSRC, "-c:v", "mjpeg", str(d / "mjpeg.mkv"))
    ffmpeg(*lavfi, "testsrc2=size=160x120:rate=10:duration=2", str(d / "anim.gif"))
    ffmpeg(*lavfi, "testsrc2=size=160x120", "-frames:v", "1", str(d / "one.gif"))
    Image.new("RGB", (640, 480), "blue").save(d / "big_cover.png")
    ffmpeg(  # (a video of one keyframe behind an image track defeats ffmpeg's own seek)
        "-i", str(d / "big_cover.png"), "-i", str(d / "cfr.mp4"), "-map", "0", "-map", "1",
        "-c:v:0", "mjpeg", "-c:v:1", "copy", str(d / "big_cover.mkv"),
    )  # fmt: skip
    ffmpeg(
        *lavfi, "testsrc2=size=320x240:rate=5:duration=30", "-c:v", "libx264", "-g", "60",
        "-keyint_min", "60", "-sc_threshold", "0", "-bf", "0", str(d / "gop12.ts"),
    )  # fmt: skip
    ffmpeg(*lavfi, TESTSRC, "-c:v", "libx264", "-bf", "2", "-g", "25", str(d / "h264b.avi"))
    return {p.name: p for p in d.iterdir()}


# 1. Odd frame sizes -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["odd.mp4", "odd.avi"])
@pytest.mark.parametrize("max_short_side", [None, 480])
def test_odd_sized_video_is_reencoded_to_even_sides(media, name, max_short_side, tmp_path):
    """libx264's yuv420p refuses odd sides ("Error initializing output stream"): 321x241 is
    scaled to 322x242, as ``_even`` rounds every other size."""
    clip = run_stages(media[name], 1.0, 3.0, max_short_side=max_short_side)
    assert clip.ok, clip.error
    assert clip.clip_info["mode"] == "re-encode" and clip.jpg
    assert counted(clip.mp4, tmp_path) == (322, 242, 50)


def test_odd_sized_h264_copied_whole_keeps_its_stored_frame(media, tmp_path):
    whole = run_stages(media["odd.mp4"])
    assert whole.ok and whole.clip_info["mode"] == "stream-copy"
    assert counted(whole.mp4, tmp_path) == (321, 241, 100)
    mpeg4 = run_stages(media["odd.avi"])  # no copy for MPEG-4 Part 2: re-encoded, even
    assert mpeg4.ok and counted(mpeg4.mp4, tmp_path) == (322, 242, 100)


def test_encode_size_turns_and_evens_an_odd_upright_frame():
    info = VideoInfo(
        duration=4, fps=25, width=321, height=241, video_codec="h264", audio_codec=None,
        format_name="mov",
    )  # fmt: skip
    assert encode_size(info, None) == (322, 242) and encode_size(info, 480) == (322, 242)
    assert encode_size(dataclasses.replace(info, rotation=90), None) == (242, 322)
    assert encode_size(dataclasses.replace(info, width=320, height=240), None) is None
    assert encode_size(info, 120) == (160, 120)  # a scale asked for rounds as before


def test_odd_sized_spans_cut_together_get_even_sides(media, tmp_path):
    cfg = PrepareConfig(fps=3)
    clips = [
        Clip(key=f"k{i}", row=i, video=str(media["odd.mp4"]), start=s, end=e)
        for i, (s, e) in enumerate([(0.5, 2.0), (1.0, 3.0)])
    ]
    for clip in clips:
        apply("probe", probe, clip, cfg)
    assert cut_together(clips, cfg) == 2
    assert [counted(c.mp4, tmp_path)[:2] for c in clips] == [(322, 242), (322, 242)]


# 2. Variable frame rate -------------------------------------------------------------------


def source_times(path: Path) -> list[float]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time"]
        + ["-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(float(t) for t in out.split())


def test_variable_rate_span_keeps_the_frames_it_holds(media, tmp_path):
    """Without ``-fps_mode vfr`` the mp4 muxer made ffmpeg hold the stated 30 fps: the 46
    frames of this span came out 299, duplicates."""
    frames = sum(1 for t in source_times(media["vfr.mp4"]) if 2.0 <= t < 12.0)
    clip = run_stages(media["vfr.mp4"], 2.0, 12.0)
    assert clip.ok, clip.error
    assert frames == 46 and counted(clip.mp4, tmp_path)[2] == frames
    # Measured as the pts span, not decode times, by ffprobe: once (one run of many) PyAV's
    # in-process demux of these bytes gave one packet a garbage timestamp, a span of -6.9e9 s.
    path = tmp_path / "span.mp4"
    path.write_bytes(clip.mp4)
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries"]
        + ["packet=pts_time,duration_time", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    packets = [tuple(float(x) for x in line.split(",")) for line in out.split()]
    shown = max(p + d for p, d in packets) - min(p for p, _ in packets)
    assert len(packets) == frames and clip_seconds(clip.mp4) == pytest.approx(shown)


@pytest.mark.parametrize(("name", "start", "end"), [("cfr.mp4", 1.3, 3.3), ("gop2.ts", 1.3, 3.3)])
def test_a_constant_rate_source_gives_the_same_bytes_with_fps_mode_vfr(media, name, start, end):
    cfg = PrepareConfig()
    clip = Clip(key="k", row=0, video=str(media[name]), start=start, end=end)
    apply("probe", probe, clip, cfg)
    cmd = command(plan_cut(clip, cfg), cfg)
    at = cmd.index("-fps_mode")
    assert cmd[at + 1] == "vfr"
    vfr, default = (
        subprocess.run(c, capture_output=True, check=True).stdout
        for c in (cmd, cmd[:at] + cmd[at + 2 :])
    )
    assert len(vfr) > 1000 and vfr == default


# 3. MPEG-TS taken up mid-GOP --------------------------------------------------------------


def test_a_stream_taken_up_mid_gop_is_kept_from_its_first_keyframe(media, tmp_path):
    """The packets before the first keyframe cannot be decoded; counted as the track's start
    they made the whole video look truncated ("the source ends at 4.00 s ... truncated?")."""
    whole = run_stages(media["midgop.ts"])
    assert whole.ok, whole.error
    assert counted(whole.mp4, tmp_path)[2] == 100  # 4 s from the keyframe at 2 s, at 25 fps
    start = whole.clip_info["start"]
    assert 0.5 < start < 1.5 and whole.clip_info["end"] == pytest.approx(start + 4, abs=0.05)
    assert whole.clip_info["clamped"]
    inside = run_stages(media["midgop.ts"], start + 0.5, start + 1.5)
    # 1 s at 25 fps; MPEG-TS with B-frames gives 24 for such spans of the intact file as well
    assert inside.ok and counted(inside.mp4, tmp_path)[2] in (24, 25)


def test_a_span_in_the_undecodable_head_says_where_the_decodable_part_starts(media):
    whole = run_stages(media["midgop.ts"])
    head = run_stages(media["midgop.ts"], 0.1, whole.clip_info["start"] - 0.1)
    assert head.error is not None and head.error.stage == "clip"
    assert f"decodable part, which starts at {whole.clip_info['start']:.2f} s" in head.error.reason


# 4. A file name that is not UTF-8 ---------------------------------------------------------


def test_a_file_name_that_is_not_utf8_is_cut(media, tmp_path):
    path = os.fsdecode(bytes(tmp_path) + b"/bad\xff.mp4")
    Path(path).write_bytes(media["base.mp4"].read_bytes())
    span, whole = run_stages(path, 1.0, 3.0), run_stages(path)
    assert span.ok and whole.ok, (span.error, whole.error)
    assert counted(span.mp4, tmp_path)[2] == 50 and counted(whole.mp4, tmp_path)[2] == 100
    assert span.jpg and whole.jpg


# 5. Frame counting counts the chosen stream -----------------------------------------------


def test_frames_of_a_file_without_duration_are_counted_on_the_video_not_the_cover(media, tmp_path):
    clip = run_stages(media["cover_nodur.mkv"], 1.0, 3.0)
    assert clip.ok, clip.error
    assert clip.info.stream_index == 1 and clip.info.duration_source == "counted"
    assert clip.info.num_frames == 100 and clip.info.duration == pytest.approx(4.0)
    assert counted(clip.mp4, tmp_path)[2] == 50
    assert source_frames_of_stream(clip, 1) == list(range(25, 75))
    whole = run_stages(media["cover_nodur.mkv"])
    assert whole.ok and whole.clip_info["end"] == pytest.approx(4.0)


def source_frames_of_stream(clip: Clip, index: int) -> list[int]:
    """``source_frames_of`` for a source whose video is stream ``index``."""
    with av.open(clip.video) as c:
        source = [f.to_ndarray(format="gray").astype(np.int16) for f in c.decode(c.streams[index])]
    with av.open(io.BytesIO(clip.mp4)) as c:
        ours = [f.to_ndarray(format="gray").astype(np.int16) for f in c.decode(video=0)]
    return [int(np.argmin([np.abs(f - s).mean() for s in source])) for f in ours]


# 6. Picture codecs as moving video --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "start", "end", "frames"),
    [("mjpeg.mkv", 1.0, 3.0, 50), ("anim.gif", None, None, 20), ("anim.gif", 0.5, 1.5, 10)],
)
def test_mjpeg_in_matroska_and_animated_gif_are_videos(media, name, start, end, frames, tmp_path):
    clip = run_stages(media[name], start, end)
    assert clip.ok, clip.error
    assert counted(clip.mp4, tmp_path)[2] == frames and clip.jpg


def test_a_one_frame_gif_is_still_a_still(media):
    clip = run_stages(media["one.gif"])
    assert clip.error is not None and clip.error.stage == "probe"
    assert clip.error.reason.startswith("a still image (gif in gif)")


def test_an_unflagged_cover_larger_than_the_video_is_not_taken_for_it(media, tmp_path):
    """A 640x480 MJPEG image listed first, no ``attached_pic``, no frame count (Matroska): its
    one packet, counted, makes it a still; the 320x240 video is the largest moving picture."""
    clip = run_stages(media["big_cover.mkv"], 1.0, 3.0)
    assert clip.ok, clip.error
    assert counted(clip.mp4, tmp_path) == (320, 240, 50)
    assert clip.info.stream_index == 1 and (clip.info.width, clip.info.height) == (320, 240)


# 7. MPEG-TS keyframes further apart than the seek margin ---------------------------------


@pytest.mark.parametrize(
    ("start", "end", "frames"),
    [
        (23.0, 25.0, range(115, 125)),  # was: "the source ends at 24.00 s ... truncated?"
        (23.8, 25.8, range(119, 129)),  # was: started at 24 s, a frame late, silently
    ],
)
def test_a_span_far_from_its_keyframe_in_mpegts_starts_on_time(media, start, end, frames):
    clip = run_stages(media["gop12.ts"], start, end)
    assert clip.ok, clip.error
    assert source_frames_of(clip) == list(frames)


# 8. H.264 with B-frames in AVI ------------------------------------------------------------


def test_whole_h264_with_b_frames_from_avi_is_reencoded_in_display_order(media):
    """AVI stores no presentation timestamps: a copy gave the MP4 pts = dts and no composition
    offsets, the decoder's display-order frames carrying decode-order times (0, 2, 3, 1, ...
    frames of 40 ms), which ffmpeg's own readers then dropped and repeated by."""
    clip = run_stages(media["h264b.avi"])
    assert clip.ok, clip.error
    assert clip.clip_info["mode"] == "re-encode"
    assert source_frames_of(clip) == list(range(100))
    with av.open(io.BytesIO(clip.mp4)) as c:
        times = [frame.pts for frame in c.decode(video=0)]
    assert times == sorted(set(times)) and len(times) == 100
