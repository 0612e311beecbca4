"""The captioner interface and the word-limit rule every backend shares."""

from __future__ import annotations

import io
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

_SPACES = re.compile(r"\s+")
# A captioner's GPU autocast choices (``captioner.precision``); here, free of torch, for the CLI.
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def trim_words(text: str, max_words: int) -> str:
    """At most ``max_words`` whitespace-separated words, cut on a word boundary."""
    words = text.split()
    return " ".join(words[:max_words])


def clean_caption(text: str, max_words: int) -> str:
    """Lowercase, single spaces, no trailing period, at most ``max_words`` words (as OFA prints)."""
    text = _SPACES.sub(" ", text).strip().lower().rstrip(" .")
    return trim_words(text, max_words)


class Captioner(ABC):
    """Images in, one caption each out, in order; a batch never changes any single caption.

    ``name`` is recorded in every sample's JSON as ``caption_model``.
    """

    name: str = "captioner"
    max_words: int = 16

    @abstractmethod
    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        """Caption each image; ``len(result) == len(images)``."""

    def caption_arrays(self, arrays: Sequence[np.ndarray]) -> list[str]:
        """Caption inputs a CPU worker already made with this backend's ``ImagePrep``.

        Only backends that have an ``ImagePrep`` (``captioner.registry.input_prep``) get these;
        the others are given decoded images through ``caption``.
        """
        raise NotImplementedError(f"{type(self).__name__} takes images, not prepared arrays")


def square_rgb(image: Image.Image, size: int) -> np.ndarray:
    """(size, size, 3) uint8 RGB: a bicubic square resize, as OFA's preprocessing does."""
    return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC))


@dataclass(frozen=True)
class ImagePrep:
    """The CPU half of a captioner's input: middle-frame JPEG -> the uint8 array the model takes.

    Why split it off: decoding and resizing a frame for OFA-large (480 px) costs 5-9 ms on a
    core, so at the 200 images/s a GPU can caption, doing it inside the GPU's own process would
    take two cores there and leave the GPU waiting. Model-free and picklable, it runs on the CPU
    workers with the other CPU stages; the caption worker only normalises (on the device) and
    captions. uint8, not float: a quarter of the bytes to move.
    """

    size: int

    def __call__(self, jpg: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(jpg)) as image:
            return square_rgb(image, self.size)
