"""``clipvip report``: a self-contained page of a prepared run, rendered in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from clipvip.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report(demo_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    gap = out / "gap"
    assert (
        main(
            [
                "gap",
                "--source",
                f"subtitles={demo_run}:txt",
                "--source",
                f"captions={demo_run}:caption.txt",
                "--encoder",
                "tfidf",
                "--samples",
                "7",
                "--seeds",
                "2",
                "--no-progress",
                "--out",
                str(gap),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "report",
                str(demo_run),
                "--out",
                str(out / "report.html"),
                "--gap",
                str(gap),
                "--frames",
                "5",
            ]
        )
        == 0
    )
    return out / "report.html"


def test_report_is_self_contained_and_shows_frames_texts_failures_and_gap(report):
    page = report.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|file:|/)""", page)  # every image inline
    assert page.count('src="data:image/jpeg;base64,') == 5  # contact sheet, --frames 5
    assert page.count('src="data:image/png;base64,') == 3  # histograms, gap heatmap, gap map
    assert "<b>7</b> clips" in page and "<b>3</b> failed rows" in page
    assert "so um today we&#x27;re gonna look at this test pattern [Music]" in page  # escaped
    assert "span starts at 30 s" in page and "<td>probe</td>" in page
    assert "Domain gap" in page and "subtitles</td><td>captions" in page


def test_report_defaults_next_to_the_run_and_rejects_a_non_run(demo_run, tmp_path, capsys):
    assert main(["report", str(demo_run)]) == 0
    assert (demo_run / "report.html").stat().st_size > 10_000
    assert main(["report", str(tmp_path)]) == 2
    assert "no index.json" in capsys.readouterr().err


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,2000",
            report.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with Image.open(shot) as im:
        assert im.size == (1200, 2000)
        colours = im.convert("RGB").resize((300, 500)).getcolors(maxcolors=1 << 16)
    assert colours is not None and len(colours) > 200  # frames and plots drawn, not a blank page
