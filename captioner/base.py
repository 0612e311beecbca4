"""The captioner interface and the word-limit rule every backend shares."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence

from PIL import Image

_SPACES = re.compile(r"\s+")


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
