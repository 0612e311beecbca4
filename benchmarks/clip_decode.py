"""The trainer's per-sample decode (``trainer.data.decode_frames``), ms/sample, against baselines.

The clips are what ``prepare --fps 3 --max-short-side 320`` writes for CLIP-ViP pretraining,
cut by the pipeline's own clip stage from a 720p H.264 source (``--source``: a real video, or
ffmpeg's ``testsrc2`` when none is given): 10 s at 3 fps, short side 320, libx264 ``veryfast``
CRF 23, once with ``--fast-decode`` (the default: x264's fastdecode tune, CAVLC and no
deblocking) and once without. Per sample the loader decodes up to the last sampled frame and
turns T = 12 of them into 224 px RGB (bicubic, squashed to a square: the default). Measured, same process:

- ours: ``decode_frames`` (one scaler kept for the clip's frames, FFmpeg's frame threads) on the
  fast-decode clip, and on the clip ``--no-fast-decode`` writes;
- per-frame scaler: the same loop with ``frame.reformat`` (a bicubic scaler built per frame,
  what ``decode_frames`` did before);
- one decoder thread: ours with ``threads=1`` (no frame threads).

Wall ms and CPU ms (all threads) per sample: a loader runs one worker per core, so CPU time, not
wall time, bounds its samples/s per core.
Run: ``python -m benchmarks.clip_decode [--n 40] [--source VIDEO]``.
"""

from __future__ import annotations

import argparse
import io
import random
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from benchmarks.media import make_h264_bframes
from benchmarks.scratch import scratch_folder
from pipelines.config import PrepareConfig
from pipelines.record import Clip
from pipelines.stages import CPU_STAGES, apply
from trainer.data import (
    _center_crop,
    _resized_size,
    decode_frames,
    sample_frame_indices,
    shown_frames,
)

SIZE, FRAMES = 224, 12


def make_clip(source: Path, fast_decode: bool) -> bytes:
    """The first 10 s of ``source`` (all of it if shorter) as prepare cuts them."""
    clip = Clip(key="bench", row=0, video=str(source), start=0.0, end=10.0)
    cfg = PrepareConfig(fps=3, max_short_side=320, fast_decode=fast_decode)
    for name, stage in CPU_STAGES[:2]:  # probe, clip
        apply(name, stage, clip, cfg)
    assert clip.mp4 is not None, clip.error
    return clip.mp4


def per_frame_scaler(mp4: bytes) -> np.ndarray:
    """The baseline: ``decode_frames``' loop with a scaler built for every frame."""
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        count = shown_frames(container, stream)
    indices = sample_frame_indices(count, FRAMES, random.Random(0))
    wanted, got = set(indices), {}
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for n, frame in enumerate(container.decode(stream)):
            if n in wanted:
                w, h = _resized_size(frame.width, frame.height, SIZE, "squash")
                rgb = frame.reformat(width=w, height=h, format="rgb24", interpolation="BICUBIC")
                got[n] = _center_crop(rgb.to_ndarray(), SIZE)
            if n >= max(wanted):
                break
    return np.stack([got[i] for i in indices])


def timed(fn: Callable[[], object], n: int) -> tuple[float, float]:
    fn()  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return 1000 * (time.perf_counter() - wall) / n, 1000 * (time.process_time() - cpu) / n


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=40, help="samples per variant (default: 40)")
    p.add_argument("--work", default=None, help="folder for the source (default: a temp one)")
    p.add_argument("--source", type=Path, default=None, help="a video to cut the clips from")
    args = p.parse_args(argv)
    with scratch_folder(args.work, "clipvip_decode_") as work:
        source = args.source or make_h264_bframes(work / "testsrc2_720p_10s.mp4", 10)
        mp4, slow_mp4 = make_clip(source, fast_decode=True), make_clip(source, fast_decode=False)

        def ours(clip: bytes = mp4, threads: int = 0) -> np.ndarray:
            return decode_frames(clip, SIZE, FRAMES, random.Random(0), threads=threads)[0]

        assert np.array_equal(ours(), per_frame_scaler(mp4)), "the scalers must agree exactly"
        rows = {
            "ours": timed(ours, args.n),
            "ours, no fastdecode": timed(lambda: ours(slow_mp4), args.n),
            "per-frame scaler": timed(lambda: per_frame_scaler(mp4), args.n),
            "one decoder thread": timed(lambda: ours(threads=1), args.n),
        }
        with av.open(io.BytesIO(mp4)) as container:
            frames = list(container.decode(video=0))
            shape = f"{len(frames)} frames at {frames[0].width}x{frames[0].height}"
        print(f"loader decode, {FRAMES} of {shape} to {SIZE} px; source {source.name}; n={args.n}")
        print(f"{'variant':<20} {'wall ms':>8} {'CPU ms':>8} {'samples/s/core':>15}")
        for name, (wall, cpu) in rows.items():
            print(f"{name:<20} {wall:8.1f} {cpu:8.1f} {1000 / cpu:15.1f}")
        base_wall, base_cpu = rows["per-frame scaler"]
        print(
            f"ours vs per-frame scaler: {base_wall / rows['ours'][0]:.2f}x wall, "
            f"{base_cpu / rows['ours'][1]:.2f}x CPU"
        )
        slow_wall, slow_cpu = rows["ours, no fastdecode"]
        print(
            f"fast-decode clip vs --no-fast-decode clip: {slow_wall / rows['ours'][0]:.2f}x wall, "
            f"{slow_cpu / rows['ours'][1]:.2f}x CPU; clip bytes {len(mp4):,} vs {len(slow_mp4):,} "
            f"({len(mp4) / len(slow_mp4):.2f}x)"
        )
        print(
            f"one decoder thread vs ours: {rows['ours'][1] / rows['one decoder thread'][1]:.2f}x CPU "
            f"(above 1: frame threads cost CPU a loader with a worker per core would rather keep)"
        )


if __name__ == "__main__":
    main()
