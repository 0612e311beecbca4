"""Stage 3, middle frame: frame N // 2 of the clip's N frames, decoded exactly, as a JPEG.

This is the frame CLIP-ViP's loader takes for frame mode and the one OFA captions. It is found
in process with PyAV (the same FFmpeg libraries, no process start-up per clip): demux the clip's
packets once without decoding to learn N and every presentation timestamp, then decode forward
from the last keyframe at or before the target (what a backward seek does) up to the exact
timestamp. Never the nearest keyframe instead. On the way, frames no other frame references
(most B-frames) are skipped by the decoder (``skip_frame=NONREF``): they cannot change the target,
so the result is bit-identical and the decode about half the work.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
from PIL import Image

from pipelines.config import PrepareConfig
from pipelines.record import Clip
from pipelines.stages.base import StageError


def decode_middle_frame(source: bytes | str) -> tuple[av.VideoFrame, int, int, Fraction]:
    """(frame, index, N, time in seconds from the clip's first frame) of a clip's bytes or file."""
    with av.open(io.BytesIO(source) if isinstance(source, bytes) else source) as container:
        if not container.streams.video:
            raise StageError("clip has no video stream")
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.pts is not None and p.size]
        if not packets:
            raise StageError("clip has no video frames")
        pts = sorted(p.pts for p in packets)
        index = len(pts) // 2
        target = pts[index]
        at = next(i for i, p in enumerate(packets) if p.pts == target)  # decode order
        keyframes = [i for i in range(at + 1) if packets[i].is_keyframe]
        if not keyframes:
            raise StageError("no keyframe before the middle frame (clip does not start decodable)")
        codec = stream.codec_context
        codec.skip_frame = "NONREF"
        for i in range(keyframes[-1], len(packets) + 1):
            if i == at:
                codec.skip_frame = "DEFAULT"
            for frame in codec.decode(packets[i] if i < len(packets) else None):
                if frame.pts == target:
                    return frame, index, len(pts), (target - pts[0]) * stream.time_base
    raise StageError(f"could not decode frame {index} (pts {target}) of the clip")


def resize_short_side(image: Image.Image, short_side: int | None) -> Image.Image:
    """Downscale (never upscale) so the short side is ``short_side``; bicubic."""
    if not short_side or min(image.size) <= short_side:
        return image
    w, h = image.size
    scale = short_side / min(w, h)
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)


def middle_frame(clip: Clip, cfg: PrepareConfig) -> Clip:
    assert clip.mp4 is not None, "clip runs before middle_frame"
    try:
        frame, index, n, t = decode_middle_frame(clip.mp4)
    except av.FFmpegError as exc:
        raise StageError(f"cannot decode the clip: {exc}") from exc
    image = resize_short_side(frame.to_image(), cfg.frame_short_side)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=cfg.jpeg_quality)
    clip.jpg = buf.getvalue()
    clip.frame_index = index
    clip.frame_time = round(float(t), 6)
    clip.clip_info.update({"num_frames": n, "width": frame.width, "height": frame.height})
    return clip
