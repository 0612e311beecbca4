"""Convert an official fairseq OFA checkpoint (``caption_large_best_clean.pt``) to our folder.

The fairseq layers name NormFormer's extra norms and the cross-attention differently from the
public Hugging Face port; everything else keeps its name. The architecture is read off the
tensor shapes (width, layers, heads, FFN, ResNet depth), so no fairseq import is needed. The
one inference switch the shapes cannot show, ``disable_entangle``, comes from the pickled
training args or, when those cannot be read, from the caller. The tokenizer files must come
from an official OFA (or ``facebook/bart-large``) Hugging Face folder: fairseq's own
``encoder.json``/``dict.txt`` pair numbers BPE tokens differently.
"""

from __future__ import annotations

import argparse
import logging
import math
import pickle
import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from captioner.ofa import inert_pickle
from captioner.ofa.checkpoint import CheckpointMismatch, check_and_load, save_checkpoint
from captioner.ofa.config import BART_VOCAB, NUM_BINS, RESNET_LAYERS, OFAConfig
from captioner.ofa.inert_pickle import field
from captioner.ofa.model import OFAModel
from captioner.ofa.tokenizer import load_tokenizer

log = logging.getLogger(__name__)

# fairseq layer attribute -> public port attribute.
RENAMES = (
    (re.compile(r"^(encoder\.layers\.\d+)\.attn_ln\."), r"\1.self_attn_mid_layer_norm."),
    (re.compile(r"^(decoder\.layers\.\d+)\.self_attn_ln\."), r"\1.self_attn_mid_layer_norm."),
    (re.compile(r"^(decoder\.layers\.\d+)\.cross_attn_ln\."), r"\1.cross_attn_mid_layer_norm."),
    (re.compile(r"^(decoder\.layers\.\d+)\.encoder_attn\."), r"\1.cross_attn."),
    (
        re.compile(r"^(decoder\.layers\.\d+)\.encoder_attn_layer_norm\."),
        r"\1.cross_attn_layer_norm.",
    ),
    (re.compile(r"^((?:en|de)coder\.layers\.\d+)\.ffn_layernorm\."), r"\1.ffn_layer_norm."),
)


def rename_fairseq_key(key: str) -> str:
    for pattern, repl in RENAMES:
        key = pattern.sub(repl, key)
    return key


@dataclass(frozen=True)
class FairseqCheckpoint:
    """What the converter takes from a fairseq ``.pt``: the tensors and the one training flag
    that changes inference but leaves no trace in the tensor shapes."""

    state: dict[str, torch.Tensor]
    # ``--disable-entangle`` as the training run recorded it; None when the file does not say
    # (a weights-only file, or args without the field).
    disable_entangle: bool | None
    # ``--patch-image-size``, the resolution it was trained (fine-tuned) at; None: not recorded
    patch_image_size: int | None = None


def _recorded(ckpt: object, name: str, cfg_sections: tuple[str, ...] = ("model",)) -> Iterator:
    """The values a fairseq checkpoint records for training arg ``name``, in the order fairseq
    trusts them: older fairseq saves an ``argparse.Namespace`` under ``args``; newer saves
    ``args=None`` and the config under ``cfg`` (``cfg["model"]``, ``cfg["task"]``: a Namespace,
    a dict or an omegaconf container). ``args`` wins, as fairseq itself rebuilds ``cfg`` from it
    when both are there."""
    if not isinstance(ckpt, Mapping):
        return
    cfg = ckpt.get("cfg")
    for source in (ckpt.get("args"), *(field(cfg, section) for section in cfg_sections)):
        value = field(source, name)
        if value is not None:
            yield value


def recorded_disable_entangle(ckpt: object) -> bool | None:
    """``disable_entangle`` from a fairseq checkpoint's training args, or None if absent."""
    value = next(_recorded(ckpt, "disable_entangle"), None)
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"checkpoint args hold disable_entangle={value!r}, not a bool")
    return value


def recorded_image_size(ckpt: object) -> int | None:
    """``patch_image_size`` from the training args (where ``disable_entangle`` is), or None.

    The shapes do not show it, and it differs by run, not by size: OFA-base was pretrained at
    384 px and fine-tuned for captioning at 480 (``train_caption_stage1_base.sh``)."""
    for value in _recorded(ckpt, "patch_image_size", ("model", "task")):
        if isinstance(value, int) and not isinstance(value, bool) and 32 <= value <= 4096:
            return value
    return None


def resolve_image_size(path: str | Path, recorded: int | None, given: int | None) -> int:
    """The caller's ``--image-size`` when given (a contradiction with the file is logged), else
    the file's ``patch_image_size``, else 480 (what the large and huge captioners use)."""
    if given is not None:
        if recorded is not None and recorded != given:
            log.warning(
                "%s was trained at %d px; converting for %d px as --image-size asks",
                path,
                recorded,
                given,
            )
        return given
    if recorded is None:
        log.info("%s does not record patch_image_size; using %d px", path, DEFAULT_IMAGE_SIZE)
        return DEFAULT_IMAGE_SIZE
    return recorded


DEFAULT_IMAGE_SIZE = 480


def _first_line(err: Exception) -> str:
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:200]}"


def read_fairseq_checkpoint(path: str | Path, trust_pickle: bool = False) -> FairseqCheckpoint:
    """The ``model`` state dict of a fairseq checkpoint and its recorded ``disable_entangle``.

    fairseq pickles its training config (an ``argparse.Namespace`` or omegaconf object) beside
    the weights, which ``weights_only=True`` refuses; such a file is read again with
    ``inert_pickle``, where every name outside a short allowlist loads as a stand-in and no code
    the file names runs. ``trust_pickle`` allows a full, code-running load instead, for a file
    the stand-ins cannot read and that you downloaded from the official source yourself. A file
    that is not a checkpoint at all (missing, a folder, text, a truncated download) is named as
    such, never answered with advice to trust its pickle.
    """
    path = Path(path)
    stood_in = False
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if not path.is_file():
        raise ValueError(f"{path} is a folder, not a fairseq .pt file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # a global outside torch's allowlist (or bad pickle)
        stood_in = not trust_pickle
        ckpt = _load_inert(path) if stood_in else _load_trusted(path)
    except Exception as err:  # torch's errors for bytes it cannot parse: zip, EOF, magic number
        raise ValueError(f"{path} is not a PyTorch checkpoint ({_first_line(err)})") from err
    # where the weights could hide inside a pickled class, only a full load can tell
    hint = (
        " (read without running the classes it pickles: if it comes from the official OFA "
        "release, rerun with --trust-pickle)"
        if stood_in
        else ""
    )
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path} has no 'model' state dict{hint}")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(
            f"{path} holds no tensors (neither under 'model' nor at the top level){hint}"
        )
    return FairseqCheckpoint(tensors, recorded_disable_entangle(ckpt), recorded_image_size(ckpt))


def _load_inert(path: Path) -> object:
    """Load ``path`` with every pickled name outside ``inert_pickle.ALLOWED`` as a stand-in."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, pickle_module=inert_pickle)
    except Exception as err:  # a damaged file fails this load too
        raise ValueError(f"{path} is not a readable checkpoint ({_first_line(err)})") from err
    names = sorted(_inert_names(ckpt))
    if names:
        log.info(
            "%s pickles %s; read without running them (stand-ins hold their fields)",
            path,
            ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else ""),
        )
    return ckpt


def _inert_names(obj: object, depth: int = 0) -> set[str]:
    """The pickled names that loaded as stand-ins, found in the loaded objects."""
    if depth > 20:
        return set()
    if isinstance(obj, inert_pickle.Inert):
        found = {f"{obj.module}.{obj.name}"}
        children: list[object] = [obj.state, *obj.args, *obj.items, *obj.entries.values()]
    elif isinstance(obj, Mapping):
        found, children = set(), list(obj.values())
    elif isinstance(obj, list | tuple):
        found, children = set(), list(obj)
    elif isinstance(obj, argparse.Namespace):
        found, children = set(), list(vars(obj).values())
    else:
        return set()
    for child in children:
        found |= _inert_names(child, depth + 1)
    return found


def _load_trusted(path: Path) -> object:
    """The full (code-running) unpickle that ``--trust-pickle`` allows."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as missing:  # e.g. omegaconf objects in fairseq's cfg
        raise ValueError(
            f"unpickling {path}'s training config needs the module {missing.name!r}; "
            "install it in this environment and rerun"
        ) from missing
    except Exception as err:  # a damaged file fails the full load too
        raise ValueError(f"{path} is not a readable checkpoint ({_first_line(err)})") from err


def read_fairseq(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The ``model`` state dict of a fairseq checkpoint (see ``read_fairseq_checkpoint``)."""
    return read_fairseq_checkpoint(path, trust_pickle).state


def resolve_disable_entangle(path: str | Path, recorded: bool | None, given: bool | None) -> bool:
    """The checkpoint's own ``disable_entangle`` if it records one, else the caller's choice.

    Why it matters: with ``disable_entangle`` the decoder does not add its absolute position
    embedding to the token embedding (fairseq OFA tests ``not args.disable_entangle``); every
    run script of the official OFA release trains with ``--disable-entangle``, and the wrong
    setting gives a model that loads cleanly and captions differently. So it is never guessed.
    """
    if recorded is not None and given is not None and recorded != given:
        raise ValueError(
            f"{path} was trained with disable_entangle={recorded}, which contradicts "
            f"{'--disable-entangle' if given else '--entangle'}; drop the flag"
        )
    if recorded is not None:
        return recorded
    if given is not None:
        return given
    raise ValueError(
        f"{path} does not record disable_entangle (no fairseq training args readable), and it "
        "decides whether the decoder adds positions to tokens: pass --disable-entangle (what "
        "OFA's official run scripts train with, caption_large_best_clean.pt included) or "
        "--entangle"
    )


# The tensors whose shapes give the architecture: a file without them is no OFA model.
SHAPE_KEYS = (
    "encoder.embed_tokens.weight",
    "encoder.embed_positions.weight",
    "encoder.token_rel_pos_table_list.0.weight",
    "encoder.layers.0.self_attn.c_attn",
    "decoder.layers.0.self_attn.c_attn",
    "encoder.layers.0.fc1.weight",
    "decoder.layers.0.fc1.weight",
)


def infer_config(state: dict[str, torch.Tensor], image_size: int) -> OFAConfig:
    """Architecture from tensor shapes (what a fairseq ``.pt`` records without its args)."""
    missing = [k for k in SHAPE_KEYS if k not in state]
    if missing:
        raise CheckpointMismatch(
            f"the checkpoint has no {', '.join(missing[:3])}"
            + (f" (and {len(missing) - 3} more)" if len(missing) > 3 else "")
            + ", which give the architecture: not an OFA model, or a damaged one; its "
            + f"{len(state)} tensors start {', '.join(sorted(state)[:3]) or '(none)'}"
        )
    if state["encoder.embed_tokens.weight"].dim() != 2:
        raise CheckpointMismatch("encoder.embed_tokens.weight is not a 2-D embedding table")
    vocab, d = state["encoder.embed_tokens.weight"].shape

    def count(prefix: str) -> int:
        return len({k[len(prefix) :].split(".")[0] for k in state if k.startswith(prefix)})

    depths = tuple(count(f"encoder.embed_images.layer{i}.") for i in (1, 2, 3))
    resnet = {v: k for k, v in RESNET_LAYERS.items()}.get(depths)
    if resnet is None:
        raise ValueError(f"unknown OFA visual stem with stage depths {depths}")
    num_codes = vocab - BART_VOCAB - NUM_BINS
    if num_codes < 0:
        raise CheckpointMismatch(
            f"the token embedding has {vocab} rows, fewer than BART's {BART_VOCAB} tokens and "
            f"{NUM_BINS} location bins: not an OFA checkpoint built on BART's vocabulary"
        )
    return replace(
        OFAConfig(),
        vocab_size=vocab,
        d_model=d,
        encoder_layers=count("encoder.layers."),
        decoder_layers=count("decoder.layers."),
        encoder_attention_heads=state["encoder.layers.0.self_attn.c_attn"].numel(),
        decoder_attention_heads=state["decoder.layers.0.self_attn.c_attn"].numel(),
        encoder_ffn_dim=state["encoder.layers.0.fc1.weight"].shape[0],
        decoder_ffn_dim=state["decoder.layers.0.fc1.weight"].shape[0],
        resnet_type=resnet,
        image_size=image_size,
        num_codes=num_codes,
        max_position_embeddings=state["encoder.embed_positions.weight"].shape[0] - 2,
        token_bucket_size=(state["encoder.token_rel_pos_table_list.0.weight"].shape[0] + 1) // 2,
        image_bucket_size=_image_bucket_size(state),
    )


def _image_bucket_size(state: dict[str, torch.Tensor]) -> int:
    """The patch grid side of the image position table (``side**2 + 1`` rows); OFA's default
    (42) when the table is absent or not of that form, so the strict load names the misfit."""
    table = state.get("encoder.embed_image_positions.weight")
    rows = table.shape[0] - 1 if table is not None and table.dim() == 2 else -1
    side = math.isqrt(rows) if rows > 0 else 0
    return side if side * side == rows else OFAConfig().image_bucket_size


# What a conversion writes; a folder holding only these is an earlier conversion, redone.
OUT_FILES = ("config.json", "model.safetensors", "vocab.json", "merges.txt")


def check_out_folder(out: Path, tokenizer_dir: Path) -> None:
    """Refuse an ``out`` that is a file, the tokenizer folder, or a folder with other files.

    Other files are not overwritten but would be read: ``read_state_dict`` takes a
    ``model.safetensors.index.json`` before our ``model.safetensors``, so converting into an
    old Hugging Face folder would load its weights, not these.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if not out.is_dir():
        return
    if out.resolve() == tokenizer_dir.resolve():
        raise ValueError(f"--out {out} is the --tokenizer-from folder; write to a new folder")
    other = sorted(p.name for p in out.iterdir() if p.name not in OUT_FILES)
    if other:
        shown = ", ".join(other[:3]) + (f" and {len(other) - 3} more" if len(other) > 3 else "")
        raise ValueError(
            f"--out {out} already holds other files ({shown}); choose a new or empty folder "
            "(one with only an earlier conversion's files is overwritten)"
        )


def convert_fairseq(
    pt_path: str | Path,
    out: str | Path,
    tokenizer_dir: str | Path,
    image_size: int | None = None,
    trust_pickle: bool = False,
    config: OFAConfig | None = None,
    disable_entangle: bool | None = None,
) -> Path:
    """Write ``out`` (config.json, model.safetensors, vocab.json, merges.txt); return it.

    The converted weights go through the same strict check as any other load, so a fairseq
    file with tensors we do not map is refused, not half-loaded. ``disable_entangle`` comes
    from the checkpoint's pickled args when they can be read (stand-ins or ``trust_pickle``);
    otherwise the caller must give it (``resolve_disable_entangle``). ``image_size``, when not
    given, is the file's recorded ``patch_image_size`` (``resolve_image_size``). ``config``
    fixes the architecture only: its ``disable_entangle`` is replaced by the resolved one.
    """
    ckpt = read_fairseq_checkpoint(pt_path, trust_pickle)
    entangle_off = resolve_disable_entangle(pt_path, ckpt.disable_entangle, disable_entangle)
    size = resolve_image_size(pt_path, ckpt.patch_image_size, image_size)
    state = {rename_fairseq_key(k): v for k, v in ckpt.state.items()}
    cfg = replace(config or infer_config(state, size), disable_entangle=entangle_off)
    model = OFAModel(cfg)
    check_and_load(model, state)
    out, tokenizer_dir = Path(out), Path(tokenizer_dir)
    load_tokenizer(tokenizer_dir, cfg)  # vocab size and special ids must agree with the weights
    check_out_folder(out, tokenizer_dir)  # all checks before the first byte is written
    out.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(tokenizer_dir / name, out / name)
    save_checkpoint(model, out)
    log.info(
        "converted %s -> %s (%s, %d px, disable_entangle=%s)",
        pt_path,
        out,
        cfg.resnet_type,
        cfg.image_size,
        cfg.disable_entangle,
    )
    return out
