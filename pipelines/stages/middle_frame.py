"""Stage 3, middle frame: frame N // 2 of the clip's N frames, decoded exactly, as a JPEG.

This is the frame CLIP-ViP's loader takes for frame mode and the one OFA captions. It is found
in process with PyAV (the same FFmpeg libraries, no process start-up per clip), in two passes:

1. demux every packet once without decoding, keeping only its timestamp, byte position and
   keyframe and discard flags (never the packet: holding a long clip's packets costs more than
   reading them), to learn N and the presentation timestamp of frame N // 2 exactly. N counts
   the frames a player shows: an MP4 edit list (what a stream-copy cut at a non-keyframe
   writes) hides the frames before its start, which libavformat flags for discarding; they are
   decoded as references but are not frames of the clip (ffmpeg's decode skips them too);
2. seek back to the last keyframe at or before the target (in decode order, and not after it in
   presentation order, so an open GOP's leading pictures get their references) and decode
   forward to the exact timestamp. Never the nearest keyframe instead.

The seek is checked packet by packet against pass 1 (same positions, same timestamps, in the same
order); where a container cannot seek to that packet, pass 2 demuxes again from the start instead.
On the way, frames no other frame references (most B-frames) are skipped by the decoder
(``skip_frame=NONREF``): they cannot change the target, so the result is bit-identical and the
decode less work. The decoder uses ``threads`` threads (the pipeline passes
``PrepareConfig.ffmpeg_threads``, 1 by default: one clip per worker process, one core each);
FFmpeg's threaded decoders give the same pixels as a single thread.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import av
from PIL import Image

from pipelines.config import PrepareConfig
from pipelines.ff import PYAV_OPTIONS, input_url
from pipelines.record import Clip
from pipelines.stages.base import StageError


@dataclass
class _Scan:
    """Pass 1: per decodable packet, in decode order (packets without pts or data are left out)."""

    pts: list[int] = field(default_factory=list)
    pos: list[int] = field(default_factory=list)
    keyframes: list[int] = field(default_factory=list)
    hidden: set[int] = field(default_factory=set)  # flagged for discarding: not shown

    def shown(self) -> list[int]:
        """Presentation timestamps of the frames a player shows, in presentation order."""
        return sorted(p for i, p in enumerate(self.pts) if i not in self.hidden)


class _SeekMissed(Exception):
    """The seek did not land on the expected packets; demux from the start instead."""


def _decodable(packets: Iterator[av.Packet]) -> Iterator[av.Packet]:
    return (p for p in packets if p.pts is not None and p.size)


def _scan(container: av.container.InputContainer, stream: av.VideoStream) -> _Scan:
    scan = _Scan()
    for i, p in enumerate(_decodable(container.demux(stream))):
        scan.pts.append(p.pts)
        scan.pos.append(p.pos)
        if p.is_keyframe:
            scan.keyframes.append(i)
        if p.is_discard:
            scan.hidden.add(i)
    return scan


def _after_seek(
    container: av.container.InputContainer, stream: av.VideoStream, scan: _Scan, key: int
) -> Iterator[tuple[int, av.Packet]]:
    """(decode index, packet) from packet ``key`` on, reached by a seek; checked against pass 1."""
    positions = {pos: i for i, pos in enumerate(scan.pos)}
    if min(scan.pos) < 0 or len(positions) != len(scan.pos):
        raise _SeekMissed  # no byte positions to check the landing against
    container.seek(scan.pts[key], stream=stream, backward=True)
    expected = None
    for p in _decodable(container.demux(stream)):
        i = positions.get(p.pos)
        if expected is None:  # still looking for the keyframe
            if i is None or i > key:
                raise _SeekMissed
            if i < key:
                continue
            expected = key
        if i != expected or p.pts != scan.pts[i]:
            raise _SeekMissed
        yield i, p
        expected += 1
    if expected is None:
        raise _SeekMissed


def _from_start(
    container: av.container.InputContainer, stream: av.VideoStream, scan: _Scan, key: int
) -> Iterator[tuple[int, av.Packet]]:
    """(decode index, packet) from packet ``key`` on, demuxing a fresh container from the start."""
    for i, p in enumerate(_decodable(container.demux(stream))):
        if i >= key:
            if i >= len(scan.pts) or p.pts != scan.pts[i]:
                raise StageError("the clip's packets differ between two demuxes")
            yield i, p


def _open(source: bytes | str) -> av.container.InputContainer:
    return av.open(
        io.BytesIO(source) if isinstance(source, bytes) else input_url(source),
        container_options=PYAV_OPTIONS,
    )


def _decode(
    codec: av.VideoCodecContext, packets: Iterator[tuple[int, av.Packet]], at: int, target: int
) -> av.VideoFrame | None:
    codec.skip_frame = "NONREF"
    for i, packet in packets:
        if i == at:
            codec.skip_frame = "DEFAULT"
        for frame in codec.decode(packet):
            if frame.pts == target:
                return frame
    for frame in codec.decode(None):  # drain: the target may still sit in the reorder buffer
        if frame.pts == target:
            return frame
    return None


def _set_threads(codec: av.VideoCodecContext, threads: int) -> None:
    if threads == 1:
        codec.thread_count = 1
    else:  # 0: FFmpeg's choice of count, like the ffmpeg CLI
        codec.thread_type = "AUTO"  # frame and slice threads
        codec.thread_count = max(0, threads)


def decode_middle_frame(
    source: bytes | str, threads: int = 1
) -> tuple[av.VideoFrame, int, int, Fraction]:
    """(frame, index, N, time in seconds from the clip's first frame) of a clip's bytes or file.

    ``threads``: decoder threads, 0 for FFmpeg's choice. The frame is the same for any value.
    """
    with _open(source) as container:
        if not container.streams.video:
            raise StageError("clip has no video stream")
        stream = container.streams.video[0]
        scan = _scan(container, stream)
        order = scan.shown()
        if not order:
            raise StageError("clip has no video frames")
        index = len(order) // 2
        target = order[index]
        at = next(i for i, p in enumerate(scan.pts) if p == target and i not in scan.hidden)
        starts = [k for k in scan.keyframes if k <= at]
        if not starts:
            raise StageError("no keyframe before the middle frame (clip does not start decodable)")
        # An open GOP's leading pictures come after their keyframe in decode order but before it
        # on screen, and reference the GOP before: start there for them.
        key = next((k for k in reversed(starts) if scan.pts[k] <= target), starts[0])
        result = (index, len(order), (target - order[0]) * stream.time_base)
        codec = stream.codec_context
        _set_threads(codec, threads)
        try:
            frame = _decode(codec, _after_seek(container, stream, scan, key), at, target)
        except _SeekMissed:
            frame = None
        else:
            if frame is not None:
                return frame, *result
    # The seek missed (or found nothing): a fresh decoder, demuxing from the start.
    with _open(source) as container:
        stream = container.streams.video[0]
        _set_threads(stream.codec_context, threads)
        frame = _decode(stream.codec_context, _from_start(container, stream, scan, key), at, target)
    if frame is None:
        raise StageError(f"could not decode frame {index} (pts {target}) of the clip")
    return frame, *result


def resize_short_side(image: Image.Image, short_side: int | None) -> Image.Image:
    """Downscale (never upscale) so the short side is ``short_side``; bicubic."""
    if not short_side or min(image.size) <= short_side:
        return image
    w, h = image.size
    scale = short_side / min(w, h)
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)


_QUARTER_TURNS = {
    1: Image.Transpose.ROTATE_90,
    2: Image.Transpose.ROTATE_180,
    3: Image.Transpose.ROTATE_270,
}  # counterclockwise, as the display matrix counts


def upright(frame: av.VideoFrame) -> Image.Image:
    """The frame as a player shows it: turned by its display matrix, if it has one (the clip
    stage stores clips upright, so in the pipeline this is the frame as decoded)."""
    image = frame.to_image()
    turns = round(frame.rotation / 90) % 4  # counterclockwise quarter turns
    return image.transpose(_QUARTER_TURNS[turns]) if turns else image


def middle_frame(clip: Clip, cfg: PrepareConfig) -> Clip:
    assert clip.mp4 is not None, "clip runs before middle_frame"
    try:
        frame, index, n, t = decode_middle_frame(clip.mp4, threads=cfg.ffmpeg_threads)
    except av.FFmpegError as exc:
        raise StageError(f"cannot decode the clip: {exc}") from exc
    shown = upright(frame)
    image = resize_short_side(shown, cfg.frame_short_side)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=cfg.jpeg_quality)
    clip.jpg = buf.getvalue()
    clip.frame_index = index
    clip.frame_time = round(float(t), 6)
    clip.clip_info.update({"num_frames": n, "width": shown.width, "height": shown.height})
    return clip
