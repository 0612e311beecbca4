"""A whole gap analysis: read sources, clean, embed (cached), measure, write the outputs.

``run_gap`` is what ``clipvip gap`` calls; it takes typed configs, returns the JSON-able
summary it wrote to ``OUT/gap.json``, and logs where everything went.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from analysis.cache import EmbeddingCache
from analysis.encoders import TextEncoder, embed, load_encoder
from analysis.gap import GapConfig, GapResult, draw_order, measure, needed_indices
from analysis.hygiene import TextHygiene, clean_sentences
from analysis.outputs import format_markdown, plot_heatmap, plot_map, unwritable_reason
from analysis.sources import SourceError, SourceSpec, read_source

log = logging.getLogger("clipvip")


class OutputError(ValueError):
    """``--out`` cannot hold the outputs; ``str()`` is a one-line message naming it."""


@dataclass(frozen=True, slots=True)
class GapRunConfig:
    """Everything ``clipvip gap`` takes besides the sources; a reference given twice counts
    once (``--reference a --reference a`` is one column)."""

    out: str
    encoder: str = "minilm"
    device: str | None = None
    references: tuple[str, ...] = ()
    gap: GapConfig = field(default_factory=GapConfig)
    hygiene: TextHygiene = field(default_factory=TextHygiene)
    batch_size: int = 128
    map_method: str = "pca"  # pca | tsne | none
    cache: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "references", tuple(dict.fromkeys(self.references)))


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in (
        "clipvip",
        "numpy",
        "scikit-learn",
        "torch",
        "transformers",
        "sentence-transformers",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot become the output folder (a file, a folder under a file,
    no write permission) before any source is read or embedded, not after the work."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: a file is there; name a folder")
    if why := unwritable_reason(out / "gap.json"):
        raise OutputError(f"--out {out}: {why}")


def load_sources(
    specs: list[SourceSpec], hygiene: TextHygiene
) -> tuple[dict[str, list[str]], dict[str, dict]]:
    """Clean sentences per source and, per source, what the hygiene step dropped."""
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SourceError(f"source name(s) used twice: {', '.join(dupes)}")
    texts: dict[str, list[str]] = {}
    info: dict[str, dict] = {}
    for spec in specs:
        kept, stats = clean_sentences(read_source(spec), hygiene)
        if len(kept) < 2:
            raise SourceError(
                f"source {spec.name!r} ({spec.path}): fewer than 2 sentences after cleaning"
            )
        texts[spec.name] = kept
        info[spec.name] = {"spec": str(spec), **stats.as_dict()}
        log.info(
            "source %s: %d lines, %d kept (%d empty, %d duplicates dropped)",
            spec.name,
            stats.total,
            stats.kept,
            stats.empty,
            stats.duplicates,
        )
    return texts, info


def embed_sources(
    texts: dict[str, list[str]], encoder: TextEncoder, config: GapRunConfig, cache_dir: Path | None
) -> dict[str, dict[int, np.ndarray]]:
    """Unit vectors of just the sentences some draw will use, per source, via the cache.

    The encoder's ``cache_id`` (which reads its model folder) is asked only when caching."""
    cache = EmbeddingCache(cache_dir, encoder.cache_id if cache_dir is not None else None)
    used = needed_indices({n: len(t) for n, t in texts.items()}, config.gap)
    out: dict[str, dict[int, np.ndarray]] = {}
    for name, idx in used.items():
        chosen = [texts[name][i] for i in idx]

        def compute(missing: list[str], name: str = name) -> np.ndarray:
            return embed(
                encoder, missing, config.batch_size, config.progress, desc=f"embedding {name}"
            )

        vecs = cache.lookup(name, chosen, compute)
        out[name] = dict(zip(idx.tolist(), vecs))
    log.info("embedded %d sentences, %d from the cache", cache.misses + cache.hits, cache.hits)
    return out


def summary_line(result: GapResult, encoder: str, config: GapConfig, out: str) -> str:
    """One terminal line: every pair's gap, the all-sources gap, and where the table is."""
    pairs = ", ".join(
        f"{p.source}~{p.reference} {p.nmi_mean:.2f}±{p.nmi_std:.2f}" for p in result.pairs
    )
    # the n each pair drew (the smaller source may hold fewer than --samples sentences)
    used = sorted({p.n for p in result.pairs})
    n = f"n = {used[0]}" if len(used) == 1 else f"n = {used[0]}-{used[-1]}" if used else "n = 0"
    line = f"domain gap (NMI, {encoder}, {n} per source, {len(config.seeds)} seeds): {pairs}"
    if result.overall is not None:
        k = len(result.sources)
        line += (
            f"; all {k} (k = {k}, n = {result.overall.n}) "
            f"{result.overall.nmi_mean:.2f}±{result.overall.nmi_std:.2f}"
        )
    return f"{line} -> {out}/gap.md"


def run_gap(
    specs: list[SourceSpec], config: GapRunConfig, encoder: TextEncoder | None = None
) -> dict:
    """Run the analysis and write ``gap.json``, ``gap.md``, ``gap.png``, ``gap_map.png``.

    ``encoder``: an already loaded encoder (benchmarks, tests) instead of ``config.encoder``.
    """
    t0 = time.perf_counter()
    out = Path(config.out)
    if len(specs) < 2:
        raise SourceError("a gap needs at least two --source")
    unknown = [r for r in config.references if r not in {s.name for s in specs}]
    if unknown:
        raise SourceError(f"--reference {', '.join(unknown)} is not a --source name")
    check_out(out)
    texts, info = load_sources(specs, config.hygiene)
    t_load = time.perf_counter()

    encoder = encoder or load_encoder(config.encoder, config.device)
    t_model = time.perf_counter()
    sizes = {n: len(t) for n, t in texts.items()}
    fitted_dims: list[int] = []
    if encoder.needs_fit:
        # fitted encoders (tfidf) learn from each draw's union alone: a pair's number then
        # depends only on its two sources, seed and settings (not on --seeds or other sources)
        def draws(groups: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
            chosen = [[texts[name][int(i)] for i in idx] for name, idx in groups]
            encoder.fit([t for g in chosen for t in g])
            fitted_dims.append(encoder.dim)
            return [embed(encoder, g, config.batch_size) for g in chosen]

    else:
        vectors = embed_sources(texts, encoder, config, out / "cache" if config.cache else None)

        def draws(groups: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
            return [np.stack([vectors[name][int(i)] for i in idx]) for name, idx in groups]

    t_embed = time.perf_counter()

    result = measure(sizes, None, config.gap, config.references, config.progress, draws=draws)
    map_n = min(config.gap.samples, *sizes.values())
    if config.map_method != "none" and map_n < config.gap.samples:
        smallest = min(sizes, key=sizes.get)
        result.warnings.append(
            f"2-D map (gap_map.png): n = {map_n} sentences per source, limited by {smallest} "
            f"({sizes[smallest]} sentences; asked {config.gap.samples})"
        )
    for w in result.warnings:
        log.warning("%s", w)
    t_measure = time.perf_counter()

    out.mkdir(parents=True, exist_ok=True)
    title = f"Domain gap (NMI of k-means, k = 2) · encoder {config.encoder}"
    settings = {
        "encoder": config.encoder,
        "encoder_dim": max(fitted_dims) if fitted_dims else encoder.dim,
        "encoder_fit": "per pair and seed, on that draw's union" if encoder.needs_fit else None,
        "samples": config.gap.samples,
        "seeds": list(config.gap.seeds),
        "n_init": config.gap.n_init,
        "nmi_average_method": "arithmetic",  # sklearn normalized_mutual_info_score default
        "std": "population (ddof=0)",
        "references": list(config.references),
        "hygiene": asdict(config.hygiene),
        "batch_size": config.batch_size,
        "map": config.map_method,
        "device": getattr(encoder, "device", "cpu"),
    }
    notes = [
        f"encoder `{config.encoder}` ({settings['encoder_dim']}-d), up to {config.gap.samples} sentences a "
        f"source per draw, {len(config.gap.seeds)} draws (seeds {', '.join(map(str, config.gap.seeds))}), "
        f"k-means n_init = {config.gap.n_init}; NMI near 1 = easy to tell apart = large gap.",
        *(
            f"{n}: {i['kept']} sentences kept of {i['total']} ({i['empty']} empty, "
            f"{i['duplicates']} duplicates dropped) from `{i['spec']}`"
            for n, i in info.items()
        ),
    ]
    (out / "gap.md").write_text(format_markdown(result, title, notes), encoding="utf-8")
    plot_heatmap(result, out / "gap.png", f"domain gap (NMI) · {config.encoder}")
    if config.map_method != "none":
        seed = config.gap.seeds[0]
        names = list(sizes)
        drawn = draws([(name, draw_order(sizes[name], seed, name)[:map_n]) for name in names])
        groups = dict(zip(names, drawn))
        plot_map(
            groups,
            out / "gap_map.png",
            config.map_method,
            f"{config.map_method.upper()} of {config.encoder} embeddings, seed {seed}",
            seed,
        )
    t_end = time.perf_counter()
    summary = {
        "pairs": [p.as_dict() for p in result.pairs],
        "all_sources": (
            result.overall.as_dict() | {"sources": result.sources, "k": len(result.sources)}
            if result.overall
            else None
        ),
        "rows": result.rows,
        "columns": result.columns,
        "sources": info,
        "settings": settings,
        "warnings": result.warnings,
        "versions": _versions(),
        "seconds": {
            "load": round(t_load - t0, 3),
            "model": round(t_model - t_load, 3),
            "embed": round(t_embed - t_model, 3),
            "measure": round(t_measure - t_embed, 3),
            "outputs": round(t_end - t_measure, 3),
            "total": round(t_end - t0, 3),
        },
        "outputs": {k: str(out / k) for k in ("gap.json", "gap.md", "gap.png")}
        | ({"gap_map.png": str(out / "gap_map.png")} if config.map_method != "none" else {}),
        "summary": summary_line(result, config.encoder, config.gap, str(out)),
    }
    (out / "gap.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s", ", ".join(summary["outputs"].values()))
    return summary
