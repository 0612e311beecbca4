"""``ofa:PATH`` and ``ofa:random-tiny``: OFA-Caption behind the ``Captioner`` interface.

Images are resized to the checkpoint's square resolution (bicubic; fixed size, so a batch needs
no padding) and normalised to [-1, 1], then encoded and beam-searched in one batch with the
prompt `` what does the image describe?``. On CUDA autocast in fp16 under ``auto`` on every
GPU (OFA was trained and evaluated in fp16; bf16 moves its captions further), bf16 or fp32 only
when asked (``captioner.precision``); float32 on CPU. Captions are cleaned up as OFA's
official output is (``clean_ofa_caption``). In the pipeline the resize runs on the CPU workers
(``ofa_input_prep``) and only uint8 frames reach the caption worker, which normalises them on
its device (``caption_arrays``).
"""

from __future__ import annotations

import logging
import string
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from captioner.base import Captioner, ImagePrep, clean_caption, square_rgb
from captioner.ofa.checkpoint import check_and_load, read_state_dict, save_checkpoint
from captioner.ofa.config import OFAConfig, load_config
from captioner.ofa.generate import BeamConfig, StepTimes, beam_search
from captioner.ofa.model import OFAModel, init_random
from captioner.ofa.tokenizer import OFATokenizer, load_tokenizer, write_tiny_bpe
from captioner.precision import autocast, autocast_dtype

PROMPT = " what does the image describe?"
log = logging.getLogger(__name__)

# The random test model: real OFA code paths, tiny widths, a 64-pixel image (4 x 4 patches).
RANDOM_TINY = OFAConfig(
    d_model=32,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    resnet_type="resnet-tiny",
    image_size=64,
    num_codes=16,
    num_bins=10,
    token_bucket_size=32,
    image_bucket_size=8,
    max_position_embeddings=64,
)


# OFA's official caption output (``eval_caption`` in OFA's utils/eval_utils.py, and the same
# table on its training targets) deletes every ASCII punctuation character, without putting a
# space in its place: "a man's t-shirt." -> "a mans tshirt".
_NO_PUNCTUATION = str.maketrans("", "", string.punctuation)


def clean_ofa_caption(text: str, max_words: int) -> str:
    """A decoded OFA caption as the official code prints it, then the shared word limit.

    Punctuation goes first, so a stray ``,`` or ``-`` token never counts as one of the
    ``max_words``; then ``clean_caption`` (single spaces, lowercase, at most ``max_words``).
    The official output is not lowercased, but its training captions are, so for real models
    that step changes nothing; it keeps every backend's captions in the same form.
    """
    return clean_caption(text.translate(_NO_PUNCTUATION), max_words)


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def normalize(rgb: torch.Tensor, cfg: OFAConfig) -> torch.Tensor:
    """(B, S, S, 3) uint8 -> (B, 3, S, S) float ``(x / 255 - mean) / std``, on ``rgb``'s device."""
    x = rgb.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(cfg.image_mean, device=x.device)[:, None, None]
    std = torch.tensor(cfg.image_std, device=x.device)[:, None, None]
    return (x - mean) / std


def ofa_input_prep(arg: str) -> ImagePrep:
    """``ofa:ARG``'s CPU-side input: square frames at the checkpoint's resolution."""
    if arg == "random-tiny":
        return ImagePrep(RANDOM_TINY.image_size)
    return ImagePrep(load_config(Path(arg).expanduser()).image_size)


class OFACaptioner(Captioner):
    """Beam-search captions from an OFA model; see ``captioner.ofa.generate`` for the search."""

    def __init__(
        self,
        model: OFAModel,
        tokenizer: OFATokenizer,
        name: str,
        max_words: int = 16,
        beam: BeamConfig | None = None,
        device: str | None = None,
        prompt: str = PROMPT,
        precision: str = "auto",
    ) -> None:
        self.device = pick_device(device)
        # None: no autocast (CPU, or precision="fp32"); see captioner.precision for "auto".
        # OFA was trained and evaluated in fp16; bf16 moves its captions further (precision.py)
        self.amp_dtype = autocast_dtype(self.device, precision, prefer=torch.float16)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.name = name
        self.max_words = max_words
        beam = beam or BeamConfig()
        self.beam = replace(
            beam, banned_ids=tuple(sorted({*beam.banned_ids, *tokenizer.non_text_ids}))
        )
        self.prompt_ids = torch.tensor(tokenizer.encode(prompt), dtype=torch.long)
        self.timer: StepTimes | None = None  # set to a StepTimes to profile (benchmarks)

    @classmethod
    def from_dir(
        cls, path: str, max_words: int = 16, device: str | None = None, precision: str = "auto"
    ) -> OFACaptioner:
        folder = Path(path)
        cfg = load_config(folder)
        tokenizer = load_tokenizer(folder, cfg)
        model = OFAModel(cfg)
        check_and_load(model, read_state_dict(folder))
        log.info(
            "loaded OFA from %s (%d params)", folder, sum(p.numel() for p in model.parameters())
        )
        return cls(
            model, tokenizer, f"ofa:{folder.name}", max_words, device=device, precision=precision
        )

    def pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        size = self.model.config.image_size
        rgb = torch.from_numpy(np.stack([square_rgb(im, size) for im in images]))
        return normalize(rgb, self.model.config)

    @torch.inference_mode()
    def caption_pixels(self, pixels: torch.Tensor) -> list[str]:
        """Captions for normalised ``(B, 3, S, S)`` float pixels (``pixels``, ``normalize``)."""
        pixels = pixels.to(self.device, non_blocking=True)
        input_ids = self.prompt_ids.to(self.device).expand(pixels.size(0), -1)
        with autocast(self.device, self.amp_dtype):
            ids = beam_search(self.model, input_ids, pixels, self.beam, timer=self.timer)
        return [clean_ofa_caption(self.tokenizer.decode(seq), self.max_words) for seq in ids]

    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        if not images:
            return []
        return self.caption_pixels(self.pixels(images))

    def caption_arrays(self, arrays: Sequence[np.ndarray]) -> list[str]:
        """Captions for ``ofa_input_prep`` output: uint8 frames go to the device, 4x smaller
        than floats, and are normalised there."""
        if not len(arrays):
            return []
        size = self.model.config.image_size
        wrong = [a.shape for a in arrays if a.shape != (size, size, 3) or a.dtype != np.uint8]
        if wrong:  # prepared for another checkpoint: it would run at that resolution silently
            raise ValueError(
                f"frames of shape {wrong[0]} given to an OFA captioner of {size}x{size}x3 uint8 "
                "(ofa_input_prep for this checkpoint makes those)"
            )
        rgb = torch.from_numpy(np.stack(arrays))
        if self.device.type == "cuda":
            rgb = rgb.pin_memory()
        rgb = rgb.to(self.device, non_blocking=True)
        return self.caption_pixels(normalize(rgb, self.model.config))


def build_random_tiny(
    seed: int = 0, folder: str | Path | None = None
) -> tuple[OFAModel, OFATokenizer]:
    """The seeded tiny OFA and its tiny BPE tokenizer (written to ``folder`` or a temp dir)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(folder) if folder else Path(tmp)
        write_tiny_bpe(target)
        bpe = len(__import__("json").loads((target / "vocab.json").read_text()))
        cfg = replace(RANDOM_TINY, vocab_size=bpe + RANDOM_TINY.num_codes + RANDOM_TINY.num_bins)
        tokenizer = load_tokenizer(target, cfg)
    model = init_random(OFAModel(cfg), seed).eval()
    return model, tokenizer


def word_only_bans(tokenizer: OFATokenizer) -> tuple[int, ...]:
    """Ids of every token except whole lowercase words (``Ġword``) and ``</s>``.

    Random weights favour single bytes; banning them makes the tiny model's captions word salad
    instead of byte salad, so demo output reads like a caption. Only the random model uses it.
    """
    vocab = tokenizer.core.get_vocab(with_added_tokens=True)
    keep = {i for tok, i in vocab.items() if tok.startswith("Ġ") and tok[1:].isalpha()}
    keep.add(tokenizer.eos_token_id)
    return tuple(sorted(set(vocab.values()) - keep))


def random_tiny_captioner(
    max_words: int = 16, device: str | None = None, precision: str = "auto"
) -> OFACaptioner:
    model, tokenizer = build_random_tiny()
    beam = BeamConfig(banned_ids=word_only_bans(tokenizer))
    return OFACaptioner(
        model,
        tokenizer,
        "ofa:random-tiny",
        max_words,
        beam=beam,
        device=device,
        precision=precision,
    )


def save_random_tiny(folder: str | Path, seed: int = 0) -> Path:
    """Write the tiny model as an official-layout folder (what ``ofa:PATH`` loads)."""
    model, _ = build_random_tiny(seed, folder)
    save_checkpoint(model, folder)
    return Path(folder)
