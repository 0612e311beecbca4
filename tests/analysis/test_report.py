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


def test_a_run_in_which_every_row_failed_is_a_report_of_0_clips_and_its_failures(
    failed_run, tmp_path
):
    out = tmp_path / "r.html"
    assert main(["report", str(failed_run), "--out", str(out)]) == 0
    page = out.read_text()
    assert "<b>0</b> clips" in page and "<b>2</b> failed rows" in page
    assert "<td>probe</td>" in page and "file not found" in page and "gone.mp4" in page


def test_an_out_that_is_a_folder_gets_report_html_inside_it(failed_run, tmp_path, capsys):
    (tmp_path / "reports").mkdir()
    assert main(["report", str(failed_run), "--out", str(tmp_path / "reports")]) == 0
    assert (tmp_path / "reports" / "report.html").read_text().startswith("<!doctype html>")
    assert f"corpus report: {tmp_path / 'reports' / 'report.html'}" in capsys.readouterr().out
    (tmp_path / "file").write_text("x")
    assert main(["report", str(failed_run), "--out", str(tmp_path / "file" / "r.html")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'file'} is a file, not a folder" in err and "Traceback" not in err


def copy_run(run, dest):
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("report.html"))
    return dest


def test_a_truncated_last_line_of_errors_jsonl_is_skipped_with_a_warning(
    failed_run, tmp_path, caplog
):
    run = copy_run(failed_run, tmp_path / "run")
    log = run / "errors.jsonl"
    log.write_text(log.read_text() + '{"key": "k9", "stage": "pro')  # killed while appending
    with caplog.at_level("WARNING", logger="clipvip"):
        assert main(["report", str(run)]) == 0
    assert f"{log} line 3 column 24: not JSON: Unterminated string" in caplog.text
    assert "<b>2</b> failed rows" in (run / "report.html").read_text()


def test_a_bad_line_inside_errors_jsonl_or_a_broken_gap_json_names_the_file_and_line(
    failed_run, tmp_path, capsys
):
    run = copy_run(failed_run, tmp_path / "run")
    log = run / "errors.jsonl"
    good = log.read_text().splitlines()
    log.write_text("\n".join([good[0], "{bad", good[1]]) + "\n")
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err == f"clipvip: error: {log} line 2 column 2: not JSON: Expecting property name "
        "enclosed in double quotes"
    )
    log.write_text("\n".join(good) + "\n")
    (tmp_path / "gap").mkdir()
    (tmp_path / "gap" / "gap.json").write_text('{\n  "pairs": [\n    {"source": "a')  # cut short
    assert main(["report", str(run), "--gap", str(tmp_path / "gap")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'gap' / 'gap.json'} line 3 column 16: not JSON" in err
    assert "Traceback" not in err


def test_a_broken_gap_json_found_by_default_is_left_out_with_a_warning(
    failed_run, tmp_path, caplog
):
    run = copy_run(failed_run, tmp_path / "run")
    (run / "gap").mkdir()
    (run / "gap" / "gap.json").write_text("[1, 2]")
    with caplog.at_level("WARNING", logger="clipvip"):
        assert main(["report", str(run)]) == 0
    assert "gap.json line 1: not a JSON object; the report leaves out the domain gap" in caplog.text
    assert "Domain gap" not in (run / "report.html").read_text()


def test_failure_counts_come_from_stats_json_and_a_short_errors_jsonl_is_flagged(
    failed_run, tmp_path, caplog
):
    import json

    run = copy_run(failed_run, tmp_path / "run")
    stats = json.loads((run / "stats.json").read_text())
    stats["failed_by_stage"] = {"probe": 3}
    (run / "stats.json").write_text(json.dumps(stats))
    log = run / "errors.jsonl"
    log.write_text(log.read_text().splitlines()[0] + "\n")  # cut short: 1 of the 3
    with caplog.at_level("WARNING", logger="clipvip"):
        assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "<b>3</b> failed rows" in page and "gone.mp4" in page
    assert "errors.jsonl lists 1" in page and "errors.jsonl lists 1" in caplog.text
