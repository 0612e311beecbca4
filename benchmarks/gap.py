"""Benchmark of the domain-gap analysis: encoder throughput and a whole paper-size analysis.

    python -m benchmarks.gap                       # tfidf, tiny random CLIP, minilm
    python -m benchmarks.gap --encoders minilm --samples 1000 --seeds 5 --out /tmp/gap_bench
    python -m benchmarks.gap --encoders tfidf,clip-tiny --samples 100 --seeds 1 --throughput-n 500

Prints, per encoder, sentences/s embedded (model loading excluded) with batches in input order
(the baseline) and length-sorted (what ``embed`` does), their ratio, measured in the same run
on the same sentences and checked to give the same vectors in the same order, and the wall time
of the whole analysis for 5 sources x SAMPLES sentences x SEEDS draws (reading, hygiene, embedding
with an empty cache, k-means, outputs), with the gap table it measured. Sources are the real
caption and subtitle sets in ../shared/data/captions when present, else five synthetic corpora.
``clip:PATH`` encoders are measured as given; ``clip-tiny`` is a random 2-layer CLIP built on
the spot (it measures the pipeline, not a real CLIP's speed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from analysis.encoders import TextEncoder, default_device, embed, load_encoder  # noqa: E402
from analysis.gap import GapConfig  # noqa: E402
from analysis.run import GapRunConfig, run_gap  # noqa: E402
from analysis.sources import SourceSpec  # noqa: E402
from benchmarks.scratch import scratch_folder  # noqa: E402

CAPTIONS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "captions"


def real_sources() -> list[SourceSpec] | None:
    if not (CAPTIONS / "MSRVTT_JSFUSION_test.csv").is_file():
        return None
    return [
        SourceSpec("msrvtt", str(CAPTIONS / "MSRVTT_JSFUSION_test.csv"), "sentence"),
        SourceSpec("youtube_asr", str(CAPTIONS / "youtube_asr_vlog_half_a.json")),
        SourceSpec("activitynet", str(CAPTIONS / "activitynet_val_1.json")),
        SourceSpec("coco_val", str(CAPTIONS / "coco_captions_val2017_mini.json")),
        SourceSpec("coco_train", str(CAPTIONS / "coco_captions_train2017_mini.json")),
    ]


def synthetic_sources(folder: Path, n: int) -> list[SourceSpec]:
    """Five corpora over overlapping random vocabularies (for machines without shared data)."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(600)]
    specs = []
    for k in range(5):
        vocab = words[k * 80 : k * 80 + 200]
        lines = {" ".join(rng.choice(vocab) for _ in range(rng.randint(5, 12))) for _ in range(n)}
        path = folder / f"synthetic{k}.txt"
        path.write_text("\n".join(sorted(lines)) + "\n")
        specs.append(SourceSpec(f"synthetic{k}", str(path)))
    return specs


def tiny_clip(folder: Path) -> str:
    import torch
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz0123456789":
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        projection_dim=64,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    CLIPTextModelWithProjection(config).save_pretrained(folder)
    return f"clip:{folder}"


def timed_embed(
    encoder: TextEncoder, sentences: list[str], batch_size: int, sort_by_length: bool
) -> tuple[float, np.ndarray]:
    """Sentences/s of one ``embed`` call, and its vectors."""
    t = time.perf_counter()
    vectors = embed(encoder, sentences, batch_size, sort_by_length=sort_by_length)
    return len(sentences) / (time.perf_counter() - t), vectors


def throughput(encoder: TextEncoder, sentences: list[str], batch_size: int, rounds: int) -> dict:
    """Sentences/s of ``embed`` with batches in input order (baseline) and length-sorted (ours),
    same run, same sentences, after one warm-up batch of the longest sentences (the largest
    shape either order meets, so neither pays a first allocation at it). ``rounds`` rounds of
    the two, interleaved, best of each: on a shared machine other jobs slow single runs. The
    vectors must be the same rows in the same order (up to float rounding: padding differs),
    or the faster one did other work."""
    embed(encoder, sorted(sentences, key=len)[-batch_size:], batch_size)
    baseline = ours = 0.0
    for _ in range(max(1, rounds)):
        rate, plain = timed_embed(encoder, sentences, batch_size, sort_by_length=False)
        baseline = max(baseline, rate)
        rate, vectors = timed_embed(encoder, sentences, batch_size, sort_by_length=True)
        ours = max(ours, rate)
    diff = float(np.abs(plain - vectors).max()) if len(sentences) else 0.0
    if plain.shape != vectors.shape or not np.allclose(plain, vectors, rtol=0, atol=1e-4):
        raise AssertionError(f"input-order and length-sorted vectors differ (max |diff| {diff})")
    return {"input_order": baseline, "length_sorted": ours, "max_diff": diff}


def ordering_line(rates: dict, n: int, batch_size: int, rounds: int) -> str:
    """The in-run A/B of length-sorted batching, for the output."""
    return (
        f"  embed {n} sentences, batch {batch_size}, best of {rounds}: input order (baseline) "
        f"{rates['input_order']:,.0f}/s, length-sorted (ours) {rates['length_sorted']:,.0f}/s, "
        f"{rates['length_sorted'] / rates['input_order']:.2f}x; same vectors "
        f"(max |diff| {rates['max_diff']:.1e})"
    )


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--encoders",
        default="tfidf,clip-tiny,minilm",
        help="comma-separated specs: tfidf, clip-tiny, minilm, clip:PATH (default: tfidf,clip-tiny,minilm)",
    )
    p.add_argument(
        "--samples", type=int, default=1000, help="sentences per source and draw (default: 1000)"
    )
    p.add_argument("--seeds", type=int, default=5, help="draws (default: 5)")
    p.add_argument(
        "--throughput-n", type=int, default=2000, help="sentences timed per encoder (default: 2000)"
    )
    p.add_argument(
        "--throughput-rounds",
        type=int,
        default=3,
        help="interleaved rounds of input order vs length-sorted, best of each (default: 3)",
    )
    p.add_argument("--batch-size", type=int, default=128, help="(default: 128)")
    p.add_argument(
        "--out",
        default=None,
        help="keep each analysis and benchmark.json here (default: a temp folder, removed)",
    )
    args = p.parse_args()

    with scratch_folder(args.out, "gap_bench_") as work:
        specs = real_sources() or synthetic_sources(work, 6000)
        from analysis.sources import read_source

        pool = [t for t in read_source(specs[2]) if t.strip()][: args.throughput_n]
        print(
            f"device {default_device()}; sources: {', '.join(s.name for s in specs)}; "
            f"{args.samples} sentences x {args.seeds} seeds; throughput on {len(pool)} sentences"
        )
        results = []
        for spec in args.encoders.split(","):
            name = spec
            if spec == "clip-tiny":
                spec = tiny_clip(work / "tiny_clip")
            t = time.perf_counter()
            encoder = load_encoder(spec)
            load_s = time.perf_counter() - t
            if encoder.cache_id is None:
                encoder.fit(pool)
            rates = throughput(encoder, pool, args.batch_size, args.throughput_rounds)
            rate = rates["length_sorted"]
            config = GapRunConfig(
                out=str(work / name.replace(":", "_").replace("/", "_")),
                encoder=spec,
                references=(specs[0].name,),
                gap=GapConfig(samples=args.samples, seeds=tuple(range(args.seeds))),
                batch_size=args.batch_size,
                cache=False,
                progress=False,
            )
            if encoder.cache_id is None:
                encoder = None  # fitted encoders are refitted on the analysed sentences
            t = time.perf_counter()
            summary = run_gap(specs, config, encoder=encoder)
            total = time.perf_counter() - t
            results.append(
                {
                    "encoder": name,
                    "load_s": round(load_s, 2),
                    "sentences_per_s": round(rate, 1),
                    "input_order_sentences_per_s": round(rates["input_order"], 1),
                    "analysis_s": round(total, 2),
                    "phases_s": summary["seconds"],
                    "pairs": summary["pairs"],
                    "all_sources": summary["all_sources"],
                }
            )
            print(
                f"\n{name}: load {load_s:.1f} s, {rate:,.0f} sentences/s, whole analysis {total:.1f} s "
                f"(embed {summary['seconds']['embed']:.1f} s, k-means {summary['seconds']['measure']:.1f} s)"
            )
            print(ordering_line(rates, len(pool), args.batch_size, args.throughput_rounds))
            for pair in summary["pairs"]:
                print(
                    f"  {pair['source']:>12} vs {pair['reference']}: NMI {pair['nmi_mean']:.3f} ± {pair['nmi_std']:.3f} (n {pair['n']})"
                )
            o = summary["all_sources"]
            print(
                f"  all {len(specs)} sources, k = {len(specs)}: NMI {o['nmi_mean']:.3f} ± {o['nmi_std']:.3f} (n {o['n']})"
            )
        if args.out:
            (work / "benchmark.json").write_text(json.dumps(results, indent=2) + "\n")
            print(f"\nresults and each analysis: {work}")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
