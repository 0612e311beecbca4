"""argparse types shared by every ``clipvip`` command: a nonsense number stops at parsing, in
argparse's one line, before any folder is made or model loaded."""

from __future__ import annotations

import argparse


def whole(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a whole number") from None


def positive_int(value: str) -> int:
    """A count of at least one (``--workers``, ``--caption-pool``)."""
    n = whole(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: must be at least 1")
    return n


def int_in_range(low: int, high: int | None = None):
    """An argparse type for a whole number in [low, high] (high None: no cap), so a nonsense
    value stops at parsing in argparse's one line, before a run folder is made."""

    def parse(value: str) -> int:
        n = whole(value)
        if n < low or (high is not None and n > high):
            span = f"at least {low}" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"{value!r}: must be {span}")
        return n

    parse.__name__ = "int"  # what argparse names the type in its own messages
    return parse
