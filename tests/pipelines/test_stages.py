import dataclasses
import importlib
import io
import re
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from pipelines.config import PrepareConfig
from pipelines.record import Clip, VideoInfo
from pipelines.stages import CPU_STAGES, apply
from pipelines.stages.middle_frame import decode_middle_frame

from .conftest import make_video

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def run_cpu_stages(video, start=None, end=None, **cfg) -> Clip:
    clip = Clip(key="k", row=0, video=str(video), start=start, end=end, text="t")
    config = PrepareConfig(**cfg)
    for name, stage in CPU_STAGES:
        apply(name, stage, clip, config)
    return clip


def ffmpeg_exact_frame_yuv(data: bytes, index: int, tmp_path) -> np.ndarray:
    """Frame ``index`` (presentation order) decoded by the ffmpeg CLI, as raw yuv420p bytes."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    out = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(path),
            "-vf",
            rf"select=eq(n\,{index})",
            "-fps_mode",
            "passthrough",
            "-frames:v",
            "1",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "rawvideo",
            "pipe:1",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(out, np.uint8)


def test_probe_reads_duration_size_and_codecs(videos):
    clip = run_cpu_stages(videos["h264"])
    assert clip.ok, clip.error
    info = clip.info
    assert (info.width, info.height, info.video_codec, info.audio_codec) == (
        160,
        120,
        "h264",
        "aac",
    )
    assert info.duration == pytest.approx(4.0, abs=0.1) and info.fps == 25


PROBE = importlib.import_module("pipelines.stages.probe")
CUT = importlib.import_module("pipelines.stages.cut")


def test_probe_asks_ffprobe_once_per_file_for_its_many_clips(videos, tmp_path, monkeypatch):
    """HD-VILA cuts ~30 clips from each video: one ffprobe run serves them all, a broken file's
    failure too; a file rewritten in place is probed again."""
    calls = []
    real = PROBE.ffprobe_json
    monkeypatch.setattr(
        PROBE, "ffprobe_json", lambda path, *a: calls.append(path) or real(path, *a)
    )
    video = tmp_path / "v.mp4"
    video.write_bytes(videos["h264_long"].read_bytes())
    clips = [run_cpu_stages(video, start=s, end=s + 1.0) for s in (0.0, 1.5, 3.0, 4.5)]
    assert all(c.ok for c in clips) and len(calls) == 1
    assert clips[0].info == clips[1].info and clips[0].info is not clips[1].info
    late = run_cpu_stages(video, start=9.0, end=10.0)  # the span is still checked per row
    assert late.error.stage == "probe" and "past the video's end" in late.error.reason
    video.write_bytes(videos["h264"].read_bytes())  # another video under the same name
    again = run_cpu_stages(video)
    assert len(calls) == 2 and again.info.audio_codec == "aac"
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    failed = [run_cpu_stages(broken, start=s, end=s + 1.0) for s in (0.0, 1.0)]
    assert len(calls) == 3
    assert failed[0].error == failed[1].error and failed[0].error.stage == "probe"


def test_whole_h264_video_is_stream_copied_and_spans_are_reencoded(videos):
    whole = run_cpu_stages(videos["h264_long"])
    span = run_cpu_stages(videos["h264_long"], start=1.3, end=3.7)
    assert whole.clip_info["mode"] == "stream-copy" and whole.clip_info["num_frames"] == 150
    assert span.clip_info["mode"] == "re-encode"
    assert 59 <= span.clip_info["num_frames"] <= 60, "2.4 s at 25 fps, frame-accurate cut"


def test_span_starting_on_a_keyframe_is_stream_copied_only_without_b_frames(videos, tmp_path):
    """A copy cuts packets in decode order: with B-frames the clip would end on the reference
    frame from past the span that its last B-frames need, so those spans are re-encoded."""
    no_b = tmp_path / "no_b.mp4"  # -g 25 at 25 fps: a keyframe each second
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(videos["h264_long"]), *X264]
        + ["-bf", "0", "-g", "25", str(no_b)],
        check=True,
    )
    for video, mode in ((no_b, "stream-copy"), (videos["h264_long"], "re-encode")):
        clip = run_cpu_stages(video, start=2.0, end=4.0)
        assert clip.ok and clip.clip_info["mode"] == mode
        assert source_frames_of(clip) == list(range(50, 100)), mode


def test_source_whose_edit_list_hides_frames_is_reencoded_not_copied(videos, tmp_path):
    """A stream copy into our (fragmented, edit-list-free) MP4 would show the hidden frames."""
    cut = tmp_path / "cut.mp4"  # a stream-copy cut at 1.3 s: keeps the packets from 1.0 s on
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-ss", "1.3", "-i", str(videos["h264_long"])]
        + ["-t", "2", "-c", "copy", str(cut)],
        check=True,
    )
    with av.open(str(cut)) as c:
        packets = sum(1 for p in c.demux(video=0) if p.size)
    with av.open(str(cut)) as c:
        shown = sum(1 for _ in c.decode(video=0))
    clip = run_cpu_stages(cut)
    assert clip.ok, clip.error
    assert clip.clip_info["mode"] == "re-encode"
    # (ffmpeg's constant-frame-rate output may repeat the last frame to fill the stated duration)
    assert abs(clip.clip_info["num_frames"] - shown) <= 1 < packets - shown


def source_frames_of(clip: Clip) -> list[int]:
    """For each frame of the clip, the index of the source frame it shows (nearest in pixels)."""
    with av.open(clip.video) as c:
        source = [f.to_ndarray(format="gray").astype(np.int16) for f in c.decode(video=0)]
    with av.open(io.BytesIO(clip.mp4)) as c:
        ours = [f.to_ndarray(format="gray").astype(np.int16) for f in c.decode(video=0)]
    return [int(np.argmin([np.abs(f - s).mean() for s in source])) for f in ours]


@pytest.fixture(scope="module")
def awkward_sources(tmp_path_factory) -> dict[str, Path]:
    """25 fps, a keyframe each second, no B-frames (but in one Matroska file): an MP4 whose timestamps start at 0.5 s, a
    14 s MPEG-TS (starts at 1.4 s, and its seek lands on any packet, not on a keyframe) and a
    Matroska file (its seek lands on a keyframe, but not always the last one before the time)."""
    d = tmp_path_factory.mktemp("awkward")
    src = ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", *X264, "-bf", "0", "-g", "25"]
    for name, extra in (
        ("late.mp4", ["-t", "6", "-output_ts_offset", "0.5"]),
        ("long.ts", ["-t", "14"]),
        ("keyed.mkv", ["-t", "6"]),
        ("keyed_b.mkv", ["-t", "6", "-bf", "2"]),
    ):
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", *src, *extra, str(d / name)], check=True
        )
    return {name: d / name for name in ("late.mp4", "long.ts", "keyed.mkv", "keyed_b.mkv")}


@pytest.mark.parametrize(
    ("name", "start", "end", "mode", "frames"),
    [
        # spans count from the file's first timestamp, as ffmpeg's -ss does; 1.5 s is no
        # keyframe there (1.5 s after the first frame), so no stream copy from 1.0 s
        ("late.mp4", 1.5, 3.5, "re-encode", range(38, 87)),
        ("late.mp4", 2.0, 4.0, "stream-copy", range(50, 100)),
        # the input seek would land 0.4 s late (the next keyframe); decoded from short of it
        ("long.ts", 0.6, 2.6, "re-encode", range(15, 65)),
        ("long.ts", 12.6, 13.6, "re-encode", range(315, 340)),  # input seek + 10 s decoded
        # the seek lands a second early: the packets before the start are not copied
        ("keyed.mkv", 2.0, 4.0, "stream-copy", range(50, 100)),
        ("keyed_b.mkv", 2.0, 4.0, "re-encode", range(50, 100)),  # B-frames: no span copy
    ],
)
def test_span_is_cut_at_its_own_start_whatever_the_container(
    awkward_sources, name, start, end, mode, frames
):
    clip = run_cpu_stages(awkward_sources[name], start=start, end=end)
    assert clip.ok, clip.error
    assert clip.clip_info["mode"] == mode
    assert source_frames_of(clip) == list(frames)


def test_the_video_is_found_behind_an_image_track_listed_first(videos, tmp_path):
    """Matroska keeps a cover image as a track of its own (here the first): the clip is cut from
    the moving video, not refused as a still and not mapped from stream 0."""
    cover, video = tmp_path / "cover.png", tmp_path / "with_cover.mkv"
    Image.new("RGB", (64, 48), "red").save(cover)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(cover), "-i", str(videos["h264_long"])]
        + ["-map", "0", "-map", "1:v", "-c", "copy", str(video)],
        check=True,
    )
    with av.open(str(video)) as c:
        assert c.streams[0].codec_context.name == "png"
    clip = run_cpu_stages(video, start=2.0, end=4.0)
    assert clip.ok, clip.error
    assert clip.info.stream_index == 1 and clip.info.video_codec == "h264"
    assert (clip.clip_info["width"], clip.clip_info["height"]) == (160, 120)
    assert 50 <= clip.clip_info["num_frames"] <= 52


def with_display_rotation(src: Path, dst: Path, degrees: int) -> Path:
    """Remux ``src`` with a display matrix, as a phone stores a portrait video (sideways)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        stream.set_display_rotation(degrees)
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return dst


def ffmpeg_rgb_frame(path: Path, index: int) -> np.ndarray:
    """Frame ``index`` as the ffmpeg CLI shows it (turned by the display matrix), RGB."""
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-vf", rf"select=eq(n\,{index})"]
        + ["-fps_mode", "passthrough", "-frames:v", "1", "-c:v", "png", "-f", "image2pipe", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.asarray(Image.open(io.BytesIO(out)).convert("RGB"))


@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_video_stored_sideways_becomes_an_upright_clip_and_frame(videos, tmp_path, degrees):
    """A whole-video stream copy would keep the display matrix while the JPEG (and any reader
    that ignores the matrix) stayed sideways: the clip is re-encoded upright instead."""
    rotated = with_display_rotation(videos["h264_long"], tmp_path / "phone.mp4", degrees)
    clip = run_cpu_stages(rotated, frame_short_side=None)
    assert clip.ok, clip.error
    assert clip.info.rotation == degrees % 360 and clip.clip_info["mode"] == "re-encode"
    shown = ffmpeg_rgb_frame(rotated, clip.frame_index)
    with av.open(io.BytesIO(clip.mp4)) as c:
        first = next(c.decode(video=0))
    assert first.rotation == 0 and (first.height, first.width) == shown.shape[:2]
    jpg = np.asarray(Image.open(io.BytesIO(clip.jpg)).convert("RGB"), dtype=float)
    assert jpg.shape == shown.shape
    assert np.abs(jpg - shown).mean() < 8, "the JPEG is the frame as a player shows it"


@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_middle_frame_of_a_clip_with_a_display_matrix_is_turned_upright(videos, tmp_path, degrees):
    rotated = with_display_rotation(videos["h264_long"], tmp_path / "phone.mp4", degrees)
    frame, index, _, _ = decode_middle_frame(str(rotated))
    upright = np.asarray(MIDDLE_FRAME.upright(frame))
    assert np.array_equal(upright, ffmpeg_rgb_frame(rotated, index))


def h264_headers(mp4: bytes, tmp_path: Path) -> dict[str, set[int]]:
    """Two switches of the clip's H.264 headers, as ffmpeg's ``trace_headers`` reads them."""
    path = tmp_path / "headers.mp4"
    path.write_bytes(mp4)
    log = subprocess.run(
        ["ffmpeg", "-v", "trace", "-i", str(path), "-c", "copy", "-bsf:v", "trace_headers"]
        + ["-frames:v", "3", "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    found: dict[str, set[int]] = {}
    for name in ("entropy_coding_mode_flag", "disable_deblocking_filter_idc"):
        found[name] = {int(m) for m in re.findall(rf"\b{name}\s+\S+ = (\d+)", log)}
    return found


@pytest.mark.parametrize("fast_decode", [True, False])
def test_fast_decode_clips_are_cavlc_without_deblocking(videos, tmp_path, fast_decode):
    """``--fast-decode`` (the default) is x264's fastdecode tune: CAVLC instead of CABAC and no
    in-loop deblocking, the two costs the trainer's loader pays on every frame of every epoch."""
    clip = run_cpu_stages(videos["h264_long"], fps=3, fast_decode=fast_decode, crf=30)
    assert clip.ok, clip.error
    headers = h264_headers(clip.mp4, tmp_path)
    cabac, no_deblock = (0, 1) if fast_decode else (1, 0)
    assert headers == {
        "entropy_coding_mode_flag": {cabac},
        "disable_deblocking_filter_idc": {no_deblock},
    }


def test_crf_trades_clip_bytes_for_quality(videos):
    small = run_cpu_stages(videos["h264_long"], fps=3, crf=40)
    large = run_cpu_stages(videos["h264_long"], fps=3, crf=18)
    assert small.ok and large.ok
    assert small.clip_info["bytes"] < large.clip_info["bytes"]


def test_anamorphic_video_becomes_a_square_pixel_clip_and_frame(tmp_path):
    """A 426x240 picture stored squeezed into 320x240 with a 4:3 sample aspect ratio, as DVDs
    and some camcorders store 16:9: the clip and its JPEG come out 426x240 with square pixels,
    the picture a player shows, not the squeezed one every reader would otherwise take."""
    every_frame_a_keyframe = ("-c:v", "libx264", "-g", "1", "-pix_fmt", "yuv420p")
    square = make_video(
        tmp_path / "square.mp4", size="426x240", rate=10, seconds=2, codec=every_frame_a_keyframe
    )
    squeezed = make_video(
        tmp_path / "dvd.mp4",
        size="426x240",
        rate=10,
        seconds=2,
        codec=("-vf", "scale=320:240,setsar=4/3", *every_frame_a_keyframe),
    )
    clip = run_cpu_stages(squeezed, frame_short_side=None)
    assert clip.ok, clip.error
    assert clip.info.sar == pytest.approx(4 / 3) and clip.clip_info["mode"] == "re-encode"
    with av.open(io.BytesIO(clip.mp4)) as c:
        stream = c.streams.video[0]
        assert (stream.width, stream.height, stream.sample_aspect_ratio) == (426, 240, 1)
    jpg = np.asarray(Image.open(io.BytesIO(clip.jpg)).convert("RGB"), dtype=float)
    shown = ffmpeg_rgb_frame(square, clip.frame_index)
    assert jpg.shape == shown.shape == (240, 426, 3)
    assert np.abs(jpg - shown).mean() < 10, "the JPEG is the picture before it was squeezed"


def test_clip_size_is_upright_square_pixels_with_the_short_side_capped():
    size = CUT.output_size
    info = VideoInfo(
        duration=1,
        fps=30,
        width=1280,
        height=720,
        video_codec="h264",
        audio_codec=None,
        format_name="mov",
    )
    assert size(info, None) is None and size(info, 720) is None  # nothing to scale
    assert size(info, 224) == (398, 224)
    assert size(dataclasses.replace(info, rotation=90), 224) == (224, 398)
    dvd = dataclasses.replace(info, width=720, height=576, sar=64 / 45)  # PAL 16:9
    assert size(dvd, None) == (1024, 576) and size(dvd, 288) == (512, 288)
    assert size(dataclasses.replace(dvd, rotation=270), 288) == (288, 512)
    assert size(dataclasses.replace(info, sar=1792 / 1791), None) is None  # a scaler's rounding


def test_fps_and_short_side_options_reencode(videos):
    clip = run_cpu_stages(videos["h264_long"], fps=3, max_short_side=60)
    assert clip.ok, clip.error
    assert (clip.clip_info["width"], clip.clip_info["height"]) == (80, 60)
    assert clip.clip_info["num_frames"] == 18  # 6 s at 3 fps


@pytest.mark.parametrize("name", ["h264_long", "mpeg4_avi", "vp9_webm"])
def test_middle_frame_is_exactly_ffmpegs_frame_n_over_2(videos, name, tmp_path):
    clip = run_cpu_stages(videos[name], start=0.4, end=2.9, frame_short_side=None)
    assert clip.ok, clip.error
    n = clip.clip_info["num_frames"]
    assert clip.frame_index == n // 2
    frame, index, count, _ = decode_middle_frame(clip.mp4)
    ours = np.concatenate(
        [np.frombuffer(p, np.uint8) for p in (frame.to_ndarray().ravel().tobytes(),)]
    )
    theirs = ffmpeg_exact_frame_yuv(clip.mp4, index, tmp_path)
    assert count == n and ours.size == theirs.size
    assert np.array_equal(ours, theirs), "pixel-exact equality with ffmpeg's decode of frame N//2"
    assert clip.frame_time == pytest.approx(index / clip.clip_info["fps"], abs=1e-3)


def test_middle_frame_is_not_the_nearest_keyframe(videos, tmp_path):
    clip = run_cpu_stages(videos["h264_long"], start=0.4, end=3.0, frame_short_side=None)
    frame, index, _, _ = decode_middle_frame(clip.mp4)  # re-encoded: the only keyframe is frame 0
    assert index == 32 and not frame.key_frame
    keyframe = ffmpeg_exact_frame_yuv(clip.mp4, 0, tmp_path)
    assert not np.array_equal(frame.to_ndarray().ravel(), keyframe)


MIDDLE_FRAME = importlib.import_module("pipelines.stages.middle_frame")
X264 = ("-c:v", "libx264", "-pix_fmt", "yuv420p")


@pytest.fixture(scope="module")
def hard_videos(tmp_path_factory) -> dict[str, Path]:
    """Clips where decode order, presentation order and keyframes are far apart."""
    d = tmp_path_factory.mktemp("hard_videos")
    src = ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", "6"]
    specs = {
        # B-pyramid: B-frames referenced by other B-frames, 3 in a row; keyframes every 40
        "bpyramid.mp4": [*X264, "-preset", "medium", "-bf", "3", "-g", "40"],
        # open GOP, keyframes at 0 and 76: frame 75 (the target, N = 150) is a leading picture of
        # the second keyframe: decoded after it, shown before it, referencing the GOP before
        "open_gop.mp4": [
            *X264,
            "-bf",
            "3",
            "-x264-params",
            "open-gop=1:keyint=76:min-keyint=76:scenecut=0",
        ],
        # variable frame rate: 2 s at 25 fps, then frames 3x further apart
        "vfr.mp4": [
            "-vf",
            "setpts='if(lt(N,50),N,50+(N-50)*3)/25/TB'",
            "-fps_mode",
            "vfr",
            *X264,
            "-bf",
            "2",
            "-g",
            "30",
        ],
        # every frame a reference, no reordering (x264 ultrafast-like), keyframes every 30
        "no_bframes.mp4": [*X264, "-bf", "0", "-g", "30"],
        # MPEG-TS: a container a seek does not land exactly in (pass 2 demuxes from the start)
        "bframes.ts": [*X264, "-bf", "2", "-g", "30", "-f", "mpegts"],
    }
    out = {}
    for name, args in specs.items():
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-y", *src, *args, str(d / name)], check=True
        )
        out[name] = d / name
    # Matroska through a pipe, with B-frames: no duration, no seek index (cues) in the container
    piped = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", *src, *X264, "-bf", "2", "-g", "30", "-f", "matroska"]
        + ["pipe:1"],
        capture_output=True,
        check=True,
    ).stdout
    (d / "piped.mkv").write_bytes(piped)
    out["piped.mkv"] = d / "piped.mkv"
    # Stream-copy cuts at a non-keyframe: the MP4 edit list hides the frames from the keyframe
    # before the cut to the cut (libavformat flags them for discarding), without and with B-frames
    for name, source in (
        ("edit_list.mp4", "no_bframes.mp4"),
        ("edit_list_bframes.mp4", "bpyramid.mp4"),
    ):
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-y", "-ss", "1.3", "-i", str(out[source])]
            + ["-t", "2.5", "-c", "copy", str(d / name)],
            check=True,
        )
        out[name] = d / name
    return out


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    ("name", "seeks"),
    [
        ("bpyramid.mp4", True),
        ("open_gop.mp4", True),
        ("vfr.mp4", True),
        ("no_bframes.mp4", True),
        ("piped.mkv", None),
        ("bframes.ts", None),
        ("edit_list.mp4", True),
        ("edit_list_bframes.mp4", True),
    ],
)
def test_middle_frame_is_exact_for_reordered_vfr_and_unseekable_clips(
    hard_videos, name, seeks, threads, tmp_path, monkeypatch
):
    """Bit-identical to ffmpeg's frame N // 2 whichever way pass 2 reaches the keyframe."""
    data = hard_videos[name].read_bytes()
    restarts = []
    from_start = MIDDLE_FRAME._from_start
    monkeypatch.setattr(
        MIDDLE_FRAME, "_from_start", lambda *a: restarts.append(1) or from_start(*a)
    )
    frame, index, count, _ = decode_middle_frame(data, threads=threads)
    with av.open(io.BytesIO(data)) as c:
        assert count == sum(1 for _ in c.decode(video=0))
    assert index == count // 2
    assert np.array_equal(frame.to_ndarray().ravel(), ffmpeg_exact_frame_yuv(data, index, tmp_path))
    if seeks is not None:  # None: either way is fine, as long as the frame is exact
        assert bool(restarts) != seeks, "pass 2 seeks in MP4 instead of demuxing again"


@pytest.mark.parametrize("name", ["edit_list.mp4", "edit_list_bframes.mp4"])
def test_middle_frame_counts_only_the_frames_an_edit_list_shows(hard_videos, name):
    """A stream-copy cut keeps the packets from the keyframe before the cut; they are not frames
    of the clip (a player, ffmpeg and the loader never show them), so N leaves them out."""
    with av.open(str(hard_videos[name])) as c:
        packets = [p for p in c.demux(video=0) if p.size]
    hidden = sum(p.is_discard for p in packets)
    assert hidden > 0, "the fixture must have an edit list that hides frames"
    _, index, count, time = decode_middle_frame(str(hard_videos[name]))
    assert count == len(packets) - hidden and index == count // 2
    assert float(time) == pytest.approx(index / 25, abs=1e-3)  # from the first shown frame


def test_middle_frame_falls_back_to_demuxing_from_the_start(hard_videos, tmp_path, monkeypatch):
    """A seek that lands past the keyframe is caught (by byte position) and never decoded from."""
    data = hard_videos["bpyramid.mp4"].read_bytes()
    seek = av.container.InputContainer.seek
    monkeypatch.setattr(  # land on the last keyframe of the clip instead
        av.container.InputContainer,
        "seek",
        lambda self, offset, **kw: seek(self, 1 << 40, **kw),
    )
    restarts = []
    from_start = MIDDLE_FRAME._from_start
    monkeypatch.setattr(
        MIDDLE_FRAME, "_from_start", lambda *a: restarts.append(1) or from_start(*a)
    )
    frame, index, _, _ = decode_middle_frame(data)
    assert restarts, "the missed seek was noticed"
    assert np.array_equal(frame.to_ndarray().ravel(), ffmpeg_exact_frame_yuv(data, index, tmp_path))


def test_open_gop_clip_puts_the_target_before_its_keyframe(hard_videos):
    """The open-GOP case above is the hard one: the last keyframe in decode order shows later."""
    with av.open(str(hard_videos["open_gop.mp4"])) as c:
        scan = MIDDLE_FRAME._scan(c, c.streams.video[0])
    target = sorted(scan.pts)[len(scan.pts) // 2]
    last_key = max(k for k in scan.keyframes if k <= scan.pts.index(target))
    assert scan.pts[last_key] > target


def test_decoder_threads_give_the_same_jpeg(videos):
    clip = run_cpu_stages(videos["h264_long"], start=0.4, end=5.0)  # one ffmpeg thread
    assert clip.ok, clip.error
    for threads in (2, 0):  # the cut's bytes depend on the encoder threads; the decode must not
        again = Clip(key="k", row=0, video=clip.video, text="t", mp4=clip.mp4)
        again = MIDDLE_FRAME.middle_frame(again, PrepareConfig(ffmpeg_threads=threads))
        assert (again.frame_index, again.jpg) == (clip.frame_index, clip.jpg)


def test_jpeg_is_downscaled_to_the_configured_short_side(videos):
    clip = run_cpu_stages(videos["h264"], frame_short_side=60)
    assert Image.open(io.BytesIO(clip.jpg)).size == (80, 60)


def test_video_whose_container_states_no_duration_still_works(videos):
    clip = run_cpu_stages(videos["no_duration"])
    assert clip.ok, clip.error
    assert clip.info.duration_source == "counted"
    assert clip.info.num_frames == 30 and clip.info.duration == pytest.approx(2.5)
    assert clip.clip_info["num_frames"] == 30 and clip.frame_index == 15


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED / "videos").is_dir(), reason="../shared/data not present")
def test_real_no_duration_webm_from_moviepy(tmp_path):
    clip = run_cpu_stages(SHARED / "videos" / "moviepy_no_duration.webm")
    assert clip.ok, clip.error
    assert clip.info.duration_source == "counted" and clip.clip_info["num_frames"] == 74
    assert clip.frame_index == 37


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED / "videos").is_dir(), reason="../shared/data not present")
def test_real_clip_middle_frame_matches_ffmpeg(tmp_path):
    clip = run_cpu_stages(
        SHARED / "videos" / "moviepy_chaplin.mp4", start=2.0, end=7.5, frame_short_side=None
    )
    assert clip.ok, clip.error
    frame, index, _, _ = decode_middle_frame(clip.mp4)
    assert np.array_equal(
        frame.to_ndarray().ravel(), ffmpeg_exact_frame_yuv(clip.mp4, index, tmp_path)
    )


@pytest.mark.parametrize(
    ("name", "start", "end", "stage", "reason"),
    [
        ("empty", None, None, "probe", "empty file (0 bytes)"),
        ("corrupt", None, None, "probe", "ffprobe failed"),
        ("audio_only", None, None, "probe", "no video stream (audio-only file)"),
        ("jpeg_as_mp4", None, None, "probe", "a still image"),
        ("h264", 10.0, 12.0, "probe", "past the video's end"),
        ("h264", 2.0, 1.0, "probe", "empty or negative span"),
    ],
)
def test_bad_inputs_fail_with_stage_and_reason(videos, name, start, end, stage, reason):
    clip = run_cpu_stages(videos[name], start=start, end=end)
    assert clip.error is not None and clip.error.stage == stage
    assert reason in clip.error.reason
    assert clip.mp4 is None and clip.jpg is None


def test_truncated_video_fails_or_yields_a_decodable_clip(videos):
    clip = run_cpu_stages(videos["truncated"])
    if clip.ok:  # ffmpeg may salvage the first frames; then they must really decode
        with av.open(io.BytesIO(clip.mp4)) as c:
            assert sum(1 for _ in c.decode(video=0)) == clip.clip_info["num_frames"]
    else:
        assert clip.error.stage in {"probe", "clip", "middle_frame"}


def test_files_with_no_video_stream_say_what_they_hold(tmp_path):
    frameless = tmp_path / "frameless.mp4"  # the mp4 muxer drops a track that got no frames
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=96x64:rate=25"]
        + ["-frames:v", "0", "-c:v", "libx264", str(frameless)],
        check=True,
    )
    srt = tmp_path / "only.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    subtitles = tmp_path / "subtitles.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(srt), str(subtitles)], check=True)
    assert run_cpu_stages(frameless).error.reason == (
        "no video stream (an empty container (mov) with no streams at all)"
    )
    assert run_cpu_stages(subtitles).error.reason == "no video stream (only subtitle streams)"


def test_missing_file_and_path_outside_input_root(videos, tmp_path):
    missing = run_cpu_stages(tmp_path / "nope.mp4")
    assert missing.error.reason.startswith("file not found")
    outside = run_cpu_stages(videos["h264"], extra={"input_root": str(tmp_path)})
    assert "outside the allowed input root" in outside.error.reason


def test_remote_addresses_are_held_to_the_input_root_too():
    from pipelines.source import check_allowed
    from pipelines.stages.base import StageError

    check_allowed("s3://bucket/videos/a.mp4", "s3://bucket/videos")
    for path, root in [
        ("http://169.254.169.254/latest/meta-data", "/data"),
        ("s3://bucket/private/a.mp4", "s3://bucket/videos"),
        ("s3://bucket/videos/../private/a.mp4", "s3://bucket/videos"),
        ("s3://bucket/videos2/a.mp4", "s3://bucket/videos"),
    ]:
        with pytest.raises(StageError, match="outside the allowed input root"):
            check_allowed(path, root)


def test_a_playlist_naming_a_file_outside_the_input_root_is_refused(tmp_path):
    """An HLS playlist named .mp4 inside the root made ffmpeg cut a clip from a file outside."""
    root, secret = tmp_path / "root", tmp_path / "secret"
    root.mkdir()
    secret.mkdir()
    segment = secret / "private.ts"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=96x64:rate=10", "-t", "2"]
        + ["-c:v", "libx264", "-f", "mpegts", str(segment)],
        check=True,
    )
    playlist = root / "innocent.mp4"
    playlist.write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{segment}\n#EXT-X-ENDLIST\n"
    )
    clip = run_cpu_stages(playlist, extra={"input_root": str(root)})
    assert clip.error is not None and clip.mp4 is None and clip.error.stage == "probe"
    assert clip.error.reason.startswith("a playlist (hls) that names other files")
    # and a playlist naming a URL cannot make ffmpeg reach the network at all
    playlist.write_text("#EXTM3U\n#EXTINF:2.0,\nhttp://127.0.0.1:9/x.ts\n#EXT-X-ENDLIST\n")
    assert run_cpu_stages(playlist).error is not None


def test_tool_timeout_fails_the_row_with_a_reason(videos):
    clip = run_cpu_stages(videos["h264_long"], start=0.5, end=5.5, tool_timeout_s=0.001)
    assert clip.error is not None and "timed out" in clip.error.reason


def test_clips_per_video_benchmark_runs_and_prints_the_ratio(tmp_path, capsys):
    """The benchmark's smoke run: tiny, so CI checks it still works, never how fast."""
    from benchmarks.clips_per_video import main

    main(["--clips", "2", "--rounds", "1", "--texts-per-clip", "2", "--work", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith("all") and "together against remembered" in lines[-1]
    assert any(line.startswith("probe") for line in lines)


def test_running_out_of_memory_uncapped_does_not_blame_the_cap_flag(tmp_path):
    """In an engine worker with no address-space cap the flag would not help: say so."""

    def greedy(clip, cfg):
        raise MemoryError

    clip = apply("middle_frame", greedy, Clip(key="k", row=0, video="v", text="t"), None)
    assert clip.error.stage == "middle_frame"
    assert clip.error.reason == (
        "ran out of memory: this input needs more than the machine could give the worker"
    )


def test_a_span_holding_a_frame_is_kept_however_close_to_the_end(tmp_path):
    """Spans in a video's last half second, and videos shorter than half a second, have frames;
    only a span starting after the last frame's time (3 s at 25 fps: 2.96 s) has none."""
    video = make_video(tmp_path / "three.mp4", seconds=3.0)
    short = make_video(tmp_path / "short.mp4", seconds=0.48)
    for start, end in [(2.5, 2.9), (2.6, 3.0), (2.96, 3.0)]:
        clip = run_cpu_stages(video, start=start, end=end)
        assert clip.ok and clip.jpg, (start, end, clip.error)
    whole = run_cpu_stages(short)
    assert whole.ok and whole.jpg, whole.error
    late = run_cpu_stages(video, start=2.98, end=3.0)
    assert late.error.stage == "probe" and "past the video's end" in late.error.reason


@pytest.mark.parametrize("name", ["t10:00:00.mp4", "pipe:0", "concat:x.mp4"])
def test_a_file_name_with_a_colon_is_the_file_not_a_protocol(videos, tmp_path, monkeypatch, name):
    """FFmpeg reads ``NAME:REST`` as a protocol: ``pipe:0`` would read the worker's stdin."""
    (tmp_path / name).write_bytes(videos["h264"].read_bytes())
    monkeypatch.chdir(tmp_path)
    whole = run_cpu_stages(name)
    span = run_cpu_stages(name, start=0.5, end=2.5)
    assert whole.ok and span.ok, (whole.error, span.error)
    assert whole.jpg and span.mp4 and span.clip_info
