"""Pure per-clip stages: ``probe``, ``cut_clip``, ``middle_frame``, ``caption_input``;
``caption_clips`` per batch.

Each stage takes a ``Clip`` and the run's ``PrepareConfig`` and returns the clip. A stage that
cannot go on raises ``StageError``; ``apply`` turns it into the clip's ``Failure`` and skips
clips that already failed, so every row keeps travelling to be counted.
"""

from captioner.registry import input_prep
from pipelines.config import PrepareConfig
from pipelines.stages.base import Stage, StageError, apply
from pipelines.stages.caption import caption_clips, caption_input
from pipelines.stages.cut import cut_clip
from pipelines.stages.middle_frame import middle_frame
from pipelines.stages.probe import probe

CPU_STAGES = (
    ("probe", probe),
    ("clip", cut_clip),
    ("middle_frame", middle_frame),
    ("caption_input", caption_input),
)


def cpu_stages(cfg: PrepareConfig) -> tuple[tuple[str, Stage], ...]:
    """The CPU stages this run needs: ``caption_input`` only for a captioner that has one (so
    a run without one shows no empty stage in its timings)."""
    if input_prep(cfg.captioner) is None:
        return tuple(item for item in CPU_STAGES if item[0] != "caption_input")
    return CPU_STAGES


__all__ = [
    "CPU_STAGES",
    "cpu_stages",
    "StageError",
    "apply",
    "caption_clips",
    "caption_input",
    "cut_clip",
    "middle_frame",
    "probe",
]
