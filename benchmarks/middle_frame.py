"""Middle-frame extraction, clips/s: in-process exact seek (ours) vs two ffmpeg-CLI baselines.

(a) naive full decode: ``ffmpeg -i F -vf select=eq(n\\,K)`` decodes every frame of the clip;
(b) ``ffprobe`` for the duration, then ``ffmpeg -ss MID -i F -frames:v 1`` (two processes per clip,
    and a time-based seek, which is not even guaranteed to be frame N // 2).
All three write a JPEG of the frame. Each is measured twice, like with like: every decoder on one
thread (what the pipeline runs: one clip per worker process, ``PrepareConfig.ffmpeg_threads`` = 1),
then every decoder on FFmpeg's default threads (the ffmpeg CLI's default; ours with ``threads=0``).
Run: ``python -m benchmarks.middle_frame [--quick] [--bframes] [--threads 1|auto|both]``.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.media import make_h264, make_h264_bframes
from pipelines.config import PrepareConfig
from pipelines.stages.middle_frame import decode_middle_frame


def threads_args(threads: int | None) -> list[str]:
    """ffmpeg CLI options for ``threads`` decoder/filter/encoder threads; None: its defaults."""
    return [] if threads is None else ["-threads", str(threads), "-filter_threads", str(threads)]


def ours(path: Path, threads: int) -> None:
    """The stage's work on a file, like the baselines: exact frame N // 2, then a JPEG."""
    frame, _, _, _ = decode_middle_frame(str(path), threads=threads)
    buf = io.BytesIO()
    frame.to_image().save(buf, format="JPEG", quality=PrepareConfig().jpeg_quality)


def naive_full_decode(path: Path, index: int, threads: int | None) -> None:
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            *threads_args(threads)[:2],
            "-i",
            str(path),
            "-vf",
            rf"select=eq(n\,{index})",
            "-fps_mode",
            "passthrough",
            *threads_args(threads),
            "-f",
            "image2",
            "-c:v",
            "mjpeg",
            "-y",
            "/dev/null",
        ],
        check=True,
    )


def probe_then_seek(path: Path, threads: int | None) -> None:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    mid = float(out.strip()) / 2
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-ss",
            f"{mid:.3f}",
            *threads_args(threads)[:2],
            "-i",
            str(path),
            "-frames:v",
            "1",
            *threads_args(threads),
            "-f",
            "image2",
            "-c:v",
            "mjpeg",
            "-y",
            "/dev/null",
        ],
        check=True,
    )


def rate(fn, repeats: int) -> float:
    fn()  # warm the page cache and the libraries
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return repeats / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="30 s instead of 120 s long clips, fewer repeats"
    )
    parser.add_argument(
        "--bframes",
        action="store_true",
        help="also a long clip with B-frames (x264 veryfast; the others are x264 ultrafast)",
    )
    parser.add_argument(
        "--threads",
        choices=["1", "auto", "both"],
        default="both",
        help="1: every decoder on one thread; auto: FFmpeg's default threads (default: both)",
    )
    parser.add_argument(
        "--work", default=str(Path(tempfile.gettempdir()) / "clipvip-bench"), help="cache folder"
    )
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    long_s = 30 if args.quick else 120
    cases = [
        ("720p H.264 10 s", make_h264(work / "720p_10s.mp4", 10)),
        (f"720p H.264 {long_s} s", make_h264(work / f"720p_{long_s}s.mp4", long_s)),
    ]
    if args.bframes:
        path = make_h264_bframes(work / f"720p_{long_s}s_bframes.mp4", long_s)
        cases.append((f"720p H.264 {long_s} s B", path))
    modes = {"1": [(1, 1)], "auto": [(0, None)], "both": [(1, 1), (0, None)]}[args.threads]
    reps = 3 if args.quick else 5
    for ours_threads, cli_threads in modes:
        label = (
            "1 thread each" if cli_threads else f"FFmpeg's default threads ({os.cpu_count()} cores)"
        )
        print(f"\n{label}")
        print(
            f"{'clip':<24}{'ours':>8}{'(a) full':>11}{'(b) probe+seek':>16}{'vs (a)':>9}"
            f"{'vs (b)':>9}   (clips/s)"
        )
        for name, path in cases:
            _, index, n, _ = decode_middle_frame(str(path))
            r_ours = rate(lambda p=path, t=ours_threads: ours(p, t), reps * 2)
            r_a = rate(
                lambda p=path, i=index, t=cli_threads: naive_full_decode(p, i, t), max(1, reps // 2)
            )
            r_b = rate(lambda p=path, t=cli_threads: probe_then_seek(p, t), reps * 2)
            print(
                f"{name:<24}{r_ours:>8.2f}{r_a:>11.2f}{r_b:>16.2f}{r_ours / r_a:>8.1f}x"
                f"{r_ours / r_b:>8.1f}x   frame {index} of {n}"
            )


if __name__ == "__main__":
    main()
