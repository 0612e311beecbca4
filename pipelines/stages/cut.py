"""Stage 2, clip: cut the row's span out of the source video into an mp4 (bytes).

Stream copy when the span allows it, else a frame-accurate libx264 re-encode. A copy needs:

- the whole video, or a span that starts on a keyframe of a stream without B-frames in a
  container whose seek lands on keyframes (a copy cuts packets in decode order: with B-frames
  the clip kept the reference frame from just past the span that its last B-frames are decoded
  from, and ended on it, measured; CLIP-ViP's evaluation sampling takes the last frame);
- H.264/HEVC, no resize or frame-rate change asked for;
- a source whose edit list hides no frames (a file itself cut by stream copy at a non-keyframe
  keeps the packets from the keyframe before its cut, hidden by its MP4 edit list; the
  fragmented MP4 written here has none, so a copy would show them);
- an upright source with square pixels (no display-matrix rotation, sample aspect ratio 1):
  the re-encode turns and stretches the picture as a player does, so every clip, its middle
  frame and the trainer's frames show it as meant without each reader honouring the metadata.

Seeking: in containers whose seek lands on a keyframe at or before the target (MP4,
Matroska/WebM, AVI: they index their keyframes) ffmpeg seeks the input to the span's start. In
the others (MPEG-TS above all) a seek lands on any packet, the decoder then drops frames up to
the next keyframe and the clip would start late (measured: 0.4 s late, 40 frames of 50), so the
input seek stops ``SEEK_MARGIN_S`` short and ffmpeg decodes the rest of the way (exact when a
keyframe lies within the margin before the start).

Output is fragmented MP4 written to a pipe, so no temp file per clip; ``-fflags +bitexact`` and
no copied metadata keep the bytes reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import ffmpeg

from pipelines.config import PrepareConfig
from pipelines.ff import INPUT_PROTOCOLS, PYAV_OPTIONS, input_url, run_tool
from pipelines.record import Clip, VideoInfo
from pipelines.source import video_file
from pipelines.stages.base import StageError

COPYABLE = {"h264", "hevc"}
KEYFRAME_SEEKING = {"mov", "matroska", "avi"}  # demuxers (first name of ffprobe's format_name)
SEEK_MARGIN_S = 10.0
MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
SQUARE_TOLERANCE = 1e-3  # a scaler's own rounding leaves e.g. 1792:1791 on a 398x224 frame


def _source_allows_copy(path: str, index: int, start: float | None) -> bool:
    """What only the file itself can say about a copy, read in one open: its index flags no
    frame for discarding (an MP4 edit list hides none), and for a span (``start`` given) the
    stream has no B-frames and a keyframe at ``start`` (within 1 ms).

    ``start`` counts from the file's start time, as ffmpeg's ``-ss`` does (a file's timestamps
    need not begin at 0). Anything unreadable answers no: re-encoding is always right."""
    try:
        with av.open(input_url(path), container_options=PYAV_OPTIONS) as container:
            stream = container.streams[index]
            if any(e.is_discard for e in stream.index_entries):
                return False
            if start is None:
                return True
            if stream.codec_context.has_b_frames:
                return False
            at = start + (container.start_time or 0) / av.time_base
            container.seek(int(at / stream.time_base), stream=stream, backward=True)
            for packet in container.demux(stream):
                if packet.pts is None:
                    continue
                return packet.is_keyframe and abs(float(packet.pts * stream.time_base) - at) < 1e-3
    except (av.FFmpegError, IndexError):
        return False
    return False


def _even(x: float) -> int:
    return max(2, 2 * int(x / 2 + 0.5))  # libx264 with yuv420p needs even sides


def output_size(info: VideoInfo, max_short_side: int | None) -> tuple[int, int] | None:
    """The re-encoded clip's width and height: the picture as a player shows it (turned by the
    display matrix, stretched by the sample aspect ratio to square pixels), short side at most
    ``max_short_side``, both even. None when the stored frame already is that (no scaler).

    Square pixels because every reader downstream takes pixels as they are stored: the middle
    frame's JPEG, the captioner and the trainer's frames would otherwise see an anamorphic
    picture squeezed (a 64:51 DVD frame is 20% too narrow)."""
    width, height = info.width * info.sar, float(info.height)
    if info.rotation % 180:
        width, height = height, width
    scale = 1.0
    if max_short_side and min(width, height) > max_short_side:
        scale = max_short_side / min(width, height)
    if scale == 1.0 and abs(info.sar - 1) < SQUARE_TOLERANCE:
        return None
    return _even(width * scale), _even(height * scale)


@dataclass(frozen=True, slots=True)
class CutPlan:
    """How one row's span is cut: what ``cut_clip`` runs, and what ``cut_together`` groups."""

    path: str
    start: float
    end: float
    whole: bool
    stream_index: int
    keyframe_seeking: bool
    copy: bool
    filters: str  # the re-encode's -vf chain (unused for a copy)
    fps: float  # the clip's frame rate
    resample: bool  # re-encoded at cfg.fps


def plan_cut(clip: Clip, cfg: PrepareConfig) -> CutPlan:
    info = clip.info
    assert info is not None, "probe runs before clip"
    path = video_file(clip.video, cfg)
    start = clip.start or 0.0
    end = min(clip.end if clip.end is not None else info.duration, info.duration)
    whole = start <= 0 and end >= info.duration
    size = output_size(info, cfg.max_short_side)
    resample = cfg.fps is not None and abs(cfg.fps - info.fps) > 1e-3
    keyframe_seeking = info.format_name.split(",")[0] in KEYFRAME_SEEKING
    copy = (
        info.video_codec in COPYABLE
        and (whole or keyframe_seeking)
        and not size
        and not resample
        and not info.rotation
        and abs(info.sar - 1) < SQUARE_TOLERANCE
        and _source_allows_copy(path, info.stream_index, None if whole else start)
    )
    # Frame rate first: the scaler then sees only the frames kept (a tenth of them going from
    # 30 to 3 fps; the same output bytes, measured, the cut 12-18% faster). ffmpeg has already
    # turned a rotated picture upright before these filters.
    filters = [f"fps={cfg.fps:g}"] if resample else []
    if size:
        filters.append(f"scale={size[0]}:{size[1]}")
    filters.append("setsar=1")
    return CutPlan(
        path=path,
        start=start,
        end=end,
        whole=whole,
        stream_index=info.stream_index,
        keyframe_seeking=keyframe_seeking,
        copy=copy,
        filters=",".join(filters),
        fps=cfg.fps if resample else info.fps,
        resample=resample,
    )


def container_options() -> dict:
    """The clip's MP4, reproducible: no audio, subtitles, data or copied metadata."""
    return {
        "format": "mp4",
        "movflags": MOVFLAGS,
        "an": None,
        "sn": None,
        "dn": None,
        "map_metadata": "-1",
        "fflags": "+bitexact",
    }


def encoder_options(cfg: PrepareConfig) -> dict:
    return {
        "c:v": "libx264",
        "preset": "veryfast",
        "crf": str(cfg.crf),
        **({"tune": "fastdecode"} if cfg.fast_decode else {}),
        "pix_fmt": "yuv420p",
        "flags:v": "+bitexact",
        "threads": str(cfg.ffmpeg_threads),
    }


def cut_clip(clip: Clip, cfg: PrepareConfig) -> Clip:
    plan = plan_cut(clip, cfg)
    start, end = plan.start, plan.end
    input_args = {"threads": str(cfg.ffmpeg_threads)}
    output_args: dict = {}
    if not plan.whole:
        # Seek the input short of the start where its seek is not keyframe-exact; ffmpeg then
        # decodes and drops the frames up to the start (an output -ss counts from the input's).
        early = 0.0 if plan.keyframe_seeking or plan.copy else min(start, SEEK_MARGIN_S)
        if start - early > 0:
            input_args["ss"] = f"{start - early:.6f}"
        if early > 0:
            output_args["ss"] = f"{early:.6f}"
    output_args |= container_options() | {"map": f"0:{plan.stream_index}"}
    if not plan.whole:
        output_args["t"] = f"{end - start:.6f}"
    if plan.copy:
        output_args["c:v"] = "copy"
        # A seek may land on a keyframe before the start (Matroska: measured a whole second
        # early); ffmpeg copies those packets too unless told not to, and our fragmented MP4
        # has no edit list to hide them.
        output_args["copypriorss"] = "0"
    else:
        output_args["vf"] = plan.filters
        output_args.update(encoder_options(cfg))
    cmd = (
        ffmpeg.input(input_url(plan.path), protocol_whitelist=INPUT_PROTOCOLS, **input_args)
        .output("pipe:1", **output_args)
        .global_args("-nostdin", "-v", "error")
        .compile()
    )
    return finish(clip, plan, run_tool(cmd, cfg.limits))


def finish(clip: Clip, plan: CutPlan, data: bytes) -> Clip:
    """Keep ``data`` as the row's clip, with what was done to make it."""
    if len(data) < 100:
        raise StageError("ffmpeg produced an empty clip (no decodable frames in the span)")
    start, end = plan.start, plan.end
    clip.mp4 = data
    clip.clip_info = {
        "start": round(start, 6),
        "end": round(end, 6),
        "duration": round(end - start, 6),
        "mode": "stream-copy" if plan.copy else "re-encode",
        "bytes": len(data),
        "fps": plan.fps,
    }
    return clip
