"""Shared helpers for adapter tests: the real sample data (when present) and fake video folders."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _shared_file(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"real sample data absent: {path}")
    return path


def _video_folder(root: Path, names: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    return root


@pytest.fixture
def shared_file() -> Callable[..., Path]:
    """``shared_file("captions", "x.csv")``: a file of ../shared/data, or skip the test."""
    return _shared_file


@pytest.fixture
def video_folder() -> Callable[[Path, list[str]], Path]:
    """``video_folder(root, names)``: a --videos folder of empty files (adapters list names)."""
    return _video_folder
