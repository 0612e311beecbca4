"""Which dtype a captioner's GPU autocast runs in; CPU always runs float32.

``auto`` picks bf16 only where the GPU computes it natively (compute capability 8.0 and later:
A100, H100...), for models of unknown fp16 range (the Hugging Face backend). Older GPUs (V100,
T4) run bf16 by emulation, several times slower than their fp16 tensor cores, so ``auto`` gives
fp16 there. A backend whose model is known to run in fp16 passes ``prefer=torch.float16``:
OFA was trained and evaluated in fp16 (``--fp16`` in its run scripts), and bf16's 8-bit
mantissa moves its captions further from float32 (random tiny OFA, 96 images, CPU autocast:
10 captions differ in bf16, 2 in fp16), at the same tensor-core speed on A100 and H100.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from captioner.base import PRECISIONS


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` (a CUDA device) computes bf16 in hardware, not by emulation."""
    with torch.cuda.device(device):
        return torch.cuda.is_bf16_supported(including_emulation=False)


def autocast_dtype(
    device: torch.device,
    precision: str = "auto",
    has_native_bf16: Callable[[torch.device], bool] = native_bf16,
    prefer: torch.dtype = torch.bfloat16,
) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; ``None``: no autocast (float32).

    CPU gets ``None`` whatever ``precision`` says (float32 is exact and what the tests pin).
    ``auto`` on CUDA is ``prefer``, except bf16 on a GPU without native bf16 (fp16 there);
    ``has_native_bf16`` is asked only then (tests pass a fake GPU's answer).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "auto":
        if prefer == torch.float16:
            return torch.float16
        return torch.bfloat16 if has_native_bf16(device) else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


def autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[Any]:
    """Autocast to ``dtype`` on ``device`` (from ``autocast_dtype``); ``None``: run as is."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
