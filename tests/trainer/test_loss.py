"""Each omnisource loss variant against a brute-force re-statement, plus the scale clamp."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.loss import LOGIT_SCALE_MAX, clamp_logit_scale, omnisource_loss


def _nce_row(scores: list[float], positive: int) -> float:
    """-log softmax(scores)[positive], written out."""
    top = max(scores)
    denom = sum(math.exp(s - top) for s in scores)
    return -(scores[positive] - top - math.log(denom))


def _sym(a: torch.Tensor, b: torch.Tensor, scale: float) -> float:
    n = a.shape[0]
    total = 0.0
    for i in range(n):
        total += _nce_row([scale * float(a[i] @ b[j]) for j in range(n)], i) / n
        total += _nce_row([scale * float(b[i] @ a[j]) for j in range(n)], i) / n
    return total


def _vsc(v: torch.Tensor, s: torch.Tensor, c: torch.Tensor, scale: float) -> float:
    n = v.shape[0]
    total = 0.0
    for i in range(n):
        others = [j for j in range(n) if j != i]
        # video -> subtitle: own subtitle vs. other subtitles and other captions
        scores = [float(v[i] @ s[i])] + [float(v[i] @ s[j]) for j in others]
        scores += [float(v[i] @ c[j]) for j in others]
        total += _nce_row([scale * x for x in scores], 0) / n
        # video -> caption: own caption vs. other captions and other subtitles
        scores = [float(v[i] @ c[i])] + [float(v[i] @ c[j]) for j in others]
        scores += [float(v[i] @ s[j]) for j in others]
        total += _nce_row([scale * x for x in scores], 0) / n
        # subtitle -> video and caption -> video: plain
        total += _nce_row([scale * float(s[i] @ v[j]) for j in range(n)], i) / n
        total += _nce_row([scale * float(c[i] @ v[j]) for j in range(n)], i) / n
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
