"""Checkpoints: the model in safetensors, optimizer/scheduler state in safetensors + JSON.

``RUN/checkpoints/step-000100/`` holds ``model.safetensors`` (the ``ClipViP`` state dict, the
official key names), ``train_state.safetensors`` (AdamW moments, RNG state) and
``train_state.json`` (step, data position, scheduler, optimizer hyper-parameters). A checkpoint
folder is written under a temporary name and renamed, then ``latest.txt`` names it, so a crash
mid-save never leaves a half checkpoint that resume would pick up.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

MODEL_FILE = "model.safetensors"
LATEST = "latest.txt"


def step_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:06d}"


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, slots in state["state"].items():
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_checkpoint(
    root: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    extra: dict[str, Any],
) -> Path:
    """Write checkpoint ``step`` atomically under ``root``; return its folder."""
    final = step_dir(root, step)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model_state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(model_state, str(tmp / MODEL_FILE))
    tensors, optim_meta = _optimizer_tensors(optimizer)
    tensors["rng.torch"] = torch.get_rng_state()
    save_file(tensors, str(tmp / "train_state.safetensors"))
    meta = {"step": step, "optimizer": optim_meta, "scheduler": scheduler.state_dict(), **extra}
    (tmp / "train_state.json").write_text(json.dumps(meta, indent=1), "utf-8")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    (root / (LATEST + ".tmp")).write_text(final.name + "\n", "utf-8")
    (root / (LATEST + ".tmp")).replace(root / LATEST)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    marker = root / LATEST
    if not marker.exists():
        return None
    path = root / marker.read_text("utf-8").strip()
    return path if (path / MODEL_FILE).exists() else None


def load_model_weights(model: nn.Module, folder: Path) -> None:
    """Strictly load ``folder/model.safetensors`` into ``model``."""
    state = load_file(str(folder / MODEL_FILE))
    model.load_state_dict(state, strict=True)


def load_checkpoint(
    folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNG from ``folder``; return its JSON state."""
    load_model_weights(model, folder)
    meta = json.loads((folder / "train_state.json").read_text("utf-8"))
    tensors = load_file(str(folder / "train_state.safetensors"))
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, scalars in meta["optimizer"]["scalars"].items():
        state.setdefault(int(idx), {}).update(scalars)
    groups = meta["optimizer"]["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    return meta


def prune_checkpoints(root: Path, keep_last: int, keep: set[str]) -> None:
    """Delete old step folders, keeping the newest ``keep_last`` and any named in ``keep``."""
    steps = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))
    for path in steps[:-keep_last] if keep_last > 0 else []:
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
