"""Many clips from one video: the CPU stages per clip, three ways.

HD-VILA-100M cuts ~30 clips from each video, and a task's rows come in manifest order, so a
worker meets the same video row after row. Measured, interleaved in one process:

- ``probe per row``: ffprobe for every row and each span cut by its own ffmpeg run (the
  pipeline before it remembered probes);
- ``remembered``: ``probe`` remembers what ffprobe said about a file (path, size, mtime), each
  span still cut alone (what a task's retry, isolated row by row, still does);
- ``together``: what a task's CPU phase does now: probe every row, then the spans of one video
  cut in one ffmpeg run (``pipelines.stages.together``; the same bytes, checked here), then the
  middle frames; rows of one span (``--texts-per-clip``, as MSR-VTT's sentences written one row
  each) share one cut and frame.

The clips are cut at CLIP-ViP's pretraining settings (``--fps 3 --max-short-side 224``) from one
720p H.264 video (x264 ``veryfast``, B-frames, keyframe every 250 frames, as YouTube serves).
Run: ``python -m benchmarks.clips_per_video [--clips 12] [--rounds 2] [--texts-per-clip 1]``.
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
from pipelines.stages import apply, cpu_stages
from pipelines.tasks import run_stages

PROBE = importlib.import_module("pipelines.stages.probe")


MODES = ("probe per row", "remembered", "together")


def run_rows(
    video: Path, clips: int, mode: str, span: float = 5.0, texts: int = 1
) -> tuple[dict[str, float], list[bytes]]:
    """Seconds per stage summed over ``clips`` back-to-back spans of ``video`` from 1 s on, each
    span ``texts`` rows in a row, and the rows' clip bytes."""
    cfg = PrepareConfig(fps=3, max_short_side=224)
    rows = [
        Clip(key=f"k{i}", row=i, video=str(video), start=1 + span * (i // texts))
        for i in range(clips * texts)
    ]
    for clip in rows:
        clip.end = (clip.start or 0.0) + span
    PROBE._KNOWN.clear()
    if mode == "together":
        run_stages(rows, cfg)  # what a task's CPU phase runs
    else:
        for clip in rows:
            if mode == "probe per row":
                PROBE._KNOWN.clear()
            for name, stage in cpu_stages(cfg):
                apply(name, stage, clip, cfg)
    assert all(clip.ok for clip in rows), [clip.error for clip in rows if not clip.ok]
    totals: dict[str, float] = {}
    for clip in rows:
        for name, seconds in clip.timings.items():
            totals[name] = totals.get(name, 0.0) + seconds
    return totals, [clip.mp4 or b"" for clip in rows]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=12, help="clips cut from the video")
    parser.add_argument(
        "--span", type=float, default=5.0, help="seconds a clip (HD-VILA-100M: 13.4 on average)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of each")
    parser.add_argument(
        "--texts-per-clip",
        type=int,
        default=1,
        help="rows per span, e.g. 20 as MSR-VTT written one row per sentence (default 1)",
    )
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "clipvip-bench")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    seconds = round(args.span * args.clips + 2)
    video = make_h264_bframes(args.work / f"youtube_like_720p_{seconds}s.mp4", seconds)
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    run_rows(video, 1, "remembered")  # warm the page cache and imports
    for _ in range(args.rounds):
        outputs = {}
        for mode in MODES:
            totals, outputs[mode] = run_rows(
                video, args.clips, mode, args.span, args.texts_per_clip
            )
            runs[mode].append(totals)
        assert outputs["together"] == outputs["remembered"], "cut together: other bytes"
    stages = list(runs["remembered"][0])

    rows = args.clips * args.texts_per_clip

    def ms(mode: str, stage: str) -> float:
        return statistics.median(r.get(stage, 0.0) for r in runs[mode]) / rows * 1000

    print(
        f"{args.clips} clips of {args.span:g} s from one 720p video, {args.texts_per_clip} "
        f"row(s) each, ms per row (median of {args.rounds}):"
    )
    print(f"{'stage':<14}" + "".join(f"{mode:>15}" for mode in MODES))
    for stage in stages:
        print(f"{stage:<14}" + "".join(f"{ms(mode, stage):>15.1f}" for mode in MODES))
    total = {mode: sum(ms(mode, s) for s in stages) for mode in MODES}
    print(f"{'all':<14}" + "".join(f"{total[mode]:>15.1f}" for mode in MODES))
    base = total["probe per row"]
    print(
        "rows/s against probe per row: "
        + ", ".join(f"{mode} {base / total[mode]:.2f}x" for mode in MODES[1:])
        + f"; together against remembered {total['remembered'] / total['together']:.2f}x "
        "(the same clip bytes for every row)"
    )


if __name__ == "__main__":
    main()
