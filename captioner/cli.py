"""``clipvip ofa-convert``: the command line of ``captioner.ofa.convert``.

Apart from the converter so that building clipvip's parser (every command, every run) does not
import torch and the OFA model: 2.5 s before any command starts.
"""

from __future__ import annotations

import argparse

EXAMPLES = """\
examples:
  # the CLIP-ViP captioner: OFA-Large fine-tuned for captioning (fairseq release)
  clipvip ofa-convert caption_large_best_clean.pt --out models/ofa-caption-large \\
      --tokenizer-from models/OFA-large
  # then caption with it
  clipvip prepare clips.csv --out data/run --captioner ofa:models/ofa-caption-large

--tokenizer-from needs vocab.json and merges.txt from an official OFA Hugging Face folder (or
facebook/bart-large); nothing is downloaded.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ofa-convert",
        help="convert a fairseq OFA checkpoint (.pt) to an ofa:PATH folder",
        description=(
            "Convert an official fairseq OFA checkpoint into the Hugging Face-style folder "
            "that --captioner ofa:PATH loads (config.json, model.safetensors, vocab.json, "
            "merges.txt), with strict checking of every tensor name and shape."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="fairseq .pt file, e.g. caption_large_best_clean.pt")
    p.add_argument("--out", required=True, help="output folder, e.g. models/ofa-caption-large")
    p.add_argument(
        "--tokenizer-from",
        required=True,
        metavar="DIR",
        help="folder with BART's vocab.json and merges.txt, e.g. a local OFA-large HF folder",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="caption resolution recorded in config.json (default: the patch_image_size the "
        "file's training args record, else 480, the large and huge captioners'), e.g. "
        "--image-size 480",
    )
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow a full (code-executing) unpickle of the training config fairseq pickles "
        "beside the weights; without it the file is read with inert stand-ins for every "
        "pickled class, which is enough for the official releases. Only for a file from the "
        "official OFA release that the stand-ins cannot read, e.g. --trust-pickle",
    )
    entangle = p.add_mutually_exclusive_group()
    entangle.add_argument(
        "--disable-entangle",
        dest="disable_entangle",
        action="store_true",
        default=None,
        help="the model was trained with fairseq's --disable-entangle (all official OFA "
        "releases): the decoder does not add positions to tokens. Needed only when the file's "
        "args cannot be read (a weights-only file, or args without the field); must agree with "
        "them otherwise",
    )
    entangle.add_argument(
        "--entangle",
        dest="disable_entangle",
        action="store_false",
        default=None,
        help="the model was trained without --disable-entangle (the opposite of the above)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from captioner.ofa.convert import convert_fairseq
    from clipvip.cli import UserError

    try:
        out = convert_fairseq(
            args.checkpoint,
            args.out,
            args.tokenizer_from,
            args.image_size,
            args.trust_pickle,
            disable_entangle=args.disable_entangle,
        )
    # OSError: no permission, a full disk, a parent of --out that is a file (names the path)
    except (ValueError, OSError, KeyError) as err:
        raise UserError(str(err)) from err
    print(f"wrote {out}: use --captioner ofa:{out}")
    return 0
