"""The GPU autocast dtype: bf16 only where native, fp16 otherwise, float32 on CPU."""

from __future__ import annotations

import inspect

import pytest
import torch

from captioner.ofa.captioner import random_tiny_captioner
from captioner.ofa.generate import beam_search
from captioner.precision import autocast_dtype

CUDA = torch.device("cuda:0")


def _gpu(native: bool):
    asked = []

    def has_native_bf16(device: torch.device) -> bool:
        asked.append(device)
        return native

    return has_native_bf16, asked


def test_auto_is_bf16_on_a_gpu_with_native_bf16_and_fp16_without():
    ampere, asked = _gpu(native=True)
    assert autocast_dtype(CUDA, "auto", ampere) == torch.bfloat16
    assert asked == [CUDA]
    volta, _ = _gpu(native=False)
    assert autocast_dtype(CUDA, "auto", volta) == torch.float16
    assert autocast_dtype(CUDA, has_native_bf16=volta) == torch.float16  # auto is the default


def test_explicit_precision_wins_and_never_asks_the_gpu():
    never, asked = _gpu(native=False)
    assert autocast_dtype(CUDA, "bf16", never) == torch.bfloat16
    assert autocast_dtype(CUDA, "fp16", never) == torch.float16
    assert autocast_dtype(CUDA, "fp32", never) is None
    assert asked == []


@pytest.mark.parametrize("precision", ["auto", "bf16", "fp16", "fp32"])
def test_cpu_always_runs_float32(precision):
    never, asked = _gpu(native=True)
    assert autocast_dtype(torch.device("cpu"), precision, never) is None
    assert asked == []


def test_unknown_precision_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="auto, bf16, fp16, fp32"):
        autocast_dtype(torch.device("cpu"), "half")
    with pytest.raises(ValueError, match="unknown precision"):
        random_tiny_captioner(device="cpu", precision="float16")


def test_native_check_uses_an_argument_this_torch_has():
    # native_bf16 calls is_bf16_supported(including_emulation=False): pin that it exists.
    assert "including_emulation" in inspect.signature(torch.cuda.is_bf16_supported).parameters


def test_captioner_on_cpu_runs_without_autocast_whatever_it_is_asked():
    assert random_tiny_captioner(device="cpu", precision="fp16").amp_dtype is None


def test_beam_search_under_fp16_autocast_keeps_an_fp16_cache_and_near_fp32_logits():
    """The fp16 GPU path (GPUs without native bf16), run on CPU: fp16 caches, masks that stay
    -inf, captions well formed and close to float32 logits."""
    captioner = random_tiny_captioner(device="cpu")
    model, cfg = captioner.model, captioner.beam
    gen = torch.Generator().manual_seed(0)
    pixels = torch.rand(3, 3, 64, 64, generator=gen) * 2 - 1
    ids = captioner.prompt_ids.expand(len(pixels), -1)
    target = torch.tensor([[0, 40, 41, 42, 43]]).expand(len(pixels), -1)
    with torch.no_grad():
        ref = model(ids, pixels, target)
        with torch.autocast("cpu", dtype=torch.float16):
            logits = model(ids, pixels, target)
            state = model.decoder.start(model.encoder(ids, pixels), 8, batch_size=5 * len(pixels))
            beams = beam_search(model, ids, pixels, cfg)
    assert state.self_kv[0][0].dtype == torch.float16
    assert state.cross_kv[0][0].dtype == torch.float16
    assert torch.isfinite(logits).all()
    assert (logits.float() - ref).abs().max() < 0.05 * ref.abs().max()
    assert all(0 < len(seq) <= cfg.max_new_tokens for seq in beams)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_logits_come_out_in_float32_under_autocast(dtype):
    """bf16 rounds logits of 16-32 to steps of 0.06-0.125, enough to reorder beams: the output
    projection runs in float32 on the decoder's (autocast) hidden state."""
    captioner = random_tiny_captioner(device="cpu")
    decoder = captioner.model.decoder
    hidden = torch.randn(4, decoder.embed_tokens.weight.shape[1]).to(dtype)
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        logits = decoder.output_logits(hidden)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, hidden.float() @ decoder.embed_tokens.weight.t())


def test_auto_is_fp16_for_ofa_on_any_gpu_and_never_asks_it():
    """OFA ran in fp16 officially, and bf16 moves its captions further from float32."""
    ampere, asked = _gpu(native=True)
    assert autocast_dtype(CUDA, "auto", ampere, prefer=torch.float16) == torch.float16
    assert autocast_dtype(CUDA, "bf16", ampere, prefer=torch.float16) == torch.bfloat16
    assert asked == []
    assert autocast_dtype(torch.device("cpu"), "auto", prefer=torch.float16) is None
