"""Stage 1, probe: what the source video is (ffprobe), and whether the row's span fits in it.

What ffprobe says about a file is remembered per process, keyed by the file's path, size and
modification time: a task's rows usually cut several clips from one video (HD-VILA has ~30 per
video), and an ffprobe run costs ~70 ms, a tenth of cutting a 5 s 720p clip at CLIP-ViP's 3 fps
(``benchmarks.clips_per_video``). A file that fails is remembered too, so a broken video's 30
rows do not each wait out the timeout.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from fractions import Fraction

from pipelines.config import PrepareConfig
from pipelines.ff import INPUT_PROTOCOLS, ToolError, ffprobe_json, input_url, run_tool
from pipelines.record import Clip, VideoInfo
from pipelines.source import check_allowed, video_file
from pipelines.stages.base import StageError

MAX_SIDE = 16384
STILL_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe"}
# Codecs of single pictures that also make moving video (MJPEG, PNG in Matroska, animated GIF):
# one frame is a still, more a video.
IMAGE_CODECS = {"mjpeg", "png", "webp", "bmp", "gif"}
# Demuxers whose input names other files: the clip would be cut from those, not from the row's
# file (past ``--input-root``, or whatever a hostile manifest points at).
PLAYLIST_FORMATS = {"hls", "applehttp", "dash", "webm_dash_manifest", "concat"}
SPAN_TOLERANCE_S = 0.5  # spans that end this little past the video are clamped


def _rate(text: str | None) -> float:
    try:
        value = Fraction(text or "0")
    except (ValueError, ZeroDivisionError):
        return 0.0
    return float(value) if value > 0 else 0.0


def _packet_counts(path: str, cfg: PrepareConfig) -> dict[int, int]:
    """Packets per stream (by ffprobe's stream index) in one ffprobe run that demuxes the whole
    file, nothing decoded: the frame count of a stream whose file states no duration (live
    WebM), or no frame count (Matroska states none for MJPEG or PNG video)."""
    out = run_tool(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_packets",
            "-show_entries",
            "stream=index,nb_read_packets",
            "-of",
            "csv=p=0",
            "-protocol_whitelist",
            INPUT_PROTOCOLS,
            input_url(path),
        ],
        cfg.limits,
    )
    counts = {}
    for line in out.decode("utf-8", "replace").splitlines():
        index, _, packets = line.strip().partition(",")
        if index.isdigit() and packets.isdigit():
            counts[int(index)] = int(packets)
    return counts


def _count_image_packets(video: list[dict], counts: Callable[[], dict[int, int]]) -> None:
    """Where a picture codec's stream states no frame count, put its packet count in
    ``nb_frames``. Before, a missing count read as 1, and MJPEG or PNG video in Matroska was
    refused as a still image."""
    for s in video:
        if s.get("codec_name") in IMAGE_CODECS and not str(s.get("nb_frames", "")).isdigit():
            s["nb_frames"] = str(counts().get(int(s.get("index", -1)), 0))


def _still(stream: dict) -> bool:
    """A single picture: a picture codec's stream of at most one frame (``nb_frames`` is known
    by then: ``_count_image_packets``)."""
    return stream.get("codec_name") in IMAGE_CODECS and int(stream.get("nb_frames") or 0) <= 1


def _rotation(stream: dict) -> int:
    """Degrees (0, 90, 180 or 270, counterclockwise) a player turns the picture: phone videos
    are stored sideways with a display matrix saying so (ffprobe's sign: 90 = a quarter turn
    counterclockwise)."""
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            try:
                return round(float(side["rotation"]) / 90) % 4 * 90
            except (TypeError, ValueError):
                return 0
    return 0


def _sample_aspect(stream: dict) -> float:
    """A stored pixel's width over its height; 1 where the file says nothing (``0:1``, absent).
    Anamorphic video (DVD, some broadcast and camcorder files) stores 16:9 pictures in 4:3 or
    narrower frames and relies on the player to stretch them."""
    try:
        num, den = (int(x) for x in str(stream.get("sample_aspect_ratio", "")).split(":"))
    except ValueError:
        return 1.0
    return round(num / den, 6) if num > 0 and den > 0 else 1.0


_KNOWN: OrderedDict[tuple, VideoInfo | str] = OrderedDict()  # file -> its info or why it failed
_KNOWN_SIZE = 16
_KNOWN_LOCK = threading.Lock()  # worker threads share it; get/set/evict/move must not interleave


def probe(clip: Clip, cfg: PrepareConfig) -> Clip:
    check_allowed(clip.video, cfg.extra.get("input_root"))
    path = video_file(clip.video, cfg)
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns, cfg.limits)
    with _KNOWN_LOCK:
        known = _KNOWN.get(key)
        if known is not None:
            _KNOWN.move_to_end(key)
    if known is None:  # probed outside the lock: two threads may both probe one file, harmlessly
        try:
            known = _video_info(path, cfg)
        except (StageError, ToolError) as exc:
            known = str(exc)
        with _KNOWN_LOCK:
            _KNOWN[key] = known
            _KNOWN.move_to_end(key)
            while len(_KNOWN) > _KNOWN_SIZE:
                _KNOWN.popitem(last=False)
    if isinstance(known, str):
        raise StageError(known)
    clip.info = dataclasses.replace(known)  # its own copy: clips never share a mutable record
    _check_span(clip, known.duration, known.fps)
    return clip


def _what_is_there(streams: list[dict], audio: list[dict], format_name: str) -> str:
    """What a file without a video stream holds, for its row's reason."""
    if audio:
        return "audio-only file"
    if not streams:  # e.g. an mp4 written with no frames: its muxer drops the empty track
        return f"an empty container ({format_name.split(',')[0]}) with no streams at all"
    kinds = sorted({str(s.get("codec_type") or "unknown") for s in streams})
    return f"only {', '.join(kinds)} streams"


def _video_info(path: str, cfg: PrepareConfig) -> VideoInfo:
    meta = ffprobe_json(path, cfg.limits)
    streams = meta.get("streams", [])
    fmt = meta.get("format", {})
    format_name = fmt.get("format_name", "")
    if PLAYLIST_FORMATS & set(format_name.split(",")):
        raise StageError(
            f"a playlist ({format_name}) that names other files, not a video: refused, its media "
            "would come from outside this row's file"
        )
    video = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
    ]
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    if not video:
        raise StageError(f"no video stream ({_what_is_there(streams, audio, format_name)})")
    # The video: a stream that is not a still (a cover image can be a track of its own, listed
    # first), the largest picture among those, as ffmpeg's own default stream choice does.
    counts = functools.cache(lambda: _packet_counts(path, cfg))  # one demux at most, if any
    _count_image_packets(video, counts)
    moving = [s for s in video if not _still(s)] or video
    vs = max(moving, key=lambda s: int(s.get("width") or 0) * int(s.get("height") or 0))
    if format_name in STILL_FORMATS or _still(vs):
        raise StageError(f"a still image ({vs.get('codec_name')} in {format_name}), not a video")
    width, height = int(vs.get("width") or 0), int(vs.get("height") or 0)
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise StageError(f"unusable frame size {width}x{height} (limit {MAX_SIDE} a side)")
    fps = _rate(vs.get("avg_frame_rate")) or _rate(vs.get("r_frame_rate"))
    duration = float(fmt.get("duration") or 0) or float(vs.get("duration") or 0)
    source, num_frames = ("container" if fmt.get("duration") else "stream"), None
    if vs.get("nb_frames", "").isdigit():
        num_frames = int(vs["nb_frames"])
    if duration <= 0:
        # the chosen stream's count, not v:0's: a cover image listed first counted its one
        # frame, and a 4 s video became 0.04 s
        num_frames = counts().get(int(vs.get("index", 0)), 0)
        if fps <= 0 or num_frames <= 0:
            raise StageError("video has no duration and no countable frames")
        duration, source = num_frames / fps, "counted"
    if fps <= 0:
        raise StageError("video states no frame rate")
    return VideoInfo(
        duration=round(duration, 6),
        fps=round(fps, 6),
        width=width,
        height=height,
        video_codec=vs.get("codec_name", "unknown"),
        audio_codec=audio[0].get("codec_name") if audio else None,
        format_name=format_name,
        num_frames=num_frames,
        duration_source=source,
        rotation=_rotation(vs),
        stream_index=int(vs.get("index", 0)),
        sar=_sample_aspect(vs),
    )


def _check_span(clip: Clip, duration: float, fps: float | None) -> None:
    """A span must hold a frame: start before the last frame's time, end within the video
    (``SPAN_TOLERANCE_S`` past its end is clamped: release metadata rounds spans)."""
    start = clip.start or 0.0
    end = clip.end if clip.end is not None else duration
    if start < 0 or end <= start:
        raise StageError(f"empty or negative span [{clip.start}, {clip.end}]")
    last_frame = duration - 1.0 / fps if fps and fps > 0 else duration
    if start >= duration or start > last_frame + 1e-3:
        raise StageError(f"span starts at {start:g} s, past the video's end ({duration:g} s)")
    if end > duration + SPAN_TOLERANCE_S:
        raise StageError(f"span ends at {end:g} s, past the video's end ({duration:g} s)")
