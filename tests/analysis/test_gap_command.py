"""``clipvip gap`` end to end: outputs, table layout, cache reuse, user errors, help."""

from __future__ import annotations

import json

import pytest

from clipvip.cli import build_parser, main


@pytest.fixture()
def corpora(tmp_path, animals, kitchen):
    (tmp_path / "animals.txt").write_text("\n".join(animals) + "\n")
    (tmp_path / "kitchen.txt").write_text("\n".join(kitchen) + "\n")
    (tmp_path / "mixed.jsonl").write_text(
        "\n".join(json.dumps({"text": t}) for t in animals[:150] + kitchen[:150]) + "\n"
    )
    return tmp_path


def run_gap(corpora, out, *extra):
    return main(
        [
            "gap",
            "--source",
            f"animals={corpora / 'animals.txt'}",
            "--source",
            f"kitchen={corpora / 'kitchen.txt'}",
            "--source",
            f"mixed={corpora / 'mixed.jsonl'}:text",
            "--encoder",
            "tfidf:32",
            "--samples",
            "120",
            "--seeds",
            "2",
            "--n-init",
            "2",
            "--no-progress",
            "--out",
            str(out),
            *extra,
        ]
    )


def test_gap_writes_json_table_heatmap_and_map(corpora, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_gap(corpora, out, "--reference", "kitchen") == 0
    gap = json.loads((out / "gap.json").read_text())
    assert [(p["source"], p["reference"]) for p in gap["pairs"]] == [
        ("animals", "kitchen"),
        ("mixed", "kitchen"),
    ]
    pair = {p["source"]: p for p in gap["pairs"]}
    assert pair["animals"]["nmi_mean"] > 0.9 > pair["mixed"]["nmi_mean"]
    assert pair["animals"]["n"] == 120 and len(pair["animals"]["nmi"]) == 2
    assert gap["all_sources"]["n"] == 120 and gap["settings"]["seeds"] == [0, 1]
    assert gap["sources"]["animals"]["kept"] == 400 and "scikit-learn" in gap["versions"]
    md = (out / "gap.md").read_text()
    assert "| source \\ reference | kitchen |" in md and "| animals | " in md and "| mixed | " in md
    for name in ("gap.png", "gap_map.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    line = capsys.readouterr().out.strip()
    assert (
        line.startswith("domain gap (NMI, tfidf:32")
        and "animals~kitchen" in line
        and str(out) in line
    )
    assert "n = 120 per source" in line  # the n drawn, not the --samples asked


def test_every_pair_without_references_and_the_cache_is_reused(
    corpora, tmp_path, tiny_clip_dir, caplog
):
    out = tmp_path / "clip"
    args = [
        "gap",
        "--source",
        f"a={corpora / 'animals.txt'}",
        "--source",
        f"k={corpora / 'kitchen.txt'}",
        "--encoder",
        f"clip:{tiny_clip_dir}",
        "--device",
        "cpu",
        "--samples",
        "40",
        "--seeds",
        "1",
        "--map",
        "none",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    first = json.loads((out / "gap.json").read_text())
    assert len(list((out / "cache").glob("*.npz"))) == 2
    caplog.clear()
    with caplog.at_level("INFO", logger="clipvip"):
        assert main(args) == 0
    assert "embedded 80 sentences, 80 from the cache" in caplog.text
    assert json.loads((out / "gap.json").read_text())["pairs"] == first["pairs"]
    assert first["rows"] == first["columns"] == ["a", "k"] and len(first["pairs"]) == 1


@pytest.mark.parametrize(
    "source, message",
    [
        ("broken=/no/such/file.txt", "source 'broken' (/no/such/file.txt): no such file"),
        ("broken={dir}/mixed.jsonl:caption", "source 'broken'"),
    ],
)
def test_a_bad_source_is_a_one_line_error_naming_it(corpora, tmp_path, capsys, source, message):
    code = main(
        [
            "gap",
            "--source",
            f"ok={corpora / 'animals.txt'}",
            "--source",
            source.format(dir=corpora),
            "--encoder",
            "tfidf",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_unknown_reference_and_single_source_are_user_errors(corpora, tmp_path, capsys):
    assert (
        main(["gap", "--source", f"a={corpora / 'animals.txt'}", "--out", str(tmp_path / "o")]) == 2
    )
    assert "at least two --source" in capsys.readouterr().err
    assert run_gap(corpora, tmp_path / "o", "--reference", "msrvtt") == 2
    assert "--reference msrvtt is not a --source name" in capsys.readouterr().err


def test_help_explains_every_option_with_examples():
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices
    for name in ("gap", "report"):
        text = sub[name].format_help()
        assert "examples:" in text
        for action in sub[name]._actions:
            assert action.help, f"{name} {action.option_strings} has no help"
    assert "clip:PATH" in sub["gap"].format_help()


def test_tsne_map_is_written(corpora, tmp_path):
    out = tmp_path / "tsne"
    assert (
        main(
            [
                "gap",
                "--source",
                f"a={corpora / 'animals.txt'}",
                "--source",
                f"k={corpora / 'kitchen.txt'}",
                "--encoder",
                "tfidf:16",
                "--samples",
                "40",
                "--seeds",
                "1",
                "--map",
                "tsne",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert (out / "gap_map.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "gap.json").read_text())["settings"]["map"] == "tsne"


def test_an_out_that_is_a_file_is_refused_before_any_source_is_read(tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    code = main(
        [
            "gap",
            "--source",
            f"a={tmp_path / 'missing.txt'}",  # never read: --out is checked first
            "--source",
            f"b={tmp_path / 'missing_too.txt'}",
            "--out",
            str(tmp_path / "taken"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and f"--out {tmp_path / 'taken'}: a file is there" in err
    assert "Traceback" not in err and "missing" not in err


def test_names_with_dollar_comma_and_pipe_are_shown_as_written(corpora, tmp_path, capsys):
    """``$`` is matplotlib mathtext, ``,`` joins names, ``|`` splits a Markdown cell."""
    out = tmp_path / "odd"
    code = main(
        [
            "gap",
            "--source",
            f"$\\foo$={corpora / 'animals.txt'}",
            "--source",
            f"kit,chen={corpora / 'kitchen.txt'}",
            "--source",
            f"mi|xed={corpora / 'mixed.jsonl'}:text",
            "--reference",
            "kit,chen",
            "--reference",
            "kit,chen",
            "--encoder",
            "tfidf:16",
            "--samples",
            "40",
            "--seeds",
            "1",
            "--n-init",
            "1",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    for name in ("gap.png", "gap_map.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert "; all 3 (k = 3, n = 40) " in capsys.readouterr().out
    md = (out / "gap.md").read_text()
    assert "| source \\ reference | kit,chen |\n|---|---|\n" in md  # one column, not two
    assert "| mi\\|xed | " in md and "| $\\foo$ | " in md
    assert "All 3 sources together (k = 3)" in md
    gap = json.loads((out / "gap.json").read_text())
    assert gap["all_sources"]["k"] == 3 and gap["settings"]["references"] == ["kit,chen"]
    assert gap["all_sources"]["sources"] == ["$\\foo$", "kit,chen", "mi|xed"]


def _gap(tmp_path, out, sources, *extra):
    args = ["gap", "--encoder", "tfidf:32", "--samples", "60", "--n-init", "2", "--no-progress"]
    for name, path in sources:
        args += ["--source", f"{name}={path}"]
    assert main([*args, "--map", "none", "--out", str(tmp_path / out), *extra]) == 0
    return json.loads((tmp_path / out / "gap.json").read_text())


def test_tfidf_pair_depends_only_on_its_two_sources_and_seed(corpora, tmp_path):
    from tests.analysis.conftest import (
        ANIMAL_VERBS,
        ANIMALS,
        KITCHEN,
        KITCHEN_VERBS,
        synthetic_corpus,
    )

    # a and c: two samples of one mixed language (NMI near 0: k-means splits them along whatever
    # directions the TF-IDF + SVD fit found, so a fit on other sentences moves the number)
    for name, seed in (("a", 3), ("c", 4)):
        text = synthetic_corpus(ANIMALS + KITCHEN, ANIMAL_VERBS + KITCHEN_VERBS, 200, seed)
        (corpora / f"{name}.txt").write_text("\n".join(text) + "\n")
    a, c, k = corpora / "a.txt", corpora / "c.txt", corpora / "kitchen.txt"
    runs = [
        _gap(tmp_path, "two", [("a", a), ("c", c)], "--seeds", "1"),
        _gap(tmp_path, "three", [("a", a), ("c", c), ("k", k)], "--seeds", "1"),
        _gap(tmp_path, "three3", [("a", a), ("c", c), ("k", k)], "--seeds", "3"),
    ]
    seed0 = [
        next(p for p in g["pairs"] if {p["source"], p["reference"]} == {"a", "c"})["nmi"][0]
        for g in runs
    ]
    assert 0.0 < seed0[0] < 0.9
    assert seed0[0] == seed0[1] == seed0[2]


def test_minilm_path_with_no_cache_never_hashes_the_weights(corpora, tmp_path, monkeypatch):
    from analysis import run as run_module
    from analysis.encoders import TfidfEncoder

    class NoKey(TfidfEncoder):
        @property
        def cache_id(self):
            raise FileNotFoundError("model.safetensors")

    cfg = run_module.GapRunConfig(
        out=str(tmp_path / "o"),
        encoder="x",
        cache=False,
        progress=False,
        map_method="none",
        gap=run_module.GapConfig(samples=30, seeds=(0,), n_init=1),
    )
    from analysis.sources import SourceSpec

    specs = [
        SourceSpec.parse(f"a={corpora / 'animals.txt'}"),
        SourceSpec.parse(f"k={corpora / 'kitchen.txt'}"),
    ]
    assert run_module.run_gap(specs, cfg, encoder=NoKey(dim=16))["pairs"]


def test_a_tiny_source_is_named_with_the_n_of_the_all_sources_run(corpora, tmp_path, capsys):
    (corpora / "tiny.txt").write_text("a dog runs\na cat sleeps\na cow eats\n")
    srcs = [
        ("a", corpora / "animals.txt"),
        ("k", corpora / "kitchen.txt"),
        ("tiny", corpora / "tiny.txt"),
    ]
    g = _gap(tmp_path, "t", srcs, "--seeds", "1", "--map", "pca")
    assert g["all_sources"]["n"] == 3
    assert any("all-sources run" in w and "n = 3" in w for w in g["warnings"])
    assert any("2-D map" in w and "n = 3" in w for w in g["warnings"])
    assert "n = 3" in capsys.readouterr().out.split("; all 3")[1]


def test_a_negative_seed_is_a_one_line_error(corpora, tmp_path, capsys):
    assert run_gap(corpora, tmp_path / "o", "--seed", "-1") == 2
    err = capsys.readouterr().err
    assert "--seed" in err and "Traceback" not in err


def test_settings_record_the_nmi_average_and_the_std(corpora, tmp_path):
    g = _gap(
        tmp_path,
        "s",
        [("a", corpora / "animals.txt"), ("k", corpora / "kitchen.txt")],
        "--seeds",
        "1",
    )
    assert g["settings"]["nmi_average_method"] == "arithmetic"
    assert g["settings"]["std"] == "population (ddof=0)"
