"""The plain in-process runner: every task, one after the other, in this process.

The baseline the engines are measured against, and the simplest way to debug a stage.
"""

from __future__ import annotations

from captioner import load_captioner
from pipelines.tasks import Plan, run_task


def run(plan: Plan) -> None:
    cfg = plan.cfg
    captioner = load_captioner(cfg.captioner, cfg.caption_max_words) if plan.tasks else None
    for index in plan.tasks:
        run_task(index, cfg, captioner)
