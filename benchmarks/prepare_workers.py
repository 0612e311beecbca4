"""``prepare`` end to end: plain loop vs Beam (1 and 2 worker processes) vs Ray, per stage.

The same corpus (720p H.264 spans that must be re-encoded) through each engine, into fresh
folders, in one run. Prints rows/s, the 2-vs-1-worker speed-up, each engine's overhead against
the plain in-process loop, and the time per stage (summed over workers).
Run: ``python -m benchmarks.prepare_workers [--clips N]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.media import make_h264
from pipelines.config import PrepareConfig
from pipelines.prepare import EngineOptions, prepare


def corpus(work: Path, clips: int) -> Path:
    video = make_h264(work / "720p_60s.mp4", 60)
    rows = [
        {
            "key": f"c{i:03d}",
            "video": str(video),
            "start": 0.5 + 5 * i % 55,
            "end": 5.5 + 5 * i % 55,
            "text": f"clip number {i}",
        }
        for i in range(clips)
    ]
    path = work / "bench_manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def timed(manifest: Path, out: Path, engine: EngineOptions) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cfg = PrepareConfig(out=str(out), shard_size=1, captioner="random-tiny", frame_short_side=224)
    t0 = time.perf_counter()
    summary = prepare(str(manifest), cfg, engine, progress=False)
    summary["wall"] = time.perf_counter() - t0
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=8, help="clips in the corpus (default: 8)")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "clipvip-bench"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    manifest = corpus(work, args.clips)
    runs = {
        "plain loop": EngineOptions(runner="local"),
        "beam, 1 worker": EngineOptions(runner="beam", workers=1),
        "beam, 2 workers": EngineOptions(runner="beam", workers=2),
        "ray, 2 CPUs": EngineOptions(runner="ray", workers=2),
    }
    results = {
        name: timed(manifest, work / f"run_{i}", eng) for i, (name, eng) in enumerate(runs.items())
    }
    base = results["plain loop"]["wall"]
    print(f"{args.clips} clips of 5 s cut from a 720p H.264 video, one task per clip")
    print(
        f"{'engine':<18}{'wall s':>8}{'rows/s':>8}{'vs loop':>9}   stage seconds (summed over workers)"
    )
    for name, r in results.items():
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["seconds_by_stage"].items())
        print(
            f"{name:<18}{r['wall']:>8.1f}{r['rows'] / r['wall']:>8.2f}{base / r['wall']:>8.2f}x   {stages}"
        )
    one, two = results["beam, 1 worker"]["wall"], results["beam, 2 workers"]["wall"]
    print(f"beam 2 workers vs 1: {one / two:.2f}x")


if __name__ == "__main__":
    main()
