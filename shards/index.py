"""The run's shard index in the wids format (``index.json``) and how to list a run's shards."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from shards.store import Store

INDEX = "index.json"
PREPARE_RUN_FILE = "run.json"  # `clipvip prepare` writes it first (pipelines.tasks.RUN_FILE)


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


class ShardIndexError(ValueError):
    """An ``index.json`` that cannot be read as a run's shard list."""


def load_index(root: str) -> dict[str, Any]:
    """Read ``ROOT/index.json``; a clear error when the folder holds no prepared run or the index
    is damaged (a hand edit, a copy cut short), naming the file and what is wrong with it."""
    store = Store(root)
    if not store.exists(INDEX):
        if store.fs.isfile(store.path("")):
            raise FileNotFoundError(
                f"{root!r} is a file; give the --out folder of `clipvip prepare` (or a .tar shard)"
            )
        if store.exists(PREPARE_RUN_FILE):
            raise FileNotFoundError(
                f"{root!r} holds a `clipvip prepare` run that has not finished: its {INDEX} is "
                f"written when the run ends (and removed while a rerun redoes tasks); see "
                f"`clipvip status {root}`, and rerun the same prepare command to finish it"
            )
        raise FileNotFoundError(
            f"{root!r} has no {INDEX}: is it the --out folder of `clipvip prepare`?"
        )
    where = store.url(INDEX)
    try:
        index = json.loads(store.read_text(INDEX))
    except UnicodeDecodeError as exc:
        raise ShardIndexError(f"{where}: not UTF-8 (at byte offset {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ShardIndexError(
            f"{where}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    shardlist = index.get("shardlist") if isinstance(index, dict) else None
    if not isinstance(shardlist, list):
        raise ShardIndexError(f"{where}: no 'shardlist' list (a wids shard index has one)")
    for n, entry in enumerate(shardlist):
        problem = _entry_problem(entry)
        if problem:
            raise ShardIndexError(f"{where}: shardlist entry {n}: {problem}")
    return index


def _entry_problem(entry: Any) -> str | None:
    """Why a ``shardlist`` entry is unusable, or None.

    An entry names one of the run's own tars by a path relative to the index (as ``make_index``
    writes it); an absolute path, an address or a ``..`` would send a reader outside the run.
    """
    if not isinstance(entry, dict):
        return f"not an object: {entry!r:.60}"
    url, count = entry.get("url"), entry.get("nsamples")
    if not isinstance(url, str) or not url:
        return "no 'url' string"
    if "://" in url or url.startswith("/") or ".." in url.split("/"):
        return f"'url' {url!r} points outside the run folder (entries name the run's own tars)"
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        return f"'nsamples' is {count!r}, not a count"
    return None


def shard_list(source: str | Sequence[str]) -> tuple[list[str], dict[str, int]]:
    """Shard URLs and, for a run folder, each one's sample count, from one read of its index
    (a tar or a list of tars states no counts)."""
    if not isinstance(source, str):
        return [str(s) for s in source], {}
    if source.endswith(".tar"):
        return [source], {}
    store = Store(source)
    entries = load_index(source)["shardlist"]
    urls = [store.url(s["url"]) for s in entries]
    return urls, {url: s["nsamples"] for url, s in zip(urls, entries, strict=True)}


def shard_urls(source: str | Sequence[str]) -> list[str]:
    """Expand a run folder (via its index), a single tar, or a list of tars into shard URLs."""
    return shard_list(source)[0]
