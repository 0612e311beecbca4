"""OFA caption clean-up: punctuation deleted as the official output does, then the word limit."""

from __future__ import annotations

import pytest

from captioner.base import clean_caption
from captioner.ofa.captioner import clean_ofa_caption


@pytest.mark.parametrize(
    ("decoded", "cleaned"),
    [
        (" a man, riding a skateboard.", "a man riding a skateboard"),
        # deleted, not replaced by a space (str.translate with string.punctuation -> None)
        (" a man's dog isn't on the t-shirt", "a mans dog isnt on the tshirt"),
        (' two "people" ; at the (beach)!?', "two people at the beach"),
        (" a cat - sitting on a couch .", "a cat sitting on a couch"),
        ("", ""),
        (" ...", ""),
    ],
)
def test_ofa_captions_lose_every_ascii_punctuation_mark(decoded, cleaned):
    assert clean_ofa_caption(decoded, 16) == cleaned


def test_punctuation_goes_before_the_word_limit_so_it_never_takes_a_word():
    words = [f"w{i}" for i in range(16)]
    decoded = " " + " , ".join(words[:4]) + " " + " ".join(words[4:]) + " extra ."
    assert clean_ofa_caption(decoded, 16) == " ".join(words)
    # the shared rule alone would count the commas and cut early
    assert clean_caption(decoded, 16) != " ".join(words)


def test_non_ascii_punctuation_is_kept_as_the_official_table_keeps_it():
    assert clean_ofa_caption(" a man\u2019s caf\u00e9", 16) == "a man\u2019s caf\u00e9"


def test_other_backends_keep_the_shared_rule():
    assert clean_caption(" a man, riding a skateboard.", 16) == "a man, riding a skateboard"


def test_frames_prepared_for_another_resolution_are_refused():
    import numpy as np

    from captioner.ofa.captioner import random_tiny_captioner

    captioner = random_tiny_captioner(device="cpu")
    size = captioner.model.config.image_size
    with pytest.raises(ValueError, match=f"OFA captioner of {size}x{size}x3 uint8"):
        captioner.caption_arrays([np.zeros((size * 2, size * 2, 3), np.uint8)])
