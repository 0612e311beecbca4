"""One training step on a fixed global batch, alone or as one rank of a torchrun gloo job.

Run by ``test_train.py``: in-process for the single-process reference, and as
``torchrun --nproc_per_node 2 ddp_step.py WEIGHTS OUT`` for the 2-rank run, where each rank
takes its half of the same global batch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import CLIPTokenizer

from trainer.config import load_config
from trainer.data import Collate
from trainer.optim import build_optimizer, build_scheduler
from trainer.train import build_model, setup_distributed, train_step

GLOBAL_BATCH = 4
SUBTITLES = ["a red screen", "blue sky", "green grass", "colour bars"]
CAPTIONS = ["mean colour f00", "mean colour 00f", "mean colour 070", "mean colour 666"]
# rows 0 and 3 show one clip and sit on different ranks: the same-clip rule must see the
# global batch, not each rank's half
VIDEO_IDS = ["clip-a", "clip-b", "clip-c", "clip-a"]


def global_batch(tokenizer: CLIPTokenizer) -> dict:
    g = torch.Generator().manual_seed(7)
    collate = Collate(tokenizer, max_text_len=16)
    return {
        "keys": [str(i) for i in range(GLOBAL_BATCH)],
        "video_ids": VIDEO_IDS,
        "errors": [],
        "video": torch.randn(GLOBAL_BATCH, 2, 3, 32, 32, generator=g),
        "frame": torch.randn(GLOBAL_BATCH, 1, 3, 32, 32, generator=g),
        "subtitle": collate.tokens(SUBTITLES),
        "caption": collate.tokens(CAPTIONS),
    }


def rows(batch: dict, lo: int, hi: int) -> dict:
    out = {"keys": batch["keys"][lo:hi], "video_ids": batch["video_ids"][lo:hi], "errors": []}
    for key in ("video", "frame"):
        out[key] = batch[key][lo:hi]
    for key in ("subtitle", "caption"):
        out[key] = {k: v[lo:hi] for k, v in batch[key].items()}
    return out


def one_step(weights: Path, rank: int, world: int) -> dict[str, torch.Tensor]:
    """Parameters after one step, with this rank holding rows [rank*n, (rank+1)*n)."""
    cfg = load_config("tiny", {"optim.warmup_ratio": 0.0, "max_steps": 10})
    d = setup_distributed()
    model = build_model(cfg, weights, d.device)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, 10)
    wrapped = model
    if world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
    tokenizer = CLIPTokenizer.from_pretrained(str(weights), local_files_only=True)
    n = GLOBAL_BATCH // world
    batch = rows(global_batch(tokenizer), rank * n, (rank + 1) * n)
    result = train_step(wrapped, [batch], cfg, optimizer, scheduler, d.device)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    state["loss"] = torch.tensor(result["loss"])
    return state


if __name__ == "__main__":
    import torch.distributed as dist

    weights, out = Path(sys.argv[1]), Path(sys.argv[2])
    d = setup_distributed()
    state = one_step(weights, d.rank, d.world)
    if d.rank == 0:
        save_file(state, str(out))
    dist.barrier()
    dist.destroy_process_group()
