"""``report.html``: one self-contained page that shows what a prepared corpus holds.

Before training on a corpus one wants to see it: do the middle frames show the action, do the
subtitles talk about what is seen (the domain gap in the flesh), are the captions sensible, how
long are the clips and texts, what failed and why. Every image is inlined (base64), so the file
opens anywhere, offline, and can be archived beside the run. Text from the corpus is escaped:
subtitles are untrusted input.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from analysis.outputs import mpl_text, unwritable_reason
from shards.index import load_index, shard_list
from shards.members import iter_metadata
from shards.store import Store

log = logging.getLogger("clipvip")


class ReportError(ValueError):
    """The report cannot be written; ``str()`` is one line naming the file at fault."""


@dataclass(frozen=True, slots=True)
class ReportConfig:
    run: str
    out: str | None = None  # default: RUN/report.html; an existing folder: report.html in it
    frames: int = 24
    gap: str | None = None  # a `clipvip gap` folder; default: RUN/gap when it has gap.json
    thumb_px: int = 192


@dataclass(slots=True)
class CorpusSummary:
    """What the report shows, gathered in one pass over the shards."""

    samples: int = 0
    durations: list[float] = field(default_factory=list)
    subtitle_words: list[int] = field(default_factory=list)
    caption_words: list[int] = field(default_factory=list)
    caption_models: Counter = field(default_factory=Counter)
    sheet: list[dict] = field(default_factory=list)  # key, thumb (data URI), txt, caption, span


def _thumb(jpg: bytes, px: int) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(jpg)) as im:
        im = im.convert("RGB")
        im.thumbnail((px * 2, px))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def spread(total: int, n: int) -> frozenset[int]:
    """``n`` of the positions ``0 .. total-1``, one in the middle of each of ``n`` equal
    strides (all of them when ``n >= total``). A corpus's shards come dataset after dataset, so
    its first samples show one dataset only; evenly spread picks show each in proportion, and
    the same picks every time for the same run."""
    if n >= total:
        return frozenset(range(total))
    return frozenset((2 * i + 1) * total // (2 * n) for i in range(n))


def _card(sample: dict, thumb_px: int) -> dict:
    """What the contact sheet shows of one sample."""
    meta = sample.get("json", {})
    clip = meta.get("clip", {})
    return {
        "key": sample["key"],
        "thumb": _thumb(sample["jpg"], thumb_px),
        "txt": sample.get("txt") or "",
        "caption": sample.get("caption.txt"),
        "frame": meta.get("middle_frame", {}).get("time"),
        "span": [clip.get("start"), clip.get("end")] if clip else meta.get("span"),
    }


def _count(s: CorpusSummary, sample: dict) -> None:
    """Add one sample's duration, text lengths and caption model to the summary."""
    s.samples += 1
    meta = sample.get("json", {})
    clip = meta.get("clip", {})
    if "duration" in clip:
        s.durations.append(float(clip["duration"]))
    txt, cap = sample.get("txt"), sample.get("caption.txt")
    if txt is not None:
        s.subtitle_words.append(len(txt.split()))
    if cap is not None:
        s.caption_words.append(len(cap.split()))
    s.caption_models[meta.get("caption_model") or "none"] += 1


def summarise(run: str, frames: int, thumb_px: int = 192) -> CorpusSummary:
    """One pass over the run's shards that reads the small members (json, txt, caption.txt)
    of every sample, the frame (jpg) of only the ``frames`` samples ``spread`` over the
    corpus, and never a clip (mp4): a corpus of terabytes is summarised from its metadata."""
    picks = spread(sum(shard_list(run)[1].values()), frames)

    def wanted(position: int, ext: str) -> bool:
        return ext != "mp4" and (ext != "jpg" or position in picks)

    s = CorpusSummary()
    for sample in iter_metadata(run, wanted):
        _count(s, sample)
        if "jpg" in sample:
            s.sheet.append(_card(sample, thumb_px))
    return s


def _json_object(text: str, path: str, first_line: int = 1) -> dict:
    """``text`` (from ``path``, starting at line ``first_line``) parsed as one JSON object; else
    a ``ReportError`` naming the file and its line: the decoder alone says "line 1 column 24"
    of a string, which points nowhere in a file of many lines."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        line = first_line + exc.lineno - 1
        raise ReportError(f"{path} line {line} column {exc.colno}: not JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise ReportError(f"{path} line {first_line}: not a JSON object")
    return value


def read_errors(text: str, path: str) -> list[dict]:
    """The lines of ``errors.jsonl``. A last line that is not JSON is skipped with a warning: it
    is what a copy or upload of the run cut short leaves, every line before it is whole, and the
    report (a view, not a record) is more use with one example fewer than not at all. A bad line
    anywhere else means the file is damaged or not clipvip's: an error naming the line."""
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    errors = []
    for i, (number, line) in enumerate(lines):
        try:
            errors.append(_json_object(line, path, number))
        except ReportError as exc:
            if i < len(lines) - 1:
                raise
            log.warning("%s; skipped (a truncated last line)", exc)
    return errors


def _failures(store: Store, run: str) -> tuple[dict[str, int], list[dict], list[str]]:
    """Failure counts by stage, a few examples, and warnings. The counts are the run's total,
    ``failed_by_stage`` of stats.json; errors.jsonl (which a copy or upload may have cut
    short) gives the examples, and the counts only when there is no stats.json. When the two
    disagree, a warning says so (logged and shown in the report)."""
    examples: list[dict] = []
    logged: Counter = Counter()
    has_log = store.exists("errors.jsonl")
    if has_log:
        for err in read_errors(store.read_text("errors.jsonl"), f"{run}/errors.jsonl"):
            logged[str(err.get("stage", "?"))] += 1
            if len(examples) < 20:
                examples.append(err)
    if not store.exists("stats.json"):
        return dict(logged), examples, []
    stats = _json_object(store.read_text("stats.json"), f"{run}/stats.json")
    by_stage = stats.get("failed_by_stage") or {}
    if not isinstance(by_stage, dict):
        by_stage = {}
    counts = {str(k): int(v) for k, v in by_stage.items() if int(v)}
    notes = []
    if has_log and sum(logged.values()) != sum(counts.values()):
        notes.append(
            f"{run}/stats.json counts {sum(counts.values())} failed rows but errors.jsonl lists "
            f"{sum(logged.values())}: the counts are from stats.json (the run's total); "
            "errors.jsonl, perhaps cut short, only gives the examples"
        )
        log.warning("%s", notes[-1])
    return counts, examples, notes


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def histograms(s: CorpusSummary, failures: dict[str, int]) -> str:
    """One PNG (data URI) with four panels: durations, subtitle and caption words, failures."""
    import matplotlib.pyplot as plt

    fig = histogram_figure(s, failures)
    uri = _png(fig)
    plt.close(fig)
    return uri


def histogram_figure(s: CorpusSummary, failures: dict[str, int]):
    """The matplotlib figure of ``histograms`` (the caller closes it). Count axes tick at whole
    numbers: a corpus of three clips otherwise shows "0.5" clips."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 4, figsize=(15, 3.2), dpi=90)
    panels = [
        (s.durations, "clip duration (s)"),
        (s.subtitle_words, "subtitle length (words)"),
        (s.caption_words, "caption length (words)"),
    ]
    for ax, (values, label) in zip(axes, panels):
        if label.endswith("(words)"):  # whole words too
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if values:
            ax.hist(values, bins=min(30, max(5, len(set(values)))), color="#4472c4")
        else:
            ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"{label} · n = {len(values)}", fontsize=10)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no "0.5 clips"
    ax = axes[3]
    if failures:
        stages = sorted(failures, key=failures.get, reverse=True)
        ax.barh([mpl_text(k) for k in stages], [failures[k] for k in stages], color="#c0504d")
        ax.invert_yaxis()
    else:
        ax.text(0.5, 0.5, "no failures", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(f"failures by stage · {sum(failures.values())}", fontsize=10)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def gap_store(run: str, gap: str | None) -> Store:
    """Where the gap analysis is: ``--gap`` (a folder or a URI), else RUN/gap. Read through a
    ``Store`` like the run itself, so a run on object storage (``s3://bucket/run``) finds its
    gap beside it."""
    return Store(gap if gap else f"{run}/gap")


def load_gap(store: Store, asked: bool) -> dict | None:
    """``gap.json`` of ``store``, or None when there is none. A broken one that ``--gap``
    named (``asked``) stops the report with its file and line; one only found by default in
    RUN/gap is left out with a warning, as the user did not ask for it."""
    if not store.exists("gap.json"):
        return None
    where = store.url("gap.json")
    try:
        gap = _json_object(store.read_text("gap.json"), where)
        pairs = gap.get("pairs")
        if not (isinstance(pairs, list) and all(isinstance(p, dict) for p in pairs)):
            raise ReportError(f"{where}: not the gap.json of `clipvip gap` (no list of pairs)")
    except ReportError as exc:
        if asked:
            raise
        log.warning("%s; the report leaves out the domain gap", exc)
        return None
    return gap


def _gap_rows(store: Store, gap: dict) -> str:
    """The table rows; every value from gap.json is escaped (source names come from users)."""
    try:
        return "".join(
            f"<tr><td>{html.escape(str(p['source']))}</td>"
            f"<td>{html.escape(str(p['reference']))}</td>"
            f"<td>{p['nmi_mean']:.3f} ± {p['nmi_std']:.3f}</td>"
            f"<td>{html.escape(str(p['n']))}</td></tr>"
            for p in gap["pairs"]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportError(f"{store.url('gap.json')}: a pair lacks or mistypes {exc}") from None


def _gap_section(store: Store, gap: dict | None) -> str:
    if gap is None:
        return ""
    rows = _gap_rows(store, gap)
    imgs = "".join(
        f'<img class="plot" alt="{name}" src="{_png_uri(store.read_bytes(name))}">'
        for name in ("gap.png", "gap_map.png")
        if store.exists(name)
    )
    st = gap.get("settings")
    st = st if isinstance(st, dict) else {}
    seeds = st.get("seeds")
    draws = len(seeds) if isinstance(seeds, list) else "?"
    return (
        "<h2>Domain gap</h2>"
        f"<p>NMI of k-means (k = 2) between each source and reference; encoder "
        f"<code>{html.escape(str(st.get('encoder')))}</code>, up to "
        f"{html.escape(str(st.get('samples')))} sentences a source, {draws} draws. "
        "Near 1 = a large gap.</p>"
        f"<table><tr><th>source</th><th>reference</th><th>NMI</th><th>n</th></tr>{rows}</table>"
        f'<div class="row">{imgs}</div>'
    )


CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{margin-bottom:4px} .muted{color:#666} code{background:#f3f3f3;padding:1px 4px}
.sheet{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:12px}
figure{margin:0;border:1px solid #ddd;border-radius:6px;padding:6px;background:#fafafa}
figure img{width:100%;height:auto;border-radius:4px} figcaption{font-size:12px;line-height:1.35}
.sub{color:#333} .cap{color:#1f5fa8} .key{font-family:monospace;color:#777}
table{border-collapse:collapse;margin:8px 0} td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
img.plot{max-width:100%;margin:8px 0;display:block}
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start} .row img.plot{max-width:48%}
"""


def _mean(xs: list, unit: str) -> str:
    """``12.3 s``; a dash alone when there is nothing to average (no "– s")."""
    return f"{sum(xs) / len(xs):.1f} {unit}" if xs else "–"


def _sheet_heading(s: CorpusSummary) -> str:
    if len(s.sheet) < s.samples:
        return f"Middle frames ({len(s.sheet)} of {s.samples}, spread evenly over the corpus)"
    return f"Middle frames ({len(s.sheet)} of {s.samples})"


def render_html(
    run: str,
    s: CorpusSummary,
    failures: dict[str, int],
    examples: list[dict],
    gap_html: str,
    notes: Sequence[str] = (),
) -> str:
    cards = []
    for item in s.sheet:
        span = item["span"]
        when = "–".join("?" if t is None else f"{t:.1f}" for t in span) + " s" if span else ""
        cap = (
            f'<div class="cap">caption: {html.escape(item["caption"])}</div>'
            if item["caption"] is not None
            else ""
        )
        cards.append(
            f'<figure><img alt="{html.escape(item["key"])}" src="{item["thumb"]}"><figcaption>'
            f'<div class="key">{html.escape(item["key"])} · {when}</div>'
            f'<div class="sub">subtitle: {html.escape(item["txt"])}</div>{cap}</figcaption></figure>'
        )
    fail_rows = "".join(
        f"<tr><td>{html.escape(str(e.get('key')))}</td><td>{html.escape(str(e.get('stage')))}</td>"
        f"<td>{html.escape(str(e.get('reason')))}</td></tr>"
        for e in examples
    )
    fail_table = (
        f"<table><tr><th>key</th><th>stage</th><th>reason</th></tr>{fail_rows}</table>"
        if fail_rows
        else ""
    )
    note_html = "".join(f'<p class="muted">warning: {html.escape(n)}</p>' for n in notes)
    models = ", ".join(f"{html.escape(k)} ({v})" for k, v in s.caption_models.most_common())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>clipvip corpus report</title>
<style>{CSS}</style></head><body>
<h1>Corpus report</h1>
<p class="muted"><code>{html.escape(run)}</code></p>
<p><b>{s.samples}</b> clips · <b>{sum(failures.values())}</b> failed rows ·
mean duration {_mean(s.durations, "s")} · mean subtitle {_mean(s.subtitle_words, "words")} ·
mean caption {_mean(s.caption_words, "words")} · caption models: {models or "none"}</p>
<h2>Distributions</h2>
<img class="plot" alt="histograms" src="{histograms(s, failures)}">
{note_html}{fail_table}
{gap_html}
<h2>{_sheet_heading(s)}</h2>
<div class="sheet">{"".join(cards)}</div>
</body></html>
"""


def report_target(run: str, out: str | None) -> tuple[Store, str]:
    """Where the page goes, as a store and a name in it: RUN/report.html by default (RUN may
    be a URI: the page goes beside the shards, not into a local folder named after the URI);
    ``--out`` names the HTML file; an existing folder (or a path ending in ``/``) gets
    ``report.html`` inside it, as ``cp`` would, since a folder cannot be overwritten and the
    intent is plain. A local target is refused up front when it cannot be written."""
    store, name = Store(run if out is None else out), "report.html"
    if out is not None and not (out.endswith("/") or store.fs.isdir(store.path(""))):
        parent, _, name = out.rpartition("/")
        store = Store(parent if parent or out.startswith("/") else ".")
    if store.local and (why := unwritable_reason(Path(store.path(name)))):
        raise ReportError(f"--out {out}: {why}" if out else f"{store.url(name)}: {why}")
    return store, name


def write_report(config: ReportConfig) -> str:
    """Write the report and return where it is (a path, or a URI for a remote run); raises
    ``FileNotFoundError`` when RUN is not a prepared run and ``ReportError`` when ``--out``
    cannot be written or errors.jsonl / gap.json are broken. A run in which every row failed
    is a report with 0 clips and its failures."""
    run = config.run.rstrip("/")
    load_index(run)  # not a run, a file, a damaged index: said now, before any work
    out, name = report_target(run, config.out)
    gaps = gap_store(run, config.gap)
    if config.gap and not gaps.exists("gap.json"):
        raise FileNotFoundError(
            f"--gap {config.gap}: no gap.json there (run `clipvip gap --out {config.gap}`)"
        )
    gap = load_gap(gaps, asked=bool(config.gap))
    store = Store(run)
    failures, examples, notes = _failures(store, run)
    summary = summarise(run, config.frames, config.thumb_px)
    page = render_html(run, summary, failures, examples, _gap_section(gaps, gap), notes)
    out.put_bytes(name, page.encode("utf-8"))
    log.info(
        "report: %d clips, %d failures, %d frames -> %s",
        summary.samples,
        sum(failures.values()),
        len(summary.sheet),
        out.url(name),
    )
    return out.url(name)
