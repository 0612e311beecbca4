"""Checkpoints: the model in safetensors, optimizer/scheduler state in safetensors + JSON.

``RUN/checkpoints/step-000100/`` holds ``model.safetensors`` (the ``ClipViP`` state dict, the
official key names), ``train_state.safetensors`` (AdamW moments, the CPU RNG state and, on GPU,
each rank's CUDA RNG state) and ``train_state.json`` (step, data position, scheduler, optimizer
hyper-parameters, the fp16 grad scaler). A checkpoint folder is written under a temporary name
and renamed, then ``latest.txt`` names it, so a crash mid-save never leaves a half checkpoint
that resume would pick up.

``RUN/checkpoints/best/model.safetensors`` holds the weights that scored best on validation,
with that step and score in the file's own header: one file, replaced atomically, so the weights
and the record that names them can never disagree (``best_record`` reads it back on resume).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from trainer.errors import TrainerError

log = logging.getLogger(__name__)
MODEL_FILE = "model.safetensors"
LATEST = "latest.txt"
BEST = "best"


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


def _model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def cuda_rng_state(device: torch.device) -> torch.Tensor | None:
    """The RNG state of the CUDA device this rank trains on; ``None`` on CPU.

    One device, not ``torch.cuda.get_rng_state_all()``: under ``torchrun`` every process sees
    all the node's GPUs but uses one, so "all" would wake a context on every GPU from rank 0
    and, restored on rank r, give its device rank 0's idea of GPU r (a never-used state).
    """
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def save_checkpoint(
    root: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    extra: dict[str, Any],
    scaler: torch.amp.GradScaler | None = None,
    cuda_rng: list[torch.Tensor] | None = None,
) -> Path:
    """Write checkpoint ``step`` atomically under ``root``; return its folder.

    ``scaler``: the fp16 grad scaler, whose scale and growth counter a resume must continue
    from (a fresh scaler restarts at 2**16 and skips steps finding its way down again).
    ``cuda_rng``: each rank's CUDA RNG state (``cuda_rng_state``), indexed by rank.
    """
    final = step_dir(root, step)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_model_state(model), str(tmp / MODEL_FILE))
    tensors, optim_meta = _optimizer_tensors(optimizer)
    tensors["rng.torch"] = torch.get_rng_state()
    for rank, state in enumerate(cuda_rng or []):
        tensors[f"rng.cuda.{rank}"] = state.cpu()
    save_file(tensors, str(tmp / "train_state.safetensors"))
    meta = {"step": step, "optimizer": optim_meta, "scheduler": scheduler.state_dict(), **extra}
    if scaler is not None:
        meta["scaler"] = scaler.state_dict()  # floats and ints: JSON as it is
    (tmp / "train_state.json").write_text(json.dumps(meta, indent=1), "utf-8")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    (root / (LATEST + ".tmp")).write_text(final.name + "\n", "utf-8")
    (root / (LATEST + ".tmp")).replace(root / LATEST)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    """The checkpoint to resume from: the one ``latest.txt`` names, else the newest complete
    ``step-*`` folder (a crash between ``save_checkpoint``'s rename and its marker write, or a
    lost marker, leaves one unnamed); None only where no complete checkpoint exists at all,
    which is what lets a caller treat the folder as never checkpointed."""
    marker = root / LATEST
    if marker.exists():
        path = root / marker.read_text("utf-8").strip()
        if _complete(path):
            return path
    steps = sorted(p for p in root.glob("step-*") if not p.name.endswith(".tmp") and _complete(p))
    return steps[-1] if steps else None


def _complete(folder: Path) -> bool:
    """A step folder that ``save_checkpoint`` renamed into place: written whole in ``.tmp``."""
    return (folder / MODEL_FILE).is_file() and (folder / "train_state.json").is_file()


def save_best(root: Path, model: nn.Module, record: dict[str, Any]) -> Path:
    """Write ``root/best/model.safetensors`` with ``record`` (``step``, ``rsum``) in its header.

    Called at any validation that finds a new best, checkpoint step or not, so it writes the
    weights only (what ``evaluate`` and ``--init`` read), not the optimizer state.
    """
    folder = root / BEST
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (MODEL_FILE + ".tmp")
    header = {"step": str(record["step"]), "rsum": repr(float(record["rsum"]))}
    save_file(_model_state(model), str(tmp), metadata=header)
    os.replace(tmp, folder / MODEL_FILE)
    # best/ used to be a copy of a whole step folder: a stale train state would name another step
    for stale in ("train_state.json", "train_state.safetensors"):
        (folder / stale).unlink(missing_ok=True)
    return folder


def best_record(root: Path, name: str = BEST) -> dict[str, Any] | None:
    """The ``{"rsum", "step"}`` that ``root/best`` (or ``root/name``) was saved with; ``None``
    when there is no best yet or it was written before the record moved into the file."""
    path = root / name / MODEL_FILE
    if not path.exists():
        return None
    try:
        with safe_open(str(path), "pt") as fh:
            header = fh.metadata() or {}
    except SafetensorError as exc:
        raise TrainerError(f"{path} is truncated or corrupt ({exc})") from exc
    if "rsum" not in header:
        return None
    return {"rsum": float(header["rsum"]), "step": int(header["step"])}


def load_model_weights(model: nn.Module, folder: Path) -> None:
    """Strictly load ``folder/model.safetensors`` into ``model``; a cut-short file or one of
    another model (other sizes, another config) is a ``TrainerError`` naming the file."""
    path = folder / MODEL_FILE
    state = read_tensors(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), "")
        raise TrainerError(
            f"{path} holds another model than this run's config builds ({first})"
        ) from exc


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; a truncated or corrupt file is a ``TrainerError``."""
    try:
        return load_file(str(path))
    except SafetensorError as exc:
        raise TrainerError(f"{path} is truncated or corrupt ({exc})") from exc


def load_checkpoint(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None = None,
    rank: int = 0,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """Restore model, optimizer, scheduler, RNG and grad scaler from ``folder``; return its JSON
    state. ``rank``'s CUDA RNG state goes to ``device`` when that is a GPU. Checkpoints written
    before the CUDA RNG and scaler were saved load too: those two then start afresh (logged)."""
    load_model_weights(model, folder)
    try:
        meta = json.loads((folder / "train_state.json").read_text("utf-8"))
    except ValueError as exc:
        raise TrainerError(
            f"{folder / 'train_state.json'} is truncated or corrupt ({exc})"
        ) from exc
    tensors = read_tensors(folder / "train_state.safetensors")
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
    if device is not None and device.type == "cuda":
        state = tensors.get(f"rng.cuda.{rank}")
        if state is None:
            log.warning("%s holds no CUDA RNG state for rank %d: it starts afresh", folder, rank)
        else:
            torch.cuda.set_rng_state(state, device)
    if scaler is not None:
        if meta.get("scaler"):
            scaler.load_state_dict(meta["scaler"])
        else:
            log.warning("%s holds no grad-scaler state: the fp16 loss scale starts afresh", folder)
    return meta


def prune_checkpoints(root: Path, keep_last: int, keep: set[str]) -> list[Path]:
    """Delete old step folders, keeping the newest ``keep_last`` (0: all) and any named in
    ``keep``; return the deleted ones, for the caller to log."""
    steps = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))
    removed = []
    for path in steps[:-keep_last] if keep_last > 0 else []:
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
