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
input seek stops ``SEEK_MARGIN_S`` short, or short of the last keyframe before the start where
that lies further back (a packet-only scan finds it), and ffmpeg decodes the rest of the way. A
file with no index to seek by (one that states no duration) is decoded from its start.

Output is fragmented MP4 written to a pipe, so no temp file per clip; ``-fflags +bitexact`` and
no copied metadata keep the bytes reproducible.

Length: a truncated source (a download cut short) keeps the header that states its full length,
so the probe takes the span as inside the video and ffmpeg, reaching the end of the data early,
writes a shorter clip and exits 0. ``finish`` therefore measures every clip it keeps and fails
the row here, at ``clip``, when the clip falls short of the span (see ``check_length``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import av

from pipelines.config import PrepareConfig
from pipelines.ff import INPUT_PROTOCOLS, PYAV_OPTIONS, ToolError, input_url, run_tool
from pipelines.record import Clip, VideoInfo
from pipelines.source import video_file
from pipelines.stages.base import StageError
from pipelines.stages.probe import SPAN_TOLERANCE_S

COPYABLE = {"h264", "hevc"}
KEYFRAME_SEEKING = {"mov", "matroska", "avi"}  # demuxers (first name of ffprobe's format_name)
NO_PTS_FORMATS = {"avi"}  # demuxers that give packets decode timestamps only
SEEK_MARGIN_S = 10.0
SEEK_SLACK_S = 1.0  # a seek may land on a packet decoded after its keyframe (dts <= target)
MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
SQUARE_TOLERANCE = 1e-3  # a scaler's own rounding leaves e.g. 1792:1791 on a 398x224 frame
LENGTH_SLACK_S = 0.05  # timestamp rounding (Matroska counts in ms) on top of a frame each side


def _source_allows_copy(path: str, index: int, start: float | None) -> bool:
    """What only the file itself can say about a copy, read in one open: its index flags no
    frame for discarding (an MP4 edit list hides none), and for a span (``start`` given) the
    stream has no B-frames and a keyframe at ``start`` (within 1 ms).

    B-frames also rule out a whole-video copy from AVI: it stores no presentation timestamps,
    so the copy's MP4 got pts = dts and no composition offsets, its frames shown in decode
    order (measured: H.264 with ``-bf 2``).

    ``start`` counts from the file's start time, as ffmpeg's ``-ss`` does (a file's timestamps
    need not begin at 0). Anything unreadable answers no: re-encoding is always right."""
    try:
        with av.open(input_url(path), container_options=PYAV_OPTIONS) as container:
            stream = container.streams[index]
            if any(e.is_discard for e in stream.index_entries):
                return False
            reordered = bool(stream.codec_context.has_b_frames)
            if start is None:
                return not (reordered and container.format.name.split(",")[0] in NO_PTS_FORMATS)
            if reordered:
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


def encode_size(info: VideoInfo, max_short_side: int | None) -> tuple[int, int] | None:
    """The re-encode's scale: ``output_size``, else for an upright frame with an odd side the
    even sides ``_even`` rounds it to (321x241 -> 322x242: each odd side one pixel more, the
    aspect kept within a pixel), as libx264's yuv420p refuses odd sides ("Error initializing
    output stream"). Apart from ``output_size``, which says whether a copy is possible: an
    odd-sized H.264 video copied whole keeps its stored frame, the decoder's business."""
    size = output_size(info, max_short_side)
    if size is not None or not (info.width % 2 or info.height % 2):
        return size
    width, height = (info.height, info.width) if info.rotation % 180 else (info.width, info.height)
    return _even(width), _even(height)


@dataclass(frozen=True, slots=True)
class CutPlan:
    """How one row's span is cut: what ``cut_clip`` runs, and what ``cut_together`` groups."""

    path: str
    start: float
    end: float
    whole: bool
    stream_index: int
    keyframe_seeking: bool
    indexed: bool  # an input seek lands at or before its target (see plan_cut)
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
    size = encode_size(info, cfg.max_short_side)
    resample = cfg.fps is not None and abs(cfg.fps - info.fps) > 1e-3
    # A file that states no duration was written without seeking back (to a pipe, live), so
    # it has no index either (Matroska writes its Cues at the end): a seek in it found nothing
    # (a span from 1 s of a cue-less MKV came out empty, measured); it is decoded from 0.
    indexed = info.duration_source != "counted"
    keyframe_seeking = indexed and info.format_name.split(",")[0] in KEYFRAME_SEEKING
    copy = (
        info.video_codec in COPYABLE
        and (whole or keyframe_seeking)
        and not output_size(info, cfg.max_short_side)
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
        indexed=indexed,
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


def _keyframe_at_or_before(path: str, index: int, start: float) -> float | None:
    """The time of the stream's last keyframe at or before ``start`` (both counted from the
    file's start, as ``-ss`` counts), None where there is none or the file cannot say.

    Only packets are read, no frame decoded: from ``SEEK_MARGIN_S`` before the start, then
    twice as far back each time no keyframe turns up, until the file's start. In a container
    whose seek lands on any packet a seek lands at or before its target, so every keyframe
    between the landing and the start is seen."""
    try:
        with av.open(input_url(path), container_options=PYAV_OPTIONS) as container:
            stream = container.streams[index]
            origin = (container.start_time or 0) / av.time_base
            at, back = start + origin, SEEK_MARGIN_S
            while True:
                target = max(at - back, origin)
                container.seek(int(target / stream.time_base), stream=stream, backward=True)
                found = None
                for packet in container.demux(stream):
                    if packet.is_keyframe and packet.pts is not None:
                        pts = float(packet.pts * stream.time_base)
                        found = pts if pts <= at + 1e-3 else found
                    stamp = packet.dts if packet.dts is not None else packet.pts
                    if stamp is not None and float(stamp * stream.time_base) > at:
                        break  # decode order: every later keyframe shows after the start
                if found is not None:
                    return found - origin
                if target <= origin:
                    return None
                back *= 2
    except (av.FFmpegError, IndexError):
        return None


def _lead(plan: CutPlan) -> float:
    """How far before the span's start the input seek stops; ffmpeg decodes and drops the frames
    in between (an output ``-ss`` counts from the input's). 0 where the seek is keyframe-exact.

    From the file's start where it has no index to seek by (``CutPlan.indexed``). Elsewhere
    ``SEEK_MARGIN_S``, or back to the last keyframe before the start where that lies
    further back (and ``SEEK_SLACK_S`` more): the decoder drops frames up to the first
    keyframe it meets, and a clip of a TS with a 12 s GOP began up to 2 s late (measured)."""
    if plan.whole or plan.keyframe_seeking or plan.copy:
        return 0.0
    if not plan.indexed:
        return plan.start
    lead = min(plan.start, SEEK_MARGIN_S)
    if lead < plan.start:  # an input seek: is there a keyframe it reaches?
        key = _keyframe_at_or_before(plan.path, plan.stream_index, plan.start)
        if key is not None and plan.start - key > SEEK_MARGIN_S - SEEK_SLACK_S:
            lead = min(plan.start, plan.start - key + SEEK_SLACK_S)
    return lead


def _args(options: dict) -> list[str]:
    """ffmpeg's command-line words for ``options`` (None: a flag without a value)."""
    words: list[str] = []
    for key, value in options.items():
        words += [f"-{'f' if key == 'format' else key}"] + ([] if value is None else [value])
    return words


def command(plan: CutPlan, cfg: PrepareConfig) -> list[str]:
    """The ffmpeg command ``cut_clip`` runs, built by hand: ffmpeg-python hashed its nodes'
    text as UTF-8, so a file name that is not UTF-8 (Python's surrogate escapes) failed every
    cut; ``subprocess`` passes such a name on as the file system's bytes."""
    start, end = plan.start, plan.end
    input_args = {"threads": str(cfg.ffmpeg_threads)}
    output_args: dict = {}
    if not plan.whole:
        early = _lead(plan)
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
        if not plan.resample:
            # The source's own timestamps: the mp4 muxer otherwise makes ffmpeg hold a constant
            # rate, duplicating and dropping frames of a variable-rate source (a 46-frame span
            # came out 299 frames). A constant-rate source gives the same bytes either way.
            output_args["fps_mode"] = "vfr"
    head = ["ffmpeg", "-nostdin", "-v", "error", "-protocol_whitelist", INPUT_PROTOCOLS]
    return [*head, *_args(input_args), "-i", input_url(plan.path), *_args(output_args), "pipe:1"]


def cut_clip(clip: Clip, cfg: PrepareConfig) -> Clip:
    plan = plan_cut(clip, cfg)
    try:
        data = run_tool(command(plan, cfg), cfg.limits)
    except ToolError as exc:
        if "partial file" not in str(exc):  # the MP4 demuxer's words for data cut short
            raise
        raise StageError(
            f"the source's data runs out before the end of the span {plan.start:.2f}-"
            f"{plan.end:.2f} s (ffmpeg: partial file; the file states "
            f"{clip.info.duration:.2f} s: truncated file?)"
        ) from exc
    return finish(clip, plan, data)


def _boxes(data: bytes, start: int, end: int):
    """(type, payload start, box end) of the ISO BMFF boxes in ``data[start:end]``."""
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        head = 8
        if size == 1:
            size, head = struct.unpack_from(">Q", data, at + 8)[0], 16
        elif size == 0:
            size = end - at
        if size < head or at + size > end:
            raise ValueError(f"box {kind!r} runs past its parent")
        yield kind, at + head, at + size
        at += size


def _children(data: bytes, box: tuple[bytes, int, int], kind: bytes):
    return (child for child in _boxes(data, box[1], box[2]) if child[0] == kind)


def clip_seconds(data: bytes) -> float | None:
    """The length of a clip this module wrote (one track, fragmented MP4): from its first
    frame's presentation time to its last frame's end, read from the boxes alone (``mdhd``
    timescale; per fragment ``trun`` durations, else ``tfhd``'s default, else ``trex``'s, and
    ``trun``'s composition offsets). None for anything else.

    Presentation, not decode, times: a variable-rate clip with B-frames shows its last frames
    later after their decoding than its first (the gaps grow), and the sum of the durations
    (decode times) came out 0.45 s short of a 9.95 s clip. For a constant rate the two agree.

    Reading ~100 bytes per fragment costs microseconds; opening the clip with PyAV costs 1.5 ms
    for a 4 s 320x240 clip and 27 ms for a 30 s 720p one (it decodes to find the stream's
    parameters), and an ffprobe of the output would be one more process per clip. The
    middle-frame stage, which demuxes every packet anyway, keeps its public signature (fault
    injection wraps it) and could only fail the row at its own stage. Equal to PyAV's
    demuxed length on every clip of the tests and the shared sample videos (measured)."""
    timescale, default, tracks, samples = 0, 0, 0, []
    try:
        for box in _boxes(data, 0, len(data)):
            if box[0] == b"moov":
                for trak in _children(data, box, b"trak"):
                    tracks += 1
                    for mdia in _children(data, trak, b"mdia"):
                        for _, at, _ in _children(data, mdia, b"mdhd"):
                            offset = 20 if data[at] == 1 else 12  # version 1: 64-bit times
                            timescale = struct.unpack_from(">I", data, at + offset)[0]
                for mvex in _children(data, box, b"mvex"):
                    for _, at, _ in _children(data, mvex, b"trex"):
                        default = struct.unpack_from(">I", data, at + 12)[0]
            elif box[0] == b"moof":
                for traf in _children(data, box, b"traf"):
                    samples += _fragment_samples(data, traf, default)
    except (ValueError, struct.error):
        return None
    if tracks != 1 or not timescale:
        return None
    dts, first, last = 0, None, None
    for duration, offset in samples:  # decode order: each starts where the one before ended
        first = dts + offset if first is None else min(first, dts + offset)
        last = dts + offset + duration if last is None else max(last, dts + offset + duration)
        dts += duration
    return (last - first) / timescale if samples else 0.0


def _fragment_samples(
    data: bytes, traf: tuple[bytes, int, int], default: int
) -> list[tuple[int, int]]:
    """(duration, composition offset) in ticks of each sample of one fragment's track."""
    samples: list[tuple[int, int]] = []
    for kind, at, _ in _boxes(data, traf[1], traf[2]):
        flags = int.from_bytes(data[at + 1 : at + 4], "big")
        if kind == b"tfhd" and flags & 0x08:  # default-sample-duration-present
            skip = (8 if flags & 0x01 else 0) + (4 if flags & 0x02 else 0)
            default = struct.unpack_from(">I", data, at + 8 + skip)[0]
        elif kind == b"trun":
            count = struct.unpack_from(">I", data, at + 4)[0]
            first = at + 8 + (4 if flags & 0x01 else 0) + (4 if flags & 0x04 else 0)
            fields = bin(flags & 0xF00).count("1")  # duration, size, flags, time offset
            if not fields:
                samples += [(default, 0)] * count
                continue
            signed = "i" if data[at] == 1 else "I"  # version 1: signed composition offsets
            layout = "I" * (fields - 1) + (signed if flags & 0x800 else "I")
            values = struct.unpack_from(">" + layout * count, data, first)
            for k in range(count):
                row = values[k * fields : (k + 1) * fields]
                samples.append(
                    (row[0] if flags & 0x100 else default, row[-1] if flags & 0x800 else 0)
                )
    return samples


def _video_track(plan: CutPlan) -> tuple[float, float | None] | None:
    """Where the source's video track starts and says it ends, in seconds from the file's
    start (as ``-ss`` counts). The end: its own duration (MP4, an estimate in MPEG-TS), or its
    ``DURATION`` tag (Matroska, an end time as ffmpeg and mkvmerge write it for tracks from 0);
    None where it says nothing. None for a file that cannot be read.

    The start: the stated one, or the first keyframe's time where that is later. A stream
    taken up mid-GOP (an MPEG-TS cut at a byte offset, a recording joined late) begins with
    packets no decoder can show; counted as the track, they made a whole video look truncated
    by their length. Finding it demuxes up to the first keyframe, nothing decoded."""
    try:
        with av.open(input_url(plan.path), container_options=PYAV_OPTIONS) as container:
            stream = container.streams[plan.stream_index]
            origin = (container.start_time or 0) / av.time_base
            start = float((stream.start_time or 0) * stream.time_base) - origin
            end = None
            if stream.duration:
                end = start + float(stream.duration * stream.time_base)
            tag = {k.lower(): v for k, v in stream.metadata.items()}.get("duration")
            if end is None and tag:
                h, m, sec = tag.split(":")
                end = int(h) * 3600 + int(m) * 60 + float(sec) - origin
            for packet in container.demux(stream):
                if packet.is_keyframe and packet.pts is not None:
                    start = max(start, float(packet.pts * stream.time_base) - origin)
                    break
            return start, end
    except (av.FFmpegError, IndexError, ValueError):
        return None


def check_length(clip: Clip, plan: CutPlan, data: bytes) -> tuple[float, float]:
    """The span the clip ``data`` holds, to record; ``StageError`` where it falls short.

    A truncated file keeps the header that states its full length (an MP4's ``moov`` indexes
    every frame, data or not), so the probe cannot tell, and ffmpeg writes what data there is
    and exits 0: a 3-7 s span of a 10 s video cut to half its bytes came out 2 s long, and
    every later stage took it as 4 s (its middle frame the middle of what survived).

    Short by more than a frame of the clip (the ``fps`` filter rounds the end to its nearest
    frame: 0.17 s at 3 fps, measured), a frame of the source (the last frame's own duration)
    and ``LENGTH_SLACK_S`` fails the row. Only short: a clip may come out longer by rounding.
    Only then is the source opened again, for its video track's own bounds: a file whose audio
    runs past its video states the longer duration, and a whole video (or a span reaching at
    most ``SPAN_TOLERANCE_S`` past the track, as the probe allows past the file) is kept and
    recorded as the part the track covers; a span the track does not cover fails, saying so.
    """
    start, end = plan.start, plan.end
    length = clip_seconds(data)
    if length is None:  # not the fragmented MP4 cut_clip writes: nothing to measure by
        return start, end
    assert clip.info is not None
    tolerance = 1 / plan.fps + 1 / clip.info.fps + LENGTH_SLACK_S
    if length >= end - start - tolerance:
        return start, end
    track = _video_track(plan)
    stated = clip.info.duration
    span = f"the span {plan.start:.2f}-{plan.end:.2f} s"
    if track is not None:
        stated = track[1] if track[1] is not None else stated
        start, end = max(start, track[0]), min(end, stated)
        if end <= start + 1e-6 and track[0] > plan.start:
            raise StageError(
                f"{span} lies before the video's decodable part, which starts at "
                f"{track[0]:.2f} s (its first keyframe: the packets before it cannot be decoded)"
            )
    if length < end - start - tolerance:
        if clip.info.duration_source == "counted":
            said = f"{clip.info.num_frames} frames counted at {clip.info.fps:g} fps"
        else:
            said = f"the file states {stated:.2f} s"
        if not length:  # the data ends before the span starts: ffmpeg wrote only the header
            raise StageError(f"the source holds no frame of {span} ({said}: truncated file?)")
        raise StageError(
            f"the source ends at {start + length:.2f} s, inside {span} ({said}: truncated "
            f"file?); the clip would be {length:.2f} s"
        )
    if not plan.whole and (start - plan.start) + (plan.end - end) > SPAN_TOLERANCE_S:
        why = (
            f"the video's decodable part starts at {start:.2f} s"
            if start > plan.start + 1e-6
            else f"the file's {clip.info.duration:.2f} s counts another track"
        )
        raise StageError(f"the video track covers only {start:.2f}-{end:.2f} s of {span} ({why})")
    return start, end


def finish(clip: Clip, plan: CutPlan, data: bytes) -> Clip:
    """Keep ``data`` as the row's clip, with what was done to make it; ``StageError`` for an
    empty clip or one short of its span (``check_length``)."""
    if len(data) < 100:
        raise StageError("ffmpeg produced an empty clip (no decodable frames in the span)")
    start, end = check_length(clip, plan, data)
    if clip_seconds(data) == 0:  # a header, no frame, yet no shorter than the span allows
        span = f"the span {plan.start:.3f}-{plan.end:.3f} s"
        if plan.resample:  # the fps filter kept none of a span shorter than its frame
            raise StageError(
                f"no frame of {span} is kept at {plan.fps:g} fps (a span shorter than a frame "
                "at that rate may hold none: lengthen it or drop --fps)"
            )
        raise StageError(f"the source holds no frame of {span}")
    clip.mp4 = data
    asked_end = clip.end if clip.end is not None else end
    clip.clip_info = {
        "start": round(start, 6),
        "end": round(end, 6),
        "duration": round(end - start, 6),
        "mode": "stream-copy" if plan.copy else "re-encode",
        "bytes": len(data),
        "fps": plan.fps,
        # the span reached past the video (by at most SPAN_TOLERANCE_S, as release metadata
        # rounds spans): the clip holds start-end, not the whole of ``span``
        "clamped": bool(start > (clip.start or 0.0) + 1e-6 or end < asked_end - 1e-6),
    }
    return clip
