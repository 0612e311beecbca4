"""The one exception type for a training or evaluation run that cannot go on for a reason the
user can fix (bad shards, a config that makes no sense, a checkpoint of another model).

``clipvip train`` / ``evaluate`` turn it into a one-line ``error:`` instead of a traceback. It is
a ``ValueError`` so that library callers catching that keep working.
"""

from __future__ import annotations


class TrainerError(ValueError):
    """A run stopped by its input (shards, config, checkpoint), not by a bug."""
