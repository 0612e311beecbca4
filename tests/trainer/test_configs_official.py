"""The shipped configs carry the official CLIP-ViP hyper-parameters.

The official values are written down here as data, copied by hand from microsoft/XPretrain,
``CLIP-ViP/src/configs/pretrain/pretrain_vip_base_{32,16}.json`` and
``CLIP-ViP/src/configs/msrvtt_retrieval/msrvtt_retrieval_vip_base_{32,16}.json``. Their
``train_batch_size`` is per GPU (``run_pretrain.py`` gives it to each rank's DataLoader under a
DistributedSampler and logs it as "Single-GPU Non-Accumulated batch size"), as our
``data.batch_size`` is per rank (``plan_steps`` divides the samples by world x batch_size).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainer.config import load_config
from trainer.optim import build_scheduler

PRETRAIN = {
    "learning_rate": 5e-6,
    "betas": [0.9, 0.98],
    "weight_decay": 0.05,
    "warmup_ratio": 0.01,
    "decay": "cosine",
    "grad_norm": 5.0,
    "num_train_epochs": 5,
    "train_num_frms": 12,
    "input_res": [224, 224],
    "max_txt_len": 70,
    "logit_scale_init_value": 4.60,
    "temporal_size": 12,
    "add_cls_num": 3,
    "gradient_accumulation_steps": 1,
    "loss_name": "NCELearnableTempLoss_vsc_fc",
}
MSRVTT = {
    **PRETRAIN,
    "learning_rate": 1e-6,
    "weight_decay": 0.2,
    "grad_norm": 1.0,
    "num_train_epochs": 100,
    "max_txt_len": 50,
    "loss_name": "NCELearnableTempLoss",
}
# config name -> (official file, its values); the batch size differs between B/32 and B/16
OFFICIAL = {
    "pretrain_b32": ("pretrain/pretrain_vip_base_32.json", {**PRETRAIN, "train_batch_size": 32}),
    "pretrain_b16": ("pretrain/pretrain_vip_base_16.json", {**PRETRAIN, "train_batch_size": 16}),
    "msrvtt_b32": (
        "msrvtt_retrieval/msrvtt_retrieval_vip_base_32.json",
        {**MSRVTT, "train_batch_size": 16},
    ),
    "msrvtt_b16": (
        "msrvtt_retrieval/msrvtt_retrieval_vip_base_16.json",
        {**MSRVTT, "train_batch_size": 16},
    ),
}
# the official loss classes and our variant names
LOSSES = {"NCELearnableTempLoss_vsc_fc": "d", "NCELearnableTempLoss": "vs"}


def _ours(name: str) -> dict:
    """Our config in the official keys' terms."""
    cfg = load_config(name)
    return {
        "learning_rate": cfg.optim.lr,
        "betas": list(cfg.optim.betas),
        "weight_decay": cfg.optim.weight_decay,
        "warmup_ratio": cfg.optim.warmup_ratio,
        "decay": "cosine",  # the one schedule we have; its shape is pinned below
        "grad_norm": cfg.optim.clip_grad,
        "num_train_epochs": cfg.epochs if cfg.max_steps == 0 else None,
        "train_num_frms": cfg.data.num_frames,
        "input_res": [cfg.data.image_size, cfg.data.image_size],
        "max_txt_len": cfg.data.max_text_len,
        "logit_scale_init_value": cfg.model.logit_scale_init,
        "temporal_size": cfg.model.temporal_size,
        "add_cls_num": cfg.model.num_proxies - 1,  # the class token is proxy 0
        "gradient_accumulation_steps": cfg.grad_accum,
        "loss_name": next(k for k, v in LOSSES.items() if v == cfg.loss),
        "train_batch_size": cfg.data.batch_size,
    }


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_shipped_config_has_the_official_hyper_parameters(name: str) -> None:
    source, official = OFFICIAL[name]
    ours = _ours(name)
    differ = {k: (ours[k], v) for k, v in official.items() if ours[k] != v}
    assert not differ, f"{name} differs from the official {source}: {differ}"


def test_the_schedule_is_warmup_then_cosine_to_zero() -> None:
    """'decay': 'cosine' with 'warmup_ratio': the lr climbs linearly to the peak, then halves
    at the middle of the decay and reaches 0 at the last step."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, load_config("pretrain_b32").optim, 1000)
    lrs = []
    for _ in range(1000):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    warmup = 10  # 1% of 1000
    assert lrs[:warmup] == pytest.approx([(s + 1) / warmup for s in range(warmup)])
    assert lrs[504] == pytest.approx(0.5)  # step 505: half-way through the 990 decay steps
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
