"""Cross-check of ``captioner.ofa`` against ModelScope's OFA, an implementation nobody here wrote.

ModelScope ships the OFA-Sys port (``modelscope/models/multi_modal/ofa/modeling_ofa.py``) and
fairseq's ``SequenceGenerator`` (``.../ofa/generate/sequence_generator.py``). Both models get the
same seeded random tiny weights (every tensor random, norms and BatchNorm statistics included),
the same pixels and prompts (one row right-padded); encoder states, teacher-forced logits and
generated tokens (greedy and beam 5, OFA-Caption's settings) are compared, in float32 on CPU.
Skipped where ``modelscope`` is not installed (docs/ofa.md, "Cross-check"). Only its spec is
looked up: ModelScope's top-level package (1,300 modules, hub client) is never imported.

How ModelScope's code is reached, without editing any of it:

- the modeling files are imported by path under a private package name: ModelScope's
  ``ofa/__init__.py`` also imports its speech model, which needs ``fairseq`` (last release
  0.12.2: a source package for Python <= 3.8 requiring ``torchaudio`` and ``hydra-core<1.1``);
- ``ofa/vit.py`` (the OFA-Sys ViT stem, unused by ResNet OFA) does ``from fairseq.modules import
  LayerNorm``: a stub ``fairseq.modules`` with ``torch.nn.LayerNorm`` is present only while the
  files are imported;
- ``sequence_generator.py`` imports its siblings by absolute ``modelscope....ofa.generate`` names:
  those names are pointed at the private package only while it is imported;
- transformers 5 no longer keeps generation fields (``forced_bos_token_id``) on configs, and
  ModelScope's ``OFAConfig.__init__`` reads one back: a subclass gives it a class default.

Two settings are applied to the ModelScope model on purpose:

- the ResNet stem is rebuilt as ModelScope's own ``ResNet`` with our tiny depths (1, 1, 1)
  (its config only knows resnet18..152 names);
- ``decoder.entangle_position_embedding = True``: fairseq OFA adds the decoder's absolute
  position embedding to the token embedding unless ``disable_entangle`` (its test is
  ``entangle_position_embedding is not None``, true for a bool), the public Hugging Face port
  always, ModelScope only if the flag is true, and its config default is false. Our model
  follows fairseq.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest
import torch

if importlib.util.find_spec("modelscope") is None:
    pytest.skip(
        "modelscope not installed: pip install 'modelscope==1.40.2'", allow_module_level=True
    )

from captioner.ofa.captioner import PROMPT, build_random_tiny  # noqa: E402
from captioner.ofa.checkpoint import DERIVED, TIED, check_and_load  # noqa: E402
from captioner.ofa.config import RESNET_LAYERS, OFAConfig  # noqa: E402
from captioner.ofa.generate import BeamConfig, beam_search  # noqa: E402
from captioner.ofa.model import OFAModel  # noqa: E402

ATOL = 1e-4
PKG = "_modelscope_ofa"  # private name the ModelScope files are imported under
GENERATE = "modelscope.models.multi_modal.ofa.generate"


@contextlib.contextmanager
def _temporary_modules(entries: dict[str, types.ModuleType]):
    """Put ``entries`` into ``sys.modules`` for the block, then restore what was there."""
    saved = {name: sys.modules.get(name) for name in entries}
    sys.modules.update(entries)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _fairseq_stub() -> dict[str, types.ModuleType]:
    fairseq = types.ModuleType("fairseq")
    fairseq.__path__ = []
    modules = types.ModuleType("fairseq.modules")
    modules.LayerNorm = torch.nn.LayerNorm
    fairseq.modules = modules
    return {"fairseq": fairseq, "fairseq.modules": modules}


@pytest.fixture(scope="module")
def ms() -> types.SimpleNamespace:
    """ModelScope's OFA modeling, ResNet and sequence generator modules."""
    spec = importlib.util.find_spec("modelscope")
    ofa_dir = Path(spec.submodule_search_locations[0]) / "models" / "multi_modal" / "ofa"
    if PKG not in sys.modules:
        package = types.ModuleType(PKG)
        package.__path__ = [str(ofa_dir)]
        sys.modules[PKG] = package
    with _temporary_modules(_fairseq_stub()):
        modeling = importlib.import_module(f"{PKG}.modeling_ofa")
    resnet = importlib.import_module(f"{PKG}.resnet")
    generate = importlib.import_module(f"{PKG}.generate")
    aliases = {
        GENERATE: generate,
        f"{GENERATE}.search": importlib.import_module(f"{PKG}.generate.search"),
        f"{GENERATE}.ngram_repeat_block": importlib.import_module(
            f"{PKG}.generate.ngram_repeat_block"
        ),
    }
    with _temporary_modules(aliases):
        generator = importlib.import_module(f"{PKG}.generate.sequence_generator")

    class Config(modeling.OFAConfig):
        forced_bos_token_id = None  # read by OFAConfig.__init__, dropped by transformers 5

        def __init__(self, **kwargs):
            super().__init__(**kwargs)

    return types.SimpleNamespace(
        modeling=modeling, resnet=resnet, generator=generator, Config=Config
    )


def _randomise_everything(model: OFAModel, seed: int) -> dict[str, torch.Tensor]:
    """``init_random`` leaves norms at 1/0, ``c_attn`` at 1, BatchNorm at defaults: randomise too."""
    gen = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    with torch.no_grad():
        for name, t in state.items():
            if not t.is_floating_point():
                continue
            noise = torch.randn(t.shape, generator=gen)
            if name.endswith("running_var"):
                t.copy_(0.5 + noise.abs())
            elif name.endswith("running_mean") or (t.dim() == 1 and bool((t == 0).all())):
                t.copy_(0.1 * noise)
            elif t.dim() == 1 and bool((t == 1).all()):
                t.copy_(1.0 + 0.2 * noise)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _ms_model(ms, cfg: OFAConfig, state: dict[str, torch.Tensor]):
    """ModelScope's ``OFAModel`` with our config and weights; checks what load left out."""
    mcfg = ms.Config(
        vocab_size=cfg.vocab_size,
        d_model=cfg.d_model,
        encoder_layers=cfg.encoder_layers,
        decoder_layers=cfg.decoder_layers,
        encoder_attention_heads=cfg.encoder_attention_heads,
        decoder_attention_heads=cfg.decoder_attention_heads,
        encoder_ffn_dim=cfg.encoder_ffn_dim,
        decoder_ffn_dim=cfg.decoder_ffn_dim,
        activation_function=cfg.activation_function,
        max_position_embeddings=cfg.max_position_embeddings,
        resnet_type="resnet50",  # replaced below by the tiny depths
        token_bucket_size=cfg.token_bucket_size,
        image_bucket_size=cfg.image_bucket_size,
        attn_scale_factor=cfg.attn_scale_factor,
        code_image_size=cfg.code_image_size,
        scale_embedding=cfg.scale_embedding,
        disable_entangle=cfg.disable_entangle,
        pad_token_id=cfg.pad_token_id,
        bos_token_id=cfg.bos_token_id,
        eos_token_id=cfg.eos_token_id,
        dropout=0.0,
    )
    model = ms.modeling.OFAModel(mcfg)
    model.encoder.embed_images = ms.resnet.ResNet(list(RESNET_LAYERS[cfg.resnet_type]))
    model.decoder.entangle_position_embedding = True  # fairseq's behaviour, see module doc
    result = model.load_state_dict(state, strict=False)
    assert result.unexpected_keys == []
    left = [k for k in result.missing_keys if k not in TIED and not DERIVED.search(k)]
    assert left == [], f"ModelScope has tensors our state dict lacks: {left}"
    shared = model.encoder.embed_tokens.weight
    assert model.decoder.embed_tokens.weight is shared
    assert model.decoder.output_projection.weight is shared
    return model.eval()


class _Vocab:
    """The tokenizer interface fairseq's generator reads: ids and the vocabulary size."""

    def __init__(self, cfg: OFAConfig, unk_token_id: int) -> None:
        self.pad_token_id, self.bos_token_id = cfg.pad_token_id, cfg.bos_token_id
        self.eos_token_id, self.unk_token_id = cfg.eos_token_id, unk_token_id
        self.size = cfg.vocab_size

    def get_vocab(self) -> dict[str, int]:
        return {f"t{i}": i for i in range(self.size)}

    def get_added_vocab(self) -> dict[str, int]:
        return {}


def _ms_generate(ms, model, tok_ids, pixels, cfg, beam: BeamConfig, min_len: int):
    gen = ms.generator.SequenceGenerator(
        tokenizer=_Vocab(cfg, cfg.unk_token_id),
        beam_size=beam.beam_size,
        max_len_b=beam.max_new_tokens,
        min_len=min_len,
        no_repeat_ngram_size=beam.no_repeat_ngram_size,
        len_penalty=beam.len_penalty,
    )
    sample = {
        "net_input": {
            "input_ids": tok_ids,
            "patch_images": pixels,
            "patch_masks": torch.ones(pixels.size(0), dtype=torch.bool),
        }
    }
    with torch.no_grad():
        hypos = gen.generate([model], sample)
    out = []
    for per_image in hypos:
        ids = per_image[0]["tokens"].tolist()
        assert ids[-1] == cfg.eos_token_id
        out.append(ids[:-1])
    return out


def _inputs(tokenizer, seed: int = 5):
    """Two images; row 0 the caption prompt, row 1 a shorter prompt right-padded."""
    long = tokenizer.encode(PROMPT)
    short = tokenizer.encode(" a dog")
    short = short + [tokenizer.pad_token_id] * (len(long) - len(short))
    ids = torch.tensor([long, short])
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    return ids, pixels


def _pair(ms, disable_entangle: bool = False, eos_boost: float = 0.0):
    """Our tiny model and ModelScope's, same weights. ``eos_boost`` shifts the decoder's final
    norm toward the ``</s>`` embedding so that hypotheses end early (tests finishing logic)."""
    model, tokenizer = build_random_tiny(seed=0)
    cfg = replace(model.config, disable_entangle=disable_entangle)
    ours = OFAModel(cfg)
    state = _randomise_everything(model, seed=11)
    if eos_boost:
        eos = state["encoder.embed_tokens.weight"][cfg.eos_token_id]
        state["decoder.layer_norm.bias"] += eos_boost * eos / eos.norm()
    ours.load_state_dict(state)
    return ours.eval(), _ms_model(ms, cfg, state), tokenizer


@pytest.fixture(scope="module", params=[False, True], ids=["entangled", "disable_entangle"])
def pair(request, ms):
    return _pair(ms, disable_entangle=request.param)


def test_our_loader_takes_modelscope_state_dict_strictly(pair):
    ours, theirs, _ = pair
    fresh = OFAModel(ours.config)
    check_and_load(fresh, theirs.state_dict())  # all their buffers, three tied names
    for (name, a), b in zip(ours.state_dict().items(), fresh.state_dict().values(), strict=True):
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(a, b), name


def test_encoder_matches(pair):
    ours, theirs, tokenizer = pair
    ids, pixels = _inputs(tokenizer)
    with torch.no_grad():
        a = ours.encoder(ids, pixels)
        b = theirs.encoder(
            input_ids=ids, patch_images=pixels, patch_masks=torch.ones(2, dtype=torch.bool)
        )
    assert torch.equal(a.padding, b.padding_mask)
    keep = ~a.padding
    diff = (a.hidden - b.last_hidden_state).abs()[keep].max().item()
    assert diff < ATOL, f"encoder states differ by {diff}"
    pos_diff = (a.positions[None] - b.position_embedding).abs().max().item()
    assert pos_diff < ATOL, f"position embeddings differ by {pos_diff}"


def test_teacher_forced_logits_match(pair):
    ours, theirs, tokenizer = pair
    ids, pixels = _inputs(tokenizer)
    target = torch.tensor([[0, 40, 41, 42, 43, 44, 45], [0, 50, 51, 50, 52, 60, 70]])
    with torch.no_grad():
        a = ours(ids, pixels, target)
        b = theirs(
            input_ids=ids,
            patch_images=pixels,
            patch_masks=torch.ones(2, dtype=torch.bool),
            decoder_input_ids=target,
        ).logits
    assert a.shape == b.shape
    diff = (a - b).abs().max().item()
    assert diff < ATOL, f"logits differ by {diff}"
    assert torch.equal(a.argmax(-1), b.argmax(-1))


@pytest.mark.parametrize("beam_size", [1, 5])
def test_generated_tokens_match_fairseq_generator(pair, ms, beam_size):
    """Beam 5 / greedy, 16 tokens, no repeated 3-grams, OFA-Caption's settings."""
    ours, theirs, tokenizer = pair
    ids, pixels = _inputs(tokenizer)
    cfg = BeamConfig(beam_size=beam_size)
    a = beam_search(ours, ids, pixels, cfg)
    b = _ms_generate(ms, theirs, ids, pixels, ours.config, cfg, min_len=1)
    assert a == b


@pytest.mark.parametrize("beam_size", [1, 5])
def test_hypotheses_ending_early_match_fairseq_generator(ms, beam_size):
    """Six images whose captions end at different steps (2, 7, 16 tokens): finishing, length
    normalisation, and finished images leaving the batch in both."""
    ours, theirs, tokenizer = _pair(ms, eos_boost=2.6)
    ids = torch.tensor([tokenizer.encode(PROMPT)] * 6)
    pixels = torch.randn(6, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    cfg = BeamConfig(beam_size=beam_size)
    a = beam_search(ours, ids, pixels, cfg)
    b = _ms_generate(ms, theirs, ids, pixels, ours.config, cfg, min_len=1)
    assert len({len(seq) for seq in a}) > 1, "every caption has the same length: test too weak"
    assert a == b


@pytest.mark.parametrize("beam_size", [1, 5])
def test_first_token_is_never_eos_as_in_fairseq_generator(ms, beam_size):
    ours, theirs, tokenizer = _pair(ms, eos_boost=6.0)  # </s> is the likeliest first token
    ids, pixels = _inputs(tokenizer)
    cfg = BeamConfig(beam_size=beam_size)
    b = _ms_generate(ms, theirs, ids, pixels, ours.config, cfg, min_len=1)
    assert all(len(seq) >= 1 for seq in b)
    assert beam_search(ours, ids, pixels, cfg) == b
