"""The OFA encoder-decoder, inference path, with parameter names of the public checkpoints.

What sets OFA apart from BART, and what this file is mostly about:

- the image enters the encoder as a grid of ResNet features (``embed_images``), projected to
  ``d_model`` and placed before the prompt tokens, with a type embedding (0 text, 1 image);
- positions never enter the token stream in the encoder. Instead every attention gets an additive
  bias: an absolute part, ``pos_q(p_i) . pos_k(p_j)`` from layer-normed position embeddings shared
  by all layers, plus a relative part per layer (a bucketed 1-D table for text, a 2-D table for
  image patches);
- NormFormer layers: pre-norm with extra layer norms after attention and inside the FFN, and a
  learned per-head scale (``c_attn``);
- attention logits are scaled by ``(head_dim * attn_scale_factor) ** -0.5`` (factor 2).

Shapes in comments: B batch, N encoder length (patches + text), L text, T decoder length,
H heads, D model width, E head width.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from captioner.ofa.config import RESNET_LAYERS, OFAConfig
from captioner.ofa.resnet import OUT_CHANNELS, ResNetStem

# fairseq's default maximum source length; the log-bucket formula for text is defined over it.
MAX_BUCKET_POSITIONS = 1024


def token_rel_buckets(length: int, bucket_size: int) -> torch.Tensor:
    """``(L, L)`` indices into a text relative-position table of ``2 * bucket_size - 1`` rows.

    Offsets within ``bucket_size // 2`` get their own row; longer ones share log-spaced rows.
    """
    pos = torch.arange(length)
    rel = pos[:, None] - pos[None, :]
    mid = bucket_size // 2
    sign = torch.sign(rel)
    near = (rel < mid) & (rel > -mid)
    abs_rel = torch.where(near, torch.full_like(rel, mid - 1), rel.abs())
    log_rel = torch.ceil(
        torch.log(abs_rel / mid) / math.log((MAX_BUCKET_POSITIONS - 1) / mid) * (mid - 1)
    )
    log_rel = (log_rel + mid).int()
    bucket = torch.where(abs_rel.le(mid), rel, log_rel * sign).long()
    return bucket + bucket_size - 1


def image_rel_buckets(position_ids: torch.Tensor, bucket_size: int) -> torch.Tensor:
    """``(P, P)`` indices into an image relative-position table for patch position ids.

    Id ``k >= 1`` is the patch at row ``(k-1) // bucket_size``, column ``(k-1) % bucket_size``;
    a 2-D offset maps to its own row. Id 0 (unused by captioning) has three reserved rows.
    """
    span = 2 * bucket_size - 1
    num_rel = span * span + 3
    k = position_ids.long() - 1
    y, x = k // bucket_size, k % bucket_size
    rel = (y[:, None] - y[None, :] + bucket_size - 1) * span + (x[:, None] - x[None, :])
    rel = rel + bucket_size - 1
    zero = position_ids == 0
    rel = torch.where(zero[None, :], torch.full_like(rel, num_rel - 2), rel)
    rel = torch.where(zero[:, None], torch.full_like(rel, num_rel - 3), rel)
    return torch.where(zero[:, None] & zero[None, :], torch.full_like(rel, num_rel - 1), rel)


def image_position_ids(height: int, width: int, bucket_size: int) -> torch.Tensor:
    """Row-major patch ids ``1 + row * bucket_size + col`` for an ``height x width`` grid."""
    rows = torch.arange(height)[:, None] * bucket_size
    return (rows + torch.arange(width)[None, :] + 1).flatten()


class Attention(nn.Module):
    """Multi-head attention with an additive bias and NormFormer's per-head scale ``c_attn``."""

    def __init__(self, dim: int, heads: int, scale_factor: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scaling = float(self.head_dim * scale_factor) ** -0.5
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.c_attn = nn.Parameter(torch.ones(heads))

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, H, T, E)."""
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split(self.k_proj(x)), self.split(self.v_proj(x))

    def attend(
        self,
        x: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        bias: torch.Tensor,
        group: int = 1,
    ) -> torch.Tensor:
        """Queries from ``x`` (B * G, T, D) over ``k, v`` (B, H, S, E); ``bias`` adds to logits.

        ``group`` G > 1: every G consecutive rows of ``x`` (the beams of one image) share one
        row of ``k, v``; their queries are stacked so the keys are read once, not G times, and
        ``bias`` is then laid out for (G * T) queries, beam-major.
        """
        q = self.split(self.q_proj(x))  # (B * G, H, T, E)
        rows, heads, t, e = q.shape
        if group > 1:
            q = q.view(rows // group, group, heads, t, e).transpose(1, 2)
            q = q.reshape(rows // group, heads, group * t, e)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.to(q.dtype), scale=self.scaling
        )
        if group > 1:
            out = out.view(rows // group, heads, group, t, e).transpose(1, 2)
            out = out.reshape(rows, heads, t, e)
        out = out * self.c_attn.to(out.dtype)[None, :, None, None]
        return self.out_proj(out.transpose(1, 2).reshape(rows, t, -1))


def _ffn(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pre-norm FFN with NormFormer's inner layer norm; returns the residual sum."""
    y = layer.activation(layer.fc1(layer.final_layer_norm(x)))
    return x + layer.fc2(layer.ffn_layer_norm(y))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: OFAConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.self_attn = Attention(d, cfg.encoder_attention_heads, cfg.attn_scale_factor)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.self_attn_mid_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, cfg.encoder_ffn_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_dim, d)
        self.ffn_layer_norm = nn.LayerNorm(cfg.encoder_ffn_dim)
        self.final_layer_norm = nn.LayerNorm(d)
        self.activation = _activation(cfg.activation_function)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        h = self.self_attn_layer_norm(x)
        k, v = self.self_attn.keys_values(h)
        x = x + self.self_attn_mid_layer_norm(self.self_attn.attend(h, k, v, bias))
        return _ffn(self, x)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: OFAConfig) -> None:
        super().__init__()
        d, heads = cfg.d_model, cfg.decoder_attention_heads
        self.self_attn = Attention(d, heads, cfg.attn_scale_factor)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.self_attn_mid_layer_norm = nn.LayerNorm(d)
        self.cross_attn = Attention(d, heads, cfg.attn_scale_factor)
        self.cross_attn_layer_norm = nn.LayerNorm(d)
        self.cross_attn_mid_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, cfg.decoder_ffn_dim)
        self.fc2 = nn.Linear(cfg.decoder_ffn_dim, d)
        self.ffn_layer_norm = nn.LayerNorm(cfg.decoder_ffn_dim)
        self.final_layer_norm = nn.LayerNorm(d)
        self.activation = _activation(cfg.activation_function)

    def forward(
        self,
        x: torch.Tensor,
        self_kv: tuple[torch.Tensor, torch.Tensor],
        self_bias: torch.Tensor,
        cross_kv: tuple[torch.Tensor, torch.Tensor],
        cross_bias: torch.Tensor,
    ) -> torch.Tensor:
        """``self_kv`` already holds this step's keys (see ``OFADecoder.step``)."""
        h = self.self_attn_layer_norm(x)
        x = x + self.self_attn_mid_layer_norm(self.self_attn.attend(h, *self_kv, self_bias))
        h = self.cross_attn_layer_norm(x)
        group = x.size(0) // cross_kv[0].size(0)  # beams per image
        cross = self.cross_attn.attend(h, *cross_kv, cross_bias, group=group)
        x = x + self.cross_attn_mid_layer_norm(cross)
        return _ffn(self, x)


def _activation(name: str):
    if name == "gelu":
        return F.gelu
    if name == "relu":
        return F.relu
    raise ValueError(f"unsupported OFA activation {name!r} (gelu or relu)")


class EncoderOutput(NamedTuple):
    hidden: torch.Tensor  # (B, N, D)
    padding: torch.Tensor  # (B, N) bool, True on padded prompt tokens
    positions: torch.Tensor  # (N, D) layer-normed position embeddings, the same for every row


class OFAEncoder(nn.Module):
    def __init__(self, cfg: OFAConfig, embed_tokens: nn.Embedding) -> None:
        super().__init__()
        d, heads = cfg.d_model, cfg.encoder_attention_heads
        self.cfg = cfg
        self.embed_tokens = embed_tokens
        self.embed_scale = math.sqrt(d) if cfg.scale_embedding else 1.0
        self.type_embedding = nn.Embedding(2, d)
        self.embed_images = ResNetStem(RESNET_LAYERS[cfg.resnet_type])
        self.image_proj = nn.Linear(OUT_CHANNELS, d)
        self.patch_layernorm_embedding = nn.LayerNorm(d)
        self.embed_positions = nn.Embedding(cfg.max_position_embeddings + 2, d)
        self.embed_image_positions = nn.Embedding(cfg.image_bucket_size**2 + 1, d)
        self.pos_ln = nn.LayerNorm(d)
        self.image_pos_ln = nn.LayerNorm(d)
        self.pos_scaling = float(d / heads * cfg.attn_scale_factor) ** -0.5
        self.pos_q_linear = nn.Linear(d, d)
        self.pos_k_linear = nn.Linear(d, d)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.layer_norm = nn.LayerNorm(d)
        num_token_rel = 2 * cfg.token_bucket_size - 1
        num_image_rel = (2 * cfg.image_bucket_size - 1) ** 2 + 3
        self.token_rel_pos_table_list = nn.ModuleList(
            nn.Embedding(num_token_rel, heads) for _ in range(cfg.encoder_layers)
        )
        self.image_rel_pos_table_list = nn.ModuleList(
            nn.Embedding(num_image_rel, heads) for _ in range(cfg.encoder_layers)
        )
        self.layernorm_embedding = nn.LayerNorm(d)

    def forward(self, input_ids: torch.Tensor, pixels: torch.Tensor) -> EncoderOutput:
        """``input_ids`` (B, L) prompt tokens, ``pixels`` (B, 3, S, S) normalised images."""
        cfg, heads = self.cfg, self.cfg.encoder_attention_heads
        device = input_ids.device
        feats = self.embed_images(pixels)  # (B, 1024, h, w)
        h, w = feats.shape[-2:]
        patch_ids = image_position_ids(h, w, cfg.image_bucket_size).to(device)  # (P,)
        patches = feats.flatten(2).transpose(1, 2)  # (B, P, 1024)
        b, num_text = input_ids.shape
        num_patches = patches.size(1)

        text = self.embed_scale * self.embed_tokens(input_ids)
        text = self.layernorm_embedding(text + self.type_embedding.weight[0])
        image = self.embed_scale * self.image_proj(patches)
        image = self.patch_layernorm_embedding(image + self.type_embedding.weight[1])
        x = torch.cat([image, text], dim=1)  # (B, N, D)
        padding = torch.cat(
            [input_ids.new_zeros(b, num_patches, dtype=torch.bool), input_ids.eq(cfg.pad_token_id)],
            dim=1,
        )
        x = x.masked_fill(padding[..., None], 0.0)

        text_pos = self.pos_ln(self.embed_positions(torch.arange(num_text, device=device)))
        image_pos = self.image_pos_ln(self.embed_image_positions(patch_ids))
        positions = torch.cat([image_pos, text_pos], dim=0)  # (N, D), the same for every row
        n = positions.size(0)
        pos_q = self.pos_q_linear(positions).view(n, heads, -1).transpose(0, 1) * self.pos_scaling
        pos_k = self.pos_k_linear(positions).view(n, heads, -1).transpose(0, 1)
        abs_bias = pos_q @ pos_k.transpose(1, 2)  # (H, N, N)
        pad_bias = torch.zeros(b, 1, 1, n, device=device, dtype=abs_bias.dtype)
        pad_bias = pad_bias.masked_fill(padding[:, None, None, :], float("-inf"))

        text_buckets = token_rel_buckets(num_text, cfg.token_bucket_size).to(device)
        image_buckets = image_rel_buckets(patch_ids, cfg.image_bucket_size)
        for idx, layer in enumerate(self.layers):
            bias = abs_bias.clone()
            text_table = self.token_rel_pos_table_list[idx].weight
            image_table = self.image_rel_pos_table_list[idx].weight
            bias[:, num_patches:, num_patches:] += F.embedding(text_buckets, text_table).permute(
                2, 0, 1
            )
            bias[:, :num_patches, :num_patches] += F.embedding(image_buckets, image_table).permute(
                2, 0, 1
            )
            x = layer(x, bias[None] + pad_bias)  # bias (B, H, N, N)
        return EncoderOutput(self.layer_norm(x), padding, positions)


class DecoderState:
    """What beam search carries between steps: cached keys/values and position biases.

    Self-attention keys/values live in preallocated ``(B * G, H, T_max, E)`` buffers written
    one step at a time, one row per hypothesis; cross-attention keys/values are computed once
    from the encoder output, one row per image, and shared by its ``group`` G beams (OFA-large
    at 480 px: 45 MB of them per image in bf16, which beam 5 would otherwise copy five times
    and read five times per step). ``reorder`` follows the beams that survived a step.
    """

    def __init__(
        self, self_kv: list, cross_kv: list, self_bias, cross_bias, pad_bias, group: int = 1
    ) -> None:
        self.self_kv = self_kv
        self.cross_kv = cross_kv
        self.self_bias = self_bias  # per layer (H, T_max, T_max): absolute + relative
        self.cross_bias = cross_bias  # (H, T_max, N)
        self.pad_bias = pad_bias  # (B, 1, 1, N): -inf on encoder padding, one row per image
        self.group = group
        self.length = 0

    def reorder(self, index: torch.Tensor) -> None:
        """Hypothesis rows ``index`` of the old state become the new state's rows.

        Each image's G new rows must come from its own old rows (beam search only ever
        continues an image's own hypotheses), in image order; fewer rows than before means
        images left the batch, and their encoder-side rows go too.
        """
        self.self_kv = [
            (k.index_select(0, index), v.index_select(0, index)) for k, v in self.self_kv
        ]
        images = self.pad_bias.size(0)
        if index.numel() != images * self.group:
            kept = index[:: self.group] // self.group  # the old image row of each new image
            self.cross_kv = [
                (k.index_select(0, kept), v.index_select(0, kept)) for k, v in self.cross_kv
            ]
            self.pad_bias = self.pad_bias.index_select(0, kept)


class OFADecoder(nn.Module):
    def __init__(self, cfg: OFAConfig, embed_tokens: nn.Embedding) -> None:
        super().__init__()
        d, heads = cfg.d_model, cfg.decoder_attention_heads
        self.cfg = cfg
        self.embed_tokens = embed_tokens
        self.embed_scale = math.sqrt(d) if cfg.scale_embedding else 1.0
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.layernorm_embedding = nn.LayerNorm(d)
        # Image-code generation (text-to-image) parts: unused by captioning, kept for loading.
        self.code_layernorm_embedding = nn.LayerNorm(d)
        self.embed_image_positions = nn.Embedding(cfg.image_bucket_size**2 + 1, d)
        self.image_pos_ln = nn.LayerNorm(d)
        num_image_rel = (2 * cfg.image_bucket_size - 1) ** 2 + 3
        self.image_rel_pos_table_list = nn.ModuleList(
            nn.Embedding(num_image_rel, heads) for _ in range(cfg.decoder_layers)
        )
        self.embed_positions = nn.Embedding(cfg.max_position_embeddings + 2, d)
        self.pos_ln = nn.LayerNorm(d)
        self.pos_scaling = float(d / heads * cfg.attn_scale_factor) ** -0.5
        self.self_pos_q_linear = nn.Linear(d, d)
        self.self_pos_k_linear = nn.Linear(d, d)
        self.cross_pos_q_linear = nn.Linear(d, d)
        self.cross_pos_k_linear = nn.Linear(d, d)
        self.layer_norm = nn.LayerNorm(d)
        self.token_rel_pos_table_list = nn.ModuleList(
            nn.Embedding(2 * cfg.token_bucket_size - 1, heads) for _ in range(cfg.decoder_layers)
        )

    def output_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Tied output projection (``decoder.output_projection`` in checkpoints), in float32
        whatever the autocast: bf16 logits between 16 and 32 round in steps of 0.06-0.125,
        which beam search then ranks by (on the random tiny model, 9 of 96 captions under CPU
        bf16 autocast differed from float32). One projection per step: a few percent of a
        batch's decode on a GPU."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            return x.float() @ self.embed_tokens.weight.t().float()

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(T, D) -> (H, T, E)."""
        return x.view(x.size(0), self.cfg.decoder_attention_heads, -1).transpose(0, 1)

    def start(
        self, encoder_out: EncoderOutput, max_length: int, batch_size: int | None = None
    ) -> DecoderState:
        """Precompute everything that does not depend on generated tokens.

        ``batch_size`` = G x the encoder batch: G hypotheses per image (the beams), sharing that
        image's encoder side; ``max_length`` counts decoder positions, the start token included.
        """
        hidden, padding, src_pos = encoder_out
        group = 1 if batch_size is None else batch_size // hidden.size(0)
        device, dtype = hidden.device, hidden.dtype
        if torch.is_autocast_enabled(device.type):  # cache in the dtype the projections produce
            dtype = torch.get_autocast_dtype(device.type)
        b, heads = hidden.size(0) * group, self.cfg.decoder_attention_heads
        head_dim = self.cfg.d_model // heads

        tgt_pos = self.pos_ln(self.embed_positions(torch.arange(max_length, device=device)))
        self_q = self._heads(self.self_pos_q_linear(tgt_pos)) * self.pos_scaling
        self_abs = self_q @ self._heads(self.self_pos_k_linear(tgt_pos)).transpose(1, 2)
        cross_q = self._heads(self.cross_pos_q_linear(tgt_pos)) * self.pos_scaling
        cross_bias = cross_q @ self._heads(self.cross_pos_k_linear(src_pos)).transpose(1, 2)
        buckets = token_rel_buckets(max_length, self.cfg.token_bucket_size).to(device)
        causal = torch.full((max_length, max_length), float("-inf"), device=device).triu(1)
        self_bias = [
            self_abs + F.embedding(buckets, table.weight).permute(2, 0, 1) + causal
            for table in self.token_rel_pos_table_list
        ]
        images = hidden.size(0)
        pad_bias = torch.zeros(images, 1, 1, padding.size(1), device=device, dtype=cross_bias.dtype)
        pad_bias = pad_bias.masked_fill(padding[:, None, None, :], float("-inf"))
        shape = (b, heads, max_length, head_dim)
        self_kv = [
            (hidden.new_zeros(shape, dtype=dtype), hidden.new_zeros(shape, dtype=dtype))
            for _ in self.layers
        ]
        cross_kv = [layer.cross_attn.keys_values(hidden) for layer in self.layers]
        return DecoderState(self_kv, cross_kv, self_bias, cross_bias, pad_bias, group)

    def step(self, tokens: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """Feed ``tokens`` (B, t) at positions ``state.length ...``; logits (B, t, V).

        Called with the whole prefix once (teacher forcing) or one token per step (generation).
        """
        start, t = state.length, tokens.size(1)
        end = start + t
        positions = torch.arange(start, end, device=tokens.device)
        x = self.embed_scale * self.embed_tokens(tokens)
        if not self.cfg.disable_entangle:
            x = x + self.embed_positions(positions)
        x = self.layernorm_embedding(x)
        cross_bias = state.cross_bias[:, start:end]  # (H, t, N), queries beam-major below
        cross_bias = cross_bias.repeat(1, state.group, 1)[None] + state.pad_bias
        for idx, layer in enumerate(self.layers):
            k_cache, v_cache = state.self_kv[idx]
            h = layer.self_attn_layer_norm(x)
            k_new, v_new = layer.self_attn.keys_values(h)
            k_cache[:, :, start:end] = k_new.to(k_cache.dtype)
            v_cache[:, :, start:end] = v_new.to(v_cache.dtype)
            self_kv = (k_cache[:, :, :end], v_cache[:, :, :end])
            self_bias = state.self_bias[idx][:, start:end, :end][None]
            x = layer(x, self_kv, self_bias, state.cross_kv[idx], cross_bias)
        state.length = end
        return self.output_logits(self.layer_norm(x))


class OFAModel(nn.Module):
    """``encoder`` and ``decoder`` sharing one token embedding (the public checkpoints' layout)."""

    def __init__(self, cfg: OFAConfig) -> None:
        super().__init__()
        self.config = cfg
        shared = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=cfg.pad_token_id)
        self.encoder = OFAEncoder(cfg, shared)
        self.decoder = OFADecoder(cfg, shared)

    def forward(
        self, input_ids: torch.Tensor, pixels: torch.Tensor, decoder_input_ids: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced logits (B, T, V) for ``decoder_input_ids`` (B, T)."""
        encoder_out = self.encoder(input_ids, pixels)
        state = self.decoder.start(encoder_out, decoder_input_ids.size(1))
        return self.decoder.step(decoder_input_ids, state)


def init_random(model: OFAModel, seed: int, std: float = 0.2) -> OFAModel:
    """Seeded random weights for test models: large enough that captions are not all ties."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 1 and not name.endswith("bias"):
                continue  # norm scales and c_attn stay at one
            if param.dim() == 1 and ("norm" in name or "_ln" in name or ".bn" in name):
                continue  # norm shifts stay at zero
            if "downsample.1" in name or ".bn" in name:
                continue
            scale = math.sqrt(2.0 / param[0].numel()) if param.dim() == 4 else std
            param.copy_(torch.randn(param.shape, generator=gen) * scale)
    return model
