"""``clipvip manifest hdvila``: peak memory of the streamed writer against the in-memory one.

HD-VILA-100M is 100M clips; what a manifest costs per row decides whether it can be built at
all. Each approach runs in its own fresh process on the same synthetic release JSONL (10 clips
per video, a url, spans; ``--no-check-videos`` so no folder is listed):

- ``in-memory`` (the baseline, the adapter path before streaming): the release file read whole,
  every row kept in a list (``build_manifest``), then one Python list per column and one Arrow
  table (``pq.write_table``);
- ``streamed``: ``write_manifest``: the release read line by line, rows written in batches of
  64k to a ``ParquetWriter``, keys checked through 8-byte hashes spilled to disk.

Reported per approach: the peak of Python's heap (``tracemalloc``, in one process), the peak of
Arrow's memory pool (Arrow buffers are not Python allocations) and the peak RSS over the RSS
after the imports, and the time (in a second process without ``tracemalloc``, which slows
allocation and adds its own memory). Both files are checked equal. Run: ``python -m benchmarks.adapters [--rows 200000] [--rows 400000]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path


def _release(path: Path, clips: int) -> Path:
    with open(path, "w") as f:
        for v in range(-(-clips // 10)):
            n = min(10, clips - 10 * v)
            line = {
                "video_id": f"vid{v:08d}",
                "url": f"https://www.youtube.com/watch?v=vid{v:08d}",
                "clip": [
                    {
                        "clip_id": f"vid{v:08d}.{i}.mp4",
                        "span": [f"0:00:{i:02d}", f"0:00:{i + 1:02d}"],
                    }
                    for i in range(n)
                ],
            }
            f.write(json.dumps(line) + "\n")
    return path


def _in_memory(release: str, out: str) -> int:
    """The adapter path as it was: whole file, list of rows, whole columns, one table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.adapters import build_manifest, hdvila
    from pipelines.adapters.base import read_text
    from pipelines.adapters.output import BASE_COLUMNS

    def whole_file_jsonl(uri):  # iter_jsonl before streaming: read_text(uri).split("\n")
        for lineno, line in enumerate(read_text(uri).split("\n"), start=1):
            if line.strip():
                yield lineno, json.loads(line)

    hdvila.iter_jsonl = whole_file_jsonl
    rows, _ = build_manifest("hdvila", [release], "/videos", check_videos=False)
    extra = sorted({n for row in rows for n in row if n not in BASE_COLUMNS})
    arrays = {}
    for name in [*BASE_COLUMNS, *extra]:
        values = [row.get(name) for row in rows]
        kind = BASE_COLUMNS.get(name)
        arrays[name] = pa.array(values, type=getattr(pa, kind)()) if kind else pa.array(values)
    pq.write_table(pa.table(arrays), out)
    return len(rows)


def _streamed(release: str, out: str) -> int:
    from pipelines.adapters import write_manifest

    rows, _ = write_manifest("hdvila", [release], "/videos", out, check_videos=False)
    return rows


def _peak_rss() -> int:
    """This process's peak RSS in bytes: ``VmHWM`` (``ru_maxrss`` would carry the parent's peak
    over ``fork``+``exec`` on Linux, and the parent has read both manifests)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return int(status.split("VmHWM:")[1].split()[0]) * 1024


def _child(approach: str, release: str, out: str, trace: str) -> None:
    import numpy  # noqa: F401  (imports outside the measurement)
    import pyarrow as pa
    import pyarrow.parquet  # noqa: F401

    import pipelines.adapters  # noqa: F401

    base_rss = _peak_rss()
    if trace == "1":
        tracemalloc.start()
    t0 = time.perf_counter()
    rows = (_in_memory if approach == "in-memory" else _streamed)(release, out)
    seconds = time.perf_counter() - t0
    python_peak = tracemalloc.get_traced_memory()[1] if trace == "1" else 0
    tracemalloc.stop()
    rss = _peak_rss() - base_rss
    arrow = pa.default_memory_pool().max_memory()
    print(json.dumps(dict(rows=rows, python=python_peak, arrow=arrow, rss=rss, s=seconds)))


def _run(approach: str, release: Path, out: Path) -> dict:
    """Two fresh processes: one traced (Python's peak), one not (RSS and time, untouched)."""
    got = {}
    for trace in ("1", "0"):
        cmd = [sys.executable, "-m", "benchmarks.adapters", "--child", approach, str(release)]
        done = subprocess.run([*cmd, str(out), trace], check=True, capture_output=True, text=True)
        got[trace] = json.loads(done.stdout.strip().splitlines()[-1])
    return {**got["0"], "python": got["1"]["python"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows", type=int, action="append", help="clips in the release (repeatable)"
    )
    parser.add_argument(
        "--child", nargs=4, metavar=("APPROACH", "RELEASE", "OUT", "TRACE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return
    import pyarrow.parquet as pq

    mb = 1 << 20
    print(
        f"{'clips':>9} {'approach':>10} {'python peak':>12} {'arrow peak':>11} "
        f"{'RSS growth':>11} {'B/row':>6} {'time':>7}"
    )
    for clips in args.rows or [200_000]:
        with tempfile.TemporaryDirectory(prefix="clipvip-bench-adapters-") as tmp:
            work = Path(tmp)
            release = _release(work / "hdvila.jsonl", clips)
            got = {a: _run(a, release, work / f"{a}.parquet") for a in ("in-memory", "streamed")}
            assert pq.read_table(work / "in-memory.parquet").equals(
                pq.read_table(work / "streamed.parquet")
            ), "the two manifests differ"
        for approach, m in got.items():
            peak = m["python"] + m["arrow"]
            print(
                f"{clips:>9,} {approach:>10} {m['python'] / mb:>9.1f} MB {m['arrow'] / mb:>8.1f} MB "
                f"{m['rss'] / mb:>8.1f} MB {peak / clips:>6.0f} {m['s']:>6.1f}s"
            )
        old, new = got["in-memory"], got["streamed"]
        ratio = (old["python"] + old["arrow"]) / (new["python"] + new["arrow"])
        print(f"{clips:>9,} in-memory / streamed peak (python + arrow): {ratio:.1f}x")


if __name__ == "__main__":
    main()
