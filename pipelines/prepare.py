"""``prepare``: plan the run, hand the tasks to an engine, merge the results, report."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from captioner.registry import check_spec_files
from pipelines import tasks as T
from pipelines.config import ENGINES, PrepareConfig
from pipelines.progress import RunProgress
from pipelines.run_lock import driver_lock
from pipelines.stages import cpu_stages

log = logging.getLogger(__name__)


@dataclass(slots=True)
class EngineOptions:
    runner: str = "beam"
    workers: int | None = None  # Beam: direct_num_workers; Ray: local CPUs
    ray_address: str | None = None
    caption_pool: int = 1  # Ray: caption actors
    caption_gpus: float | None = None  # Ray: GPUs per caption actor (None: 1 if the cluster has)
    caption_resources: dict[str, float] = field(default_factory=dict)  # Ray: custom, per actor
    caption_accelerator: str | None = None  # Beam: resource hint on the caption step
    beam_args: Sequence[str] = ()
    retry_stages: frozenset[str] = frozenset()  # --retry-failed: rerun tasks failed there


def prepare(
    manifest: str, cfg: PrepareConfig, engine: EngineOptions, progress: bool = True
) -> dict[str, Any]:
    """Turn ``manifest`` into shards under ``cfg.out``; return the merged ``stats.json``."""
    if engine.runner not in ENGINES:
        raise ValueError(f"unknown runner {engine.runner!r}; choose one of {', '.join(ENGINES)}")
    # an ofa:/hf: folder without config.json stops here, not on a worker (the CLI checks it
    # earlier still, before an adapter or the demo writes; library callers rely on this one)
    check_spec_files(cfg.captioner)
    # a second driver on this --out is refused, not half-run; `clipvip prepare` already holds
    # the lock here (taken before its --format adapter writes into --out): reenter=True
    with driver_lock(cfg.out, reenter=True):
        return _prepare(manifest, cfg, engine, progress)


def _prepare(
    manifest: str, cfg: PrepareConfig, engine: EngineOptions, progress: bool
) -> dict[str, Any]:
    t0 = time.perf_counter()
    plan = T.plan(manifest, cfg, progress, set(engine.retry_stages))
    log.info(
        "%d rows in %d tasks; %d already done, %d to run on %s%s",
        plan.total_rows,
        plan.num_tasks,
        plan.done_tasks,
        len(plan.tasks),
        engine.runner,
        f" ({plan.retried_tasks} of them for failures in {', '.join(sorted(engine.retry_stages))})"
        if engine.retry_stages
        else "",
    )
    bars = RunProgress(cfg.out, plan.total_rows, stages=stage_names(plan.cfg)) if progress else None
    # workers count clips through each stage only when someone draws the stage bars (a terminal)
    plan.cfg = dataclasses.replace(plan.cfg, live_progress=bool(bars and bars.counts_stages))
    with bars or contextlib.nullcontext():
        placement = _run_engine(plan, engine)
    summary = T.finalize(cfg, plan.tasks)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    summary["runner"] = engine.runner
    summary["resumed_tasks"] = plan.done_tasks
    this = summary.pop("this_invocation")
    if plan.done_tasks or plan.retried_tasks:  # some samples predate this invocation
        summary.update(this)
    if engine.retry_stages:
        summary["reopened_tasks"] = plan.retried_tasks
    if placement:
        summary["placement"] = placement
    return summary


def stage_names(cfg: PrepareConfig) -> list[str]:
    """The stages a row of this run goes through, in order (one progress bar each)."""
    names = [name for name, _ in cpu_stages(cfg)]
    return [*names, *(["caption"] if cfg.captioner != "none" else []), "write"]


def beam_worker_args(workers: int | None, args: list[str]) -> list[str]:
    """What ``--workers N`` adds to the Beam options: N direct workers, in processes unless the
    user chose a running mode (their ``--direct_running_mode`` wins, e.g. ``multi_threading``);
    nothing the user already set is overridden."""
    if not workers:
        return []
    extra = []
    if not any(a.startswith("--direct_num_workers") for a in args):
        extra.append(f"--direct_num_workers={workers}")
    if not any(a.startswith("--direct_running_mode") for a in args):
        extra.append("--direct_running_mode=multi_processing")
    return extra


def _run_engine(plan: T.Plan, engine: EngineOptions) -> dict[str, Any] | None:
    """Hand the plan to the engine; Ray says where the tasks ran (node id -> tasks)."""
    if engine.runner == "local":
        from pipelines import local

        local.run(plan)
    elif engine.runner == "beam":
        from pipelines import beam

        args = list(engine.beam_args)
        args += beam_worker_args(engine.workers, args)
        beam.run(plan, args, engine.caption_accelerator)
    else:
        from pipelines import ray as ray_engine

        return ray_engine.run(
            plan,
            ray_engine.RayOptions(
                address=engine.ray_address,
                num_cpus=engine.workers,
                caption_pool=engine.caption_pool,
                caption_gpus=engine.caption_gpus,
                caption_resources=dict(engine.caption_resources),
            ),
        )
    return None


def format_summary(summary: dict[str, Any], out: str) -> str:
    """The end-of-run report: what was made, what failed and why, and where everything is."""
    # a resumed run has figures for the whole run and for this invocation (``tasks.finalize``)
    resumed = "samples_run" in summary
    lines = [
        _headline(summary),
        f"  failed: {summary['failed']}"
        + (
            f" ({', '.join(f'{k}: {v}' for k, v in summary['failed_by_stage'].items())})"
            if summary["failed"]
            else ""
        ),
        f"  shards: {summary['shards']} ({summary['bytes'] / 1e6:.1f} MB) in {out}/shards",
        f"  index:  {out}/index.json   stats: {out}/stats.json   errors: {out}/errors.jsonl",
    ]
    if summary.get("failed_unexpected"):
        n = summary["failed_unexpected"]
        lines.append(
            f"  {n} of the failures {'is an error' if n == 1 else 'are errors'} no stage "
            "foresaw (reason 'unexpected ...'; the log has the traceback): a bug or an input "
            "nobody handled, not necessarily the row's fault; once fixed, rerun with "
            "--retry-failed"
        )
    if summary.get("resumed_tasks"):
        lines.append(_resumed_line(summary))
    if "reopened_tasks" in summary:
        lines.append(
            f"  retry-failed: {summary['reopened_tasks']} finished tasks with failed rows ran "
            "those rows again; their other samples were copied from the earlier tars"
        )
    if summary.get("tasks_retried"):
        lines.append(
            f"  retried: {summary['tasks_retried']} tasks whose earlier attempt stopped midway "
            "(an interrupted or killed run, a worker crash); their rows ran again, each in its "
            "own process"
        )
    if not summary.get("complete", True):
        lines.append(
            f"  INCOMPLETE: {summary['tasks_done']}/{summary['tasks']} tasks done; rerun to resume"
        )
    placement = summary.get("placement")
    if placement:
        lines.append(
            f"  ray: {placement['nodes']} nodes; CPU stages on {len(placement['cpu'])}, "
            f"captioning on {len(placement['caption'])}"
        )
    # a resumed run: this invocation's tasks only (the earlier ones' seconds were not spent now)
    stage_s = summary.get("seconds_run_by_stage" if resumed else "seconds_by_stage") or {}
    if stage_s:
        lines.append(
            f"  time by stage{' this time' if resumed else ''} (summed over workers): "
            + ", ".join(f"{k} {v:.1f}s" for k, v in stage_s.items())
        )
    return "\n".join(lines)


def _headline(summary: dict[str, Any]) -> str:
    """Samples made, of how many rows, how fast: a resumed run's total and what is new."""
    # the rate of this invocation's rows: a resumed run's skipped rows took no time
    ran = summary.get("rows_run", summary["rows_done"])
    rate = ran / summary["seconds"] if summary.get("seconds") else 0.0
    made = f"{summary['samples']} samples"
    if "samples_run" in summary:
        made += f" in the run ({summary['samples_run']} new this time)"
    return (
        f"prepared {made} from {summary['rows']} rows "
        f"in {summary.get('seconds', 0):.1f} s ({rate:.2f} rows/s, runner {summary.get('runner')})"
    )


def _resumed_line(summary: dict[str, Any]) -> str:
    tasks = summary["resumed_tasks"]
    skipped = summary.get("rows_skipped")
    if skipped is None:  # a summary made before ``this_invocation`` existed (a library caller's)
        return f"  resumed: {tasks} tasks were already done and skipped"
    return (
        f"  resumed: {skipped} {_plural(skipped, 'row')} skipped "
        f"({tasks} {_plural(tasks, 'task')} already done)"
    )


def _plural(n: int, word: str) -> str:
    return word if n == 1 else f"{word}s"
