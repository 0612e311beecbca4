"""Crash and resume: SIGKILL ``clipvip prepare`` at seeded random points, rerun, compare.

One clean run gives the reference samples, its number of tasks and their mean time. Then, per
trial, a fresh output folder: start the run, wait for its plan (``run.json``), and SIGKILL the
whole process group at a seeded random point of the work (after k finished tasks plus a random
part of one task's time; some trials are killed a second time during their first rerun), then
rerun to completion. After each trial the samples
must equal the clean run's, byte for byte per field, each exactly once, and ``errors.jsonl`` must
hold the same failed rows. Prints one line per trial and the totals.

Run: ``python -m benchmarks.crash_resume [--kills 40] [--seed 0] [--runner local]``.
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
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.commands import prepare_command
from pipelines.tasks import ERRORS_FILE, RUN_FILE, STATS_DIR, STATS_FILE


@dataclass(slots=True)
class SweepReport:
    kill_points: int = 0  # kills that landed while the run was still working
    missed: int = 0  # the run had already finished when its kill time came
    trials: int = 0
    samples_lost: int = 0
    duplicates: int = 0
    fields_differing: int = 0
    errors_differing: int = 0  # trials whose errors.jsonl differs from the clean run's
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.samples_lost or self.duplicates or self.fields_differing or self.errors_differing
        )

    def summary(self) -> str:
        return (
            f"{self.trials} trials, {self.kill_points} kill points survived "
            f"({self.missed} kills came after the run had finished); samples lost: "
            f"{self.samples_lost}, duplicates: {self.duplicates}, fields differing: "
            f"{self.fields_differing}, error rows differing: {self.errors_differing}"
        )


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


def _run_to_end(cmd: Sequence[str]) -> None:
    done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"rerun failed ({done.returncode}):\n{done.stderr[-3000:]}")


def _done_tasks(out: Path) -> int:
    return len(list((out / STATS_DIR).glob("*.json")))


def _killed_run(cmd: Sequence[str], out: Path, after_tasks: int, delay: float) -> bool:
    """Start a run; once planned and ``after_tasks`` tasks are done, wait ``delay`` s more and
    SIGKILL its process group. True if the kill landed before the run finished.

    Kill points are tied to progress, not to the clock, so a loaded machine moves them less.
    """
    proc = _start(cmd)
    _wait_for(out / RUN_FILE, proc)  # a rerun rewrites it too, after its own plan
    while proc.poll() is None and _done_tasks(out) < after_tasks:
        time.sleep(0.005)
    deadline = time.monotonic() + delay
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if proc.poll() is not None:
        _, err = proc.communicate()
        if proc.returncode != 0:  # not a late kill: the run itself failed
            raise RuntimeError(
                f"run failed ({proc.returncode}) before its kill:\n{err.decode()[-3000:]}"
            )
        return False
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    return not (out / STATS_FILE).exists()


def sweep(
    manifest: Path,
    work: Path,
    kills: int,
    seed: int = 0,
    prepare_args: Sequence[str] = (),
    log=print,
) -> SweepReport:
    def cmd(out: Path) -> list[str]:
        return prepare_command(manifest, out, "--no-progress", *prepare_args)

    clean = work / "clean"
    proc = _start(cmd(clean))
    planned = _wait_for(clean / RUN_FILE, proc)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the clean run failed:\n{err.decode()[-3000:]}")
    work_s = max(0.05, time.monotonic() - planned)
    reference, _ = read_samples(clean)
    ref_errors = _errors(clean)
    tasks = _done_tasks(clean)
    per_task = work_s / max(1, tasks)
    log(
        f"clean run: {len(reference)} samples, {len(ref_errors)} failed rows, {tasks} tasks, "
        f"work {work_s:.1f} s"
    )

    rng = random.Random(seed)
    report = SweepReport()
    trial = 0
    while report.kill_points < kills and trial < 3 * kills:
        out = work / f"trial{trial:03d}"
        # A kill point: after k tasks are done, plus a fraction of one task's time.
        points = sorted(rng.random() * tasks for _ in range(2 if rng.random() < 0.3 else 1))
        fractions = [p / tasks for p in points]
        landed = [
            p / tasks for p in points if _killed_run(cmd(out), out, int(p), (p - int(p)) * per_task)
        ]
        report.kill_points += len(landed)
        report.missed += len(fractions) - len(landed)
        _run_to_end(cmd(out))
        samples, repeats = read_samples(out)
        lost = len(set(reference) - set(samples))
        differing = sum(
            1 for k, fields in reference.items() if k in samples and samples[k] != fields
        )
        errors_differing = 0 if _errors(out) == ref_errors else 1
        report.samples_lost += lost
        report.duplicates += repeats + len(set(samples) - set(reference))
        report.fields_differing += differing
        report.errors_differing += errors_differing
        report.trials += 1
        line = (
            f"trial {trial}: killed at {', '.join(f'{f:.0%}' for f in landed) or '-'} of the work"
            f"{f' ({len(fractions) - len(landed)} too late)' if len(landed) < len(fractions) else ''}"
            f"; lost {lost}, repeats {repeats}, differing {differing}"
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
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="clipvip-crash-"))
    work.mkdir(parents=True, exist_ok=True)
    manifest = sample_corpus(work)
    report = sweep(
        manifest,
        work,
        args.kills,
        args.seed,
        ["--runner", args.runner, "--shard-size", "2", "--captioner", "random-tiny"],
    )
    print(report.summary())
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
