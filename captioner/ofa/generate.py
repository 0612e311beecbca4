"""Batched beam search for OFA, as fairseq's generator does it for OFA-Caption.

Per image: ``beam_size`` live hypotheses; each step extends them with the best ``2 * beam``
(hypothesis, token) pairs; a pair ending in ``</s>`` among the first ``beam`` is finished with
score ``sum(log p) / length ** len_penalty``; an image is done when ``beam`` hypotheses are
finished; at ``max_new_tokens`` only ``</s>`` is allowed. Repeated 3-grams are banned.

Padding invariance: rows never interact (attention is per row, scores per image), and images
that finish early keep decoding dummy steps rather than shrinking the batch, so an image's
caption does not depend on what else is in its batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from captioner.ofa.model import OFAModel


@dataclass(frozen=True)
class BeamConfig:
    beam_size: int = 5
    max_new_tokens: int = 16  # OFA-Caption's max_len_b: tokens before the final </s>
    no_repeat_ngram_size: int = 3
    len_penalty: float = 1.0
    banned_ids: tuple[int, ...] = field(default=())  # never generated (pad, codes, bins ...)


@dataclass
class StepTimes:
    """Seconds spent in each part of ``beam_search`` (filled when ``timer`` is passed)."""

    encoder: float = 0.0
    decoder: float = 0.0
    bookkeeping: float = 0.0


def ban_repeated_ngrams(lprobs: torch.Tensor, tokens: torch.Tensor, n: int) -> torch.Tensor:
    """Set ``-inf`` on every token that would repeat an ``n``-gram already in ``tokens``.

    ``lprobs`` (R, V); ``tokens`` (R, t) the hypotheses so far, start token included.
    """
    if n <= 0 or tokens.size(1) < n:
        return lprobs
    prefix = tokens[:, -(n - 1) :]  # (R, n-1): the tokens a new n-gram would start with
    match = torch.ones_like(tokens[:, : tokens.size(1) - n + 1], dtype=torch.bool)
    for j in range(n - 1):
        match &= tokens[:, j : tokens.size(1) - n + 1 + j] == prefix[:, j : j + 1]
    follow = tokens[:, n - 1 :]  # (R, t-n+1): the token that completed each earlier n-gram
    penalty = torch.zeros_like(follow, dtype=lprobs.dtype).masked_fill(match, float("-inf"))
    return lprobs.scatter_add(1, follow, penalty)


@torch.inference_mode()
def beam_search(
    model: OFAModel,
    input_ids: torch.Tensor,
    pixels: torch.Tensor,
    cfg: BeamConfig,
    timer: StepTimes | None = None,
) -> list[list[int]]:
    """Best token ids per image (start token and ``</s>`` excluded)."""
    import time

    def tick(field_name: str, since: float) -> float:
        if timer is None:
            return since
        if pixels.is_cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        setattr(timer, field_name, getattr(timer, field_name) + now - since)
        return now

    mcfg = model.config
    b, k = input_ids.size(0), cfg.beam_size
    device = input_ids.device
    t0 = time.perf_counter()
    encoder_out = model.encoder(input_ids, pixels)
    max_len = cfg.max_new_tokens + 1  # decoder positions: start token + generated
    state = model.decoder.start(encoder_out, max_len + 1, batch_size=b * k)
    t0 = tick("encoder", t0)

    tokens = torch.full((b * k, max_len + 1), mcfg.pad_token_id, dtype=torch.long, device=device)
    tokens[:, 0] = mcfg.bos_token_id
    scores = torch.zeros(b, k, device=device)
    scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first
    banned = torch.tensor(sorted({mcfg.pad_token_id, *cfg.banned_ids}), device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    done = torch.zeros(b, dtype=torch.bool)
    rows = torch.arange(b, device=device)[:, None] * k

    for step in range(max_len):
        logits = model.decoder.step(tokens[:, step : step + 1], state)[:, -1]
        t0 = tick("decoder", t0)
        lprobs = torch.log_softmax(logits.float(), dim=-1)  # (B*K, V)
        lprobs[:, banned] = float("-inf")
        if step == 0 and max_len > 1:  # min_len 1, as fairseq's generator: never an empty caption
            lprobs[:, mcfg.eos_token_id] = float("-inf")
        if step == max_len - 1:  # out of length: only </s>
            eos_col = lprobs[:, mcfg.eos_token_id].clone()
            lprobs.fill_(float("-inf"))
            lprobs[:, mcfg.eos_token_id] = eos_col
        lprobs = ban_repeated_ngrams(lprobs, tokens[:, : step + 1], cfg.no_repeat_ngram_size)
        vocab = lprobs.size(1)
        cand = (scores[:, :, None] + lprobs.view(b, k, vocab)).view(b, k * vocab)
        cand_scores, cand_idx = cand.topk(2 * k, dim=1)  # (B, 2K)
        cand_beam, cand_tok = cand_idx // vocab, cand_idx % vocab
        is_eos = (cand_tok == mcfg.eos_token_id) & torch.isfinite(cand_scores)

        # Finish hypotheses whose </s> ranks among the first K candidates.
        eos_hits = (is_eos[:, :k] & ~done.to(device)[:, None]).nonzero().tolist()
        if eos_hits:
            flat = tokens.tolist()
            for img, c in eos_hits:
                if len(finished[img]) >= k:
                    continue
                src = img * k + int(cand_beam[img, c])
                score = float(cand_scores[img, c]) / (step + 1) ** cfg.len_penalty
                finished[img].append((score, flat[src][1 : step + 1]))
            for img in {img for img, _ in eos_hits}:
                done[img] = len(finished[img]) >= k
        if bool(done.all()):
            t0 = tick("bookkeeping", t0)
            break

        # The next K live beams: best candidates that are not </s>.
        live_rank = torch.where(is_eos, 2 * k, 0) + torch.arange(2 * k, device=device)
        keep = live_rank.argsort(dim=1)[:, :k]  # (B, K) candidate positions
        scores = cand_scores.gather(1, keep)
        source = (rows + cand_beam.gather(1, keep)).view(-1)  # (B*K,) parent rows
        tokens = tokens.index_select(0, source)
        tokens[:, step + 1] = cand_tok.gather(1, keep).view(-1)
        state.reorder(source)
        t0 = tick("bookkeeping", t0)

    best = []
    for img in range(b):
        if not finished[img]:  # every hypothesis was banned out: keep the first live beam
            finished[img].append((0.0, tokens[img * k, 1:].tolist()))
        score, ids = max(finished[img], key=lambda item: item[0])
        best.append([t for t in ids if t != mcfg.pad_token_id])
    return best
