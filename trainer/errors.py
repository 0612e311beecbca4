"""The one exception type for a training or evaluation run that cannot go on for a reason the
user can fix (bad shards, a config that makes no sense, a checkpoint of another model).

``clipvip train`` / ``evaluate`` turn it into a one-line ``error:`` instead of a traceback. It is
a ``ValueError`` so that library callers catching that keep working.
"""

from __future__ import annotations

import re


class TrainerError(ValueError):
    """A run stopped by its input (shards, config, checkpoint), not by a bug."""


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
