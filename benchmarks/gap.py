"""Benchmark of the domain-gap analysis: encoder throughput and a whole paper-size analysis.

    python -m benchmarks.gap                       # tfidf, tiny random CLIP, minilm
    python -m benchmarks.gap --encoders minilm --samples 1000 --seeds 5 --out /tmp/gap_bench

Prints, per encoder, sentences/s embedded (model loading excluded) and the wall time of the
whole analysis for 5 sources x SAMPLES sentences x SEEDS draws (reading, hygiene, embedding
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


def throughput(encoder: TextEncoder, sentences: list[str], batch_size: int) -> float:
    """Sentences/s of ``embed`` after one warm-up batch."""
    embed(encoder, sentences[:batch_size], batch_size)
    t = time.perf_counter()
    embed(encoder, sentences, batch_size)
    return len(sentences) / (time.perf_counter() - t)


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
            rate = throughput(encoder, pool, args.batch_size)
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
