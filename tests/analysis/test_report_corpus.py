"""``clipvip report`` over synthetic corpora written straight to shards (no ffmpeg): runs on
URIs, a metadata pass that never reads the clips, a contact sheet spread over the corpus, and
hostile text that stays text."""

from __future__ import annotations

import io
import json
import tracemalloc
from html.parser import HTMLParser
from pathlib import Path

import pytest

from analysis.report import histogram_figure, spread, summarise
from clipvip.cli import main
from shards import Sample, ShardSpec, Store, iter_samples, write_shards
from shards.index import make_index
from shards.members import iter_metadata

SCRIPT = "<script>alert(1)</script>"
BREAKOUT = "</div><img src=x onerror=alert(1)>"


def _jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 36), (200, 80, 40)).save(buf, "JPEG")
    return buf.getvalue()


JPEG = _jpeg()


def _sample(key: str, i: int, txt: str, caption: str | None, mp4: bytes) -> Sample:
    meta = {
        "clip": {"start": float(i), "end": i + 2.0, "duration": 2.0 + i % 3},
        "caption_model": "tiny" if caption is not None else None,
        "middle_frame": {"time": i + 1.0},
    }
    fields = {"jpg": JPEG, "json": json.dumps(meta).encode(), "mp4": mp4, "txt": txt.encode()}
    if caption is not None:
        fields["caption.txt"] = caption.encode()
    return Sample(key, fields)


def make_run(
    root: str,
    datasets: dict[str, int],
    txt: str = "a dog runs on the beach",
    caption: str | None = "a dog",
    mp4: bytes = b"m" * 600,
    errors: list[dict] = (),
) -> str:
    """A run of one shard per dataset (``name: samples``) in order, as `clipvip prepare`
    leaves it: shards, index.json, stats.json and errors.jsonl."""
    store = Store(root)
    shards = []
    for task, (name, n) in enumerate(datasets.items()):
        samples = (_sample(f"{name}_{i:05d}", i, txt, caption, mp4) for i in range(n))
        infos = write_shards(samples, store, ShardSpec("run", task))
        shards += [{"url": i.url, "nsamples": i.nsamples} for i in infos]
    store.put_bytes("index.json", json.dumps(make_index(shards, "run")).encode())
    by_stage: dict[str, int] = {}
    for e in errors:
        by_stage[e["stage"]] = by_stage.get(e["stage"], 0) + 1
    store.put_bytes("stats.json", json.dumps({"failed_by_stage": by_stage}).encode())
    store.put_bytes("errors.jsonl", "".join(json.dumps(e) + "\n" for e in errors).encode())
    return root


def put_gap(store: Store, source: str = "subtitles", n: object = 7, samples: object = 7) -> None:
    pair = {"source": source, "reference": "captions", "nmi_mean": 0.5, "nmi_std": 0.1, "n": n}
    settings = {"encoder": "tfidf", "samples": samples, "seeds": [0, 1]}
    store.put_bytes("gap.json", json.dumps({"pairs": [pair], "settings": settings}).encode())


def test_the_metadata_pass_yields_no_clip_and_never_holds_one(tmp_path):
    big = b"\x00" * (8 << 20)  # three 8 MiB clips
    run = make_run(str(tmp_path / "run"), {"a": 3}, mp4=big)
    tracemalloc.start()
    try:
        samples = list(iter_metadata(run))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [s["key"] for s in samples] == ["a_00000", "a_00001", "a_00002"]
    assert all("mp4" not in s and s["jpg"] == JPEG and s["txt"] for s in samples)
    assert peak < 1 << 20  # not one clip was read into memory
    only_second = list(iter_metadata(run, lambda position, ext: ext == "jpg" and position == 1))
    assert [sorted(s) for s in only_second] == [
        ["key", "url"],
        ["jpg", "key", "url"],
        ["key", "url"],
    ]


def test_the_metadata_pass_still_stops_at_a_shard_cut_inside_a_clip(tmp_path):
    from shards import ShortShardError

    run = make_run(str(tmp_path / "run"), {"a": 3}, mp4=b"m" * 100_000)
    shard = next((tmp_path / "run" / "shards").glob("*.tar"))
    shard.write_bytes(shard.read_bytes()[:250_000])  # inside the third sample's clip
    with pytest.raises(ShortShardError, match="run-000000.tar"):
        list(iter_metadata(run))


def test_the_report_counts_what_a_full_read_of_the_shards_counts(demo_run):
    full = list(iter_samples(str(demo_run)))
    s = summarise(str(demo_run), frames=3)
    assert s.samples == len(full) == 7
    assert s.durations == [float(x["json"]["clip"]["duration"]) for x in full]
    assert s.subtitle_words == [len(x["txt"].split()) for x in full]
    assert s.caption_words == [len(x["caption.txt"].split()) for x in full if "caption.txt" in x]
    assert sum(s.caption_models.values()) == 7
    assert [c["key"] for c in s.sheet] == [full[p]["key"] for p in sorted(spread(7, 3))]


def test_spread_picks_the_middle_of_equal_strides_and_everything_when_asked_for_more():
    assert sorted(spread(3000, 3)) == [500, 1500, 2500]
    assert spread(5, 24) == frozenset(range(5))
    assert spread(10, 0) == frozenset()
    assert len(spread(3000, 24)) == 24


def test_the_contact_sheet_of_a_large_corpus_spreads_over_every_dataset_and_stays_small(
    tmp_path,
):
    run = make_run(str(tmp_path / "run"), {"hdvila": 1000, "webvid": 1000, "yttemporal": 1000})
    assert main(["report", run]) == 0
    page = (tmp_path / "run" / "report.html").read_text()
    assert "Middle frames (24 of 3000, spread evenly over the corpus)" in page
    assert page.count('src="data:image/jpeg;base64,') == 24
    for dataset in ("hdvila", "webvid", "yttemporal"):
        assert page.count(f'class="key">{dataset}_') == 8
    assert "<b>3000</b> clips" in page
    assert len(page) < 1_000_000  # 24 thumbnails and one plot, whatever the corpus size
    again = summarise(run, frames=24)
    assert [c["key"] for c in again.sheet] == [c["key"] for c in summarise(run, 24).sheet]


def test_a_file_uri_run_gets_its_page_and_gap_beside_the_shards(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    make_run(str(run), {"a": 4})
    put_gap(Store(str(run / "gap")))
    monkeypatch.chdir(tmp_path)
    assert main(["report", f"file://{run}"]) == 0
    assert capsys.readouterr().out.strip() == f"corpus report: {run / 'report.html'}"
    assert "Domain gap" in (run / "report.html").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no ./file: folder


def test_a_memory_uri_run_gets_its_page_and_gap_on_that_filesystem(capsys):
    root = "memory://clipvip-report-test/run"
    store = Store(root)
    try:
        make_run(root, {"a": 3, "b": 3})
        put_gap(Store(f"{root}/gap"))
        assert main(["report", root, "--frames", "2"]) == 0
        assert capsys.readouterr().out.strip() == f"corpus report: {root}/report.html"
        page = store.read_text("report.html")
        assert "Domain gap" in page and "Middle frames (2 of 6, spread evenly" in page
        assert not Path("memory:").exists()
    finally:
        store.remove("")


class _Markup(HTMLParser):
    """The elements and attributes a browser would build from a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [name for name, _ in attrs]


def test_hostile_text_in_subtitles_captions_failures_and_gap_stays_text(tmp_path):
    errors = [{"key": BREAKOUT, "stage": SCRIPT, "reason": f"{SCRIPT} {BREAKOUT}"}]
    run = make_run(str(tmp_path / "run"), {"a": 2}, txt=SCRIPT, caption=BREAKOUT, errors=errors)
    put_gap(Store(f"{run}/gap"), source=BREAKOUT, n=SCRIPT, samples=BREAKOUT)
    assert main(["report", run]) == 0
    page = (tmp_path / "run" / "report.html").read_text()
    assert SCRIPT not in page and BREAKOUT not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;/div&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    markup = _Markup()
    markup.feed(page)
    assert "script" not in markup.tags and "onerror" not in markup.attrs


def test_a_run_without_captions_reports_its_subtitles_alone(tmp_path):
    run = make_run(str(tmp_path / "run"), {"a": 5}, caption=None)
    assert main(["report", run]) == 0
    page = (tmp_path / "run" / "report.html").read_text()
    assert "<b>5</b> clips" in page and "mean caption – ·" in page
    assert "caption models: none (5)" in page and 'class="cap"' not in page
    assert page.count('src="data:image/jpeg;base64,') == 5


def test_an_empty_run_shows_a_dash_without_a_unit(failed_run, tmp_path):
    out = tmp_path / "r.html"
    assert main(["report", str(failed_run), "--out", str(out)]) == 0
    assert "mean duration – ·" in out.read_text()


def test_frames_must_be_a_count(failed_run, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(failed_run), "--frames", "-5"])
    assert exit_.value.code == 2
    assert "argument --frames: '-5': must be at least 0" in capsys.readouterr().err


def test_count_axes_tick_at_whole_numbers(tmp_path):
    import matplotlib.pyplot as plt

    s = summarise(make_run(str(tmp_path / "run"), {"a": 3}), frames=0)
    fig = histogram_figure(s, {"probe": 2, "clip": 1})
    try:
        fig.canvas.draw()
        ticks = [t for ax in fig.axes[:3] for t in ax.get_yticks()] + list(fig.axes[3].get_xticks())
    finally:
        plt.close(fig)
    assert ticks and all(float(t).is_integer() for t in ticks)
