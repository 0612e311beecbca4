"""Omnisource Cross-modal Learning: the contrastive terms of CLIP-ViP over a global batch.

Four streams per clip: the video V, its middle frame F, the subtitle S (the shard's ``txt``) and
the auxiliary caption C (``caption.txt``). The published variants:

====  ==========================  =========================================================
a     V<->S + F<->C
b     V<->S + V<->C
c     V<->S + V<->C + F<->C
d     V<->S,C + F<->C             default, both released configs (``NCELearnableTempLoss_vsc_fc``)
vs    V<->S                       fine-tuning on a captioned set (MSR-VTT: ``txt`` is the caption)
====  ==========================  =========================================================

In (d) video->subtitle scores against [all subtitles, the other clips' captions] and
video->caption against [all captions, the other clips' subtitles]: a clip's own other text is
never its negative; the text->video directions are plain.

A symmetric InfoNCE term is the *sum* of its two cross-entropies, and terms are summed with
weight 1, as the official ``loss.py`` does: the released grad-norm clip values (5.0, 1.0) were
tuned for that scale.

Rows that show the same clip (two samples of one video and span: MSR-VTT written one sentence
per sample, a subtitle cut twice) are not each other's negatives: given ``clip_ids``, every
term leaves the other rows of a row's own clip out of its softmax. The official loss has no
such rule and pushes a clip away from its own second description; with distinct ids the two
are the same loss.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F

VARIANTS = ("a", "b", "c", "d", "vs")
LOGIT_SCALE_MAX = math.log(200.0)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for our slice.

    Every rank computes the same global loss, so the true gradient of a local feature is the sum
    over ranks; DDP then averages parameter gradients over ranks, which gives exactly the
    single-process gradient of the global loss. Built on all_reduce (gloo has no reduce_scatter).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        world = dist.get_world_size()
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def gather_features(x: torch.Tensor) -> torch.Tensor:
    """Features of the whole global batch, rank order, gradients flowing back to their owner."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


def clip_id_tensor(names: Sequence[str]) -> torch.Tensor:
    """int64 ids for clip identities, the same in every process (Python's ``hash`` is salted
    per process, so ranks would disagree); a collision is a 2**-64 chance per pair."""
    ids = [
        int.from_bytes(
            hashlib.blake2b(n.encode("utf-8"), digest_size=8).digest(), "big", signed=True
        )
        for n in names
    ]
    return torch.tensor(ids, dtype=torch.int64)


def same_clip_mask(clip_ids: torch.Tensor) -> torch.Tensor:
    """[N, N] over the global batch: True where rows i != j show the same clip."""
    ids = gather_features(clip_ids)  # integers: nothing flows back
    same = ids[:, None] == ids[None, :]
    same.fill_diagonal_(False)
    return same


def _drop(logits: torch.Tensor, exclude: torch.Tensor | None) -> torch.Tensor:
    """Leave the excluded pairs out of the softmax (a row's target is never excluded)."""
    return logits if exclude is None else logits.masked_fill(exclude, float("-inf"))


def info_nce(
    a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """Symmetric InfoNCE for paired unit vectors a[i] <-> b[i]: CE(a->b) + CE(b->a).

    ``exclude`` (symmetric [N, N] bool, diagonal False) marks pairs that are no negatives."""
    logits = _drop(scale * a @ b.T, exclude)  # (N, N)
    target = torch.arange(a.shape[0], device=a.device)
    return F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)


def video_subtitle_caption_nce(
    video: torch.Tensor,
    subtitle: torch.Tensor,
    caption: torch.Tensor,
    scale: torch.Tensor,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """V<->S,C of variant (d): joint negatives for the video->text directions."""
    vs = _drop(scale * video @ subtitle.T, exclude)  # (N, N) rows: videos
    vc = _drop(scale * video @ caption.T, exclude)
    n = video.shape[0]
    target = torch.arange(n, device=video.device)
    off = ~torch.eye(n, dtype=torch.bool, device=video.device)
    neg_s = vs[off].reshape(n, n - 1)  # other clips' subtitles
    neg_c = vc[off].reshape(n, n - 1)  # other clips' captions
    zero = torch.zeros(n, dtype=torch.long, device=video.device)
    v2s = torch.cat([vs.diagonal()[:, None], neg_s, neg_c], dim=1)
    v2c = torch.cat([vc.diagonal()[:, None], neg_c, neg_s], dim=1)
    return (
        F.cross_entropy(vs.T, target)  # subtitle -> video
        + F.cross_entropy(vc.T, target)  # caption -> video
        + F.cross_entropy(v2s, zero)
        + F.cross_entropy(v2c, zero)
    )


def omnisource_loss(
    variant: str,
    logit_scale: torch.Tensor,
    video: torch.Tensor,
    subtitle: torch.Tensor,
    frame: torch.Tensor | None = None,
    caption: torch.Tensor | None = None,
    clip_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """The loss of ``variant`` on this rank's unit features, gathered over ranks first.

    ``logit_scale`` is the raw (log) parameter; the caller clamps it before the step.
    ``clip_ids`` (int64, one per local row; see ``clip_id_tensor``): rows of one clip are not
    each other's negatives. ``None``: every row is its own clip, the official loss.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown loss variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if variant != "vs" and caption is None:
        raise ValueError(f"loss variant {variant!r} needs captions (shards with caption.txt)")
    if variant in ("a", "c", "d") and frame is None:
        raise ValueError(f"loss variant {variant!r} needs middle-frame features")
    scale = logit_scale.exp()
    v, s = gather_features(video), gather_features(subtitle)
    c = gather_features(caption) if caption is not None else None
    f = gather_features(frame) if frame is not None and variant in ("a", "c", "d") else None
    x = None if clip_ids is None else same_clip_mask(clip_ids.to(video.device))
    if variant == "vs":
        return info_nce(v, s, scale, x)
    if variant == "a":
        return info_nce(v, s, scale, x) + info_nce(f, c, scale, x)
    if variant == "b":
        return info_nce(v, s, scale, x) + info_nce(v, c, scale, x)
    if variant == "c":
        return info_nce(v, s, scale, x) + info_nce(v, c, scale, x) + info_nce(f, c, scale, x)
    return video_subtitle_caption_nce(v, s, c, scale, x) + info_nce(f, c, scale, x)


def clamp_logit_scale(logit_scale: torch.nn.Parameter) -> None:
    """Keep the learnable temperature in [0, ln 200] (exp in [1, 200]), before each step."""
    with torch.no_grad():
        logit_scale.clamp_(0.0, LOGIT_SCALE_MAX)
