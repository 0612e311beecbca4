"""SIGKILL the whole ``prepare`` run at seeded random points; every rerun ends byte-identical.

The harness is ``benchmarks/crash_resume.py`` (run it alone for a longer sweep). Here: a few kill
points on the plain loop and one on Beam, whose worker processes die with the run.
"""

from __future__ import annotations

import os

import pytest

from benchmarks.crash_resume import sample_corpus, sweep

pytestmark = pytest.mark.slow
SEED = int(os.environ.get("CLIPVIP_FAULT_SEED", "0"))
KILLS = int(os.environ.get("CLIPVIP_KILL_POINTS", "5"))


@pytest.mark.parametrize(
    ("runner", "kills"), [("local", KILLS), ("beam", 1)], ids=["local", "beam"]
)
def test_killed_at_random_points_every_rerun_equals_the_clean_run(
    runner, kills, tmp_path, fault_report
):
    manifest = sample_corpus(tmp_path)
    args = ["--runner", runner, "--shard-size", "2", "--captioner", "random-tiny"]
    report = sweep(manifest, tmp_path, kills, SEED, args, log=lambda _: None)
    fault_report.append(f"crash/resume ({runner}, seed {SEED}): {report.summary()}")
    assert report.kill_points >= kills, report.lines
    assert report.ok, "\n".join(report.lines)
    assert (report.samples_lost, report.duplicates, report.fields_differing) == (0, 0, 0)
