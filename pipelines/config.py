"""The resolved settings of one ``prepare`` run; saved as ``DIR/config.json`` beside the shards."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pipelines.ff import Limits

# The engines `prepare` schedules on (a Beam runner name selects the Beam engine, see cli).
ENGINES = ("beam", "ray", "local")
# the stages whose failures ``--retry-failed`` reruns ("manifest" is the row itself: it fails again)
RETRYABLE = ("probe", "clip", "middle_frame", "caption_input", "caption")

# Settings that change the samples; a rerun into the same folder must use the same ones.
SAMPLE_SETTINGS = (
    "name",
    "shard_size",
    "shard_bytes",
    "fps",
    "max_short_side",
    "frame_short_side",
    "jpeg_quality",
    "captioner",
    "caption_max_words",
    "caption_precision",
    "allow_empty_text",
    "ffmpeg_threads",
    "crf",
    "fast_decode",
)

# What a run made before a setting existed did. A newer clipvip resumes such a run when the
# setting has this value, instead of refusing every run an upgrade finds half done (crf and
# fast_decode came with b848a80; before it clips were x264 CRF 23 with no tune).
LEGACY_SETTINGS: dict[str, Any] = {"crf": 23, "fast_decode": False, "caption_precision": "auto"}
NEGATABLE_FLAGS = {"fast_decode"}  # BooleanOptionalAction: --fast-decode / --no-fast-decode

# The values a numeric setting may take, (low, high) inclusive, high None: no upper bound. Out
# of range, a run fails late and cryptically (every row an ffmpeg error, a range() of step 0,
# 2x2 clips), so PrepareConfig refuses them when built; the CLI's argument types (pipelines.cli)
# refuse the same while parsing. None for fps, max_short_side, frame_short_side means "keep".
INT_RANGES: dict[str, tuple[int, int | None]] = {
    "shard_size": (1, None),
    "shard_bytes": (1, None),
    "max_short_side": (2, None),  # clips get even sides: 1 would round to 0 or 2
    "frame_short_side": (1, None),
    "jpeg_quality": (0, 100),  # Pillow's JPEG quality scale
    "caption_max_words": (1, None),
    "caption_batch_size": (1, None),
    "ffmpeg_threads": (0, None),  # 0: ffmpeg's choice
    "crf": (0, 51),  # libx264: 0 lossless .. 51
    "tool_memory_mb": (0, None),  # 0: no cap
    "fetch_max_mb": (0, None),  # 0: no cap
}
# Rates and durations: finite and above zero.
POSITIVE_FLOATS = ("fps", "tool_timeout_s", "fetch_timeout_s")
ISOLATE_MODES = ("retry", "always")


def _as_flag(key: str, value: Any) -> str:
    """The ``prepare`` option that sets sample setting ``key`` to ``value``."""
    flag = "--" + key.replace("_", "-")
    if key == "frame_short_side" and value is None:
        return f"{flag} 0"
    if value is None or value is False:
        return f"--no-{flag[2:]}" if key in NEGATABLE_FLAGS else f"no {flag}"
    return flag if value is True else f"{flag} {value}"


def setting_changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Sample settings of this command that differ from those a run ``recorded``, each as the
    option that would match the run (``"--crf 23 (not 28)"``); [] when the run may resume.

    A setting the run did not record (made by an older clipvip) counts at its legacy value."""
    out = []
    for key, value in current.items():
        then = recorded.get(key, LEGACY_SETTINGS.get(key, value))
        if then != value:
            out.append(f"{_as_flag(key, then)} (not {_as_flag(key, value)})")
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int_problem(key: str, value: Any, low: int, high: int | None) -> str | None:
    """What is wrong with ``key=value`` for a count in [low, high]; None when nothing (or None,
    which every optional setting reads as "keep")."""
    if value is None and key in ("max_short_side", "frame_short_side"):
        return None
    if not _is_number(value) or not math.isfinite(value) or value != int(value):
        return f"{key}={value!r} must be a whole number"
    if value < low or (high is not None and value > high):
        span = f"at least {low}" if high is None else f"from {low} to {high}"
        return f"{key}={value!r} must be {span}"
    return None


def _positive_problem(key: str, value: Any) -> str | None:
    """What is wrong with ``key=value`` for a rate or duration; None when nothing."""
    if value is None and key == "fps":
        return None
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        return f"{key}={value!r} must be a number above 0"
    return None


@dataclass(slots=True)
class PrepareConfig:
    """Everything the stages need; engines pass it along unchanged.

    Defaults follow CLIP-ViP: a 16-word caption of the clip's middle frame. ``fps=None`` and
    ``max_short_side=None`` keep the source's frames so whole videos can be stream-copied; the
    official pretraining data used ``fps=3``.
    """

    out: str = "out"
    name: str = "clips"
    shard_size: int = 1000
    shard_bytes: int = 1_000_000_000
    fps: float | None = None
    max_short_side: int | None = None
    frame_short_side: int | None = 480
    jpeg_quality: int = 95
    captioner: str = "random-tiny"
    caption_max_words: int = 16
    # the captioner's GPU autocast (captioner.precision); CPU always runs float32
    caption_precision: str = "auto"
    caption_batch_size: int = 16
    allow_empty_text: bool = False
    # One encoder thread per clip: scale with workers (one per core), and the same bytes on every
    # machine (x264's output depends on its thread count).
    ffmpeg_threads: int = 1
    # libx264 quality of re-encoded clips (lower = better, bigger; 23 is x264's default).
    crf: int = 23
    # x264 ``--tune fastdecode`` (CAVLC, no deblocking) on re-encoded clips: the trainer decodes
    # every clip every epoch and its loader is CPU-bound; measured 1.6x less decode CPU per
    # sample for 6-9% more bytes (docs/trainer.md). Stream-copied clips keep their encoding.
    fast_decode: bool = True
    tool_timeout_s: float = 300.0
    tool_memory_mb: int = 4096
    # Bounds on copying a remote (fsspec URI) video to the worker (pipelines.source): the
    # largest HD-VILA videos are a few hundred MB; 16 GB is a hostile or mistaken object.
    fetch_timeout_s: float = 1800.0
    fetch_max_mb: int = 16384
    # "retry": a task's CPU stages run in the worker, and in a child process only on a retry
    # (after a worker died); "always": in a child process every time (pipelines.isolation).
    isolate: str = "retry"
    # workers write running per-stage counts for the driver's bars (pipelines.stage_counts)
    live_progress: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse values no run can use, here and not on a worker after the run folder is made
        (library callers build PrepareConfig without the CLI's checks)."""
        problems = self.problems()
        if problems:
            raise ValueError(f"PrepareConfig: {'; '.join(problems)}")

    def problems(self) -> list[str]:
        """One phrase per setting out of its range (``INT_RANGES``, ``POSITIVE_FLOATS``)."""
        out = [_int_problem(k, getattr(self, k), *INT_RANGES[k]) for k in INT_RANGES]
        out += [_positive_problem(k, getattr(self, k)) for k in POSITIVE_FLOATS]
        if self.isolate not in ISOLATE_MODES:
            out.append(f"isolate={self.isolate!r} must be one of {', '.join(ISOLATE_MODES)}")
        return [p for p in out if p]

    def sample_settings(self) -> dict[str, Any]:
        """The settings that shape samples (part of a run's fingerprint)."""
        return {k: getattr(self, k) for k in SAMPLE_SETTINGS}

    @property
    def limits(self) -> Limits:
        return Limits(timeout_s=self.tool_timeout_s, memory_mb=self.tool_memory_mb)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrepareConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, path: Path) -> None:
        path.write_text(self.to_json() + "\n", encoding="utf-8")
