"""Resuming on another number of processes than the checkpoint was saved with is refused.

Each rank's data position and the step plan (epoch length per rank, hence the LR schedule)
belong to the world size of the run that saved them. Another world size is simulated by editing
the saved train state (fewer ranks now) or by posing as rank 1 of 2 (more ranks now).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import trainer.train as train_module
from trainer.config import load_config
from trainer.errors import TrainerError
from trainer.train import Dist, check_resume_world, saved_world_size, train

OVERRIDES = {
    "max_steps": 4,
    "save_every": 2,
    "log_every": 1,
    "data.num_workers": 0,
    "data.batch_size": 3,
}


@pytest.fixture(scope="module")
def interrupted(train_shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-process run stopped at its step-2 checkpoint (of 4 steps)."""
    run = tmp_path_factory.mktemp("ranks") / "run"
    train(load_config("tiny", OVERRIDES), str(train_shards), run, progress=False, stop_after=2)
    return run


def _copy(run: Path, tmp_path: Path) -> tuple[Path, Path]:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy, copy / "checkpoints" / "step-000002" / "train_state.json"


def _edit(state_file: Path, **changes: object) -> None:
    meta = json.loads(state_file.read_text())
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    state_file.write_text(json.dumps(meta))


def test_the_train_state_records_the_world_size(interrupted: Path) -> None:
    meta = json.loads(
        (interrupted / "checkpoints" / "step-000002" / "train_state.json").read_text()
    )
    assert meta["world_size"] == 1 and len(meta["positions"]) == 1


def test_saved_world_size_falls_back_to_the_positions_of_older_checkpoints() -> None:
    assert saved_world_size({"world_size": 4, "positions": [1, 1, 1, 1]}) == 4
    assert saved_world_size({"positions": [3, 3]}) == 2  # saved before world_size was recorded
    check_resume_world({"positions": [5]}, 1, Path("ck"))
    with pytest.raises(TrainerError) as info:
        check_resume_world({"positions": [5, 5, 5]}, 8, Path("ck"))
    message = str(info.value)
    assert "\n" not in message
    assert "3 process(es) and this one has 8" in message
    assert "--init ck/model.safetensors" in message and "--nproc_per_node 3" in message


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "older-checkpoint"])
def test_resuming_on_fewer_ranks_is_refused_not_silently_repositioned(
    interrupted: Path, train_shards: Path, tmp_path: Path, recorded: bool
) -> None:
    """Saved by 2 ranks, resumed by 1: rank 0 used to take positions[0] and a new plan."""
    run, state_file = _copy(interrupted, tmp_path)
    position = json.loads(state_file.read_text())["positions"][0]
    _edit(state_file, positions=[position, position], world_size=2 if recorded else None)
    cfg = load_config("tiny", OVERRIDES)
    with pytest.raises(TrainerError, match=r"2 process\(es\) and this one has 1.*--init "):
        train(cfg, str(train_shards), run, progress=False)
    assert not (run / "checkpoints" / "step-000004").exists()


def test_resuming_on_more_ranks_is_refused_not_an_index_error(
    interrupted: Path, train_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saved by 1 rank, resumed as rank 1 of 2: ``positions[1]`` used to raise IndexError."""
    run, _ = _copy(interrupted, tmp_path)
    monkeypatch.setattr(train_module, "setup_distributed", lambda: Dist(rank=1, world=2))
    monkeypatch.setattr(train_module, "_barrier", lambda d: None)  # no process group here
    cfg = load_config("tiny", OVERRIDES)
    with pytest.raises(TrainerError, match=r"1 process\(es\) and this one has 2"):
        train(cfg, str(train_shards), run, progress=False)


def test_an_older_checkpoint_of_the_same_world_size_still_resumes_exactly(
    interrupted: Path, train_shards: Path, tmp_path: Path
) -> None:
    run, state_file = _copy(interrupted, tmp_path)
    _edit(state_file, world_size=None)  # as saved before world_size was recorded
    cfg = load_config("tiny", OVERRIDES)
    train(cfg, str(train_shards), run, progress=False)
    whole = tmp_path / "whole"
    train(cfg, str(train_shards), whole, progress=False)
    a = load_file(str(whole / "checkpoints" / "step-000004" / "model.safetensors"))
    b = load_file(str(run / "checkpoints" / "step-000004" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_cli_says_it_in_one_error_line(
    interrupted: Path, train_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from clipvip.cli import main

    run, state_file = _copy(interrupted, tmp_path)
    _edit(state_file, world_size=2, positions=[1, 1])
    args = ["train", "--config", "tiny", "--shards", str(train_shards), "--out", str(run)]
    args += ["--steps", "4", "--no-progress"]
    for key, value in OVERRIDES.items():
        if key != "max_steps":
            args += ["--set", f"{key}={value}"]
    assert main(args) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert "2 process(es) and this one has 1" in errors[0] and "--init" in errors[0]
