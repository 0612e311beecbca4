"""Many clips from one video: the CPU stages per clip, probe remembered per file vs run per row.

HD-VILA-100M cuts ~30 clips from each video, and a task's rows come in manifest order, so a
worker meets the same video row after row. ``probe`` remembers what ffprobe said about a file
(path, size, mtime); the baseline forgets it before every row, as the stage did before. The
clips are cut at CLIP-ViP's pretraining settings (``--fps 3 --max-short-side 224``), where the
cut itself is cheap and a probe is a visible share. Both run interleaved, in one process, on one
720p H.264 video (x264 ``veryfast``, B-frames, keyframe every 250 frames, as YouTube serves).
Run: ``python -m benchmarks.clips_per_video [--clips 12] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import tempfile
from pathlib import Path

from benchmarks.media import make_h264_bframes
from pipelines.config import PrepareConfig
from pipelines.record import Clip
from pipelines.stages import CPU_STAGES, apply

PROBE = importlib.import_module("pipelines.stages.probe")


def run_rows(video: Path, clips: int, remember: bool) -> dict[str, float]:
    """Seconds per stage, summed over ``clips`` 5 s spans of ``video``."""
    cfg = PrepareConfig(fps=3, max_short_side=224)
    totals: dict[str, float] = {}
    PROBE._KNOWN.clear()
    for i in range(clips):
        if not remember:
            PROBE._KNOWN.clear()
        clip = Clip(key=f"k{i}", row=i, video=str(video), start=1.0 + 5 * i, end=6.0 + 5 * i)
        for name, stage in CPU_STAGES:
            apply(name, stage, clip, cfg)
        assert clip.ok, clip.error
        for name, seconds in clip.timings.items():
            totals[name] = totals.get(name, 0.0) + seconds
    return totals


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=12, help="5 s clips cut from the video")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of each")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "clipvip-bench")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    video = make_h264_bframes(args.work / f"youtube_like_720p_{args.clips}.mp4", 5 * args.clips + 2)
    runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    run_rows(video, 1, True)  # warm the page cache and imports
    for _ in range(args.rounds):
        for remember in (False, True):
            runs[remember].append(run_rows(video, args.clips, remember))
    stages = list(runs[True][0])

    def ms(remember: bool, stage: str) -> float:
        return statistics.median(r[stage] for r in runs[remember]) / args.clips * 1000

    print(f"{args.clips} clips of 5 s from one 720p video, ms per clip (median of {args.rounds}):")
    print(f"{'stage':<14}{'probe per row':>14}{'remembered':>12}")
    for stage in stages:
        print(f"{stage:<14}{ms(False, stage):>14.1f}{ms(True, stage):>12.1f}")
    before, after = (sum(ms(r, s) for s in stages) for r in (False, True))
    print(f"{'all':<14}{before:>14.1f}{after:>12.1f}   {before / after:.2f}x clips/s")


if __name__ == "__main__":
    main()
