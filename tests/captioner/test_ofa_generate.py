"""Beam search and the ``ofa:`` captioner: batching never changes a caption, limits hold."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from captioner import load_captioner
from captioner.base import ImagePrep
from captioner.ofa.captioner import OFACaptioner, normalize, save_random_tiny
from captioner.ofa.generate import BeamConfig, StepTimes, ban_repeated_ngrams, beam_search
from captioner.registry import input_prep


@pytest.fixture(scope="module")
def captioner() -> OFACaptioner:
    return load_captioner("ofa:random-tiny")


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    noise = [
        Image.fromarray(rng.integers(0, 255, (40 + 9 * i, 70, 3), dtype=np.uint8)) for i in range(4)
    ]
    flat = [Image.new("RGB", (64, 48), c) for c in ((200, 20, 20), (10, 10, 240))]
    gradient = Image.fromarray(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1)), "L")
    return noise + flat + [gradient]


def test_caption_alone_equals_caption_in_a_batch_of_mixed_images(captioner):
    images = _images()
    batched = captioner.caption(images)
    alone = [captioner.caption([im])[0] for im in images]
    assert batched == alone
    assert captioner.caption(images[::-1]) == batched[::-1]
    assert len(set(batched)) > 1  # different images, different captions: the test has teeth


def test_images_whose_caption_ends_leave_the_batch_without_changing_any_caption(captioner):
    images = _images()
    captioner.timer = timer = StepTimes()
    try:
        batched = captioner.caption(images)
    finally:
        captioner.timer = None
    assert batched == [captioner.caption([im])[0] for im in images]
    lengths = [len(text.split()) for text in batched]
    assert min(lengths) < 16 and max(lengths) == 16, "need captions ending early and late"
    budget = captioner.beam.max_new_tokens + 1  # decoder steps of an image that never ends
    assert timer.images == len(images)
    assert timer.image_steps < timer.images * budget  # a batch that never shrank would use all


def test_captions_are_lowercase_words_at_most_max_words(captioner):
    for text in captioner.caption(_images()):
        words = text.split()
        assert 0 < len(words) <= 16
        assert text == text.lower() and not text.endswith(".")


def test_max_words_trims_on_a_word_boundary():
    short = load_captioner("ofa:random-tiny", max_words=3)
    full = load_captioner("ofa:random-tiny")
    images = _images()[:3]
    for a, b in zip(short.caption(images), full.caption(images), strict=True):
        assert a == " ".join(b.split()[:3])


def test_no_generated_caption_repeats_a_token_trigram(captioner):
    model, beam = captioner.model, captioner.beam
    ids = captioner.prompt_ids.expand(4, -1)
    for seq in beam_search(model, ids, captioner.pixels(_images()[:4]), beam):
        trigrams = [tuple(seq[i : i + 3]) for i in range(len(seq) - 2)]
        assert len(trigrams) == len(set(trigrams))
        assert len(seq) <= beam.max_new_tokens


def test_repeated_ngram_ban_blocks_exactly_the_completing_token():
    tokens = torch.tensor([[0, 5, 6, 7, 5, 6]])  # "5 6" seen before, followed by 7
    lprobs = torch.zeros(1, 10)
    out = ban_repeated_ngrams(lprobs, tokens, 3)
    assert torch.isinf(out[0, 7]) and int(torch.isinf(out).sum()) == 1


def test_beam_of_one_is_greedy_decoding(captioner):
    model = captioner.model
    pixels = captioner.pixels(_images()[:1])
    ids = captioner.prompt_ids[None]
    cfg = BeamConfig(beam_size=1, max_new_tokens=6, no_repeat_ngram_size=0)
    got = beam_search(model, ids, pixels, cfg)[0]
    with torch.no_grad():
        state = model.decoder.start(model.encoder(ids, pixels), 8)
        seq, tok = [], torch.tensor([[0]])
        for _ in range(6):
            logits = model.decoder.step(tok, state)[0, -1]
            logits[1] = float("-inf")  # pad is never generated
            nxt = int(logits.argmax())
            if nxt == 2:
                break
            seq.append(nxt)
            tok = torch.tensor([[nxt]])
    assert got == seq


def test_ofa_path_backend_loads_a_saved_folder_with_the_same_captions(tmp_path, captioner):
    folder = save_random_tiny(tmp_path / "ofa-tiny")
    loaded = load_captioner(f"ofa:{folder}")
    assert loaded.name == "ofa:ofa-tiny"
    images = _images()[:3]
    # The folder model has no word-only ban (that is a demo nicety), so compare raw beams.
    pixels = captioner.pixels(images)
    ids = captioner.prompt_ids.expand(3, -1)
    assert beam_search(loaded.model, ids, pixels, captioner.beam) == beam_search(
        captioner.model, ids, pixels, captioner.beam
    )


def test_input_prep_is_model_free_and_sized_from_the_checkpoint_config(tmp_path):
    assert input_prep("ofa:random-tiny") == ImagePrep(64)
    folder = save_random_tiny(tmp_path / "ofa-tiny")
    assert input_prep(f"ofa:{folder}") == ImagePrep(64)
    for spec in ("none", "random-tiny", "hf:/models/blip"):
        assert input_prep(spec) is None  # these backends decode images themselves
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        input_prep(f"ofa:{tmp_path / 'missing'}")


def test_captions_from_cpu_prepared_frames_equal_captions_from_images(captioner):
    prep = input_prep("ofa:random-tiny")
    jpgs = []
    for image in _images():
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="JPEG")
        jpgs.append(buf.getvalue())
    arrays = [prep(jpg) for jpg in jpgs]
    assert all(a.dtype == np.uint8 and a.shape == (64, 64, 3) for a in arrays)
    from_images = captioner.caption([Image.open(io.BytesIO(jpg)) for jpg in jpgs])
    assert captioner.caption_arrays(arrays) == from_images
    pixels = captioner.pixels([Image.open(io.BytesIO(jpg)) for jpg in jpgs])
    assert torch.equal(
        pixels, normalize(torch.from_numpy(np.stack(arrays)), captioner.model.config)
    )


def test_beam_search_under_bf16_autocast_keeps_a_bf16_cache_and_near_fp32_logits(captioner):
    """The GPU path's autocast, run on CPU: caches in bf16, shared encoder keys, masks and
    scores in the right dtypes, captions still well formed."""
    model, cfg = captioner.model, captioner.beam
    pixels = captioner.pixels(_images())
    ids = captioner.prompt_ids.expand(len(pixels), -1)
    target = torch.tensor([[0, 40, 41, 42, 43]]).expand(len(pixels), -1)
    with torch.no_grad():
        ref = model(ids, pixels, target)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(ids, pixels, target)
            state = model.decoder.start(model.encoder(ids, pixels), 8, batch_size=5 * len(pixels))
            beams = beam_search(model, ids, pixels, cfg)
    assert state.self_kv[0][0].dtype == torch.bfloat16
    assert state.cross_kv[0][0].dtype == torch.bfloat16
    assert state.cross_kv[0][0].size(0) == len(pixels)
    assert (logits.float() - ref).abs().max() < 0.1 * ref.abs().max()
    assert all(0 < len(seq) <= cfg.max_new_tokens for seq in beams)
