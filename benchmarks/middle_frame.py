"""Middle-frame extraction, clips/s: in-process exact seek (ours) vs two ffmpeg-CLI baselines.

(a) naive full decode: ``ffmpeg -i F -vf select=eq(n\\,K)`` decodes every frame of the clip;
(b) ``ffprobe`` for the duration, then ``ffmpeg -ss MID -i F -frames:v 1`` (two processes per clip,
    and a time-based seek, which is not even guaranteed to be frame N // 2).
All three write a JPEG of the frame. Run: ``python -m benchmarks.middle_frame [--quick]``.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.media import make_h264
from pipelines.config import PrepareConfig
from pipelines.stages.middle_frame import decode_middle_frame


def ours(path: Path) -> None:
    """The stage's work on a file, like the baselines: exact frame N // 2, then a JPEG."""
    frame, _, _, _ = decode_middle_frame(str(path))
    buf = io.BytesIO()
    frame.to_image().save(buf, format="JPEG", quality=PrepareConfig().jpeg_quality)


def naive_full_decode(path: Path, index: int) -> None:
    subprocess.run(
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
            "-f",
            "image2",
            "-c:v",
            "mjpeg",
            "-y",
            "/dev/null",
        ],
        check=True,
    )


def probe_then_seek(path: Path) -> None:
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
            "-i",
            str(path),
            "-frames:v",
            "1",
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
    print(
        f"{'clip':<22}{'ours':>10}{'(a) full':>11}{'(b) probe+seek':>16}{'vs (a)':>9}{'vs (b)':>9}   (clips/s)"
    )
    for label, path in cases:
        _, index, n, _ = decode_middle_frame(path.read_bytes())
        reps = 3 if args.quick else 5
        r_ours = rate(lambda p=path: ours(p), reps * 2)
        r_a = rate(lambda p=path, i=index: naive_full_decode(p, i), max(1, reps // 2))
        r_b = rate(lambda p=path: probe_then_seek(p), reps * 2)
        print(
            f"{label:<22}{r_ours:>10.2f}{r_a:>11.2f}{r_b:>16.2f}{r_ours / r_a:>8.1f}x{r_ours / r_b:>8.1f}x"
            f"   frame {index} of {n}"
        )


if __name__ == "__main__":
    main()
