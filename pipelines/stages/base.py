"""How a stage reports failure and how one is applied to a clip."""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable

from pipelines.config import PrepareConfig
from pipelines.errors import StageError
from pipelines.ff import ToolError
from pipelines.record import Clip

log = logging.getLogger(__name__)
UNEXPECTED = "unexpected "  # how a failure no stage foresaw begins its reason

__all__ = ["Stage", "StageError", "apply"]

Stage = Callable[[Clip, PrepareConfig], Clip]


def _memory_limit() -> str:
    """What bounded the allocation that failed, as this process knows it.

    In the isolation child (``pipelines.isolation``) that is ``--tool-memory-mb``'s address-space
    cap; in an engine worker with no cap it was the machine itself, and the flag would not help.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return "this input needs more than the machine could give the worker"
    return (
        f"this input needs more than the {soft >> 20} MiB this process may use "
        f"(--tool-memory-mb {soft >> 20}; raise it for such inputs)"
    )


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
    except MemoryError:  # Python's, or PyAV's ENOMEM from the FFmpeg libraries
        clip.fail(name, f"ran out of memory: {_memory_limit()}")
    except Exception as exc:  # noqa: BLE001 - recorded per row, see docstring
        log.exception("unexpected error in stage %s for %s", name, clip.key)
        clip.fail(name, f"{UNEXPECTED}{type(exc).__name__}: {exc}")
    clip.timings[name] = clip.timings.get(name, 0.0) + time.perf_counter() - t0
    return clip
