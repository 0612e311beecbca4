"""Options after `clipvip prepare` that nobody defines stop the run instead of vanishing."""

from __future__ import annotations

from clipvip.cli import main
from pipelines.beam import unknown_options


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
