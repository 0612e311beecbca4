"""Pure per-clip stages: ``probe``, ``cut_clip``, ``middle_frame``; ``caption_clips`` per batch.

Each stage takes a ``Clip`` and the run's ``PrepareConfig`` and returns the clip. A stage that
cannot go on raises ``StageError``; ``apply`` turns it into the clip's ``Failure`` and skips
clips that already failed, so every row keeps travelling to be counted.
"""

from pipelines.stages.base import StageError, apply
from pipelines.stages.caption import caption_clips
from pipelines.stages.cut import cut_clip
from pipelines.stages.middle_frame import middle_frame
from pipelines.stages.probe import probe

CPU_STAGES = (("probe", probe), ("clip", cut_clip), ("middle_frame", middle_frame))

__all__ = [
    "CPU_STAGES",
    "StageError",
    "apply",
    "caption_clips",
    "cut_clip",
    "middle_frame",
    "probe",
]
