"""The language domain gap between text corpora, measured as in CLIP-ViP (Xue et al., 2023).

Draw an equal number of sentences from two corpora, embed them, L2-normalise, cluster the union
with k-means (k = 2) and compute the normalized mutual information (NMI) between cluster and
corpus. Two corpora a clustering tells apart (NMI near 1) sit far apart in language: a large
``domain_gap``; two samples of one corpus give NMI near 0. The measurement is repeated over
fresh draws (seeds) and reported as mean ± std, and once more with k = number of sources over
all of them together.

Determinism: a source's draw for a seed depends only on (seed, source name), never on which
pair it is in; the union is stacked in name order, so the gap of (a, b) equals that of (b, a).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

log = logging.getLogger("clipvip")


@dataclass(frozen=True, slots=True)
class GapConfig:
    """How to measure: sentences per source and pair, draws, k-means restarts."""

    samples: int = 1000
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    n_init: int = 10

    def __post_init__(self) -> None:
        if self.samples < 2:
            raise ValueError("samples must be at least 2")
        if not self.seeds:
            raise ValueError("at least one seed is needed")
        if self.n_init < 1:
            raise ValueError("n_init must be at least 1")


@dataclass(slots=True)
class PairGap:
    """The gap between one source and one reference over all seeds."""

    source: str
    reference: str
    nmi_mean: float
    nmi_std: float
    n: int
    nmi: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(slots=True)
class GapResult:
    """Every pair's gap and the all-sources one. ``sources`` lists the names (k of the
    all-sources clustering is its length): ``overall.reference`` joins them with commas for
    display, and a name may hold a comma, so never count names by splitting it."""

    pairs: list[PairGap]
    overall: PairGap | None  # k = len(sources) over all; reference: the names, comma-joined
    rows: list[str]
    columns: list[str]
    warnings: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def pair(self, a: str, b: str) -> PairGap | None:
        for p in self.pairs:
            if {p.source, p.reference} == {a, b}:
                return p
        return None


def draw_order(n_total: int, seed: int, name: str) -> np.ndarray:
    """A permutation of a source's sentence indices for one seed; the first n are its draw."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
    return rng.permutation(n_total)


def cluster_nmi(groups: Sequence[np.ndarray], seed: int, n_init: int = 10) -> float:
    """NMI between k-means clusters (k = len(groups)) of the stacked rows and their group.

    Rows should be L2-normalised: on the unit sphere Euclidean k-means compares directions,
    which is what sentence encoders are trained to make meaningful.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    x = np.concatenate(groups, axis=0)
    labels = np.concatenate([np.full(len(g), i) for i, g in enumerate(groups)])
    km = KMeans(n_clusters=len(groups), n_init=n_init, random_state=seed).fit(x)
    return float(normalized_mutual_info_score(labels, km.labels_))


def domain_gap_nmi(a: np.ndarray, b: np.ndarray, seed: int = 0, n_init: int = 10) -> float:
    """The domain gap of two embedded samples: NMI of a k = 2 clustering of their union."""
    return cluster_nmi([a, b], seed=seed, n_init=n_init)


def plan_pairs(
    names: Sequence[str], references: Sequence[str]
) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """Rows, columns and (source, reference) pairs of the table.

    With references: every source against every reference except itself. Rows are the
    non-reference sources, then the references when there are two or more (each is measured
    against the others); columns the references (a repeated one once). Without: every source
    against every other, each pair once. A pair listed both ways (two references) is measured
    once by ``measure``.
    """
    references = list(dict.fromkeys(references))
    if references:
        rows = [n for n in names if n not in references]
        if len(references) > 1:
            rows += [n for n in names if n in references]
        rows = rows or list(names)
        cols = list(references)
        pairs = [(r, c) for r in rows for c in cols if r != c]
    else:
        rows = cols = list(names)
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    return rows, cols, pairs


def needed_indices(sizes: dict[str, int], config: GapConfig) -> dict[str, np.ndarray]:
    """Per source, the sorted sentence indices any draw will use (only these are embedded)."""
    out = {}
    for name, size in sizes.items():
        take = min(config.samples, size)
        used = np.unique(np.concatenate([draw_order(size, s, name)[:take] for s in config.seeds]))
        out[name] = used
    return out


Draws = Callable[[list[tuple[str, np.ndarray]]], list[np.ndarray]]


def measure(
    sizes: dict[str, int],
    vectors: Callable[[str, np.ndarray], np.ndarray] | None,
    config: GapConfig,
    references: Sequence[str] = (),
    progress: bool = False,
    draws: Draws | None = None,
) -> GapResult:
    """Every pair's gap (and the all-sources one) over ``config.seeds``.

    ``sizes`` maps each source to its sentence count; ``vectors(name, indices)`` returns the
    unit embeddings of those sentences. ``draws`` instead, when given: the unit embeddings of
    one clustering's groups at once, ``[(name, indices), ...]`` in, one array a group out (for
    an encoder fitted on each draw's union, as TF-IDF is). Unknown references raise
    ``ValueError``. An unordered pair is clustered once a seed, whichever way it is listed.
    """
    from tqdm.auto import tqdm

    if draws is None:
        if vectors is None:
            raise ValueError("measure needs vectors or draws")

        def draws(groups: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
            return [vectors(name, idx) for name, idx in groups]

    names = list(sizes)
    missing = [r for r in references if r not in sizes]
    if missing:
        raise ValueError(
            f"--reference {', '.join(missing)}: not a source name ({', '.join(names)})"
        )
    rows, cols, plan = plan_pairs(names, references)
    warnings: list[str] = []
    for name, size in sizes.items():
        if size < config.samples:
            warnings.append(
                f"{name}: only {size} sentences (asked {config.samples}); pairs with it use {size}"
            )
    orders = {(name, s): draw_order(sizes[name], s, name) for name in names for s in config.seeds}

    def groups(members: Sequence[str], seed: int, n: int) -> list[np.ndarray]:
        return draws([(name, orders[(name, seed)][:n]) for name in members])

    jobs = list(dict.fromkeys(tuple(sorted(p)) for p in plan))
    total = len(jobs) * len(config.seeds) + (len(config.seeds) if len(names) > 2 else 0)
    bar = tqdm(total=total, desc="k-means", unit="fit", disable=not progress, leave=False)
    done: dict[tuple[str, str], tuple[int, list[float]]] = {}
    for a, b in jobs:
        n = min(config.samples, sizes[a], sizes[b])
        scores = []
        for seed in config.seeds:
            scores.append(cluster_nmi(groups((a, b), seed, n), seed, config.n_init))
            bar.update()
        done[(a, b)] = (n, scores)
    pairs: list[PairGap] = []
    for source, reference in plan:
        n, scores = done[tuple(sorted((source, reference)))]
        pairs.append(
            PairGap(
                source, reference, float(np.mean(scores)), float(np.std(scores)), n, list(scores)
            )
        )
    overall = None
    if len(names) > 2:
        n = min(config.samples, *sizes.values())
        order = sorted(names)
        if n < config.samples:
            smallest = min(order, key=lambda x: sizes[x])
            warnings.append(
                f"all-sources run (k = {len(order)}): n = {n} sentences per source, limited by "
                f"{smallest} ({sizes[smallest]} sentences; asked {config.samples})"
            )
        scores = []
        for seed in config.seeds:
            scores.append(cluster_nmi(groups(order, seed, n), seed, config.n_init))
            bar.update()
        overall = PairGap(
            "all", ",".join(order), float(np.mean(scores)), float(np.std(scores)), n, scores
        )
    bar.close()
    return GapResult(pairs, overall, rows, cols, warnings, sorted(names))
