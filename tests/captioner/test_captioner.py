import numpy as np
import pytest
from PIL import Image

from captioner import clean_caption, load_captioner, trim_words
from captioner.tiny import save_random_tiny


def _images(n: int) -> list[Image.Image]:
    rng = np.random.RandomState(0)
    sizes = [(64, 48), (40, 90), (120, 120), (33, 21)]
    return [Image.fromarray((rng.rand(h, w, 3) * 255).astype("uint8")) for w, h in (sizes * n)[:n]]


def test_trim_words_cuts_on_a_word_boundary():
    assert trim_words("a b  c\td e", 3) == "a b c"
    assert clean_caption("  A Man Riding a Horse.  ", 16) == "a man riding a horse"
    assert len(clean_caption(" ".join(["word"] * 40), 16).split()) == 16


@pytest.fixture(scope="module")
def tiny():
    return load_captioner("random-tiny", max_words=16)


def test_random_tiny_gives_one_caption_of_at_most_16_words_per_image(tiny):
    captions = tiny.caption(_images(5))
    assert len(captions) == 5
    assert all(0 < len(c.split()) <= 16 for c in captions)
    assert tiny.name == "random-tiny"


def test_batching_never_changes_a_caption(tiny):
    images = _images(4)
    batched = tiny.caption(images)
    alone = [tiny.caption([im])[0] for im in images]
    assert batched == alone


def test_random_tiny_is_the_same_model_in_every_process(tiny):
    again = load_captioner("random-tiny")
    images = _images(3)
    assert again.caption(images) == tiny.caption(images)


def test_hf_backend_loads_a_local_image_to_text_folder(tmp_path):
    save_random_tiny(str(tmp_path / "model"))
    captioner = load_captioner(f"hf:{tmp_path / 'model'}", max_words=5)
    captions = captioner.caption(_images(2))
    assert len(captions) == 2 and all(0 < len(c.split()) <= 5 for c in captions)
    assert captioner.name == "hf:model"


def test_unknown_specs_and_missing_folders_fail_clearly(tmp_path):
    assert load_captioner("none") is None
    with pytest.raises(ValueError, match="unknown captioner 'blip2'; known: none"):
        load_captioner("blip2")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_captioner(f"hf:{tmp_path}")


def test_default_captioner_is_ofa_when_its_folder_exists(tmp_path, monkeypatch):
    from captioner.registry import default_spec

    monkeypatch.setenv("CLIPVIP_OFA_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_spec() == "random-tiny"
    (tmp_path / "config.json").write_text("{}")
    assert default_spec() == f"ofa:{tmp_path}"


@pytest.mark.parametrize("spec", ["random-tiny", "hf:MODEL", "ofa:random-tiny"])
def test_the_run_s_caption_precision_reaches_every_backend_s_autocast(spec, tmp_path, monkeypatch):
    import captioner.hf
    import captioner.ofa.captioner
    from pipelines.config import PrepareConfig
    from pipelines.stages.caption import run_captioner

    asked = []
    for module in (captioner.hf, captioner.ofa.captioner):
        monkeypatch.setattr(module, "autocast_dtype", lambda device, p, **_: asked.append(p))
    if spec == "hf:MODEL":
        save_random_tiny(str(tmp_path / "model"))
        spec = f"hf:{tmp_path / 'model'}"
    run_captioner(PrepareConfig(captioner=spec, caption_precision="fp16"))
    assert asked == ["fp16"]
