"""The ``clipvip prepare`` command line, as the harnesses and tests start it in a child process.

A child process, not ``main()`` in process: the harnesses kill it, and the run must meet the
same interpreter start-up, environment and exit status a user's shell would.
"""

from __future__ import annotations

import sys
from pathlib import Path


def prepare_command(manifest: Path | str, out: Path | str, *args: str) -> list[str]:
    """``python -m clipvip prepare MANIFEST --out OUT ARGS...`` with this interpreter."""
    return [sys.executable, "-m", "clipvip", "prepare", str(manifest), "--out", str(out), *args]
