"""Options after `clipvip prepare` that nobody defines stop the run instead of vanishing."""

from __future__ import annotations

import pytest

from clipvip.cli import main
from pipelines.beam import unknown_options
from pipelines.config import PrepareConfig


def test_a_misspelled_flag_with_beam_direct_runner_stops_naming_it(tmp_path, capsys):
    m = tmp_path / "m.csv"
    m.write_text("video,text\n/v/a.mp4,x\n")
    out = tmp_path / "out"
    argv = ["prepare", str(m), "--out", str(out), "--runner", "beam", "--shard-sise", "10"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --shard-sise" in err and not out.exists()


def test_beam_options_pass_and_a_portable_runner_may_get_options_only_it_knows():
    assert unknown_options(["--direct_num_workers=2", "--direct_running_mode", "in_memory"]) == (
        [],
        True,
    )
    unknown, direct = unknown_options(["--runner=FlinkRunner", "--job-only-option=1"])
    assert (unknown, direct) == (["--job-only-option"], False)  # the CLI warns and goes on


def test_a_shard_name_that_names_a_folder_is_refused(tmp_path, capsys):
    m = tmp_path / "m.csv"
    m.write_text("video,text\n/v/a.mp4,x\n")
    out = tmp_path / "deep" / "out"
    try:
        main(["prepare", str(m), "--out", str(out), "--name", "../../evil"])
    except SystemExit as exc:
        assert exc.code == 2
    assert "--name: '../../evil': use letters, digits, _ and - only" in capsys.readouterr().err
    assert not (tmp_path / "deep").exists() and not list(tmp_path.glob("*.tar"))


def test_workers_keep_a_running_mode_the_user_chose():
    from pipelines.prepare import beam_worker_args

    assert beam_worker_args(2, []) == [
        "--direct_num_workers=2",
        "--direct_running_mode=multi_processing",
    ]
    assert beam_worker_args(2, ["--direct_running_mode=multi_threading"]) == [
        "--direct_num_workers=2"
    ]
    assert beam_worker_args(2, ["--direct_running_mode", "in_memory"]) == ["--direct_num_workers=2"]
    assert beam_worker_args(None, []) == []


def test_zero_or_negative_workers_are_refused_in_one_line(tmp_path, capsys):
    import pytest

    m = tmp_path / "m.csv"
    m.write_text("video,text\n/v/a.mp4,x\n")
    for bad in ("0", "-2", "two"):
        with pytest.raises(SystemExit) as exc:
            main(["prepare", str(m), "--out", str(tmp_path / "o"), "--workers", bad])
        assert exc.value.code == 2
        assert f"--workers: {bad!r}" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_workers_with_the_local_runner_warn_that_they_are_ignored(tmp_path, caplog):
    m = tmp_path / "m.csv"
    m.write_text("video,text\n/v/a.mp4,x\n")
    caplog.set_level("WARNING")
    main(
        [
            "prepare",
            str(m),
            "--out",
            str(tmp_path / "o"),
            "--runner",
            "local",
            "--workers",
            "2",
            "--captioner",
            "none",
        ]
    )
    assert "--workers 2 is ignored by --runner local" in caplog.text


# --- arguments checked before anything is written (review findings) -------------------------


def _manifest(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text(f"video,text\n{tmp_path / 'missing.mp4'},x\n")
    return m


def _parse_error(argv, capsys) -> str:
    """Run the CLI on arguments argparse must refuse; its last stderr line."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("command", ["prepare", "demo"])
def test_an_unknown_captioner_stops_at_parsing_listing_every_form(tmp_path, capsys, command):
    out = tmp_path / "o"
    argv = [command, *([str(_manifest(tmp_path))] if command == "prepare" else [])]
    argv += ["--out", str(out), "--captioner", "bogus"]
    if command == "demo":
        argv += ["--runners", "local"]
    err = _parse_error(argv, capsys)
    assert "argument --captioner: unknown captioner 'bogus'" in err
    for form in ("none", "random-tiny", "ofa:random-tiny", "ofa:PATH", "hf:PATH"):
        assert form in err
    assert not out.exists()


@pytest.mark.parametrize("command", ["prepare", "demo"])
def test_a_captioner_folder_without_config_stops_before_out_is_made(tmp_path, capsys, command):
    out = tmp_path / "o"
    argv = [command, *([str(_manifest(tmp_path))] if command == "prepare" else [])]
    for spec in (f"hf:{tmp_path / 'nope'}", f"ofa:{tmp_path / 'nope'}"):
        assert (
            main(
                [
                    *argv,
                    "--out",
                    str(out),
                    "--runner" + ("s" if command == "demo" else ""),
                    "local",
                    "--captioner",
                    spec,
                ]
            )
            == 2
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("clipvip: error: ") and "has no config.json" in err[-1]
        assert "Traceback" not in "\n".join(err) and not out.exists()


@pytest.mark.parametrize(
    "option, value, says",
    [
        ("--max-short-side", "-1", "must be at least 2"),
        ("--caption-batch-size", "0", "must be at least 1"),
        ("--shard-size", "0", "must be at least 1"),
        ("--shard-bytes", "-5", "must be at least 1"),
        ("--jpeg-quality", "500", "must be from 0 to 100"),
        ("--fps", "-3", "must be above 0"),
        ("--fps", "inf", "expected a finite number"),
        ("--tool-timeout", "0", "must be above 0"),
        ("--fetch-timeout", "-1", "must be above 0"),
        ("--caption-max-words", "0", "must be at least 1"),
        ("--frame-short-side", "-2", "must be at least 0"),
        ("--ffmpeg-threads", "-1", "must be at least 0"),
        ("--tool-memory-mb", "-1", "must be at least 0"),
        ("--fetch-max-mb", "-1", "must be at least 0"),
        ("--crf", "x", "expected a whole number"),
        ("--caption-pool", "0", "must be at least 1"),
        ("--caption-gpus", "-1", "must be 0 or more"),
    ],
)
def test_a_nonsense_number_is_refused_at_parsing_in_one_line(tmp_path, capsys, option, value, says):
    out = tmp_path / "o"
    err = _parse_error(
        ["prepare", str(_manifest(tmp_path)), "--out", str(out), option, value], capsys
    )
    assert err == f"clipvip prepare: error: argument {option}: {value!r}: {says}"
    assert not out.exists()


def test_prepare_config_refuses_what_the_cli_refuses_and_its_defaults_pass():
    PrepareConfig()  # every default is valid
    PrepareConfig(fps=3, max_short_side=96, frame_short_side=None, tool_timeout_s=0.001)
    bad = dict(shard_size=0, fps=-3, jpeg_quality=500, crf=52, caption_batch_size=0)
    with pytest.raises(ValueError) as exc:
        PrepareConfig(**bad)
    for phrase in (
        "shard_size=0 must be at least 1",
        "fps=-3 must be a number above 0",
        "jpeg_quality=500 must be from 0 to 100",
        "crf=52 must be from 0 to 51",
        "caption_batch_size=0 must be at least 1",
    ):
        assert phrase in str(exc.value)


@pytest.mark.parametrize(
    "options, named",
    [
        (["--videos", "/tmp"], "--videos"),
        (["--mode", "paragraph", "--per-sentence"], "--mode, --per-sentence"),
        (["--subtitles", "subs/", "--min-overlap", "0.2"], "--subtitles, --min-overlap"),
    ],
)
def test_adapter_options_without_format_are_refused_not_ignored(tmp_path, capsys, options, named):
    out = tmp_path / "o"
    argv = ["prepare", str(_manifest(tmp_path)), "--out", str(out), "--runner", "local"]
    assert main([*argv, *options]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (
        f"clipvip: error: option(s) {named} do not apply without --format (they configure a "
        "dataset adapter; see `clipvip manifest --help`)"
    )
    assert not out.exists()


def test_engine_options_the_runner_does_not_read_are_named_in_one_warning(tmp_path, caplog):
    caplog.set_level("WARNING")
    argv = ["prepare", str(_manifest(tmp_path)), "--out", str(tmp_path / "o"), "--runner", "local"]
    argv += ["--captioner", "none", "--no-progress", "--caption-pool", "4", "--caption-gpus", "1"]
    argv += ["--caption-resource", "captioner=1", "--ray-address", "auto"]
    argv += ["--caption-accelerator", "type:nvidia-l4;count:1"]
    main(argv)
    warned = [
        r.getMessage() for r in caplog.records if "ignored by --runner local" in r.getMessage()
    ]
    assert len(warned) == 1
    assert warned[0].startswith(
        "--ray-address, --caption-pool, --caption-gpus, --caption-resource, --caption-accelerator "
        "ignored by --runner local"
    )


def test_an_out_that_is_a_file_is_refused_before_the_manifest_is_staged(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    argv = ["prepare", str(_manifest(tmp_path)), "--out", str(afile), "--runner", "local"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"clipvip: error: --out {afile}: a file is there; name a folder"]
    assert afile.read_text() == "mine"


def test_a_missing_manifest_is_the_only_line_not_after_the_random_captioner_warning(
    tmp_path, capsys
):
    missing = tmp_path / "nosuch.csv"
    argv = ["prepare", str(missing), "--out", str(tmp_path / "o"), "--captioner", "random-tiny"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"clipvip: error: {missing}: manifest not found"]
    assert not (tmp_path / "o").exists()


def test_precision_help_says_ofa_keeps_fp16_under_auto(capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "auto = fp16 for ofa:" in text
    assert "for hf: bf16 where the GPU computes it natively" in text


def test_prepare_format_that_keeps_no_rows_stops_naming_why_as_manifest_does(tmp_path, capsys):
    """``clipvip manifest`` exits 1 when its adapter keeps nothing; ``prepare --format`` made
    an empty run and exited 0, the drops only on a log line."""
    (tmp_path / "t.csv").write_text("key,vid_key,video_id,sentence\nr0,m,video1,a cat\n")
    (tmp_path / "v").mkdir()
    out = tmp_path / "run"
    argv = ["prepare", "--format", "msrvtt", str(tmp_path / "t.csv"), "--videos"]
    rc = main([*argv, str(tmp_path / "v"), "--out", str(out), "--captioner", "none"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2, err  # a usage error, as every UserError
    assert err.startswith("clipvip: error: the msrvtt adapter kept no rows (")
    assert "first missing videos: video1" in err
    assert (out / "inputs" / "manifest.report.json").is_file()
    assert not (out / "run.json").exists() and not (out / "shards").exists()
