"""Batched beam search for OFA, as fairseq's generator does it for OFA-Caption.

Per image: ``beam_size`` live hypotheses; each step extends them with the best ``2 * beam``
(hypothesis, token) pairs; a pair ending in ``</s>`` among the first ``beam`` is finished with
score ``sum(log p) / length ** len_penalty``; an image is done when ``beam`` hypotheses are
finished; at ``max_new_tokens`` only ``</s>`` is allowed. Repeated 3-grams are banned.

Padding invariance: rows never interact (attention is per row, scores per image), so an
image's caption does not depend on what else is in its batch. An image whose caption is done
leaves the batch (its beams' rows, cache and encoder states are dropped), as in fairseq: with
real captions of about 10 words, later steps decode only the images still going.
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
    drop_finished: bool = True  # captioned images leave the batch (False: benchmark baseline)


@dataclass
class StepTimes:
    """Seconds spent in each part of ``beam_search`` (filled when ``timer`` is passed)."""

    encoder: float = 0.0
    decoder: float = 0.0
    bookkeeping: float = 0.0
    images: int = 0  # images searched
    image_steps: int = 0  # decoder steps summed over images (16 + 1 each if none ends early)


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
    active = list(range(b))  # original image of each image still in the batch, in batch order
    captioned = 0  # images with ``beam`` finished hypotheses

    for step in range(max_len):
        logits = model.decoder.step(tokens[:, step : step + 1], state)[:, -1]
        t0 = tick("decoder", t0)
        n = len(active)
        if timer is not None:
            timer.image_steps += n
        lprobs = torch.log_softmax(logits.float(), dim=-1)  # (N*K, V)
        lprobs[:, banned] = float("-inf")
        if step == 0 and max_len > 1:  # min_len 1, as fairseq's generator: never an empty caption
            lprobs[:, mcfg.eos_token_id] = float("-inf")
        if step == max_len - 1:  # out of length: only </s>
            eos_col = lprobs[:, mcfg.eos_token_id].clone()
            lprobs.fill_(float("-inf"))
            lprobs[:, mcfg.eos_token_id] = eos_col
        lprobs = ban_repeated_ngrams(lprobs, tokens[:, : step + 1], cfg.no_repeat_ngram_size)
        vocab = lprobs.size(1)
        cand = (scores[:, :, None] + lprobs.view(n, k, vocab)).view(n, k * vocab)
        cand_scores, cand_idx = cand.topk(2 * k, dim=1)  # (N, 2K)
        cand_beam, cand_tok = cand_idx // vocab, cand_idx % vocab
        is_eos = (cand_tok == mcfg.eos_token_id) & torch.isfinite(cand_scores)

        # Finish hypotheses whose </s> ranks among the first K candidates.
        eos_hits = is_eos[:, :k].nonzero().tolist()
        leaving: set[int] = set()  # batch positions of images captioned this step
        if eos_hits:
            flat = tokens.tolist()
            for pos, c in eos_hits:
                img = active[pos]
                if len(finished[img]) >= k:
                    continue
                src = pos * k + int(cand_beam[pos, c])
                score = float(cand_scores[pos, c]) / (step + 1) ** cfg.len_penalty
                finished[img].append((score, flat[src][1 : step + 1]))
                if len(finished[img]) >= k:
                    leaving.add(pos)
                    captioned += 1
        if step == max_len - 1 or captioned == b:
            t0 = tick("bookkeeping", t0)
            break
        if not cfg.drop_finished:
            leaving = set()  # they stay, decoding steps nobody reads
        if leaving:  # captioned images leave the batch
            stay = [pos for pos in range(n) if pos not in leaving]
            index = torch.tensor(stay, device=device)
            cand_scores, cand_beam, cand_tok, is_eos = (
                t.index_select(0, index) for t in (cand_scores, cand_beam, cand_tok, is_eos)
            )
            active = [active[pos] for pos in stay]
        else:
            index = torch.arange(n, device=device)

        # The next K live beams: best candidates that are not </s>.
        live_rank = torch.where(is_eos, 2 * k, 0) + torch.arange(2 * k, device=device)
        keep = live_rank.argsort(dim=1)[:, :k]  # (N', K) candidate positions
        scores = cand_scores.gather(1, keep)
        source = (index[:, None] * k + cand_beam.gather(1, keep)).view(-1)  # parent rows
        tokens = tokens.index_select(0, source)
        tokens[:, step + 1] = cand_tok.gather(1, keep).view(-1)
        state.reorder(source)
        t0 = tick("bookkeeping", t0)

    if timer is not None:
        timer.images += b
    for pos, img in enumerate(active):
        if not finished[img]:  # every hypothesis was banned out: keep the first live beam
            finished[img].append((0.0, tokens[pos * k, 1:].tolist()))
    best = []
    for img in range(b):
        score, ids = max(finished[img], key=lambda item: item[0])
        best.append([t for t in ids if t != mcfg.pad_token_id])
    return best
