"""``clipvip ofa-convert`` on files and folders that are not what it expects: one line each,
nothing written, and no pickled code run from a file nobody vouched for."""

from __future__ import annotations

import os
import zipfile
from dataclasses import replace

import pytest
import torch

from captioner.ofa.captioner import build_random_tiny
from captioner.ofa.config import SIZES
from captioner.ofa.convert import convert_fairseq, infer_config, rename_fairseq_key
from captioner.ofa.model import OFAModel
from clipvip.cli import main
from tests.captioner.test_ofa_convert import fairseq_state


def _convert(capsys, pt, out, tok, *flags: str) -> tuple[int, str]:
    argv = ["ofa-convert", str(pt), "--out", str(out), "--tokenizer-from", str(tok)]
    code = main([*argv, "--disable-entangle", *flags])
    return code, capsys.readouterr().err


def _not_checkpoints(tmp_path):
    real = tmp_path / "real.pt"
    torch.save({"model": {"w": torch.zeros(64, 64)}}, real)
    with zipfile.ZipFile(tmp_path / "archive.pt", "w") as z:
        z.writestr("notes.txt", "a zip, but no checkpoint")
    (tmp_path / "notes.pt").write_text("hello\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "cut.pt").write_bytes(real.read_bytes()[:3000])  # a download cut short
    (tmp_path / "folder.pt").mkdir()
    return {
        "missing.pt": "no such checkpoint file",
        "folder.pt": "is a folder, not a fairseq .pt file",
        "notes.pt": "is not a PyTorch checkpoint",
        "archive.pt": "is not a PyTorch checkpoint",
        "empty.pt": "is not a PyTorch checkpoint (EOFError",
        "cut.pt": "is not a PyTorch checkpoint",
    }


def test_a_file_that_is_no_checkpoint_is_named_so_not_sent_to_trust_pickle(tmp_path, capsys):
    for name, says in _not_checkpoints(tmp_path).items():
        code, err = _convert(capsys, tmp_path / name, tmp_path / "out", tmp_path / "tok")
        assert code == 2, name
        assert err.startswith(f"clipvip: error: {tmp_path / name}") and says in err, err
        assert "--trust-pickle" not in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


class _MakesFolder:
    """Pickles as a call to ``os.mkdir``: what a hostile checkpoint would run on load."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_a_checkpoint_that_pickles_a_call_is_read_as_data_and_the_call_never_runs(tmp_path, capsys):
    """The stand-in read takes os.mkdir as a name, not a function: the file's tensors are read
    (here too few for an OFA model, which is the one-line error) and the folder never appears."""
    marker = tmp_path / "ran"
    torch.save({"model": {"w": torch.zeros(2)}, "x": _MakesFolder(str(marker))}, tmp_path / "x.pt")
    code, err = _convert(capsys, tmp_path / "x.pt", tmp_path / "out", tmp_path / "tok")
    assert code == 2 and not marker.exists()
    assert "the checkpoint has no encoder.embed_tokens.weight" in err and err.count("\n") == 1


def test_a_checkpoint_whose_weights_sit_in_a_pickled_class_points_at_trust_pickle(tmp_path, capsys):
    torch.save({"model": _MakesFolder(str(tmp_path / "ran"))}, tmp_path / "x.pt")
    code, err = _convert(capsys, tmp_path / "x.pt", tmp_path / "out", tmp_path / "tok")
    assert code == 2 and not (tmp_path / "ran").exists()
    assert "has no 'model' state dict" in err and "--trust-pickle" in err


def test_a_checkpoint_without_the_architecture_tensors_lists_them(tmp_path, capsys):
    model, _ = build_random_tiny(seed=5, folder=tmp_path / "tok")
    state = fairseq_state(model)
    del state["encoder.layers.0.fc1.weight"]
    torch.save({"model": state}, tmp_path / "x.pt")
    code, err = _convert(capsys, tmp_path / "x.pt", tmp_path / "out", tmp_path / "tok")
    assert code == 2 and "the checkpoint has no encoder.layers.0.fc1.weight" in err
    torch.save({"model": {}, "epoch": 3}, tmp_path / "empty_model.pt")
    code, err = _convert(capsys, tmp_path / "empty_model.pt", tmp_path / "out", tmp_path / "tok")
    assert code == 2 and "holds no tensors" in err
    assert not (tmp_path / "out").exists()


def test_image_bucket_size_is_read_off_the_image_position_table():
    cfg = replace(SIZES["large"], image_bucket_size=20)
    with torch.device("meta"):
        state = {rename_fairseq_key(k): v for k, v in fairseq_state(OFAModel(cfg)).items()}
    assert infer_config(state, image_size=480) == cfg


@pytest.fixture
def tiny_pt(tmp_path):
    model, _ = build_random_tiny(seed=5, folder=tmp_path / "tok")
    torch.save({"model": fairseq_state(model)}, tmp_path / "x.pt")
    return model


def _into(tmp_path, out, model, tok=None):
    return convert_fairseq(
        tmp_path / "x.pt", out, tok or tmp_path / "tok", config=model.config, disable_entangle=True
    )


def test_an_out_folder_with_other_files_or_a_file_is_refused_untouched(tmp_path, tiny_pt):
    old_hf = tmp_path / "old_hf"  # its index would be loaded instead of the new weights
    old_hf.mkdir()
    (old_hf / "model.safetensors.index.json").write_text("{}")
    with pytest.raises(ValueError, match="already holds other files"):
        _into(tmp_path, old_hf, tiny_pt)
    assert sorted(p.name for p in old_hf.iterdir()) == ["model.safetensors.index.json"]
    (tmp_path / "a_file").write_text("mine")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        _into(tmp_path, tmp_path / "a_file", tiny_pt)
    assert (tmp_path / "a_file").read_text() == "mine"
    with pytest.raises(ValueError, match="is the --tokenizer-from folder"):
        _into(tmp_path, tmp_path / "tok", tiny_pt)


def test_converting_again_into_the_same_folder_overwrites_it(tmp_path, tiny_pt):
    out = _into(tmp_path, tmp_path / "out", tiny_pt)
    first = (out / "model.safetensors").read_bytes()
    assert _into(tmp_path, out, tiny_pt) == out
    assert (out / "model.safetensors").read_bytes() == first


def test_a_tokenizer_folder_without_its_files_is_refused_before_out_is_made(tmp_path, tiny_pt):
    (tmp_path / "no_tok").mkdir()
    with pytest.raises(FileNotFoundError, match="has no vocab.json"):
        _into(tmp_path, tmp_path / "out", tiny_pt, tok=tmp_path / "no_tok")
    assert not (tmp_path / "out").exists()
