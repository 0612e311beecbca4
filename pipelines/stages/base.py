"""How a stage reports failure and how one is applied to a clip."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pipelines.config import PrepareConfig
from pipelines.ff import ToolError
from pipelines.record import Clip

log = logging.getLogger(__name__)


class StageError(Exception):
    """This clip cannot go on; the message is the reason written to ``errors.jsonl``."""


Stage = Callable[[Clip, PrepareConfig], Clip]


def apply(name: str, stage: Stage, clip: Clip, cfg: PrepareConfig) -> Clip:
    """Run ``stage`` on ``clip`` unless it already failed; record time and any failure.

    Expected failures (``StageError``, ``ToolError``) become the clip's reason. Anything else is a
    bug or an input nobody foresaw: it is logged with its traceback and still recorded against the
    clip, so one bad row never ends a run of millions.
    """
    if not clip.ok:
        return clip
    t0 = time.perf_counter()
    try:
        clip = stage(clip, cfg)
    except (StageError, ToolError) as exc:
        clip.fail(name, str(exc))
    except Exception as exc:  # noqa: BLE001 - recorded per row, see docstring
        log.exception("unexpected error in stage %s for %s", name, clip.key)
        clip.fail(name, f"unexpected {type(exc).__name__}: {exc}")
    clip.timings[name] = clip.timings.get(name, 0.0) + time.perf_counter() - t0
    return clip
