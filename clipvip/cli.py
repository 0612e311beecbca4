"""The ``clipvip`` command: one sub-command per job, each registered by the package that owns it.

A package exposes ``register(subparsers)``, adds its parsers and sets ``func(args) -> int``.
Errors a user can fix (a bad manifest, a wrong folder) end with a one-line message and exit
status 2, not a traceback; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import importlib
import logging
import re
import sys
from collections.abc import Sequence

from clipvip import __version__

# Packages that contribute sub-commands, in the order --help lists them.
COMMAND_MODULES = [
    "pipelines.cli",
    "pipelines.adapters.cli",
    "analysis.cli",
    "trainer.cli",
    "captioner.cli",
]


class UserError(Exception):
    """Raised by sub-commands for mistakes the user can fix; printed as one line."""


def _not_beam_gcp_notice(record: logging.LogRecord) -> bool:
    """Beam warns on the root logger, at import, that Google Cloud client libraries are absent;
    nothing here uses them, so the line only alarms."""
    return not str(record.msg).startswith("apitools not found")


def one_line(exc: BaseException) -> str:
    """``exc``'s message on one line. Raised in a DataLoader worker, an exception reaches the main
    process with the worker's whole traceback as its message; its last line is the original
    ``module.Type: message``, so that line (without the type) is the message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if len(lines) > 1:
        return re.sub(r"^[\w.]+(Error|Exception): ", "", lines[-1])
    return lines[0]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipvip",
        description=(
            "Offline data preparation and training for CLIP-ViP video-language models: cut clips, "
            "take each clip's middle frame, caption it, pack WebDataset shards; measure the "
            "language domain gap; train and evaluate."
        ),
        epilog="Start with `clipvip demo --out demo_out`, then `clipvip prepare --help`.",
    )
    parser.add_argument("--version", action="version", version=f"clipvip {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    # A decoder that crashes the process (SIGSEGV, SIGABRT) leaves at least a Python traceback;
    # `prepare` then resumes on rerun with the crashing task's rows isolated.
    with contextlib.suppress(ValueError, OSError):  # stderr without a file (captured in tests)
        faulthandler.enable()
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="clipvip: %(message)s" if not args.debug else "%(asctime)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    noisy_loggers = ("apache_beam", "ray", "transformers", "urllib3", "httpx", "botocore")
    for noisy in (*noisy_loggers, "matplotlib"):  # matplotlib: "generated new fontManager"
        logging.getLogger(noisy).setLevel(logging.ERROR)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_beam_gcp_notice)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("clipvip: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:
        from pipelines.manifest import ManifestError
        from pipelines.run_lock import RunBusy
        from pipelines.tasks import DamagedRun, EngineUnavailable, RunMismatch
        from shards import ShardIndexError, ShortShardError

        known = (UserError, ManifestError, RunMismatch, EngineUnavailable, ShardIndexError)
        known += (DamagedRun, ShortShardError, RunBusy)
        if args.debug or not isinstance(exc, (*known, OSError)):
            raise
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            # a folder that cannot be written, a full disk: the system's own words, on one line
            print(f"clipvip: error: {one_line(exc)} (--debug shows where)", file=sys.stderr)
            return 2
        print(f"clipvip: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
