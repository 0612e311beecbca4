"""CLIP-ViP: a Hugging Face ``CLIPModel`` whose vision tower reads videos through video proxies.

What changes against CLIP (Xue et al., ICLR 2023, and the official ``CLIP_ViP.py``):

* ``video_proxy`` tokens: M = 4 learnable tokens in front of the patches. Proxy 0 is CLIP's own
  class embedding; proxies 1..3 (``added_cls``) start from N(0, 1). All take CLIP's position
  entry 0 and no temporal embedding.
* spatio-temporal position: a patch of frame t gets CLIP's 2-D entry of its patch plus a learnable
  ``temporal_embedding[t]`` (12 entries, zeros at start, linearly interpolated for T != 12).
* other resolutions: at an image size whose patch grid differs from the one CLIP was trained
  for, CLIP's 2-D position grid is resized bicubically on the fly (``resize_position_grid``, as
  Hugging Face's ``interpolate_pos_encoding``); the stored parameter stays CLIP's own shape.
* ``proxy_attention_mask``: a patch of frame n sees the proxies and its own frame; proxies see all.
  It is computed block-wise (proxies over everything; each frame over proxies + itself), which
  at B/16 with 12 frames is ~12x less work than the dense masked form.

CLIP's q/k/v/out weights, LayerNorms and MLPs are used as they are, so a plain CLIP checkpoint is
a valid start, and the two new parameters live on ``vision_model.embeddings`` so that the
official checkpoints (``clipmodel.`` + the HF CLIP names) load key for key.
"""

from __future__ import annotations

import logging
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel

from trainer.errors import TrainerError

log = logging.getLogger(__name__)

NUM_PROXIES = 4
TEMPORAL_SIZE = 12


@dataclass(slots=True)
class ModelConfig:
    """Where the CLIP weights are and the CLIP-ViP additions.

    ``weights`` is a local folder that ``CLIPModel.from_pretrained`` and ``CLIPTokenizer`` read
    (nothing is downloaded), or ``"tiny"`` for a random tiny CLIP built on the spot.
    """

    weights: str = "tiny"
    num_proxies: int = NUM_PROXIES
    temporal_size: int = TEMPORAL_SIZE
    logit_scale_init: float = 4.60
    init_checkpoint: str | None = None  # an official CLIP-ViP .pt/.bin or one of ours


def proxy_attention_mask(
    num_frames: int, patches_per_frame: int, num_proxies: int = NUM_PROXIES
) -> torch.Tensor:
    """The proxy-guided attention rule as a bool [L, L] matrix (True = query row may attend key).

    L = num_proxies + num_frames * patches_per_frame, tokens ordered proxies, frame 0's patches,
    frame 1's, ... . The model never builds this matrix; it is the specification that the
    block-wise computation is tested against.
    """
    m, p = num_proxies, patches_per_frame
    length = m + num_frames * p
    mask = torch.zeros(length, length, dtype=torch.bool)
    mask[:m, :] = True  # proxies see every token
    mask[:, :m] = True  # every token sees the proxies
    for n in range(num_frames):
        lo, hi = m + n * p, m + (n + 1) * p
        mask[lo:hi, lo:hi] = True  # a frame sees itself
    return mask


def proxy_guided_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    num_proxies: int,
    num_frames: int,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Block-wise attention equal to dense attention under ``proxy_attention_mask``.

    q, k, v: (B, H, L, D) with L = M + T * P. Returns (B, H, L, D).
    """
    b, h, length, d = q.shape
    m, t = num_proxies, num_frames
    p = (length - m) // t
    # proxies attend to all tokens: (B, H, M, D)
    proxies = F.scaled_dot_product_attention(q[:, :, :m], k, v, dropout_p=dropout_p)
    # each frame attends to the proxies and to itself: (B, H, T, P, D) over (B, H, T, M + P, D)
    qf = q[:, :, m:].reshape(b, h, t, p, d)
    kf = torch.cat(
        [
            k[:, :, :m, None].expand(b, h, m, t, d).transpose(2, 3),
            k[:, :, m:].reshape(b, h, t, p, d),
        ],
        dim=3,
    )
    vf = torch.cat(
        [
            v[:, :, :m, None].expand(b, h, m, t, d).transpose(2, 3),
            v[:, :, m:].reshape(b, h, t, p, d),
        ],
        dim=3,
    )
    # fold frames into the head axis: 4-D inputs keep SDPA's fused (flash/efficient) kernels
    frames = F.scaled_dot_product_attention(
        qf.reshape(b, h * t, p, d),
        kf.reshape(b, h * t, m + p, d),
        vf.reshape(b, h * t, m + p, d),
        dropout_p=dropout_p,
    )
    return torch.cat([proxies, frames.reshape(b, h, t * p, d)], dim=2)


def resize_position_grid(grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """CLIP's patch position entries (P, C), a square grid in row-major order, resized to a
    ``height`` x ``width`` grid: (height * width, C).

    Bicubic, ``align_corners=False``, as Hugging Face's ``CLIPVisionEmbeddings.
    interpolate_pos_encoding`` (after DINO) does; differentiable, so training at another
    resolution still updates CLIP's own grid.
    """
    count, width_c = grid.shape
    side = math.isqrt(count)
    if side * side != count:
        raise TrainerError(f"CLIP's {count} patch positions are not a square grid to resize")
    square = grid.reshape(1, side, side, width_c).permute(0, 3, 1, 2)
    resized = F.interpolate(
        square.float(), size=(height, width), mode="bicubic", align_corners=False
    ).to(grid.dtype)
    return resized.permute(0, 2, 3, 1).reshape(height * width, width_c)


def dense_masked_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_proxies: int, num_frames: int
) -> torch.Tensor:
    """The reference form: one L x L attention with ``proxy_attention_mask`` (tests, readers)."""
    p = (q.shape[2] - num_proxies) // num_frames
    mask = proxy_attention_mask(num_frames, p, num_proxies).to(q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class ClipViP(nn.Module):
    """Video and text towers with CLIP-ViP's vision changes; returns L2-normalised embeddings.

    ``clipmodel`` is the Hugging Face ``CLIPModel``; the attribute name matches the official
    ``VidCLIP`` so its checkpoints load with no renaming.
    """

    def __init__(self, clipmodel: CLIPModel, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.clipmodel = clipmodel
        emb = clipmodel.vision_model.embeddings
        width = emb.class_embedding.shape[0]
        # New parameters sit on CLIP's embedding module: state-dict keys as in the official code.
        emb.added_cls = nn.Parameter(torch.randn(cfg.num_proxies - 1, width))
        emb.temporal_embedding = nn.Parameter(torch.zeros(1, cfg.temporal_size, width))
        with torch.no_grad():
            clipmodel.logit_scale.fill_(cfg.logit_scale_init)
        self._resized_grids: set[tuple[int, int]] = set()  # logged once each

    def check_image_size(self, image_size: int) -> None:
        """Refuse ``data.image_size`` when it is not a multiple of the patch size (the patch
        convolution would silently drop the border); say once when CLIP's position grid will
        be interpolated. Called when the model is built for a config, before any data."""
        emb = self.clipmodel.vision_model.embeddings
        patch, native = emb.patch_size, emb.image_size
        if image_size % patch:
            lower = max(patch, image_size // patch * patch)
            raise TrainerError(
                f"data.image_size {image_size} is not a multiple of the model's patch size "
                f"{patch} (its image size is {native}); use a multiple of {patch}, "
                f"e.g. {lower} or {lower + patch}"
            )
        self.patch_positions(image_size // patch, image_size // patch)

    def patch_positions(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """CLIP's 2-D position entries for a ``grid_h`` x ``grid_w`` patch grid: (P, C).

        CLIP's own entries (the very tensor) at its own grid; otherwise the grid bicubically
        interpolated (logged once per grid size). Entry 0, the class/proxy position, is not
        part of the grid and is never resized.
        """
        emb = self.clipmodel.vision_model.embeddings
        grid = emb.position_embedding.weight[1:]
        side = math.isqrt(grid.shape[0])
        if (grid_h, grid_w) == (side, side) and side * side == grid.shape[0]:
            return grid
        if (grid_h, grid_w) not in self._resized_grids:
            self._resized_grids.add((grid_h, grid_w))
            log.info(
                "image size %dx%d px with %d px patches: CLIP's %dx%d position grid (made for "
                "%d px) is bicubically interpolated to %dx%d",
                grid_h * emb.patch_size,
                grid_w * emb.patch_size,
                emb.patch_size,
                side,
                side,
                emb.image_size,
                grid_h,
                grid_w,
            )
        return resize_position_grid(grid, grid_h, grid_w)

    @property
    def logit_scale(self) -> nn.Parameter:
        return self.clipmodel.logit_scale

    def forward(
        self,
        video: torch.Tensor,
        subtitle: dict[str, torch.Tensor],
        frame: torch.Tensor | None = None,
        caption: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Unit features of every stream given; one call so DDP sees one forward per step."""
        out = {"video": self.encode_video(video), "subtitle": self.encode_text(**subtitle)}
        if frame is not None:
            out["frame"] = self.encode_video(frame)
        if caption is not None:
            out["caption"] = self.encode_text(**caption)
        return out

    # ---- vision ---------------------------------------------------------------------------
    def embed_video_tokens(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) pixels -> (B, M + T*P, C) tokens with proxy and temporal positions."""
        emb = self.clipmodel.vision_model.embeddings
        b, t, c, h, w = video.shape
        if h % emb.patch_size or w % emb.patch_size:
            raise TrainerError(
                f"frames of {h}x{w} px do not divide into the model's {emb.patch_size} px "
                "patches; set data.image_size to a multiple of the patch size"
            )
        weight = emb.patch_embedding.weight
        patches = emb.patch_embedding(video.reshape(b * t, c, h, w).to(weight.dtype))
        grid_h, grid_w = patches.shape[2], patches.shape[3]
        patches = patches.flatten(2).transpose(1, 2)  # (B*T, P, C)
        p, width = patches.shape[1], patches.shape[2]
        patches = patches.reshape(b, t, p, width)
        grid = self.patch_positions(grid_h, grid_w)  # (P, C), CLIP's own at its own size
        temporal = emb.temporal_embedding  # (1, 12, C)
        if t != temporal.shape[1]:
            temporal = F.interpolate(temporal.transpose(1, 2), size=t, mode="linear")
            temporal = temporal.transpose(1, 2)
        patches = patches + grid[None, None] + temporal[0][None, :, None]
        position0 = emb.position_embedding.weight[0]
        proxies = torch.cat([emb.class_embedding[None], emb.added_cls], dim=0) + position0
        proxies = proxies[None].expand(b, -1, -1)  # (B, M, C)
        return torch.cat([proxies, patches.reshape(b, t * p, width)], dim=1)

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) -> (B, E) unit vectors; a still image is a 1-frame video."""
        vision = self.clipmodel.vision_model
        t = video.shape[1]
        m = self.cfg.num_proxies
        x = vision.pre_layrnorm(self.embed_video_tokens(video))  # (B, L, C)
        for layer in vision.encoder.layers:
            x = x + self._attention(layer.self_attn, layer.layer_norm1(x), m, t)
            x = x + layer.mlp(layer.layer_norm2(x))
        pooled = vision.post_layernorm(x[:, 0])  # token 0 = proxy 0
        return F.normalize(self.clipmodel.visual_projection(pooled), dim=-1)

    def _attention(self, attn: nn.Module, x: torch.Tensor, m: int, t: int) -> torch.Tensor:
        b, length, width = x.shape
        heads = attn.num_heads

        def split(y: torch.Tensor) -> torch.Tensor:  # (B, L, C) -> (B, H, L, D)
            return y.reshape(b, length, heads, width // heads).transpose(1, 2)

        q, k, v = split(attn.q_proj(x)), split(attn.k_proj(x)), split(attn.v_proj(x))
        dropout = attn.dropout if self.training else 0.0
        out = proxy_guided_attention(q, k, v, m, t, dropout_p=dropout)
        return attn.out_proj(out.transpose(1, 2).reshape(b, length, width))

    # ---- text -----------------------------------------------------------------------------
    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids (B, S) -> (B, E) unit vectors, CLIP's text tower and projection unchanged."""
        out = self.clipmodel.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        features = out.pooler_output if hasattr(out, "pooler_output") else out
        return F.normalize(features, dim=-1)


def load_clipvip(cfg: ModelConfig, weights_dir: str | Path) -> ClipViP:
    """CLIP weights from a local folder, the CLIP-ViP parameters added, an init checkpoint loaded."""
    # fp32 master weights whatever the folder stores (transformers loads a fp16 export as fp16:
    # mixed with the fp32 proxies it fails on CPU, and AdamW steps of 1e-6 vanish in fp16);
    # autocast picks the compute precision
    clip = CLIPModel.from_pretrained(str(weights_dir), local_files_only=True, dtype=torch.float32)
    clip.config._attn_implementation = "sdpa"
    model = ClipViP(clip, cfg)
    if cfg.init_checkpoint:
        load_official_checkpoint(model, cfg.init_checkpoint)
    return model


def _official_state_dict(path: str) -> dict[str, torch.Tensor]:
    if path.endswith(".safetensors"):
        from trainer.checkpoint import read_tensors

        return read_tensors(Path(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        # cut short, or not a torch file: say which file; torch's message names none
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise TrainerError(f"{path} is truncated or not a checkpoint ({first})") from exc
    for wrapper in ("model", "state_dict", "module"):
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    return state


def load_official_checkpoint(model: ClipViP, path: str) -> None:
    """Load a CLIP-ViP checkpoint of the official code (or ours) strictly.

    Keys may carry DDP's ``module.`` prefix; ``position_ids`` buffers, which older transformers
    saved and current ones do not, are dropped. Anything else missing or unexpected is an error:
    a silently half-loaded model is the worst outcome.
    """
    state = _official_state_dict(path)
    cleaned = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.endswith("position_ids"):
            continue
        cleaned[key] = value
    try:
        result = model.load_state_dict(cleaned, strict=False)
    except RuntimeError as exc:  # same keys, other shapes
        first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), "")
        raise TrainerError(f"{path} is a CLIP-ViP checkpoint of another size ({first})") from exc
    if result.missing_keys or result.unexpected_keys:
        raise TrainerError(
            f"{path}: missing keys {result.missing_keys[:5]}, unexpected keys "
            f"{result.unexpected_keys[:5]} (is it a CLIP-ViP checkpoint of this size?)"
        )
    log.info("loaded CLIP-ViP weights from %s (%d tensors)", path, len(cleaned))
