import pytest

from clipvip.cli import build_parser, main


def _subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


@pytest.mark.parametrize("command", _subcommands())
def test_every_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "example" in text.lower(), f"`clipvip {command} --help` shows no example"
    options = [
        a
        for a in build_parser()._subparsers._group_actions[0].choices[command]._actions
        if a.option_strings and a.dest != "help"
    ]
    undocumented = [a.option_strings[0] for a in options if not (a.help or "").strip()]
    assert undocumented == [], f"options without help: {undocumented}"
    # an example written with one backslash before its line break reads as a Python line
    # continuation: two lines of the command run together ("...pt       --weights ...")
    import re

    joined = [line for line in text.splitlines() if re.search(r"\S {3,}--\w", line)]
    assert joined == [], f"example lines run together: {joined}"


def test_prepare_help_teaches_the_outputs(capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    text = capsys.readouterr().out
    for word in (
        "--captioner",
        "--shard-size",
        "--runner",
        "errors.jsonl",
        "index.json",
        "resumes",
    ):
        assert word in text


def test_prepare_encoding_flags_reach_the_config(capsys):
    from pipelines.cli import config_from_args

    parser = build_parser()
    default = config_from_args(parser.parse_args(["prepare", "m.csv", "--out", "o"]))
    assert (default.crf, default.fast_decode) == (23, True)
    args = parser.parse_args(["prepare", "m.csv", "--out", "o", "--crf", "18", "--no-fast-decode"])
    assert (config_from_args(args).crf, config_from_args(args).fast_decode) == (18, False)
    with pytest.raises(SystemExit):
        parser.parse_args(["prepare", "m.csv", "--out", "o", "--crf", "52"])
    assert "CRF runs from 0 (lossless) to 51" in capsys.readouterr().err
