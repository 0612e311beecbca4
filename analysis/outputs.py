"""What a gap analysis leaves in ``--out``: ``gap.md`` (the table as the paper prints it),
``gap.png`` (heatmap, mean ± std in the cells) and ``gap_map.png`` (a 2-D map of the embedded
sentences coloured by source). ``gap.json`` is written by ``analysis.run``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from analysis.gap import GapResult


def unwritable_reason(path: Path) -> str | None:
    """Why nothing can be written at ``path`` (its nearest existing parent is a file, or not
    writable), or None: checked before the work, so a bad ``--out`` fails in a second."""
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{parent} is not writable"
    return None


def mpl_text(text: str) -> str:
    """``text`` shown as written in a matplotlib label. Matplotlib reads text between two ``$``
    as mathtext (and fails on most names that hold one); an escaped ``\\$`` is a plain dollar
    sign. Source names, encoder paths and stages come from users: every label goes through this.
    """
    return text.replace("$", r"\$")


def md_cell(text: str) -> str:
    """``text`` in a Markdown table cell: a ``|`` would end the cell, so it is escaped."""
    return text.replace("|", r"\|")


def gap_matrix(result: GapResult) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` arrays of shape (rows, columns); NaN where no pair (a source vs itself)."""
    mean = np.full((len(result.rows), len(result.columns)), np.nan)
    std = np.full_like(mean, np.nan)
    for i, r in enumerate(result.rows):
        for j, c in enumerate(result.columns):
            p = result.pair(r, c) if r != c else None
            if p is not None:
                mean[i, j], std[i, j] = p.nmi_mean, p.nmi_std
    return mean, std


def format_markdown(result: GapResult, title: str, notes: Sequence[str] = ()) -> str:
    """Rows = sources, columns = references, cells ``NMI mean ± std``; higher = larger gap."""
    mean, std = gap_matrix(result)
    header = " | ".join(md_cell(c) for c in result.columns)
    lines = [f"# {title}", "", f"| source \\ reference | {header} |"]
    lines.append("|---" * (len(result.columns) + 1) + "|")
    for i, r in enumerate(result.rows):
        cells = [
            "—" if np.isnan(mean[i, j]) else f"{mean[i, j]:.3f} ± {std[i, j]:.3f}"
            for j in range(len(result.columns))
        ]
        lines.append(f"| {md_cell(r)} | " + " | ".join(cells) + " |")
    lines.append("")
    if result.overall is not None:
        o, k = result.overall, len(result.sources)
        lines.append(
            f"All {k} sources together (k = {k}): NMI {o.nmi_mean:.3f} ± {o.nmi_std:.3f}, "
            f"n = {o.n} a source."
        )
        lines.append("")
    lines += [f"- {n}" for n in notes]
    for w in result.warnings:
        lines.append(f"- warning: {w}")
    return "\n".join(lines).rstrip() + "\n"


def plot_heatmap(result: GapResult, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean, std = gap_matrix(result)
    w = max(4.0, 1.3 * len(result.columns) + 2.5)
    h = max(2.5, 0.8 * len(result.rows) + 1.6)
    fig, ax = plt.subplots(figsize=(w, h), dpi=110)
    im = ax.imshow(np.ma.masked_invalid(mean), vmin=0.0, vmax=1.0, cmap="viridis")
    columns = [mpl_text(c) for c in result.columns]
    ax.set_xticks(range(len(result.columns)), columns, rotation=30, ha="right")
    ax.set_yticks(range(len(result.rows)), [mpl_text(r) for r in result.rows])
    for i in range(mean.shape[0]):
        for j in range(mean.shape[1]):
            if np.isnan(mean[i, j]):
                continue
            colour = "black" if mean[i, j] > 0.6 else "white"
            ax.text(
                j,
                i,
                f"{mean[i, j]:.2f}\n±{std[i, j]:.2f}",
                ha="center",
                va="center",
                color=colour,
                fontsize=9,
            )
    ax.set_title(mpl_text(title), fontsize=10)
    fig.colorbar(im, ax=ax, label="NMI (domain gap)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def project_2d(x: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """PCA (fast, linear) or t-SNE (slower, shows local structure) to two dimensions."""
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    from sklearn.decomposition import PCA

    return PCA(2, random_state=seed).fit_transform(x)


def plot_map(
    groups: dict[str, np.ndarray], path: Path, method: str, title: str, seed: int = 0
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(groups)
    xy = project_2d(np.concatenate([groups[n] for n in names]), method, seed)
    fig, ax = plt.subplots(figsize=(6.5, 5.5), dpi=110)
    start = 0
    for name in names:
        part = xy[start : start + len(groups[name])]
        start += len(groups[name])
        label = mpl_text(f"{name} ({len(part)})")
        ax.scatter(part[:, 0], part[:, 1], s=6, alpha=0.6, label=label)
    ax.set_title(mpl_text(title), fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=2.5, fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
