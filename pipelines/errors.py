"""The error a stage raises when its clip cannot go on.

In a leaf module of its own so that helpers the stages use (``pipelines.source``) can raise it
without importing the ``pipelines.stages`` package, which imports them back.
"""


class StageError(Exception):
    """This clip cannot go on; the message is the reason written to ``errors.jsonl``."""
