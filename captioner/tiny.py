"""A tiny, randomly initialised image-to-text model built from a config, for tests and the demo.

It is a real ``VisionEncoderDecoderModel`` (ViT encoder, GPT-2 decoder) with a word-level
tokenizer over a small English vocabulary, seeded so that every process builds the same weights
and so captions are reproducible across engines. Its captions are word salad, by design.
"""

from __future__ import annotations

import torch

from captioner.hf import HFCaptioner

VOCAB_WORDS = [
    "a",
    "the",
    "of",
    "on",
    "in",
    "with",
    "and",
    "is",
    "are",
    "man",
    "woman",
    "person",
    "people",
    "dog",
    "cat",
    "car",
    "street",
    "room",
    "table",
    "playing",
    "walking",
    "running",
    "sitting",
    "standing",
    "red",
    "blue",
    "green",
    "white",
    "black",
    "small",
    "large",
    "video",
    "screen",
    "pattern",
    "color",
    "colors",
    "bars",
    "lines",
    "circle",
    "light",
    "dark",
    "view",
    "scene",
    "group",
    "two",
    "three",
    "field",
    "water",
    "sky",
    "tree",
    "building",
    "road",
    "board",
    "game",
    "picture",
    "image",
    "shot",
    "close",
    "up",
    "over",
    "near",
    "front",
]
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def build_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + VOCAB_WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )


def build_random_tiny(seed: int = 0):
    """(model, image_processor, tokenizer) with weights drawn from ``seed``."""
    from transformers import (
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessorPil,  # the PIL backend: ViTImageProcessor wants torchvision, or warns
    )

    tokenizer = build_tokenizer()
    encoder = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        initializer_range=0.5,
    )
    decoder = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        add_cross_attention=True,
        is_decoder=True,
        initializer_range=0.5,
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = tokenizer.bos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VisionEncoderDecoderModel(config=config)
    model.generation_config.decoder_start_token_id = tokenizer.bos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    # Random weights favour special tokens; keep them out so captions are words.
    model.generation_config.suppress_tokens = [
        tokenizer.pad_token_id,
        tokenizer.bos_token_id,
        tokenizer.unk_token_id,
    ]
    model.generation_config.begin_suppress_tokens = [tokenizer.eos_token_id]
    processor = ViTImageProcessorPil(size={"height": 32, "width": 32}, do_resize=True)
    return model, processor, tokenizer


def random_tiny_captioner(
    max_words: int = 16, device: str | None = None, precision: str = "auto"
) -> HFCaptioner:
    model, processor, tokenizer = build_random_tiny()
    return HFCaptioner(
        model,
        processor,
        tokenizer,
        "random-tiny",
        max_words,
        num_beams=3,
        device=device,
        precision=precision,
    )


def save_random_tiny(path: str) -> None:
    """Save the tiny model as a local Hugging Face folder (what ``hf:PATH`` loads)."""
    model, processor, tokenizer = build_random_tiny()
    model.save_pretrained(path)
    processor.save_pretrained(path)
    tokenizer.save_pretrained(path)
