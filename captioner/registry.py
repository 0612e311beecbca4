"""``--captioner SPEC`` -> a Captioner. Specs: ``none``, ``random-tiny``, ``hf:PATH``,
``ofa:PATH``, ``ofa:random-tiny`` (``check_spec`` checks the form, ``check_spec_files`` the
folder, both before any work, so a typo never surfaces on a worker after a run folder is made).

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


# Backends whose argument is a folder: ``ofa:`` or ``hf:`` alone names nothing.
PATH_BACKENDS = frozenset({"hf", "ofa"})


def known_specs() -> str:
    """Every accepted form, for error messages: a user who typed a wrong spec sees the right ones."""
    bare = sorted(k for k in BACKENDS if k not in PATH_BACKENDS)
    paths = sorted(f"{k}:PATH" for k in BACKENDS if k in PATH_BACKENDS)
    return ", ".join(["none", *bare, "ofa:random-tiny", *paths])


def check_spec(spec: str) -> str:
    """``spec`` stripped, when it has one of the accepted forms; else ``ValueError`` listing them.

    Only the form: no file is read, so the CLI can refuse a typo while parsing its arguments,
    before a run folder is made (``check_spec_files`` looks at the folder a spec names)."""
    spec = spec.strip()
    prefix, _, arg = spec.partition(":")
    if spec == "none" or (prefix in BACKENDS and (arg.strip() or prefix not in PATH_BACKENDS)):
        return spec
    raise ValueError(f"unknown captioner {spec!r}; known: {known_specs()}")


def check_spec_files(spec: str) -> None:
    """Raise ``FileNotFoundError`` naming the folder when ``ofa:PATH`` or ``hf:PATH`` lacks its
    ``config.json``: found on the driver before a run starts, not on a worker after staging."""
    prefix, _, arg = check_spec(spec).partition(":")
    if prefix == "ofa":
        input_prep(spec)  # reads the config.json (its resolution), raises when there is none
    elif prefix == "hf" and not (Path(arg) / "config.json").is_file():  # as HFCaptioner reads it
        raise FileNotFoundError(
            f"captioner folder {arg!r} has no config.json: give a local Hugging Face "
            "image-to-text model (saved with save_pretrained)"
        )


def load_captioner(
    spec: str, max_words: int = 16, device: str | None = None, precision: str = "auto"
) -> Captioner | None:
    """Build the captioner a spec names; ``None`` for ``none`` (samples get no caption).

    ``precision``: its GPU autocast (``captioner.precision``: auto, bf16, fp16, fp32)."""
    spec = check_spec(spec)
    if spec == "none":
        return None
    prefix, _, arg = spec.partition(":")
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
