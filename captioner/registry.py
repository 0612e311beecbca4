"""``--captioner SPEC`` -> a Captioner. Specs: ``none``, ``random-tiny``, ``hf:PATH``,
``ofa:PATH``, ``ofa:random-tiny``.

Backends register a loader under a prefix, ``loader(arg, max_words, device, precision)`` (arg:
the spec after the colon; precision: ``captioner.precision``'s auto/bf16/fp16/fp32); a spec
naming an unknown prefix is an error that lists the known ones (never a silent fallback).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

from captioner.base import Captioner, ImagePrep

Loader = Callable[[str, int, str | None, str], Captioner]


def _hf(arg: str, max_words: int, device: str | None, precision: str) -> Captioner:
    from captioner.hf import HFCaptioner

    return HFCaptioner.from_dir(arg, max_words=max_words, device=device, precision=precision)


def _random_tiny(arg: str, max_words: int, device: str | None, precision: str) -> Captioner:
    from captioner.tiny import random_tiny_captioner

    return random_tiny_captioner(max_words=max_words, device=device, precision=precision)


def _ofa(arg: str, max_words: int, device: str | None, precision: str) -> Captioner:
    from captioner.ofa.captioner import OFACaptioner, random_tiny_captioner

    if arg == "random-tiny":
        return random_tiny_captioner(max_words=max_words, device=device, precision=precision)
    return OFACaptioner.from_dir(arg, max_words=max_words, device=device, precision=precision)


BACKENDS: dict[str, Loader] = {"hf": _hf, "random-tiny": _random_tiny, "ofa": _ofa}


def load_captioner(
    spec: str, max_words: int = 16, device: str | None = None, precision: str = "auto"
) -> Captioner | None:
    """Build the captioner a spec names; ``None`` for ``none`` (samples get no caption).

    ``precision``: its GPU autocast (``captioner.precision``: auto, bf16, fp16, fp32)."""
    spec = spec.strip()
    if spec == "none":
        return None
    prefix, _, arg = spec.partition(":")
    if prefix not in BACKENDS:
        known = ", ".join(
            ["none", *sorted(f"{k}:PATH" if k != "random-tiny" else k for k in BACKENDS)]
        )
        raise ValueError(f"unknown captioner {spec!r}; known: {known}")
    return BACKENDS[prefix](arg, max_words, device, precision)


@functools.lru_cache(maxsize=8)
def input_prep(spec: str) -> ImagePrep | None:
    """The model-free CPU half of ``spec``'s input (reads at most a ``config.json``).

    ``None`` for backends that decode images themselves (``hf:``, ``random-tiny``, ``none``).
    An ``ofa:PATH`` without a ``config.json`` raises ``FileNotFoundError`` naming the folder.
    """
    prefix, _, arg = spec.strip().partition(":")
    if prefix != "ofa":
        return None
    from captioner.ofa.captioner import ofa_input_prep

    return ofa_input_prep(arg)


OFA_DIR_ENV = "CLIPVIP_OFA_DIR"
OFA_DEFAULT_DIR = "~/.cache/clipvip/ofa-caption-large"


def default_spec() -> str:
    """``ofa:PATH`` when CLIP-ViP's captioner is on this machine, else the tiny random model.

    PATH is ``$CLIPVIP_OFA_DIR`` or ``~/.cache/clipvip/ofa-caption-large`` (a converted
    ``caption_large_best_clean``, see docs/ofa.md). Nothing is downloaded either way; the
    random fallback is announced by ``prepare`` so nobody trains on word salad unknowingly.
    """
    for candidate in (os.environ.get(OFA_DIR_ENV), OFA_DEFAULT_DIR):
        if candidate and (Path(candidate).expanduser() / "config.json").is_file():
            return f"ofa:{Path(candidate).expanduser()}"
    return "random-tiny"
