"""``prepare`` on every engine, same corpus, one run: overhead against the plain loop, scaling.

The corpus: 720p H.264 spans that must be re-encoded (the CPU stages dominate, as on a cluster
where captioning sits on GPUs; ``--captioner`` defaults to none here so the ratios measure the
engines, not a CPU-bound random model). Into fresh folders, one task per clip (the worst case
for an engine's per-task cost; ``--clips-per-task N`` makes tasks of N clips, as a shard of
``--shard-size`` rows is one task in a real run):

- plain loop (``--runner local``: the stage functions called one clip after the other), and the
  same with ``--isolate always`` (each stage in a child process: what the pipe costs);
- Beam DirectRunner with 1 and with 2 worker processes (isolated: see ``pipelines.isolation``);
- Ray on a real local cluster (``ray start --head`` [+ ``ray start --address``]), 1 node of
  1 CPU and 2 nodes of 1 CPU each, reached through ``--ray-address`` as on a cluster.

Prints wall time, rows/s, each engine's speed against the plain loop (below 1 = overhead), the
2-vs-1 speed-ups and the time per stage (summed over workers). Cluster start-up is not timed;
worker start-up, model loading and the driver are, as a user waits for them. One clip goes
through the plain loop untimed first, so no engine is timed on a cold process and file cache.
Run: ``python -m benchmarks.engines [--clips 16] [--clips-per-task 1] [--captioner random-tiny]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.media import make_h264
from pipelines.config import PrepareConfig
from pipelines.local_cluster import LocalRayCluster
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


def timed(
    manifest: Path,
    out: Path,
    engine: EngineOptions,
    captioner: str,
    isolate: str = "retry",
    per_task: int = 1,
) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cfg = PrepareConfig(
        out=str(out),
        shard_size=per_task,
        captioner=captioner,
        frame_short_side=224,
        isolate=isolate,
    )
    t0 = time.perf_counter()
    summary = prepare(str(manifest), cfg, engine, progress=False)
    summary["wall"] = time.perf_counter() - t0
    if summary["samples"] != summary["rows"]:
        raise RuntimeError(f"{out}: {summary['samples']}/{summary['rows']} samples")
    return summary


def warm_up(manifest: Path, work: Path, captioner: str) -> None:
    """One clip through the plain loop, untimed, before anything is timed: the first run in a
    process pays the imports, the codec and model loading and the cold file cache. Without it
    the first timed engine (``loop, isolated``) carried that cost and the plain-loop baseline,
    run after it, did not."""
    one = work / "warmup_manifest.jsonl"
    one.write_text(manifest.read_text().splitlines(keepends=True)[0])
    timed(one, work / "run_warmup", EngineOptions(runner="local"), captioner)
    shutil.rmtree(work / "run_warmup", ignore_errors=True)


def on_cluster(nodes: int, manifest: Path, out: Path, captioner: str, per_task: int) -> dict:
    with LocalRayCluster([{"cpus": 1}] * nodes) as cluster:
        os.environ["RAY_AUTH_MODE"] = "disabled"  # as the cluster runs; this driver joins it
        engine = EngineOptions(runner="ray", ray_address=cluster.address)
        return timed(manifest, out, engine, captioner, per_task=per_task)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=16, help="clips in the corpus (default: 16)")
    parser.add_argument(
        "--clips-per-task",
        type=int,
        default=1,
        help="clips per task, the run's --shard-size (default: 1, one task per clip)",
    )
    parser.add_argument("--captioner", default="none", help="captioner spec (default: none)")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "clipvip-bench"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    manifest = corpus(work, args.clips)
    warm_up(manifest, work, args.captioner)
    results = {}
    per_task = args.clips_per_task
    results["loop, isolated"] = timed(
        manifest,
        work / "run_iso",
        EngineOptions(runner="local"),
        args.captioner,
        "always",
        per_task,
    )
    for i, (name, engine) in enumerate(
        {
            "plain loop": EngineOptions(runner="local"),
            "beam, 1 worker": EngineOptions(runner="beam", workers=1),
            "beam, 2 workers": EngineOptions(runner="beam", workers=2),
        }.items()
    ):
        results[name] = timed(
            manifest, work / f"run_{i}", engine, args.captioner, per_task=per_task
        )
    for nodes in (1, 2):
        name = f"ray, {nodes} node{'s' if nodes > 1 else ''}"
        results[name] = on_cluster(
            nodes, manifest, work / f"run_ray{nodes}", args.captioner, per_task
        )
    base = results["plain loop"]["wall"]
    tasks = "one task per clip" if per_task == 1 else f"{per_task} clips per task"
    print(
        f"{args.clips} clips of 5 s cut from a 720p H.264 video, {tasks}, "
        f"captioner {args.captioner}"
    )
    print(f"{'engine':<18}{'wall s':>8}{'rows/s':>8}{'vs loop':>9}   stage seconds (summed)")
    for name, r in sorted(results.items(), key=lambda kv: kv[0] != "plain loop"):
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["seconds_by_stage"].items())
        print(
            f"{name:<18}{r['wall']:>8.1f}{r['rows'] / r['wall']:>8.2f}"
            f"{base / r['wall']:>8.2f}x   {stages}"
        )
    for engine, one, two in (
        ("beam", "beam, 1 worker", "beam, 2 workers"),
        ("ray", "ray, 1 node", "ray, 2 nodes"),
    ):
        speedup = results[one]["wall"] / results[two]["wall"]
        print(f"{engine} 2 vs 1: {speedup:.2f}x")


if __name__ == "__main__":
    main()
