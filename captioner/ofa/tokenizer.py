"""OFA's tokenizer: BART's byte-level BPE (``vocab.json`` + ``merges.txt``) plus added tokens.

OFA appends ``<code_0>..<code_8191>`` (image codes) and ``<bin_0>..<bin_999>`` (location bins)
after BART's 50265 ids. The public checkpoint folders ship BART's files only and the tokenizer
adds the codes and bins on load, so ids must be appended in that order; if a ``vocab.json``
already lists them they are kept where they are.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from captioner.ofa.config import OFAConfig

BOS, PAD, EOS, UNK = "<s>", "<pad>", "</s>", "<unk>"


class OFATokenizer:
    """Encode prompts to ``<s> ... </s>`` ids; decode generated ids back to text."""

    def __init__(self, core: Tokenizer) -> None:
        self.core = core
        self.bos_token_id = core.token_to_id(BOS)
        self.pad_token_id = core.token_to_id(PAD)
        self.eos_token_id = core.token_to_id(EOS)
        self.unk_token_id = core.token_to_id(UNK)
        # Ids that never belong in a caption: specials, image codes, location bins.
        self.non_text_ids = sorted(
            i
            for tok, i in core.get_vocab(with_added_tokens=True).items()
            if tok.startswith(("<code_", "<bin_")) or tok in (BOS, PAD, UNK, "<mask>")
        )

    def __len__(self) -> int:
        return self.core.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return [
            self.bos_token_id,
            *self.core.encode(text, add_special_tokens=False).ids,
            self.eos_token_id,
        ]

    def decode(self, ids: Sequence[int]) -> str:
        return self.core.decode(list(ids), skip_special_tokens=True)

    @classmethod
    def from_files(
        cls, vocab: str | Path, merges: str | Path, num_codes: int, num_bins: int
    ) -> OFATokenizer:
        core = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
        core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        core.decoder = decoders.ByteLevel()
        vocab_map = json.loads(Path(vocab).read_text())
        specials = [t for t in (BOS, PAD, EOS, UNK, "<mask>") if t in vocab_map]
        core.add_special_tokens([AddedToken(t, special=True) for t in specials])
        extra = [f"<code_{i}>" for i in range(num_codes)] + [f"<bin_{i}>" for i in range(num_bins)]
        missing = [t for t in extra if t not in vocab_map]
        core.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
        return cls(core)


def load_tokenizer(folder: str | Path, cfg: OFAConfig) -> OFATokenizer:
    """The tokenizer of a checkpoint folder; its size must equal the model's ``vocab_size``."""
    folder = Path(folder)
    for name in ("vocab.json", "merges.txt"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"OFA folder {str(folder)!r} has no {name}")
    tok = OFATokenizer.from_files(
        folder / "vocab.json", folder / "merges.txt", cfg.num_codes, cfg.num_bins
    )
    if len(tok) != cfg.vocab_size:
        raise ValueError(
            f"tokenizer in {str(folder)!r} has {len(tok)} ids (BPE + {cfg.num_codes} codes + "
            f"{cfg.num_bins} bins) but config.json says vocab_size={cfg.vocab_size}"
        )
    if (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id) != (
        cfg.bos_token_id,
        cfg.pad_token_id,
        cfg.eos_token_id,
    ):
        raise ValueError(f"tokenizer in {str(folder)!r}: <s>, <pad>, </s> ids differ from config")
    return tok


TINY_CORPUS = (
    " what does the image describe? a man is walking on the street with a dog. a woman sitting "
    "at a table in a room. two people playing a game on a field. a red car parked near a "
    "building. a group of people standing in front of a screen. color bars on a black screen. "
    "a close up view of a white circle with blue and green lines over the water and the sky."
)


def write_tiny_bpe(folder: str | Path, vocab_size: int = 320) -> None:
    """A small byte-level BPE trained offline on a fixed sentence list (deterministic).

    Ids 0-3 are ``<s> <pad> </s> <unk>`` as in BART, ``<mask>`` is last, as in BART.
    """
    from tokenizers import trainers

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, PAD, EOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator([TINY_CORPUS] * 4, trainer=trainer)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = json.loads(core.to_str())["model"]
    vocab = dict(sorted(data["vocab"].items(), key=lambda kv: kv[1]))
    vocab["<mask>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["merges"]]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
