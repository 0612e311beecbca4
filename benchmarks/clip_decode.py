"""The trainer's per-sample decode (``trainer.data.decode_frames``), ms/sample, against baselines.

The clip is what ``prepare --fps 3 --max-short-side 320`` writes for CLIP-ViP pretraining: 10 s
at 3 fps, 568x320, libx264 ``veryfast`` CRF 23 (the cut stage's settings). Per sample the loader
decodes up to the last sampled frame and turns T = 12 of them into 224 px RGB (bicubic short
side, centre crop). Measured, same clip, same process:

- ours: ``decode_frames`` (one scaler kept for the clip's frames, FFmpeg's frame threads);
- per-frame scaler: the same loop with ``frame.reformat`` (a bicubic scaler built per frame,
  what ``decode_frames`` did before);
- one decoder thread: ours with ``threads=1`` (no frame threads).

Wall ms and CPU ms (all threads) per sample: a loader runs one worker per core, so CPU time, not
wall time, bounds its samples/s per core. Run: ``python -m benchmarks.clip_decode [--n 40]``.
"""

from __future__ import annotations

import argparse
import io
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from pipelines.ff import Limits, run_tool
from trainer.data import _center_crop, _resized_size, decode_frames, sample_frame_indices

SIZE, FRAMES = 224, 12


def make_clip(path: Path) -> bytes:
    if not path.exists():
        run_tool(
            ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi"]
            + ["-i", "testsrc2=size=568x320:rate=3", "-t", "10"]
            + ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"]
            + [str(path)],
            Limits(timeout_s=300, memory_mb=0),
        )
    return path.read_bytes()


def per_frame_scaler(mp4: bytes) -> np.ndarray:
    """The baseline: ``decode_frames``' loop with a scaler built for every frame."""
    with av.open(io.BytesIO(mp4)) as container:
        count = container.streams.video[0].frames
    indices = sample_frame_indices(count, FRAMES, random.Random(0))
    wanted, got = set(indices), {}
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for n, frame in enumerate(container.decode(stream)):
            if n in wanted:
                w, h = _resized_size(frame.width, frame.height, SIZE)
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
    p.add_argument("--work", default=None, help="folder for the clip (default: a temp one)")
    args = p.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="clipvip_decode_"))
    mp4 = make_clip(work / "clip_3fps_320p.mp4")

    def ours() -> np.ndarray:
        return decode_frames(mp4, SIZE, FRAMES, random.Random(0))[0]

    assert np.array_equal(ours(), per_frame_scaler(mp4)), "the scalers must agree exactly"
    rows = {
        "ours": timed(ours, args.n),
        "per-frame scaler": timed(lambda: per_frame_scaler(mp4), args.n),
        "one decoder thread": timed(
            lambda: decode_frames(mp4, SIZE, FRAMES, random.Random(0), threads=1), args.n
        ),
    }
    print(f"loader decode, {FRAMES} frames at {SIZE} px from a 10 s 3 fps 568x320 clip, n={args.n}")
    print(f"{'variant':<20} {'wall ms':>8} {'CPU ms':>8} {'samples/s/core':>15}")
    for name, (wall, cpu) in rows.items():
        print(f"{name:<20} {wall:8.1f} {cpu:8.1f} {1000 / cpu:15.1f}")
    base_wall, base_cpu = rows["per-frame scaler"]
    print(
        f"ours vs per-frame scaler: {base_wall / rows['ours'][0]:.2f}x wall, "
        f"{base_cpu / rows['ours'][1]:.2f}x CPU"
    )
    print(
        f"one decoder thread vs ours: {rows['ours'][1] / rows['one decoder thread'][1]:.2f}x CPU "
        f"(above 1: frame threads cost CPU a loader with a worker per core would rather keep)"
    )


if __name__ == "__main__":
    main()
