"""The resolved settings of a training run: small typed configs, loaded from JSON data files.

``trainer/configs/NAME.json`` holds the named configs (``tiny``, ``pretrain_b32``, ...); a path to
any JSON file works too. The resolved config is saved as ``RUN/config.json`` and is what
``clipvip evaluate`` and a resumed run read back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from trainer.data import DataConfig
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
        if self.eval_every < 0:
            raise ValueError("eval_every must be >= 0 (0: validate at each save)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", "utf-8")


def _build(cls: type, data: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(sorted(unknown))}")
    return cls(**data)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Nested dict (as in the JSON files) -> TrainConfig; unknown keys are an error, not ignored."""
    data = dict(data)
    model = _build(ModelConfig, data.pop("model", {}))
    dcfg = _build(DataConfig, data.pop("data", {}))
    optim_data = dict(data.pop("optim", {}))
    if "betas" in optim_data:
        optim_data["betas"] = tuple(optim_data["betas"])
    optim = _build(OptimConfig, optim_data)
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
        node[leaf] = value
    return config_from_dict(data)
