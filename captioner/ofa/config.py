"""OFA sizes as data: the fields of an official ``config.json`` this implementation reads.

Only inference-relevant fields are kept; unknown keys in a ``config.json`` are ignored, but a
field that would change the architecture away from what ``captioner.ofa.model`` builds (no
normformer, no type embedding...) is refused rather than silently mis-loaded.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

log = logging.getLogger(__name__)

# ResNet stage depths of the visual stem (only the first three stages exist in OFA).
# ``resnet-tiny`` is ours: one block per stage, for the random test model only.
RESNET_LAYERS = {
    "resnet50": (3, 4, 6),
    "resnet101": (3, 4, 23),
    "resnet152": (3, 8, 36),
    "resnet-tiny": (1, 1, 1),
}

# BART's byte-level BPE has 50265 ids; OFA appends 8192 image codes and 1000 location bins.
BART_VOCAB = 50265
NUM_CODES = 8192
NUM_BINS = 1000


@dataclass(frozen=True)
class OFAConfig:
    """Architecture and preprocessing of one OFA checkpoint (names follow ``config.json``)."""

    vocab_size: int = BART_VOCAB + NUM_CODES + NUM_BINS
    d_model: int = 1024
    encoder_layers: int = 12
    decoder_layers: int = 12
    encoder_attention_heads: int = 16
    decoder_attention_heads: int = 16
    encoder_ffn_dim: int = 4096
    decoder_ffn_dim: int = 4096
    activation_function: str = "gelu"
    max_position_embeddings: int = 1024
    resnet_type: str = "resnet152"
    token_bucket_size: int = 256
    image_bucket_size: int = 42
    attn_scale_factor: float = 2.0
    code_image_size: int = 128
    scale_embedding: bool = False
    # fairseq OFA's decoder adds its absolute position embedding to the token embedding
    # (``entangle``) unless trained with ``--disable-entangle``, as every official OFA release
    # was (the caption and pretraining run scripts all pass it); the public Hugging Face port
    # has no such field and always adds it. A config.json without the key reads as the
    # releases were trained (``config_from_dict`` logs it).
    disable_entangle: bool = True
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2
    unk_token_id: int = 3
    num_codes: int = NUM_CODES
    num_bins: int = NUM_BINS
    # Preprocessing: square resize to ``image_size`` (bicubic), then (x - 0.5) / 0.5.
    image_size: int = 480
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    @property
    def encoder_head_dim(self) -> int:
        return self.d_model // self.encoder_attention_heads

    def to_json(self) -> dict:
        data = asdict(self)
        data.update(
            model_type="ofa",
            normformer=True,
            encoder_normalize_before=True,
            decoder_normalize_before=True,
            layernorm_embedding=True,
            patch_layernorm_embedding=True,
            code_layernorm_embedding=True,
            add_type_embedding=True,
            share_decoder_input_output_embed=True,
            entangle_position_embedding=False,
        )
        return data


# Switches the official checkpoints all have on; this implementation builds only that variant.
REQUIRED_TRUE = (
    "normformer",
    "encoder_normalize_before",
    "decoder_normalize_before",
    "layernorm_embedding",
    "patch_layernorm_embedding",
    "code_layernorm_embedding",
    "add_type_embedding",
    "share_decoder_input_output_embed",
)

# Official sizes (OFA model card): layers, width, heads, FFN, visual stem, caption resolution.
SIZES: dict[str, OFAConfig] = {
    "tiny": OFAConfig(
        d_model=256,
        encoder_layers=4,
        decoder_layers=4,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=1024,
        decoder_ffn_dim=1024,
        resnet_type="resnet50",
        image_size=256,
    ),
    "medium": OFAConfig(
        d_model=512,
        encoder_layers=4,
        decoder_layers=4,
        encoder_attention_heads=8,
        decoder_attention_heads=8,
        encoder_ffn_dim=2048,
        decoder_ffn_dim=2048,
        resnet_type="resnet101",
        image_size=256,
    ),
    "base": OFAConfig(
        d_model=768,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=12,
        decoder_attention_heads=12,
        encoder_ffn_dim=3072,
        decoder_ffn_dim=3072,
        resnet_type="resnet101",
        image_size=384,
    ),
    "large": OFAConfig(resnet_type="resnet152", image_size=480),
    "huge": OFAConfig(
        d_model=1280,
        encoder_layers=24,
        decoder_layers=12,
        encoder_attention_heads=16,
        decoder_attention_heads=16,
        encoder_ffn_dim=5120,
        decoder_ffn_dim=5120,
        resnet_type="resnet152",
        image_size=480,
    ),
}
SIZES["large-caption"] = SIZES["large"]


def config_from_dict(data: dict, image_size: int | None = None) -> OFAConfig:
    """Read an official ``config.json`` dict; refuse architecture switches we do not build."""
    off = [k for k in REQUIRED_TRUE if k in data and not data[k]]
    if off:
        raise ValueError(f"unsupported OFA variant: config.json sets {', '.join(off)} to false")
    if data.get("resnet_type", "resnet152") not in RESNET_LAYERS:
        raise ValueError(
            f"unsupported OFA visual stem {data['resnet_type']!r}; known: {sorted(RESNET_LAYERS)}"
        )
    known = {f.name for f in fields(OFAConfig)}
    kwargs = {k: v for k, v in data.items() if k in known}
    for key in ("image_mean", "image_std"):
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key])
    if "disable_entangle" not in data:
        log.warning(
            "OFA config.json does not say whether the decoder adds positions to its tokens; "
            "taking disable_entangle=true, as every official OFA release was trained (add "
            '"disable_entangle": false to config.json for a model trained without it)'
        )
    cfg = OFAConfig(**kwargs)
    if "image_size" not in data:
        cfg = replace(cfg, image_size=image_size or _resolution_for_width(cfg.d_model))
    elif image_size:
        cfg = replace(cfg, image_size=image_size)
    return cfg


def _resolution_for_width(d_model: int) -> int:
    """Official configs do not record the caption resolution; it follows the size."""
    return {256: 256, 512: 256, 768: 384}.get(d_model, 480)


def load_config(folder: str | Path) -> OFAConfig:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"OFA folder {str(folder)!r} has no config.json")
    return config_from_dict(json.loads(path.read_text()))


def save_config(cfg: OFAConfig, folder: str | Path) -> None:
    Path(folder, "config.json").write_text(json.dumps(cfg.to_json(), indent=2) + "\n")
