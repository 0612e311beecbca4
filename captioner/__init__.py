"""Auxiliary captions for clips' middle frames (CLIP-ViP's OFA-Caption step).

A ``Captioner`` turns a batch of images into one short caption each. Backends are chosen with a
spec string (``load_captioner("hf:/models/blip")``); none of them fetches anything from a hub.
"""

from captioner.base import Captioner, clean_caption, trim_words
from captioner.registry import BACKENDS, load_captioner

__all__ = ["BACKENDS", "Captioner", "clean_caption", "load_captioner", "trim_words"]
