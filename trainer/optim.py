"""AdamW parameter groups and the warmup-then-cosine schedule.

Weight-decay rule: no decay on biases, on the logit scale (both as the official code) and on
LayerNorm weights. The official code lists ``LayerNorm.weight`` too, but Hugging Face CLIP names
its norms ``layer_norm1``/``pre_layrnorm``, so that pattern never matched and CLIP-ViP decayed its
LayerNorm gains toward 0. A gain is a scale, not a feature detector: decaying it shrinks every
residual branch instead of regularising a mapping, so we exempt it, found by module type rather
than by name. Embedding tables (positions, temporal, proxies, class token) keep decay, as before.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trainer.config import OptimConfig


def no_decay_names(model: nn.Module) -> set[str]:
    """Names of the parameters exempt from weight decay (see the module docstring)."""
    names: set[str] = set()
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        for pname, _ in module.named_parameters(recurse=False):
            full = prefix + pname
            if pname == "bias" or pname == "logit_scale" or isinstance(module, nn.LayerNorm):
                names.add(full)
    return names


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    exempt = no_decay_names(model)
    decay, keep = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (keep if name in exempt else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": keep, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)


def warmup_cosine(warmup_steps: int, total_steps: int):
    """LR multiplier of step ``step`` (1-based), the official ``warmup_cosine`` and the
    multiplier of ``transformers.get_cosine_schedule_with_warmup`` at the same index:
    ``step / warmup_steps`` up to ``warmup_steps``, then a half cosine from 1 at
    ``warmup_steps`` to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The scheduler whose ``last_epoch`` counts the steps taken (0 before the first), so the
    n-th update (``last_epoch`` n - 1) runs at ``warmup_cosine`` of step n.

    Why n and not n - 1: the official loop does ``global_step += 1`` before
    ``get_lr_sched(global_step)``, so its first update runs at lr / warmup_steps and its last
    at the cosine's 0. Indexed from 0 (as ``get_cosine_schedule_with_warmup`` is used by most
    loops) the first update would run at lr 0: a step that trains nothing.
    """
    warmup = round(cfg.warmup_ratio * total_steps)  # 0: no warmup, cosine from update 1
    factor = warmup_cosine(warmup, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: factor(done + 1))
