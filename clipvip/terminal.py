"""Whether a command draws progress bars: only where someone watches them.

In a pipe, a log file or a batch job's output a bar is redrawn into text: hundreds of
``\\r``-separated copies per minute. ``prepare`` logs a plain ``progress:`` line there instead
(``pipelines.progress``); the trainer logs its steps; the others stay quiet.
"""

from __future__ import annotations

import os
import sys


def stderr_is_terminal() -> bool:
    """Whether progress may be drawn as bars: stderr is a terminal (not a file, a pipe, or
    closed; a library caller may have replaced it with something without ``isatty``) that
    has a width. A pseudo-terminal nobody sized (``docker run -t`` under some CI, ``script``)
    reports 0 columns, and a bar fitted to that draws blank lines: no progress at all."""
    try:
        if not sys.stderr.isatty():
            return False
        return os.get_terminal_size(sys.stderr.fileno()).columns > 0
    except (AttributeError, ValueError, OSError):
        return False


def bars(no_progress: bool) -> bool:
    """Bars for a command's long work: not turned off with ``--no-progress``, and on a terminal."""
    return not no_progress and stderr_is_terminal()
