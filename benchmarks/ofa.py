"""OFA captioning throughput: images/s per batch size, time split, and the FLOP floor.

    python -m benchmarks.ofa                      # CPU, ofa:random-tiny shapes, batch 1..64
    python -m benchmarks.ofa --size large --device cuda --batches 16,32,64,128

Random weights: the weights do not change the cost of a step, but they do decide when captions
end, and captioned images leave the batch; ``steps/image`` says how many decoder steps an image
took (17 = the full budget of 16 tokens and ``</s>``), and ``vs_kept`` is the speed-up over
keeping captioned images in the batch (measured interleaved in the same run). The floor: matmul
FLOPs of the encoder once plus ``max_new_tokens`` decoder steps for ``beam`` hypotheses, at the
device's peak rate (``--peak-tflops``); we report the measured fraction of that floor.

What is timed is what the pipeline calls: ``caption_arrays`` on uint8 frames (pinned and sent
to the GPU, normalised there), in the captioner's own autocast dtype (``amp_dtype``: fp16 on
CUDA under ``auto``, float32 on CPU). Each batch size is warmed up in both modes first (on CUDA
a new shape's first call carries allocator growth and kernel selection).
"""

from __future__ import annotations

import argparse
import io
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from captioner.ofa.captioner import OFACaptioner, build_random_tiny, normalize
from captioner.ofa.config import SIZES, OFAConfig
from captioner.ofa.generate import BeamConfig, StepTimes
from captioner.ofa.model import OFAModel, init_random
from captioner.ofa.resnet import OUT_CHANNELS
from captioner.ofa.tokenizer import OFATokenizer
from captioner.precision import autocast


def conv_flops(cfg: OFAConfig) -> float:
    """Multiply-adds x 2 of the ResNet stem at ``cfg.image_size`` (from the module shapes)."""
    from captioner.ofa.config import RESNET_LAYERS
    from captioner.ofa.resnet import ResNetStem

    stem = ResNetStem(RESNET_LAYERS[cfg.resnet_type]).to("meta")
    total, size = 0.0, cfg.image_size
    hooks = []

    def hook(mod, inp, out):
        nonlocal total
        k = mod.weight[0].numel()
        total += 2.0 * k * out.numel()

    for mod in stem.modules():
        if isinstance(mod, torch.nn.Conv2d):
            hooks.append(mod.register_forward_hook(hook))
    stem(torch.empty(1, 3, size, size, device="meta"))
    for h in hooks:
        h.remove()
    return total


def flop_floor(cfg: OFAConfig, prompt_len: int, beam: int, steps: int) -> float:
    """FLOPs per image: stem + encoder once, ``steps`` decoder steps for ``beam`` hypotheses."""
    d = cfg.d_model
    patches = (cfg.image_size // 16) ** 2
    n = patches + prompt_len
    enc_layer = 2 * n * (4 * d * d + 2 * d * cfg.encoder_ffn_dim) + 4 * n * n * d
    encoder = conv_flops(cfg) + 2 * patches * OUT_CHANNELS * d + cfg.encoder_layers * enc_layer
    dec = 0.0
    for t in range(1, steps + 1):
        # self (4 d^2) + cross q/out (2 d^2) + FFN + attention over t and n keys + logits
        per_tok = 2 * (6 * d * d + 2 * d * cfg.decoder_ffn_dim) + 4 * (t + n) * d
        dec += cfg.decoder_layers * per_tok + 2 * d * cfg.vocab_size
    cross_kv = cfg.decoder_layers * 2 * n * 2 * d * d  # once per image, shared by beams
    return encoder + cross_kv + beam * dec


def make_captioner(size: str, device: str) -> OFACaptioner:
    if size == "random-tiny":
        model, tok = build_random_tiny()
        return OFACaptioner(model, tok, "bench", device=device)
    # Real shapes, random weights; the tiny BPE stands in (only the prompt needs encoding).
    _, tiny_tok = build_random_tiny()
    cfg = SIZES[size]
    with torch.device(device if device != "cpu" else "cpu"):
        model = init_random(OFAModel(cfg), seed=0, std=0.02)
    return OFACaptioner(model, _Prompt(tiny_tok), f"bench-{size}", device=device)


class _Prompt(OFATokenizer):
    """The tiny tokenizer, used only to encode the prompt for a full-size random model."""

    def __init__(self, tok: OFATokenizer) -> None:
        super().__init__(tok.core)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--size",
        default="random-tiny",
        choices=["random-tiny", *SIZES],
        help="model shapes, e.g. --size large (default: random-tiny)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--batches", default="1,2,4,8,16,32,64", help="batch sizes, e.g. 1,8,64")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per batch size (default 3)")
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="device peak for the floor, e.g. 989 for H100 SXM fp16 dense (default: "
        "measured from a large matmul in the captioner's dtype)",
    )
    p.add_argument(
        "--eos-boost",
        type=float,
        default=0.0,
        help="make </s> likelier so random captions end early, as real ones do (OFA-Caption "
        "writes about 10 words), e.g. --eos-boost 3 for random-tiny; see steps/image (default 0)",
    )
    args = p.parse_args(argv)
    torch.manual_seed(0)
    cap = make_captioner(args.size, args.device)
    if args.eos_boost:
        boost_eos(cap, args.eos_boost)
    cfg = cap.model.config
    beam = BeamConfig()
    cap.beam = BeamConfig(banned_ids=cap.beam.banned_ids)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else measured_peak(cap)
    floor = flop_floor(cfg, cap.prompt_ids.numel(), beam.beam_size, beam.max_new_tokens)
    print(
        f"device={args.device} size={args.size} image={cfg.image_size}px "
        f"dtype={dtype_name(cap)} input=uint8 frames via caption_arrays (the pipeline's path) "
        f"threads={torch.get_num_threads()} peak={peak / 1e12:.2f} TFLOP/s "
        f"floor={floor / 1e9:.2f} GFLOP/image"
    )
    rng = np.random.default_rng(0)
    print(
        "batch  images/s  floor_images/s  fraction  encoder%  decoder%  bookkeeping%  mem_GiB"
        "  steps/image  vs_kept"
    )
    dropping, keeping = cap.beam, replace(cap.beam, drop_finished=False)
    for b in [int(x) for x in args.batches.split(",")]:
        frames = [
            rng.integers(0, 255, (cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
            for _ in range(b)
        ]
        warm_up(cap, frames, (dropping, keeping))
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        # Like with like, interleaved: finished images leave the batch (what runs) vs they stay.
        times = {True: StepTimes(), False: StepTimes()}
        walls = {True: 0.0, False: 0.0}
        for _ in range(args.repeats):
            for drop in (True, False):
                cap.beam, cap.timer = (dropping if drop else keeping), times[drop]
                t0 = time.perf_counter()
                cap.caption_arrays(frames)
                walls[drop] += time.perf_counter() - t0
        cap.beam, cap.timer = dropping, None
        timer = times[True]
        parts = timer.encoder + timer.decoder + timer.bookkeeping
        rate = b * args.repeats / walls[True]
        floor_rate = peak / floor
        mem = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else 0
        print(
            f"{b:5d}  {rate:8.1f}  {floor_rate:14.1f}  {rate / floor_rate:8.3f}  "
            f"{100 * timer.encoder / parts:8.1f}  {100 * timer.decoder / parts:8.1f}  "
            f"{100 * timer.bookkeeping / parts:12.1f}  {mem:7.2f}  "
            f"{timer.image_steps / timer.images:11.1f}  {walls[False] / walls[True]:6.2f}x"
        )
    pixels = normalize(torch.from_numpy(np.stack(frames)), cfg)
    print(shared_encoder_keys(cap, pixels, args.repeats))
    print(caption_worker_input(cap, min(b, 16), max(3, args.repeats)))


def warm_up(cap: OFACaptioner, frames: list[np.ndarray], beams: tuple[BeamConfig, ...]) -> None:
    """One untimed call per beam mode at this batch size: on CUDA the first call at a new
    shape grows the allocator's pool and picks cuBLAS kernels, which no later call pays."""
    for beam in beams:
        cap.beam, cap.timer = beam, None
        cap.caption_arrays(frames)
    cap.beam = beams[0]


def dtype_name(cap: OFACaptioner) -> str:
    """The captioner's autocast dtype as printed (``float32``: no autocast)."""
    return str(cap.amp_dtype or torch.float32).removeprefix("torch.")


def shared_encoder_keys(cap: OFACaptioner, pixels: torch.Tensor, repeats: int) -> str:
    """The decoder alone (start + every step), each image's cross-attention keys/values kept
    once and shared by its beams (what runs) vs one copy per beam (the usual layout). In the
    captioner's own autocast dtype (``amp_dtype``), as ``caption_pixels`` runs it."""
    model, beam = cap.model, cap.beam.beam_size
    steps = cap.beam.max_new_tokens + 1
    ids = cap.prompt_ids.to(cap.device).expand(pixels.size(0), -1)
    on_gpu = cap.device.type == "cuda"
    with torch.inference_mode(), autocast(cap.device, cap.amp_dtype):
        out = model.encoder(ids, pixels.to(cap.device))
        copies = type(out)(*(t.repeat_interleave(beam, 0) for t in out[:2]), out.positions)
        walls, mib = {True: 0.0, False: 0.0}, {}
        tokens = torch.zeros(pixels.size(0) * beam, 1, dtype=torch.long, device=cap.device)
        for _ in range(repeats):
            for shared in (True, False):
                if on_gpu:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                if shared:
                    state = model.decoder.start(out, steps + 1, batch_size=tokens.size(0))
                else:
                    state = model.decoder.start(copies, steps + 1)
                for _ in range(steps):
                    model.decoder.step(tokens, state)
                if on_gpu:
                    torch.cuda.synchronize()
                walls[shared] += time.perf_counter() - t0
                mib[shared] = sum(t.numel() * t.element_size() for kv in state.cross_kv for t in kv)
    return (
        f"decoder, {steps} steps, {pixels.size(0)} images x {beam} beams: encoder keys shared "
        f"by the beams {walls[True] / repeats * 1e3:.0f} ms vs a copy per beam "
        f"{walls[False] / repeats * 1e3:.0f} ms ({walls[False] / walls[True]:.2f}x); their "
        f"memory {mib[True] / 2**20:.1f} MiB vs {mib[False] / 2**20:.1f} MiB"
    )


def caption_worker_input(cap: OFACaptioner, batch: int, repeats: int) -> str:
    """What the caption worker does per image before the model: decode the middle-frame JPEG,
    resize and normalise (the worker doing it all) vs normalise uint8 frames a CPU worker made
    (``caption_input``, what the pipeline runs). A 854x480 ``testsrc2`` JPEG, the pipeline's
    default frame size."""
    import tempfile

    from benchmarks.middle_frame import rate
    from captioner.base import ImagePrep
    from pipelines.ff import Limits, run_tool

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frame.jpg"
        run_tool(
            ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=854x480"]
            + ["-frames:v", "1", "-q:v", "2", str(path)],
            Limits(timeout_s=60, memory_mb=0),
        )
        jpg = path.read_bytes()
    cfg = cap.model.config
    prep = ImagePrep(cfg.image_size)
    frames = [prep(jpg) for _ in range(batch)]
    walls = {"jpeg": 0.0, "frames": 0.0}
    for _ in range(repeats):
        t0 = time.perf_counter()
        cap.pixels([Image.open(io.BytesIO(jpg)) for _ in range(batch)]).to(cap.device)
        walls["jpeg"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        rgb = torch.from_numpy(np.stack(frames))
        if cap.device.type == "cuda":  # as caption_arrays sends them: pinned, asynchronously
            rgb = rgb.pin_memory()
        normalize(rgb.to(cap.device, non_blocking=True), cfg)
        if cap.device.type == "cuda":
            torch.cuda.synchronize()
        walls["frames"] += time.perf_counter() - t0
    per = {k: v / (repeats * batch) * 1e3 for k, v in walls.items()}
    return (
        f"caption worker, input per image at {cfg.image_size} px: from the JPEG "
        f"{per['jpeg']:.2f} ms vs from CPU-made frames {per['frames']:.2f} ms "
        f"({per['jpeg'] / per['frames']:.1f}x); the CPU workers pay "
        f"{1e3 / rate(lambda: prep(jpg), repeats):.2f} ms for the frame instead"
    )


def boost_eos(cap: OFACaptioner, boost: float) -> None:
    """Shift the decoder's final LayerNorm bias along ``</s>``'s (tied) output embedding.

    Only the logit of ``</s>`` and its near neighbours rise; the cost of a step is unchanged.
    """
    eos_id = cap.model.config.eos_token_id
    with torch.no_grad():
        eos = cap.model.decoder.embed_tokens.weight[eos_id]
        cap.model.decoder.layer_norm.bias += boost * eos / eos.norm()


def measured_peak(cap: OFACaptioner) -> float:
    """FLOP/s of a large matmul in the dtype the captioner computes in (its ``amp_dtype``:
    fp16 on CUDA under ``auto``; float32 on CPU), so the floor is of the same arithmetic."""
    device, on_gpu = cap.device, cap.device.type == "cuda"
    dtype = cap.amp_dtype or torch.float32
    n = 4096 if on_gpu else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    a @ a
    if on_gpu:
        torch.cuda.synchronize()
    t0, reps = time.perf_counter(), 5
    for _ in range(reps):
        a @ a
    if on_gpu:
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t0)


if __name__ == "__main__":
    main()
