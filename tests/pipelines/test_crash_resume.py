"""SIGKILL the ``prepare`` run at seeded random points; every rerun ends byte-identical.

The harness is ``benchmarks/crash_resume.py`` (run it alone for a longer sweep). Here: a few kill
points on the plain loop, one on Beam's DirectRunner (in process) and one on the local Ray. Every
kill also checks that no process the killed run started outlives it by more than
``ORPHAN_WAIT_S``. The whole process group is killed (Ctrl-C, a scheduler ending the job), and,
on Ray, the driver alone (the OOM killer's choice), which leaves Ray's daemons and workers to go
by themselves: the local Ray's reaper (``pipelines/local_cluster.py``) must take them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks.crash_resume import CleanRun, clean_run, sample_corpus, sweep

pytestmark = [pytest.mark.slow, pytest.mark.serial]
SEED = int(os.environ.get("CLIPVIP_FAULT_SEED", "0"))
KILLS = int(os.environ.get("CLIPVIP_KILL_POINTS", "3"))


def _args(runner: str) -> list[str]:
    return ["--runner", runner, "--shard-size", "2", "--captioner", "random-tiny"]


@pytest.fixture(scope="module")
def clean_runs(tmp_path_factory) -> Callable[[str], tuple[Path, CleanRun]]:
    """A corpus and its clean run per runner, made once: the Ray tests share theirs."""
    made: dict[str, tuple[Path, CleanRun]] = {}

    def get(runner: str) -> tuple[Path, CleanRun]:
        if runner not in made:
            work = tmp_path_factory.mktemp(f"crash_{runner}")
            manifest = sample_corpus(work)
            made[runner] = manifest, clean_run(manifest, work / "clean", _args(runner))
        return made[runner]

    return get


@pytest.mark.parametrize(
    ("runner", "kills"), [("local", KILLS), ("beam", 1), ("ray", 1)], ids=["local", "beam", "ray"]
)
def test_killed_at_random_points_every_rerun_equals_the_clean_run(
    runner, kills, clean_runs, tmp_path, fault_report
):
    manifest, clean = clean_runs(runner)
    report = sweep(manifest, tmp_path, kills, SEED, _args(runner), lambda _: None, clean)
    fault_report.append(f"crash/resume ({runner}, seed {SEED}): {report.summary()}")
    assert report.kill_points >= kills, report.lines
    assert report.ok, "\n".join(report.lines)
    assert (report.samples_lost, report.duplicates, report.fields_differing) == (0, 0, 0)
    assert report.orphans_left == 0, "\n".join(report.lines)


def test_ray_driver_killed_alone_leaves_no_ray_process_and_the_rerun_equals_the_clean_run(
    clean_runs, tmp_path, fault_report
):
    manifest, clean = clean_runs("ray")
    report = sweep(
        manifest, tmp_path, 1, SEED, _args("ray"), lambda _: None, clean, driver_only=True
    )
    fault_report.append(f"crash/resume (ray, driver alone, seed {SEED}): {report.summary()}")
    assert report.kill_points >= 1, report.lines
    assert report.orphans_left == 0, "Ray processes outlived their driver:\n" + "\n".join(
        report.lines
    )
    rerun = (report.samples_lost, report.duplicates, report.fields_differing)
    assert rerun + (report.errors_differing,) == (0, 0, 0, 0), "\n".join(report.lines)
