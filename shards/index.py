"""The run's shard index in the wids format (``index.json``) and how to list a run's shards."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from shards.store import Store

INDEX = "index.json"


def make_index(shards: Sequence[dict[str, Any]], name: str) -> dict[str, Any]:
    """A wids shard index: ``shardlist`` of ``{url, nsamples}`` with urls relative to the index."""
    return {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "name": name,
        "shardlist": [
            {"url": s["url"], "nsamples": s["nsamples"]} for s in shards if s["nsamples"] > 0
        ],
    }


def load_index(root: str) -> dict[str, Any]:
    """Read ``ROOT/index.json``; a clear error when the folder holds no prepared run."""
    store = Store(root)
    if not store.exists(INDEX):
        raise FileNotFoundError(
            f"{root!r} has no {INDEX}: is it the --out folder of `clipvip prepare`?"
        )
    return json.loads(store.read_text(INDEX))


def shard_urls(source: str | Sequence[str]) -> list[str]:
    """Expand a run folder (via its index), a single tar, or a list of tars into shard URLs."""
    if not isinstance(source, str):
        return [str(s) for s in source]
    if source.endswith(".tar"):
        return [source]
    store = Store(source)
    index = load_index(source)
    return [store.url(s["url"]) for s in index["shardlist"]]
