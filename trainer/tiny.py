"""A random tiny CLIP saved as a normal weights folder, for CPU smoke runs, tests and the demo.

Nothing can be downloaded, so the tokenizer is built here too: CLIP's byte-level scheme with a
vocabulary of single characters (every byte, alone and word-final) and no merges. The folder then
loads exactly like real weights: ``CLIPModel.from_pretrained(dir)``, ``CLIPTokenizer(dir)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

TINY_WIDTH = 32
TINY_LAYERS = 2
TINY_HEADS = 2
TINY_IMAGE = 32
TINY_PATCH = 8


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def write_tiny_tokenizer(folder: Path) -> int:
    """Write ``vocab.json`` + ``merges.txt`` (CLIP format) into ``folder``; return the vocab size."""
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), "utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", "utf-8")
    return len(tokens)


# name -> (text width, text layers, text heads, vision width, layers, heads, patch, image, proj)
ARCHES = {
    "tiny": (
        TINY_WIDTH,
        TINY_LAYERS,
        TINY_HEADS,
        TINY_WIDTH,
        TINY_LAYERS,
        TINY_HEADS,
        TINY_PATCH,
        TINY_IMAGE,
        TINY_WIDTH,
    ),
    "b32": (512, 12, 8, 768, 12, 12, 32, 224, 512),  # ViT-B/32's shapes, random weights
    "b16": (512, 12, 8, 768, 12, 12, 16, 224, 512),
}


def build_random_clip(
    folder: str | Path, arch: str = "tiny", seed: int = 0, image_size: int | None = None
) -> Path:
    """Create (or reuse) a seeded random CLIP of ``arch`` + the tiny tokenizer in ``folder``.

    ``b32``/``b16`` have the real models' shapes (for speed measurements without weights).
    """
    if arch not in ARCHES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHES)}")
    tw, tl, th, vw, vl, vh, patch, image, proj = ARCHES[arch]
    out = Path(folder)
    if (out / "config.json").exists() and (out / "vocab.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    vocab_size = write_tiny_tokenizer(out)
    tokenizer = CLIPTokenizer(str(out / "vocab.json"), str(out / "merges.txt"))
    tokenizer.save_pretrained(str(out))
    config = CLIPConfig(
        text_config=dict(
            hidden_size=tw,
            intermediate_size=4 * tw if arch != "tiny" else 2 * tw,
            num_hidden_layers=tl,
            num_attention_heads=th,
            vocab_size=vocab_size,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=vw,
            intermediate_size=4 * vw if arch != "tiny" else 2 * vw,
            num_hidden_layers=vl,
            num_attention_heads=vh,
            image_size=image_size or image,
            patch_size=patch,
        ),
        projection_dim=proj,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(str(out), safe_serialization=True)
    return out


def build_tiny_clip(folder: str | Path, seed: int = 0, image_size: int = TINY_IMAGE) -> Path:
    """Create (or reuse) a seeded random tiny CLIP + tokenizer in ``folder``; return the folder."""
    return build_random_clip(folder, "tiny", seed=seed, image_size=image_size)
