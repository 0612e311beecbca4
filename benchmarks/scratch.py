"""A benchmark's working folder: the one the user named, kept; else a temporary one, removed.

Benchmarks write demo shards, cut clips and model weights (the training benchmark about 0.5 GB a
run). Left in the temp folder by every run, they filled a shared disk here until an install ran
out of space, so a folder nobody asked to keep goes when the benchmark ends, however it ends.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def scratch_folder(named: str | Path | None, prefix: str) -> Iterator[Path]:
    """``named`` (created if missing, never removed) or a new temporary folder removed on exit."""
    if named:
        folder = Path(named)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
