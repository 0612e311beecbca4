"""On-disk embedding cache, one file per (source, encoder weights).

Embedding is the slow part of a gap analysis and the same corpora are measured again and again
(another reference, more seeds, after captioning). The cache maps sentence text to its unit
vector, so a new draw only embeds sentences never seen before. Files are ``.npz`` with a text
array and a vector array, written to a temp name then renamed (never half written). A file
that cannot be read all the same (cut short by a full disk, copied half, edited) is only a lost
speed-up: it is recomputed and rewritten, with a warning that names it.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger("clipvip")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class EmbeddingCache:
    """``lookup(source, texts, compute)``: vectors for texts, computing only the missing ones."""

    def __init__(self, folder: str | Path | None, encoder_id: str | None) -> None:
        self.folder = Path(folder) if folder and encoder_id else None
        self.encoder_id = encoder_id
        self.hits = 0
        self.misses = 0

    def _file(self, source: str) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / f"{_UNSAFE.sub('_', source)}.{self.encoder_id}.npz"

    def _load(self, path: Path | None) -> dict[str, np.ndarray]:
        if path is None or not path.is_file():
            return {}
        try:
            with np.load(path, allow_pickle=False) as data:
                texts, vectors = data["texts"].tolist(), data["vectors"]
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            log.warning("embedding cache %s cannot be read (%s); recomputing it", path, exc)
            return {}
        if vectors.ndim != 2 or len(vectors) != len(texts):
            log.warning("embedding cache %s is inconsistent; recomputing it", path)
            return {}
        return dict(zip(texts, vectors))

    def lookup(
        self, source: str, texts: Sequence[str], compute: Callable[[list[str]], np.ndarray]
    ) -> np.ndarray:
        path = self._file(source)
        known = self._load(path)
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        if missing:
            for text, vec in zip(missing, compute(missing)):
                known[text] = vec
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
                np.savez(tmp, texts=np.array(list(known)), vectors=np.stack(list(known.values())))
                os.replace(tmp, path)
        return np.stack([known[t] for t in texts]).astype(np.float32)
