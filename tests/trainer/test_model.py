"""The CLIP-ViP vision changes: proxy-guided attention, positions, checkpoint loading."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from trainer.model import (
    ModelConfig,
    dense_masked_attention,
    load_clipvip,
    load_official_checkpoint,
    proxy_attention_mask,
    proxy_guided_attention,
    resize_position_grid,
)


def test_mask_lets_proxies_see_all_and_patches_see_proxies_and_own_frame() -> None:
    m, t, p = 4, 3, 2
    mask = proxy_attention_mask(t, p, m)
    assert mask.shape == (m + t * p, m + t * p) and mask.dtype == torch.bool
    assert mask[:m].all()  # proxies attend to everything
    assert mask[:, :m].all()  # everything attends to the proxies
    for n in range(t):
        rows = slice(m + n * p, m + (n + 1) * p)
        for other in range(t):
            cols = slice(m + other * p, m + (other + 1) * p)
            assert bool(mask[rows, cols].all()) == (other == n)
            assert bool(mask[rows, cols].any()) == (other == n)
    # one patch row: 4 proxies + its own frame's 2 patches
    assert int(mask[m + p].sum()) == m + p


@pytest.mark.parametrize("frames,patches", [(1, 4), (3, 5), (12, 2)])
def test_blockwise_attention_equals_dense_masked_attention(frames: int, patches: int) -> None:
    g = torch.Generator().manual_seed(frames)
    shape = (2, 3, 4 + frames * patches, 8)
    q, k, v = (torch.randn(shape, generator=g) for _ in range(3))
    block = proxy_guided_attention(q, k, v, num_proxies=4, num_frames=frames)
    dense = dense_masked_attention(q, k, v, num_proxies=4, num_frames=frames)
    torch.testing.assert_close(block, dense, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def model(tiny_weights: Path):
    torch.manual_seed(0)
    return load_clipvip(ModelConfig(), tiny_weights).eval()


def _first_layer_output(model, video: torch.Tensor) -> torch.Tensor:
    vision = model.clipmodel.vision_model
    layer = vision.encoder.layers[0]
    x = vision.pre_layrnorm(model.embed_video_tokens(video))
    x = x + model._attention(layer.self_attn, layer.layer_norm1(x), 4, video.shape[1])
    return x + layer.mlp(layer.layer_norm2(x))


def test_patch_output_ignores_other_frames_when_proxies_are_fixed(model) -> None:
    torch.manual_seed(1)
    video = torch.randn(1, 3, 3, 32, 32)
    changed = video.clone()
    changed[:, 2] = torch.randn(1, 3, 32, 32)  # frame 2 only
    with torch.no_grad():
        a, b = _first_layer_output(model, video), _first_layer_output(model, changed)
    p = 16  # (32 / 8) ** 2 patches per frame
    frame0 = slice(4, 4 + p)
    torch.testing.assert_close(a[:, frame0], b[:, frame0])  # frame 0 patches unchanged
    assert not torch.allclose(a[:, :4], b[:, :4])  # proxies do see frame 2
    assert not torch.allclose(a[:, 4 + 2 * p :], b[:, 4 + 2 * p :])


def test_token_layout_proxies_share_position_zero_and_frames_get_temporal_entries(model) -> None:
    emb = model.clipmodel.vision_model.embeddings
    with torch.no_grad():
        emb.temporal_embedding.copy_(torch.arange(12.0)[None, :, None].expand(1, 12, 32))
        tokens = model.embed_video_tokens(torch.zeros(1, 12, 3, 32, 32))
        emb.temporal_embedding.zero_()
    pos = emb.position_embedding.weight
    proxies = torch.cat([emb.class_embedding[None], emb.added_cls]) + pos[0]
    torch.testing.assert_close(tokens[0, :4], proxies)
    patch_bias = emb.patch_embedding(torch.zeros(1, 3, 32, 32)).flatten(2).transpose(1, 2)[0]
    for t in (0, 5, 11):
        got = tokens[0, 4 + t * 16 : 4 + (t + 1) * 16]
        torch.testing.assert_close(got, patch_bias + pos[1:17] + float(t))
    assert emb.added_cls.shape == (3, 32) and emb.temporal_embedding.shape == (1, 12, 32)


def test_image_is_a_one_frame_video_and_embeddings_are_unit_vectors(model) -> None:
    video = torch.randn(2, 5, 3, 32, 32)
    with torch.no_grad():
        v = model.encode_video(video)
        f = model.encode_video(video[:, :1])
    assert v.shape == f.shape == (2, 32)
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(2))


def test_official_checkpoint_loads_without_missing_or_unexpected_keys(model, tmp_path) -> None:
    # the official code saves VidCLIP.state_dict(): `clipmodel.` + HF CLIP names (plus the
    # position_ids buffers older transformers persisted)
    state = {k: v.clone() + 1.0 for k, v in model.state_dict().items()}
    state["clipmodel.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    state["clipmodel.vision_model.embeddings.position_ids"] = torch.arange(17)[None]
    assert "clipmodel.vision_model.embeddings.added_cls" in state
    assert "clipmodel.vision_model.embeddings.temporal_embedding" in state
    path = tmp_path / "clipvip_official.pt"
    torch.save(state, path)
    fresh = load_clipvip(ModelConfig(), Path(model.clipmodel.name_or_path))
    load_official_checkpoint(fresh, str(path))
    for key, value in fresh.state_dict().items():
        torch.testing.assert_close(value, state[key])
    del state["clipmodel.vision_model.embeddings.added_cls"]
    torch.save(state, path)
    with pytest.raises(ValueError, match="missing keys"):
        load_official_checkpoint(fresh, str(path))


def test_temporal_embedding_is_linearly_interpolated_when_t_differs_from_12(model) -> None:
    emb = model.clipmodel.vision_model.embeddings
    with torch.no_grad():
        emb.temporal_embedding.copy_(torch.arange(12.0)[None, :, None].expand(1, 12, 32))
        base = model.embed_video_tokens(torch.zeros(1, 1, 3, 32, 32))[0, 4]
        four = model.embed_video_tokens(torch.zeros(1, 4, 3, 32, 32))
        emb.temporal_embedding.zero_()
        zero = model.embed_video_tokens(torch.zeros(1, 1, 3, 32, 32))[0, 4]
    # 12 -> 1: the centre of entries 5 and 6; 12 -> 4: centres of 3-entry bins (1, 4, 7, 10)
    torch.testing.assert_close(base - zero, torch.full((32,), 5.5))
    for t, expected in enumerate((1.0, 4.0, 7.0, 10.0)):
        torch.testing.assert_close(four[0, 4 + t * 16] - zero, torch.full((32,), expected))


def test_forward_and_backward_under_bf16_autocast_stay_close_to_fp32(tiny_weights: Path) -> None:
    """The GPU path's autocast, run on CPU: mixed dtypes in the proxy tokens, the block-wise
    attention and the loss must not clash, and bf16 must stay near fp32 (nothing goes NaN)."""
    from trainer.loss import omnisource_loss

    torch.manual_seed(0)
    model = load_clipvip(ModelConfig(), tiny_weights).eval()
    torch.manual_seed(1)
    video, frame = torch.randn(4, 3, 3, 32, 32), torch.randn(4, 1, 3, 32, 32)
    ids = torch.randint(1, 90, (4, 7))
    text = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    caption = {"input_ids": ids.flip(1), "attention_mask": torch.ones_like(ids)}

    def loss_and_grads(bf16: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            feats = model(video, text, frame=frame, caption=caption)
        assert all(f.dtype == (torch.bfloat16 if bf16 else torch.float32) for f in feats.values())
        feats = {k: v.float() for k, v in feats.items()}
        loss = omnisource_loss("d", model.logit_scale, *(feats[k] for k in FEATS))
        loss.backward()
        return loss.detach(), {
            n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
        }

    ref_loss, ref_grads = loss_and_grads(bf16=False)
    loss, grads = loss_and_grads(bf16=True)
    assert torch.isfinite(loss) and abs(float(loss - ref_loss)) < 0.05 * float(ref_loss)
    assert grads.keys() == ref_grads.keys()
    for name in ("vision_model.embeddings.added_cls", "logit_scale"):
        a = next(g for n, g in grads.items() if n.endswith(name))
        b = next(g for n, g in ref_grads.items() if n.endswith(name))
        assert torch.isfinite(a).all()
        assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.95


FEATS = ("video", "subtitle", "frame", "caption")


# ---- image sizes other than CLIP's own: the 2-D position grid --------------------------------


def test_at_clips_own_image_size_the_tokens_are_bit_identical_to_clips_positions(model) -> None:
    """The tiny CLIP is made for 32 px with 8 px patches: its own 4x4 grid is used as it is,
    the very entries the model used before other sizes were supported (no resampling)."""
    emb = model.clipmodel.vision_model.embeddings
    torch.manual_seed(2)
    video = torch.randn(2, 3, 3, 32, 32)
    model.check_image_size(32)
    assert torch.equal(model.patch_positions(4, 4), emb.position_embedding.weight[1:])
    with torch.no_grad():
        tokens = model.embed_video_tokens(video)
        patches = emb.patch_embedding(video.reshape(6, 3, 32, 32)).flatten(2).transpose(1, 2)
        pos = emb.position_embedding.weight
        expected = patches.reshape(2, 3, 16, 32) + pos[1:17][None, None]
        expected = expected + emb.temporal_embedding[0, :3][None, :, None]  # 12 -> 3 frames
    assert torch.equal(tokens[:, 4:], expected.reshape(2, 48, 32))
    assert not model._resized_grids  # nothing interpolated, nothing logged


def test_resizing_the_grid_to_its_own_size_is_the_identity_and_corners_stay_corners() -> None:
    torch.manual_seed(3)
    grid = torch.randn(16, 5)
    torch.testing.assert_close(resize_position_grid(grid, 4, 4), grid, rtol=0, atol=1e-6)
    # channel 0 = row, channel 1 = column of each entry of a 4x4 grid (row-major)
    rows, cols = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    ramp = torch.stack([rows.flatten(), cols.flatten()], dim=1)
    for h, w in [(6, 6), (2, 2), (3, 5)]:
        new = resize_position_grid(ramp, h, w).reshape(h, w, 2)
        corners = {(0, 0): (0, 0), (0, w - 1): (0, 3), (h - 1, 0): (3, 0), (h - 1, w - 1): (3, 3)}
        for (r, c), old in corners.items():  # each new corner is nearest the old corner
            nearest = int(torch.cdist(new[r, c][None], ramp).argmin())
            assert divmod(nearest, 4) == old, (h, w, r, c)
        # rows stay rows and columns columns: row index grows down, constant along a row
        assert (new[1:, :, 0] > new[:-1, :, 0]).all() and (new[:, 1:, 1] > new[:, :-1, 1]).all()
        torch.testing.assert_close(new[:, :, 0], new[:, :1, 0].expand(h, w))


@pytest.mark.parametrize("size", [16, 48])
def test_another_image_size_uses_clips_grid_interpolated_as_hugging_face_does(
    tiny_weights: Path, size: int, caplog: pytest.LogCaptureFixture
) -> None:
    """16 px (2x2 patches, fewer than CLIP's 4x4: once silently the top rows) and 48 px (6x6,
    more: once a broadcast error) both get the bicubically resized grid; the stored parameter
    keeps CLIP's shape and still learns through the resize; the resize is logged once."""
    torch.manual_seed(0)
    model = load_clipvip(ModelConfig(), tiny_weights).eval()
    emb = model.clipmodel.vision_model.embeddings
    grid = size // 8
    with caplog.at_level(logging.INFO, logger="trainer.model"):
        model.check_image_size(size)
        torch.manual_seed(4)
        frames = torch.randn(2, 1, 3, size, size)
        with torch.no_grad():
            tokens = model.embed_video_tokens(frames)  # temporal embedding is zero at start
            hf = emb(frames[:, 0], interpolate_pos_encoding=True)  # (B, 1 + P, C)
    resized = [r for r in caplog.records if "interpolated" in r.getMessage()]
    assert len(resized) == 1 and f"to {grid}x{grid}" in resized[0].getMessage()
    assert tokens.shape == (2, 4 + grid * grid, 32)
    torch.testing.assert_close(tokens[:, 4:], hf[:, 1:], rtol=1e-5, atol=1e-6)
    pos = emb.position_embedding.weight
    proxies = torch.cat([emb.class_embedding[None], emb.added_cls]) + pos[0]
    torch.testing.assert_close(tokens[0, :4], proxies)  # entry 0 is never resized
    stored = model.state_dict()["clipmodel.vision_model.embeddings.position_embedding.weight"]
    assert stored.shape == (17, 32)  # CLIP's own: checkpoints keep loading key for key
    out = model.encode_video(torch.randn(2, 3, 3, size, size))
    out.sum().backward()
    assert out.shape == (2, 32) and pos.grad[1:].abs().sum() > 0


def test_an_image_size_not_a_multiple_of_the_patch_size_is_refused_when_the_model_is_built(
    tiny_weights: Path,
) -> None:
    from trainer.config import load_config
    from trainer.errors import TrainerError
    from trainer.train import build_model

    cfg = load_config("tiny", {"data.image_size": 36})
    with pytest.raises(
        TrainerError, match=r"data.image_size 36 .* patch size 8 .* image size is 32"
    ):
        build_model(cfg, tiny_weights, torch.device("cpu"))
    model = load_clipvip(ModelConfig(), tiny_weights)
    with pytest.raises(TrainerError, match="e.g. 32 or 40"):
        model.check_image_size(36)
    with pytest.raises(TrainerError, match="36x36 px do not divide"):
        model.encode_video(torch.zeros(1, 1, 3, 36, 36))


def test_weights_saved_in_fp16_load_as_fp32_master_weights(
    tiny_weights: Path, tmp_path: Path
) -> None:
    """A CLIP folder exported in fp16 (common on hubs) loads as fp32 like the added proxies and
    temporal embedding: mixed dtypes failed on CPU, and fp16 master weights lose AdamW's tiny
    steps. Autocast, not the stored dtype, picks the compute precision."""
    from transformers import CLIPModel

    half = tmp_path / "half"
    CLIPModel.from_pretrained(str(tiny_weights), dtype=torch.float16).save_pretrained(half)
    for name in ("tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json"):
        if (tiny_weights / name).exists():
            (half / name).write_bytes((tiny_weights / name).read_bytes())
    model = load_clipvip(ModelConfig(), half).eval()
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    video = torch.rand(1, 4, 3, 32, 32)
    assert model.encode_video(video).dtype == torch.float32
