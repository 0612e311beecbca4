"""The plain in-process runner: every task, one after the other, in this process.

The baseline the engines are measured against, and the simplest way to debug a stage.
"""

from __future__ import annotations

from pipelines.stages.caption import run_captioner
from pipelines.tasks import Plan, run_task


def run(plan: Plan) -> None:
    cfg = plan.cfg
    captioner = run_captioner(cfg) if plan.tasks else None
    for index in plan.tasks:
        run_task(index, cfg, captioner)
