"""Each omnisource loss variant against a brute-force re-statement, plus the scale clamp."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from trainer.loss import LOGIT_SCALE_MAX, clamp_logit_scale, clip_id_tensor, omnisource_loss


def _nce_row(scores: list[float], positive: int) -> float:
    """-log softmax(scores)[positive], written out."""
    top = max(scores)
    denom = sum(math.exp(s - top) for s in scores)
    return -(scores[positive] - top - math.log(denom))


def _candidates(i: int, ids: list[int]) -> list[int]:
    """Row i's positive first, then the rows of other clips (never another row of its own)."""
    return [i] + [j for j in range(len(ids)) if ids[j] != ids[i]]


def _sym(a: torch.Tensor, b: torch.Tensor, scale: float, ids: list[int] | None = None) -> float:
    n = a.shape[0]
    ids = ids or list(range(n))
    total = 0.0
    for i in range(n):
        cand = _candidates(i, ids)
        total += _nce_row([scale * float(a[i] @ b[j]) for j in cand], 0) / n
        total += _nce_row([scale * float(b[i] @ a[j]) for j in cand], 0) / n
    return total


def _vsc(
    v: torch.Tensor, s: torch.Tensor, c: torch.Tensor, scale: float, ids: list[int] | None = None
) -> float:
    n = v.shape[0]
    ids = ids or list(range(n))
    total = 0.0
    for i in range(n):
        others = _candidates(i, ids)[1:]
        # video -> subtitle: own subtitle vs. other subtitles and other captions
        scores = [float(v[i] @ s[i])] + [float(v[i] @ s[j]) for j in others]
        scores += [float(v[i] @ c[j]) for j in others]
        total += _nce_row([scale * x for x in scores], 0) / n
        # video -> caption: own caption vs. other captions and other subtitles
        scores = [float(v[i] @ c[i])] + [float(v[i] @ c[j]) for j in others]
        scores += [float(v[i] @ s[j]) for j in others]
        total += _nce_row([scale * x for x in scores], 0) / n
        # subtitle -> video and caption -> video: plain
        total += _nce_row([scale * float(s[i] @ v[j]) for j in [i, *others]], 0) / n
        total += _nce_row([scale * float(c[i] @ v[j]) for j in [i, *others]], 0) / n
    return total


@pytest.fixture
def feats() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {
        k: torch.nn.functional.normalize(
            torch.randn(5, 8, generator=g, dtype=torch.float64), dim=-1
        )
        for k in "vsfc"
    }


@pytest.mark.parametrize("variant", ["a", "b", "c", "d", "vs"])
def test_variant_matches_brute_force(variant: str, feats: dict[str, torch.Tensor]) -> None:
    v, s, f, c = feats["v"], feats["s"], feats["f"], feats["c"]
    log_scale = torch.tensor(2.0, dtype=torch.float64)
    scale = math.exp(2.0)
    expected = {
        "a": _sym(v, s, scale) + _sym(f, c, scale),
        "b": _sym(v, s, scale) + _sym(v, c, scale),
        "c": _sym(v, s, scale) + _sym(v, c, scale) + _sym(f, c, scale),
        "d": _vsc(v, s, c, scale) + _sym(f, c, scale),
        "vs": _sym(v, s, scale),
    }[variant]
    got = omnisource_loss(variant, log_scale, v, s, f, c)
    assert float(got) == pytest.approx(expected, rel=1e-10)


# rows 0 and 2 show one clip, rows 1 and 4 another, row 3 is alone
SHARED_IDS = [10, 11, 10, 12, 11]


@pytest.mark.parametrize("variant", ["a", "b", "c", "d", "vs"])
def test_rows_of_one_clip_are_not_each_others_negatives(
    variant: str, feats: dict[str, torch.Tensor]
) -> None:
    v, s, f, c = feats["v"], feats["s"], feats["f"], feats["c"]
    log_scale = torch.tensor(2.0, dtype=torch.float64)
    scale, ids = math.exp(2.0), SHARED_IDS
    expected = {
        "a": _sym(v, s, scale, ids) + _sym(f, c, scale, ids),
        "b": _sym(v, s, scale, ids) + _sym(v, c, scale, ids),
        "c": _sym(v, s, scale, ids) + _sym(v, c, scale, ids) + _sym(f, c, scale, ids),
        "d": _vsc(v, s, c, scale, ids) + _sym(f, c, scale, ids),
        "vs": _sym(v, s, scale, ids),
    }[variant]
    clip_ids = torch.tensor(ids)
    got = omnisource_loss(variant, log_scale, v, s, f, c, clip_ids=clip_ids)
    assert float(got) == pytest.approx(expected, rel=1e-10)
    official = omnisource_loss(variant, log_scale, v, s, f, c)
    assert float(got) < float(official)  # fewer negatives, never more


def test_distinct_clip_ids_give_the_official_loss(feats: dict[str, torch.Tensor]) -> None:
    v, s, f, c = feats["v"], feats["s"], feats["f"], feats["c"]
    ids = clip_id_tensor([f"video{i}.mp4" for i in range(5)])
    log_scale = torch.tensor(1.5, dtype=torch.float64)
    masked = omnisource_loss("d", log_scale, v, s, f, c, clip_ids=ids)
    assert float(masked) == float(omnisource_loss("d", log_scale, v, s, f, c))


def test_a_batch_of_one_clip_has_a_finite_loss_and_gradient(feats) -> None:
    """Every other row is the same clip: nothing is left to contrast, the loss is 0, not NaN."""
    v = feats["v"].clone().requires_grad_(True)
    loss = omnisource_loss(
        "d", torch.tensor(2.0), v, feats["s"], feats["f"], feats["c"], clip_ids=torch.zeros(5)
    )
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.isfinite(v.grad).all()


def test_clip_ids_are_stable_across_processes() -> None:
    """Ranks compare ids of strings; Python's salted hash() would differ between processes."""
    code = "from trainer.loss import clip_id_tensor; print(clip_id_tensor(['a.mp4', 'b']).tolist())"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert len(outs) == 1
    assert outs.pop().strip() == str(clip_id_tensor(["a.mp4", "b"]).tolist())


def test_variant_d_never_uses_a_clips_own_other_text_as_negative(feats) -> None:
    v, s, f, c = feats["v"], feats["s"], feats["f"], feats["c"].clone()
    base = omnisource_loss("d", torch.tensor(1.0, dtype=torch.float64), v, s, f, c)
    # making clip 0's caption identical to its subtitle must not penalise video 0 -> subtitle 0
    # through a negative; compare with the brute force, which excludes it by construction
    c[0] = s[0]
    got = omnisource_loss("d", torch.tensor(1.0, dtype=torch.float64), v, s, f, c)
    assert float(got) == pytest.approx(_vsc(v, s, c, math.e) + _sym(f, c, math.e), rel=1e-10)
    assert float(got) != pytest.approx(float(base))


def test_missing_caption_or_unknown_variant_is_a_clear_error(feats) -> None:
    with pytest.raises(ValueError, match="captions"):
        omnisource_loss("d", torch.tensor(1.0), feats["v"], feats["s"], feats["f"], None)
    with pytest.raises(ValueError, match="unknown loss variant"):
        omnisource_loss("e", torch.tensor(1.0), feats["v"], feats["s"])


def test_logit_scale_is_clamped_to_zero_and_ln_200() -> None:
    p = torch.nn.Parameter(torch.tensor(7.0))
    clamp_logit_scale(p)
    value = float(p.detach())
    assert value == pytest.approx(LOGIT_SCALE_MAX) and math.exp(value) == pytest.approx(200)
    p.data.fill_(-1.0)
    clamp_logit_scale(p)
    assert float(p.detach()) == 0.0
