"""Ray engine (Ray Data): schedules the shared task phases; holds no stage logic.

Tasks flow as rows of one bytes column: CPU stages in Ray tasks, captioning in an actor pool
(one model per actor; ``num_gpus=1`` per actor when the cluster has GPUs, a fraction of a CPU
otherwise so the pool never starves the CPU stages), then the write. Streaming execution means
shards land while later tasks are still being cut.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import ray

from captioner import load_captioner
from pipelines import tasks as T
from pipelines.config import PrepareConfig

CPU_PER_TASK = 1.0
CPU_PER_CAPTIONER = 0.5


def _process(row: dict[str, Any], cfg: PrepareConfig) -> dict[str, Any]:
    return {"task": T.process(T.Task.from_bytes(row["task"]), cfg).to_bytes()}


def _write(row: dict[str, Any], cfg: PrepareConfig) -> dict[str, Any]:
    stats = T.write(T.Task.from_bytes(row["task"]), cfg)
    return {"task_index": stats["task"], "rows": stats["rows"], "written": stats["written"]}


class CaptionActor:
    """One captioner per actor, kept for the whole run."""

    def __init__(self, cfg: PrepareConfig) -> None:
        self.cfg = cfg
        self.captioner = load_captioner(cfg.captioner, cfg.caption_max_words)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[bytes]]:
        out = []
        for data in batch["task"]:
            out.append(T.caption(T.Task.from_bytes(data), self.captioner, self.cfg).to_bytes())
        return {"task": out}


def init(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to ``address`` or start a local Ray bound to loopback (no traffic leaves the host)."""
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(_node_ip_address="127.0.0.1", num_cpus=num_cpus, **kwargs)


def run(
    plan: T.Plan, address: str | None = None, pool_size: int = 1, num_cpus: int | None = None
) -> None:
    if not plan.tasks:
        return
    init(address, num_cpus)
    # Ray Data logs a progress table per operator every few seconds; our bar already shows rows.
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    cfg = plan.cfg
    gpus = ray.cluster_resources().get("GPU", 0)
    caption_resources = {"num_gpus": 1} if gpus else {"num_cpus": CPU_PER_CAPTIONER}
    # One model per GPU: never more actors than GPUs when there are GPUs.
    actors = max(1, min(pool_size, int(gpus))) if gpus else max(1, pool_size)
    ds = ray.data.from_items(
        [{"task": t.to_bytes()} for t in plan.tasks], override_num_blocks=len(plan.tasks)
    )
    ds = ds.map(_process, fn_kwargs={"cfg": cfg}, num_cpus=CPU_PER_TASK)
    if cfg.captioner != "none":
        ds = ds.map_batches(
            CaptionActor,
            fn_constructor_kwargs={"cfg": cfg},
            batch_size=1,
            concurrency=actors,
            **caption_resources,
        )
    ds = ds.map(_write, fn_kwargs={"cfg": cfg}, num_cpus=0.25)
    for _ in ds.iter_rows():
        pass
