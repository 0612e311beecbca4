"""``prepare --retry-failed``: redoing the failed rows only against redoing their whole tasks.

At 100M clips a flaky bucket or an overloaded node fails rows in nearly every task, so what a
retry costs per task decides whether ``--retry-failed`` is usable at all. Measured, interleaved
in one process on copies of the same finished run whose failed rows' videos have since arrived:

- ``whole task`` (the baseline, what ``--retry-failed`` did before it carried samples): the
  reopened tasks run every row again (probe, cut, middle frame, caption, write);
- ``carry``: ``--retry-failed`` now: only the failed rows run; the rows written before are
  copied from the earlier tars, byte for byte.

Both end with the same samples (checked). Each row is a span re-encoded at CLIP-ViP's
pretraining settings (``--fps 3 --max-short-side 224``) from a 720p video, captioned by the
tiny random OFA. Run: ``python -m benchmarks.retry [--rows 40] [--failed 2] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.media import make_h264
from pipelines.config import PrepareConfig
from pipelines.prepare import EngineOptions, prepare
from shards.reader import iter_samples


def _manifest(work: Path, video: Path, rows: int, failed: int) -> Path:
    """``rows`` 4 s spans of ``video``; ``failed`` of them point at a copy not there yet."""
    late = {k * rows // failed for k in range(failed)}  # spread over the task
    lines = [
        {
            "key": f"r{i:04d}",
            "video": str(work / "late.mp4" if i in late else video),
            "start": 1 + 4 * i,
            "end": 5 + 4 * i,
            "text": f"row {i}",
        }
        for i in range(rows)
    ]
    manifest = work / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return manifest


def _samples(out: Path) -> dict[str, tuple]:
    return {s["key"]: (s["mp4"], s["jpg"], s.get("caption.txt")) for s in iter_samples(str(out))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=40, help="rows of the run (one task)")
    parser.add_argument("--failed", type=int, default=2, help="rows whose video came late")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of each")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "clipvip-bench")
    args = parser.parse_args(argv)
    work = args.work / "retry"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    video = make_h264(args.work / f"retry_720p_{4 * args.rows + 6}s.mp4", 4 * args.rows + 6)
    manifest = _manifest(work, video, args.rows, args.failed)
    cfg = PrepareConfig(
        out=str(work / "first"), name="r", shard_size=args.rows, fps=3, max_short_side=224,
        captioner="random-tiny",
    )  # fmt: skip
    first = prepare(str(manifest), cfg, EngineOptions(runner="local"), progress=False)
    assert first["failed"] == args.failed, first
    shutil.copy(video, work / "late.mp4")  # the missing video arrives

    def once(mode: str, round_: int) -> tuple[float, dict[str, tuple]]:
        out = work / f"{mode}-{round_}"
        shutil.copytree(work / "first", out)
        if mode == "whole task":  # every finished task with a failure runs again, all rows
            for stats in (out / "stats").glob("*.json"):
                if json.loads(stats.read_text())["failed"]:
                    stats.unlink()
            engine = EngineOptions(runner="local")
        else:
            engine = EngineOptions(runner="local", retry_stages=frozenset({"probe"}))
        cfg.out = str(out)
        t0 = time.perf_counter()
        summary = prepare(str(manifest), cfg, engine, progress=False)
        seconds = time.perf_counter() - t0
        assert (summary["samples"], summary["failed"]) == (args.rows, 0), summary
        return seconds, _samples(out)

    times: dict[str, list[float]] = {"whole task": [], "carry": []}
    for r in range(args.rounds):
        got = {}
        for mode in times:
            seconds, got[mode] = once(mode, r)
            times[mode].append(seconds)
        assert got["carry"] == got["whole task"], "carry: other samples than a whole-task redo"
    base, carry = (statistics.median(times[m]) for m in ("whole task", "carry"))
    print(
        f"{args.rows} rows, {args.failed} failed then fixed; --retry-failed wall time, median of "
        f"{args.rounds}: whole task {base:.2f} s, carry {carry:.2f} s -> {base / carry:.1f}x "
        "(the same samples)"
    )


if __name__ == "__main__":
    main()
