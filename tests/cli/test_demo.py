"""`clipvip demo` reruns cleanly in a folder that an older clipvip's demo left behind."""

import json
from pathlib import Path

from clipvip.cli import main


def _old_run(run_dir: Path, manifest: Path, name: str) -> None:
    """A run.json as an earlier version would leave it: same manifest, other sample settings."""
    run_dir.mkdir(parents=True)
    run = {
        "manifest": str(manifest),
        "fingerprint": "0" * 64,
        "identity": None,
        "settings": {"name": name, "crf": None},
        "rows": 10,
        "tasks": 3,
    }
    (run_dir / "run.json").write_text(json.dumps(run))


def test_demo_redoes_its_own_run_of_other_settings_but_no_other_run(tmp_path, capsys, caplog):
    out = tmp_path / "demo_out"
    _old_run(out / "beam", out / "corpus" / "manifest.jsonl", name="demo")
    (out / "beam" / "leftover.txt").write_text("from the old run")
    code = main(["demo", "--out", str(out), "--runners", "beam", "--captioner", "none"])
    assert code == 0
    assert not (out / "beam" / "leftover.txt").exists()
    shards = json.loads((out / "beam" / "index.json").read_text())["shardlist"]
    assert sum(s["nsamples"] for s in shards) == 7
    assert "redoing it" in caplog.text

    # a run that is not the demo's (other name) in the demo's folder is the user's: refused
    other = tmp_path / "other"
    _old_run(other / "beam", other / "corpus" / "manifest.jsonl", name="mine")
    code = main(["demo", "--out", str(other), "--runners", "beam", "--captioner", "none"])
    assert code != 0
    assert "already holds a run" in capsys.readouterr().err + caplog.text
    assert (other / "beam" / "run.json").exists()
