"""The resolved settings of a training run: small typed configs, loaded from JSON data files.

``trainer/configs/NAME.json`` holds the named configs (``tiny``, ``pretrain_b32``, ...); a path to
any JSON file works too. The resolved config is saved as ``RUN/config.json`` and is what
``clipvip evaluate`` and a resumed run read back.
"""

from __future__ import annotations

import json
import math
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from trainer.data import RESIZE_MODES, DataConfig
from trainer.loss import VARIANTS
from trainer.model import ModelConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(slots=True)
class OptimConfig:
    """AdamW with warmup then cosine decay; the official CLIP-ViP values are the defaults."""

    lr: float = 5e-6
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.05
    warmup_ratio: float = 0.01
    clip_grad: float = 5.0


@dataclass(slots=True)
class TrainConfig:
    """One training run. ``max_steps`` > 0 wins over ``epochs`` (counted from ``index.json``)."""

    name: str = "custom"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: str = "d"
    mask_same_clip: bool = True  # rows of one clip are no negatives (no-op when all distinct)
    max_steps: int = 0
    epochs: float = 1.0
    grad_accum: int = 1
    precision: str = "bf16"  # CUDA autocast dtype: bf16, fp16 or fp32; CPU always runs fp32
    log_every: int = 10
    save_every: int = 1000
    eval_every: int = 0  # validate on --val-shards every N steps; 0: at each save
    keep_checkpoints: int = 2  # step folders kept, the newest; 0: keep all (best/ always kept)
    seed: int = 42

    def __post_init__(self) -> None:
        if self.loss not in VARIANTS:
            raise ValueError(f"loss {self.loss!r} unknown; choose one of {', '.join(VARIANTS)}")
        if self.precision not in ("bf16", "fp16", "fp32"):
            raise ValueError(f"precision {self.precision!r} unknown; choose bf16, fp16 or fp32")
        if self.grad_accum < 1:
            raise ValueError("grad_accum must be >= 1")
        if self.log_every < 1 or self.save_every < 1:
            raise ValueError("log_every and save_every must be >= 1")
        if self.keep_checkpoints < 0:
            raise ValueError("keep_checkpoints must be >= 0 (0: keep every checkpoint)")
        if self.eval_every < 0:
            raise ValueError("eval_every must be >= 0 (0: validate at each save)")
        if self.max_steps < 0:
            raise ValueError("max_steps must be >= 0 (0: train for `epochs`)")
        if not (math.isfinite(self.epochs) and self.epochs > 0):
            raise ValueError(f"epochs must be a number > 0, got {self.epochs}")
        _check_limits(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", "utf-8")


# (section, key) -> (smallest allowed, whether the smallest itself is allowed); the values
# that would otherwise crash deep in torch, hang the loader or train on NaN without a word
LIMITS = {
    ("data", "num_frames"): (1, True),
    ("data", "image_size"): (1, True),
    ("data", "max_text_len"): (2, True),  # start and end tokens
    ("data", "batch_size"): (1, True),
    ("data", "num_workers"): (0, True),
    ("data", "shuffle_buffer"): (0, True),
    ("model", "num_proxies"): (1, True),
    ("model", "temporal_size"): (1, True),
    ("optim", "lr"): (0, False),
    ("optim", "eps"): (0, False),
    ("optim", "weight_decay"): (0, True),
    ("optim", "warmup_ratio"): (0, True),
    ("optim", "clip_grad"): (0, False),
}


def _check_limits(cfg: TrainConfig) -> None:
    for (section, key), (low, inclusive) in LIMITS.items():
        value = getattr(getattr(cfg, section), key)
        ok = math.isfinite(value) and (value >= low if inclusive else value > low)
        if not ok:
            raise ValueError(
                f"{section}.{key} must be {'>=' if inclusive else '>'} {low}, got {value}"
            )
    if cfg.data.resize not in RESIZE_MODES:
        raise ValueError(
            f"data.resize must be one of {', '.join(RESIZE_MODES)}, got {cfg.data.resize!r}"
        )
    if cfg.optim.warmup_ratio > 1:
        raise ValueError(f"optim.warmup_ratio must be <= 1, got {cfg.optim.warmup_ratio}")
    if not all(0 <= b < 1 for b in cfg.optim.betas):
        raise ValueError(f"optim.betas must lie in [0, 1), got {list(cfg.optim.betas)}")
    if not math.isfinite(cfg.model.logit_scale_init):
        raise ValueError(f"model.logit_scale_init must be finite, got {cfg.model.logit_scale_init}")


def _fits(hint: Any, value: Any) -> bool:
    """Whether a JSON value has the type a config field declares (an int is a float too)."""
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (str, bool, type(None)):
        return isinstance(value, hint)
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        return (
            isinstance(value, (list, tuple))
            and len(value) == len(args)
            and all(_fits(a, v) for a, v in zip(args, value, strict=True))
        )
    if args:  # a union such as ``str | None``
        return any(_fits(a, value) for a in args)
    return True  # a nested config: built and checked on its own


def _build(cls: type, data: Any, section: str = "") -> Any:
    where = f"{section}." if section else ""
    if not isinstance(data, dict):
        raise ValueError(f"config section {section!r} must be a JSON object, got {data!r}")
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(sorted(unknown))}")
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if not _fits(hints[key], value):
            raise ValueError(
                f"config {where}{key} must be of type {_type_name(hints[key])}, got {value!r}"
            )
    return cls(**data)


def _type_name(hint: Any) -> str:
    return str(hint) if typing.get_args(hint) else getattr(hint, "__name__", str(hint))


# (section, key) -> what a run meant by it before the setting existed: a run folder's
# config.json written then lacks the key, and its run must resume and evaluate as it trained,
# not with the newer default (frames were centre-cropped before ``data.resize``; the newest 2
# checkpoints were kept before ``keep_checkpoints``). Section None: a top-level key.
EARLIER = {("data", "resize"): "crop", (None, "keep_checkpoints"): 2}


def with_earlier_defaults(saved: Any) -> Any:
    """A run folder's saved config with the settings it predates filled in as they were then
    (anything but a JSON object is returned as is, for the caller to refuse)."""
    if not isinstance(saved, dict):
        return saved
    saved = json.loads(json.dumps(saved))  # a deep copy
    for (section, key), value in EARLIER.items():
        node = saved if section is None else saved.get(section)
        if isinstance(node, dict) and key not in node:
            node[key] = value
    return saved


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Nested dict (as in the JSON files) -> TrainConfig; unknown keys are an error, not ignored."""
    if not isinstance(data, dict):
        raise ValueError(f"a training config is a JSON object, got {type(data).__name__}")
    data = dict(data)
    model = _build(ModelConfig, data.pop("model", {}), "model")
    dcfg = _build(DataConfig, data.pop("data", {}), "data")
    optim_data = data.pop("optim", {})
    optim = _build(OptimConfig, optim_data, "optim")
    optim.betas = tuple(optim.betas)
    return _build(TrainConfig, {**data, "model": model, "data": dcfg, "optim": optim})


def available_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_config(name_or_path: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A named config or a JSON path, with dotted overrides (``{"optim.lr": 1e-4}``)."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"no training config {name_or_path!r}; named configs: {', '.join(available_configs())}"
        )
    data = json.loads(path.read_text("utf-8"))
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"cannot set {dotted}: {part} is a value, not a section")
        node[leaf] = value
    return config_from_dict(data)
