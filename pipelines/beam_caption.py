"""The caption step on Beam: RunInference with our captioner model handler.

Beam loads the model once per worker and shares it across threads. Its own module, imported
only by a run that captions: Beam's RunInference module imports torch (3 s and 300 MB in every
worker process), which a ``--captioner none`` run never needs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from apache_beam.ml.inference.base import ModelHandler, RunInference

from captioner import Captioner
from pipelines import tasks as T
from pipelines.config import PrepareConfig
from pipelines.stages.caption import run_captioner


class CaptionModelHandler(ModelHandler[T.Task, T.Task, Captioner | None]):
    """RunInference model handler: one task per call, its images captioned in batches."""

    def __init__(self, cfg: PrepareConfig, local_workers: int = 1) -> None:
        super().__init__()
        self.cfg = cfg
        self.local_workers = local_workers

    def load_model(self) -> Captioner | None:
        model = run_captioner(self.cfg)
        # Several worker processes on one machine must share its cores: torch would otherwise
        # start one thread per core in each (measured here: 2 workers captioned 13x slower).
        # Only where the captioner loaded torch: importing it costs a worker 3 s and 300 MB.
        torch = sys.modules.get("torch")
        if torch is not None and self.local_workers > 1 and not torch.cuda.is_available():
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.local_workers))
        return model

    def run_inference(
        self,
        batch: Sequence[T.Task],
        model: Captioner | None,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[T.Task]:
        return [T.caption(task, model, self.cfg) for task in batch]

    def batch_elements_kwargs(self) -> dict[str, int]:
        # A task already batches its images; batching tasks would only hold shards back.
        return {"min_batch_size": 1, "max_batch_size": 1}

    def get_metrics_namespace(self) -> str:
        return "clipvip_caption"


def caption_step(cfg: PrepareConfig, local_workers: int = 1, accelerator: str | None = None):
    """RunInference with our handler; ``accelerator`` becomes a Beam resource hint on this step
    only (Dataflow right fitting: GPU workers for captioning, CPU workers for ffmpeg)."""
    step = RunInference(CaptionModelHandler(cfg, local_workers))
    return step.with_resource_hints(accelerator=accelerator) if accelerator else step
