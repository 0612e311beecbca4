"""``clipvip status OUT``: where a run stands, read from its output folder alone.

A run of days on a cluster is often launched from a machine whose terminal (and progress bar) is
long gone, or by a job scheduler. Everything needed is in the folder, wherever it lives (local or
object storage): ``run.json`` (rows, tasks) and one ``stats/N.json`` per finished task (counts,
failures, when it finished). So any machine that can read the folder can say how far the run is,
how fast it goes, when it should end, and why rows fail.

Until the manifest is staged there is no ``run.json`` yet (staging 100M rows takes minutes), but
the folder shows a run starting: the driver's lock held, ``inputs/`` (the adapter's manifest,
the staged rows) and ``_tmp/`` (parts on their way). Status then says the run is starting, with
``"state": "staging"`` in its JSON, and exits 0: the run is there, just not counted yet.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import fsspec

from pipelines.run_lock import lock_holder
from pipelines.source import is_local
from pipelines.tasks import RUN_FILE, DamagedRun, damaged, read_run, read_task_stats, tally
from shards.store import Store

# what a starting run has made before run.json: staged rows (or an adapter's manifest), scratch
STAGING_SIGNS = ("inputs", "_tmp")

RATE_WINDOW = 50  # tasks: the rate is measured over the most recently finished ones


class NoRun(FileNotFoundError):
    """The folder holds no run (no ``run.json``)."""


class UnreadableRun(NoRun):
    """The folder cannot be read (unknown scheme, no credentials), or a run file in it is not
    what ``clipvip prepare`` writes. A ``NoRun`` too: either way there is no run to report on,
    and ``clipvip status`` prints both as one line naming the file."""


class _Starting(Exception):
    """No ``run.json`` yet, but a run is starting (or stopped while starting): its status."""

    def __init__(self, status: dict[str, Any]) -> None:
        super().__init__(status["out"])
        self.status = status


def _open_run(out: str) -> Store:
    """The run's store, once ``run.json`` is known to be a file there (else: ``_Starting`` for
    a run not staged yet, or why there is no run to report on, a file given for the folder, or
    a store that cannot be read)."""
    try:
        fs, path = fsspec.core.url_to_fs(out)
        path = path.rstrip("/")
        try:
            # info, not isfile: s3fs's isfile answers False for "no credentials" too
            kind = fs.info(f"{path}/{RUN_FILE}")["type"]
        except (FileNotFoundError, NotADirectoryError):
            kind = "out is a file" if fs.isfile(path) else None
        starting = _starting(out, fs, path) if kind is None else None
    except (ImportError, ValueError) as err:  # unknown scheme, or its package not installed
        raise UnreadableRun(f"{out}: cannot open ({err})") from err
    except Exception as err:  # the store's own errors: no credentials, no bucket, no network
        raise UnreadableRun(f"{out}: cannot read ({type(err).__name__}: {err})") from err
    if kind == "out is a file":
        raise NoRun(f"{out} is a file; give the --out folder of a `clipvip prepare` run")
    if starting is not None:
        raise _Starting(starting)
    if kind is None:
        raise NoRun(f"{out}: no run here (no {RUN_FILE}); start one with `clipvip prepare`")
    if kind != "file":
        raise _bad_file(out, RUN_FILE, "a folder", "remove it")
    return Store(out)


def _starting(out: str, fs: Any, path: str) -> dict[str, Any] | None:
    """The status of a run that has no ``run.json`` yet, or None when nothing shows one: the
    driver holding the folder's lock (``driver``: who), or what it made (``found``)."""
    found = [name for name in STAGING_SIGNS if fs.isdir(f"{path}/{name}")]
    driver = lock_holder(Path(path)) if is_local(out) else None  # no lock on object stores
    if driver is None and not found:
        return None
    return {"out": out, "state": "staging", "driver": driver, "found": found, "complete": False}


def _bad_file(out: str, rel: str, why: str, remedy: str) -> UnreadableRun:
    return UnreadableRun(str(damaged(out, rel, why, remedy)))


def run_status(out: str, now: float | None = None) -> dict[str, Any]:
    """Where the run in ``out`` stands; ``{"state": "staging", ...}`` while it starts."""
    try:
        store = _open_run(out)
    except _Starting as starting:
        return starting.status
    try:
        run = read_run(store)
        per_task = read_task_stats(store)
    except DamagedRun as err:
        raise UnreadableRun(str(err)) from err
    except OSError as err:
        raise UnreadableRun(f"{out}: cannot read its task stats ({err})") from err
    counts = tally(run, per_task)
    examples: dict[str, str] = {}
    for t in per_task:
        for f in t["failures"]:
            examples.setdefault(f["stage"], f"{f['key']}: {f['reason']}")
    timed = sorted((t for t in per_task if "finished_at" in t), key=lambda t: t["finished_at"])
    recent = timed[-RATE_WINDOW:]
    rate = None
    if len(recent) >= 2 and recent[-1]["finished_at"] > recent[0]["finished_at"]:
        # rows the tasks finished after the window's first one processed, over the time they
        # took; a retried task's carried rows were copied, not processed, and would inflate it
        span = recent[-1]["finished_at"] - recent[0]["finished_at"]
        rate = sum(t["rows"] - t.get("carried", 0) for t in recent[1:]) / span
    remaining = run["rows"] - counts["rows_done"]
    now = time.time() if now is None else now
    return {
        "out": out,
        "manifest": run.get("manifest"),
        # who runs it: a local --out names its driver by the folder's lock; an object store
        # has no lock, so there a stopped run and a running one read alike (driver None)
        "driver": lock_holder(Path(fsspec.core.url_to_fs(out)[1])) if is_local(out) else None,
        "lock_known": is_local(out),
        **counts,
        "failure_examples": examples,
        "rows_per_s": rate,
        "eta_s": remaining / rate if rate and remaining else (0.0 if not remaining else None),
        # a worker's clock a little ahead of this machine's must not read as a negative age
        "last_task_s_ago": max(0.0, now - timed[-1]["finished_at"]) if timed else None,
    }


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    d, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{d}d {h}h {m:02d}m" if d else f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s"


def _printable(text: object) -> str:
    """``text`` on one line that any terminal prints: a failure reason can hold ffmpeg's
    multi-line stderr, a key escape codes, and a path bytes that are not UTF-8 (surrogates,
    which a strict stdout refuses with a traceback)."""
    flat = " ".join(str(text).split())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in flat)


def format_staging(st: dict[str, Any]) -> str:
    """A starting run: who stages it, or what shows it began (and may have stopped)."""
    out = _printable(st["out"])
    if st["driver"]:
        return (
            f"{out}: starting: `clipvip prepare` ({_printable(st['driver'])}) is staging the "
            "manifest\n  rows and tasks are counted once it is staged (run.json); ask again then"
        )
    found = ", ".join(f"{name}/" for name in st["found"])
    return (
        f"{out}: starting, or stopped while starting: a `clipvip prepare` began here ({found} "
        "but no run.json yet)\n  it is building or staging the manifest; if no prepare is "
        "running, rerun the same `clipvip prepare` command"
    )


def format_status(st: dict[str, Any]) -> str:
    if st.get("state") == "staging":
        return format_staging(st)
    pct = 100 * st["rows_done"] / st["rows"] if st["rows"] else 100.0
    stopped = not st["complete"] and not st.get("driver") and st.get("lock_known", False)
    if st["complete"]:
        state = "complete"
    elif st.get("driver"):
        state = f"running: `clipvip prepare` ({_printable(st['driver'])})"
    elif stopped:
        state = "stopped: no `clipvip prepare` holds the folder"
    else:
        state = "in progress or stopped"
    lines = [
        f"{_printable(st['out'])}: {state}",
        f"  manifest: {_printable(st['manifest'])}",
        f"  rows:     {st['rows_done']:,} / {st['rows']:,} done ({pct:.1f} %), "
        f"tasks {st['tasks_done']:,} / {st['tasks']:,}",
        f"  samples:  {st['samples']:,} written, {st['failed']:,} failed",
    ]
    for stage, n in st["failed_by_stage"].items():
        example = _printable(st["failure_examples"].get(stage, ""))[:100]
        lines.append(f"    {_printable(stage)}: {n:,}  e.g. {example}")
    if st.get("failed_unexpected"):
        lines.append(
            f"  {st['failed_unexpected']:,} failed on errors no stage foresaw (reason "
            "'unexpected ...'): once fixed, rerun with --retry-failed"
        )
    if st["tasks_retried"]:
        lines.append(
            f"  retried:  {st['tasks_retried']:,} tasks (an earlier attempt stopped or crashed "
            "midway; their rows ran again, each in its own process)"
        )
    if st["rows_per_s"]:
        lines.append(f"  rate:     {st['rows_per_s']:.2f} rows/s over the last finished tasks")
    if st["eta_s"] and not st["complete"] and not stopped:
        lines.append(f"  left:     about {_duration(st['eta_s'])} at that rate")
    if st["last_task_s_ago"] is not None and not st["complete"]:
        lines.append(f"  last task finished {_duration(st['last_task_s_ago'])} ago")
    if stopped:
        lines.append("  (rerun the same `clipvip prepare` command to resume it)")
    elif not st["complete"] and not st.get("driver"):
        lines.append("  (rerun the same `clipvip prepare` command to resume a stopped run)")
    return "\n".join(lines)
