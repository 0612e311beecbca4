"""Crash and resume: SIGKILL ``clipvip prepare`` at seeded random points, rerun, compare.

One clean run gives the reference samples, its number of tasks and when each finished. Then,
per trial, a fresh output folder: start the run, wait for its plan (``run.json``), and SIGKILL it
at a seeded random point of the work (after k finished tasks plus a random part of the time the
clean run took from its k-th finished task to the next; some trials are killed a second time
during their first rerun), then rerun to completion at once.
The kill takes the whole process group (Ctrl-C's reach, a scheduler ending a job) or, with
``--kill driver``, the driver's PID alone (the OOM killer's choice): whatever the driver started
and had not yet ended must then go by itself. After each trial the samples must equal the clean
run's, byte for byte per field, each exactly once, ``errors.jsonl`` must hold the same failed
rows, and every process the killed run had started must be gone within ``ORPHAN_WAIT_S`` of the
kill (watched while the rerun runs; any left are counted, then killed). Prints one line per trial
and the totals.

Run: ``python -m benchmarks.crash_resume [--kills 40] [--seed 0] [--runner local]
[--kill group|driver]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from benchmarks.commands import prepare_command
from benchmarks.scratch import scratch_folder
from pipelines.tasks import ERRORS_FILE, RUN_FILE, STATS_DIR, STATS_FILE

# A killed run's processes must be gone this long after the kill. Ray's own fate-sharing takes
# up to 61 s for the raylet's agents (measured; docs/scale-out.md); the local Ray's reaper
# (pipelines/local_cluster.py) under a second.
ORPHAN_WAIT_S = 20.0


@dataclass(slots=True)
class SweepReport:
    kill_points: int = 0  # kills that landed while the run was still working
    missed: int = 0  # the run had already finished when its kill time came
    trials: int = 0
    samples_lost: int = 0
    duplicates: int = 0
    fields_differing: int = 0
    errors_differing: int = 0  # trials whose errors.jsonl differs from the clean run's
    orphans_left: int = 0  # processes of a killed run still alive ORPHAN_WAIT_S after its kill
    orphan_s: float = 0.0  # the longest any process of a killed run outlived its kill
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.samples_lost
            or self.duplicates
            or self.fields_differing
            or self.errors_differing
            or self.orphans_left
        )

    def summary(self) -> str:
        return (
            f"{self.trials} trials, {self.kill_points} kill points survived "
            f"({self.missed} kills came after the run had finished); samples lost: "
            f"{self.samples_lost}, duplicates: {self.duplicates}, fields differing: "
            f"{self.fields_differing}, error rows differing: {self.errors_differing}; "
            f"processes outliving their kill by {ORPHAN_WAIT_S:.0f} s: {self.orphans_left} "
            f"(the last one went {self.orphan_s:.1f} s after its kill)"
        )


@dataclass(slots=True)
class CleanRun:
    """What every trial must end with, and the pace its kill points are drawn against."""

    samples: dict[str, dict[str, bytes]]
    errors: list[str]
    # Seconds from the plan to the first finished task, then from each to the next. Not a mean:
    # on Ray the start-up takes most of the run and the tasks then finish within a second, so a
    # kill a mean task's time after the k-th would mostly come after the end.
    gaps_s: list[float]

    @property
    def tasks(self) -> int:
        return len(self.gaps_s)


def read_samples(out: Path) -> tuple[dict[str, dict[str, bytes]], int]:
    """``{key: {field: bytes}}`` from every tar under ``out/shards``, and how many repeats."""
    samples: dict[str, dict[str, bytes]] = {}
    repeats = 0
    for tar in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar) as t:
            for m in t.getmembers():
                key, _, ext = m.name.partition(".")
                fields = samples.setdefault(key, {})
                if ext in fields:
                    repeats += 1
                fields[ext] = t.extractfile(m).read()
    return samples, repeats


def _errors(out: Path) -> list[str]:
    lines = (out / ERRORS_FILE).read_text().splitlines()
    return sorted(json.dumps(json.loads(x), sort_keys=True) for x in lines)


def _start(cmd: Sequence[str]) -> subprocess.Popen:
    return subprocess.Popen(
        list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns if path.exists() else 0


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> float:
    """Wait until the run (re)writes ``path`` (its plan is made); return the time it did."""
    before = _mtime(path)
    t0 = time.monotonic()
    while _mtime(path) == before and proc.poll() is None and time.monotonic() - t0 < timeout:
        time.sleep(0.01)
    return time.monotonic()


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"rerun failed ({proc.returncode}):\n{err.decode()[-3000:]}")


def _done_tasks(out: Path) -> int:
    return len(list((out / STATS_DIR).glob("*.json")))


def _alive(p: psutil.Process) -> bool:
    try:  # is_running() also says no when the pid now belongs to another process
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class _Watch(threading.Thread):
    """Watches a killed run's processes from the moment of the kill (the next run starts at
    once): how long the last of them outlived it, and how many outlived ``ORPHAN_WAIT_S``. Those
    it SIGKILLs, so a sweep never leaves a process behind."""

    def __init__(self, processes: list[psutil.Process]) -> None:
        super().__init__(daemon=True)
        self.processes = processes
        self.at = time.monotonic()
        self.longest = 0.0
        self.left = 0
        self.start()

    def run(self) -> None:
        pending = self.processes
        while pending:
            elapsed = time.monotonic() - self.at
            pending = [p for p in pending if _alive(p)]
            if not pending:
                self.longest = elapsed
            elif elapsed >= ORPHAN_WAIT_S:
                self.longest, self.left = elapsed, len(pending)
                for p in pending:
                    p.kill()
                psutil.wait_procs(pending, timeout=10)
                return
            time.sleep(0.05)


def _killed_run(
    cmd: Sequence[str], out: Path, after_tasks: int, delay: float, driver_only: bool
) -> tuple[bool, _Watch | None]:
    """Start a run; once planned and ``after_tasks`` tasks are done, wait ``delay`` s more and
    SIGKILL its process group (or, ``driver_only``, the driver's PID alone). Return whether the
    kill landed before the run finished, and the watch on what the run had started.

    Kill points are tied to progress, not to the clock, so a loaded machine moves them less.
    """
    proc = _start(cmd)
    _wait_for(out / RUN_FILE, proc)  # a rerun rewrites it too, after its own plan
    while proc.poll() is None and _done_tasks(out) < after_tasks:
        time.sleep(0.005)
    deadline = time.monotonic() + delay
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    try:  # everything the run started, Ray's daemons and workers included
        started = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        started = []
    if proc.poll() is not None:
        _, err = proc.communicate()
        if proc.returncode != 0:  # not a late kill: the run itself failed
            raise RuntimeError(
                f"run failed ({proc.returncode}) before its kill:\n{err.decode()[-3000:]}"
            )
        return False, None
    if driver_only:
        os.kill(proc.pid, signal.SIGKILL)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
    watch = _Watch(started)
    proc.communicate()
    return not (out / STATS_FILE).exists(), watch


def clean_run(manifest: Path, out: Path, prepare_args: Sequence[str] = ()) -> CleanRun:
    """Run to the end undisturbed: the reference every trial is compared with."""
    proc = _start(prepare_command(manifest, out, "--no-progress", *prepare_args))
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the clean run failed:\n{err.decode()[-3000:]}")
    samples, _ = read_samples(out)
    # A task's stats file is written once, last: its stamp is when the task finished.
    times = [_mtime(out / RUN_FILE)] + sorted(_mtime(f) for f in (out / STATS_DIR).glob("*.json"))
    gaps = [max(0.01, (b - a) / 1e9) for a, b in zip(times, times[1:], strict=False)]
    return CleanRun(samples, _errors(out), gaps)


def sweep(
    manifest: Path,
    work: Path,
    kills: int,
    seed: int = 0,
    prepare_args: Sequence[str] = (),
    log=print,
    clean: CleanRun | None = None,
    driver_only: bool = False,
) -> SweepReport:
    """Kill runs of ``manifest`` until ``kills`` kill points have landed (at most 3 trials a
    point); ``clean``, when given, is a clean run of the same manifest and arguments."""

    def cmd(out: Path) -> list[str]:
        return prepare_command(manifest, out, "--no-progress", *prepare_args)

    if clean is None:
        clean = clean_run(manifest, work / "clean", prepare_args)
    tasks = clean.tasks
    log(
        f"clean run: {len(clean.samples)} samples, {len(clean.errors)} failed rows, {tasks} "
        f"tasks, work {sum(clean.gaps_s):.1f} s (first task done after {clean.gaps_s[0]:.1f} s)"
    )

    rng = random.Random(seed)
    report = SweepReport()
    trial = 0
    while report.kill_points < kills and trial < 3 * kills:
        out = work / f"trial{trial:03d}"
        # A kill point: after k tasks are done, plus a fraction of the clean run's time to the
        # next.
        points = sorted(rng.random() * tasks for _ in range(2 if rng.random() < 0.3 else 1))
        fractions = [p / tasks for p in points]
        killed = [
            _killed_run(cmd(out), out, int(p), (p - int(p)) * clean.gaps_s[int(p)], driver_only)
            for p in points
        ]
        landed = [f for f, (hit, _) in zip(fractions, killed, strict=True) if hit]
        report.kill_points += len(landed)
        report.missed += len(fractions) - len(landed)
        rerun = _start(cmd(out))  # at once, as a user would, while the killed run's processes go
        watches = [w for _, w in killed if w is not None]
        for w in watches:
            w.join()
        _finish(rerun)
        longest = max((w.longest for w in watches), default=0.0)
        left = sum(w.left for w in watches)
        report.orphan_s = max(report.orphan_s, longest)
        report.orphans_left += left
        samples, repeats = read_samples(out)
        lost = len(set(clean.samples) - set(samples))
        differing = sum(
            1 for k, fields in clean.samples.items() if k in samples and samples[k] != fields
        )
        errors_differing = 0 if _errors(out) == clean.errors else 1
        report.samples_lost += lost
        report.duplicates += repeats + len(set(samples) - set(clean.samples))
        report.fields_differing += differing
        report.errors_differing += errors_differing
        report.trials += 1
        line = (
            f"trial {trial}: killed at {', '.join(f'{f:.0%}' for f in landed) or '-'} of the work"
            f"{f' ({len(fractions) - len(landed)} too late)' if len(landed) < len(fractions) else ''}"
            f"; lost {lost}, repeats {repeats}, differing {differing}; its processes gone "
            f"{longest:.1f} s after the kill{f', {left} left' if left else ''}"
        )
        report.lines.append(line)
        log(line)
        trial += 1
    return report


def sample_corpus(work: Path, rows: int = 9) -> Path:
    """A small corpus of real H.264 clips (and one missing file), made with ffmpeg."""
    from benchmarks.media import make_h264

    video = make_h264(work / "src.mp4", 12, size="320x240")
    lines = [
        {"key": f"c{i:02d}", "video": str(video), "start": i, "end": i + 2.5, "text": f"clip {i}"}
        for i in range(rows - 1)
    ]
    lines.append({"key": "gone", "video": str(work / "missing.mp4"), "text": "never there"})
    path = work / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=40, help="kill points to land (default: 40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runner", default="local", choices=("local", "beam", "ray"))
    parser.add_argument(
        "--kill",
        default="group",
        choices=("group", "driver"),
        help="SIGKILL the run's whole process group, or the driver's PID alone (default: group)",
    )
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    with scratch_folder(args.work, "clipvip-crash-") as work:
        manifest = sample_corpus(work)
        report = sweep(
            manifest,
            work,
            args.kills,
            args.seed,
            ["--runner", args.runner, "--shard-size", "2", "--captioner", "random-tiny"],
            driver_only=args.kill == "driver",
        )
        print(report.summary())
        sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
