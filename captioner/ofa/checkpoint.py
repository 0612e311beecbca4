"""Load and save OFA weights in the public Hugging Face layout, with strict key checking.

A checkpoint folder holds ``config.json``, ``vocab.json``, ``merges.txt`` and weights as
``model.safetensors`` or ``pytorch_model.bin`` (or sharded with an ``*.index.json``). ``.bin``
files are read with ``torch.load(weights_only=True)``: a pickle can run code, a weights-only
load cannot.

Strict means: every parameter of the model comes from the file with the right shape, and the
file has no tensor the model does not use. What is tolerated, and why:

- a ``model.`` prefix on every key (``OFAForConditionalGeneration`` layout);
- the tied token embedding under any of its three names (``encoder.embed_tokens``,
  ``decoder.embed_tokens``, ``decoder.output_projection``); if several are present they must be
  equal, since this model ties them;
- derived buffers (relative-position bucket tables, ``*.version``) that the model recomputes,
  and BatchNorm's ``num_batches_tracked`` counters, which inference never reads.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from captioner.ofa.model import OFAModel

TIED = (
    "encoder.embed_tokens.weight",
    "decoder.embed_tokens.weight",
    "decoder.output_projection.weight",
)
DERIVED = re.compile(
    r"^(encoder|decoder)\.(token_rp_bucket|image_rp_bucket|image_position_idx|version)$"
    r"|\.num_batches_tracked$|^final_logits_bias$"
)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class CheckpointMismatch(ValueError):
    """The file's tensors do not match the model's parameters (names or shapes)."""


def read_state_dict(folder: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder (single file or shards), on CPU."""
    folder = Path(folder)
    for name in WEIGHT_FILES:
        index = folder / f"{name}.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(_read_file(folder / shard))
            return state
        if (folder / name).is_file():
            return _read_file(folder / name)
    raise FileNotFoundError(
        f"OFA folder {str(folder)!r} has no weights: expected one of {', '.join(WEIGHT_FILES)}"
    )


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise CheckpointMismatch(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def _first(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def normalise_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip a ``model.`` prefix shared by every key; drop derived buffers and counters."""
    if state and all(k.startswith("model.") for k in state if not DERIVED.search(k)):
        state = {k.removeprefix("model."): v for k, v in state.items()}
    return {k: v for k, v in state.items() if not DERIVED.search(k)}


def check_and_load(model: OFAModel, state: dict[str, torch.Tensor]) -> None:
    """Copy ``state`` into ``model``; raise ``CheckpointMismatch`` naming the first bad keys.

    ``final_logits_bias`` (BART's, zeros in every OFA release) is dropped only when it is all
    zeros: this model has no such bias, and a nonzero one would change every logit."""
    for key in ("final_logits_bias", "model.final_logits_bias"):
        bias = state.get(key)
        if bias is not None and bool(bias.detach().float().abs().max() > 0):
            raise CheckpointMismatch(
                f"{key} is not zero: this OFA model adds no bias to its logits, so these "
                "weights would caption differently here"
            )
    state = normalise_keys(state)
    tied = [k for k in TIED if k in state]
    if tied:
        ref = state[tied[0]]
        for other in tied[1:]:
            if state[other].shape != ref.shape or not torch.equal(state[other], ref):
                raise CheckpointMismatch(
                    f"{other} differs from {tied[0]}: untied output embeddings are not supported"
                )
        for key in TIED:
            state.pop(key, None)
        state[TIED[0]] = ref
    expected = {
        k: v for k, v in model.state_dict().items() if k not in TIED[1:] and not DERIVED.search(k)
    }
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {_first(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {_first(unexpected)}")
    wrong = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if wrong:
        problems.append(f"{len(wrong)} with wrong shape: {_first(wrong, 3)}")
    if problems:
        raise CheckpointMismatch("OFA checkpoint does not match the model: " + "; ".join(problems))
    result = model.load_state_dict(state, strict=False)
    leftover = [k for k in result.missing_keys if k not in TIED and not DERIVED.search(k)]
    if leftover or result.unexpected_keys:
        raise CheckpointMismatch(f"load_state_dict left {leftover + result.unexpected_keys}")


def save_checkpoint(model: OFAModel, folder: str | Path) -> Path:
    """Write ``model.safetensors`` (tied embedding stored once) and ``config.json``."""
    from safetensors.torch import save_file

    from captioner.ofa.config import save_config

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().contiguous()
        for k, v in model.state_dict().items()
        if k not in TIED[1:] and not DERIVED.search(k)
    }
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    save_config(model.config, folder)
    return folder / "model.safetensors"
