"""Checkpoint contents: the fp16 grad scaler and each rank's CUDA RNG state travel with a
checkpoint, older checkpoints without them still load, and best/ carries its own record."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from trainer.checkpoint import best_record, load_checkpoint, save_best, save_checkpoint


def _parts(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer, object]:
    torch.manual_seed(seed)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - 0.1 * step)
    return model, optimizer, scheduler


def _step(model, optimizer, scheduler, scaler: torch.amp.GradScaler | None = None) -> None:
    loss = model(torch.ones(2, 4)).square().sum()
    (scaler.scale(loss) if scaler else loss).backward()
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def test_grad_scaler_state_round_trips(tmp_path: Path) -> None:
    model, optimizer, scheduler = _parts()
    scaler = torch.amp.GradScaler("cpu", init_scale=512.0, growth_interval=3)
    for _ in range(2):
        _step(model, optimizer, scheduler, scaler)
    saved = scaler.state_dict()
    assert saved["_growth_tracker"] == 2  # two finite steps counted towards the next growth
    folder = save_checkpoint(tmp_path, 2, model, optimizer, scheduler, {}, scaler=scaler)

    model2, optimizer2, scheduler2 = _parts(seed=1)
    fresh = torch.amp.GradScaler("cpu")
    load_checkpoint(folder, model2, optimizer2, scheduler2, fresh)
    assert fresh.state_dict() == saved
    # the restored scaler continues as the original would: the third step doubles the scale
    _step(model, optimizer, scheduler, scaler)
    _step(model2, optimizer2, scheduler2, fresh)
    assert fresh.get_scale() == scaler.get_scale() == 1024.0
    for key, value in model.state_dict().items():
        assert torch.equal(model2.state_dict()[key], value), key


def test_checkpoint_without_scaler_or_cuda_rng_still_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint of an older run (no ``scaler`` in the JSON, no ``rng.cuda.*`` tensors)
    resumes: weights, optimizer and CPU RNG restored, scaler and CUDA RNG left fresh, logged."""
    model, optimizer, scheduler = _parts()
    _step(model, optimizer, scheduler)
    folder = save_checkpoint(tmp_path, 1, model, optimizer, scheduler, {"epoch": 0})
    meta = json.loads((folder / "train_state.json").read_text())
    assert "scaler" not in meta
    assert not any(k.startswith("rng.cuda") for k in load_file(folder / "train_state.safetensors"))
    expected = torch.rand(3)  # what the RNG gives right after the checkpoint's state

    calls = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda *a: calls.append(a))
    model2, optimizer2, scheduler2 = _parts(seed=1)
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    with caplog.at_level(logging.WARNING, logger="trainer.checkpoint"):
        load_checkpoint(
            folder, model2, optimizer2, scheduler2, scaler, device=torch.device("cuda", 0)
        )
    assert scaler.get_scale() == 8.0 and calls == []
    assert "no grad-scaler state" in caplog.text and "no CUDA RNG state" in caplog.text
    assert torch.equal(torch.rand(3), expected)
    assert optimizer2.state_dict()["state"][0]["step"] == 1
    for key, value in model.state_dict().items():
        assert torch.equal(model2.state_dict()[key], value), key


def test_each_rank_restores_its_own_cuda_rng_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rank r's saved CUDA RNG state goes to rank r's device (no GPU here: the setter is
    recorded), and a CPU run never touches CUDA."""
    model, optimizer, scheduler = _parts()
    states = [torch.full((16,), rank, dtype=torch.uint8) for rank in range(2)]
    folder = save_checkpoint(tmp_path, 1, model, optimizer, scheduler, {}, cuda_rng=states)
    calls = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda *a: calls.append(a))
    load_checkpoint(folder, model, optimizer, scheduler, rank=1, device=torch.device("cuda", 1))
    [(state, device)] = calls
    assert torch.equal(state, states[1]) and device == torch.device("cuda", 1)
    load_checkpoint(folder, model, optimizer, scheduler, rank=1, device=torch.device("cpu"))
    assert len(calls) == 1


def test_best_carries_its_own_record_and_older_best_folders_have_none(tmp_path: Path) -> None:
    model, optimizer, scheduler = _parts()
    assert best_record(tmp_path) is None
    # a best/ as older runs wrote it: a copy of a whole step folder, no record in the weights
    step = save_checkpoint(tmp_path, 1, model, optimizer, scheduler, {})
    shutil.copytree(step, tmp_path / "best")
    assert best_record(tmp_path) is None
    folder = save_best(tmp_path, model, {"rsum": 123.25, "step": 7})
    assert best_record(tmp_path) == {"rsum": 123.25, "step": 7}
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors"]
    weights = load_file(folder / "model.safetensors")
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
