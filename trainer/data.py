"""From shard samples to model inputs: decode the clip, sample T frames, CLIP pixels, tokens.

The clip is decoded in-process with PyAV (no subprocess per sample) and resized by swscale
while decoding, so a loader worker only ever holds T small frames. Everything random about a
sample (the training frame window) is seeded by (seed, epoch, key), so a sample looks the same
whichever worker or rank reads it, and a resumed run sees the same pixels as an unbroken one.
"""

from __future__ import annotations

import io
import json
import os
import random
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter
from PIL import Image

from shards import ClipShardDataset, ShortShardError
from trainer.errors import TrainerError

# loader workers fork after the tokenizer exists: keep the Rust tokenizer single-threaded there
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(slots=True)
class DataConfig:
    """How clips become tensors; defaults are CLIP-ViP's (12 frames, 224 px, 70 tokens, frames
    squashed to a square)."""

    num_frames: int = 12
    image_size: int = 224
    # "squash": the whole frame resized to image_size x image_size (bicubic), as the official
    # CLIP-ViP loaders do (torchvision Resize((S, S)): its CenterCrop then cuts nothing), so
    # CLIP-ViP checkpoints see what they were trained on and a 16:9 clip keeps its edges;
    # "crop": short side to image_size, then the centre square (CLIP's own preprocessing)
    resize: str = "squash"
    max_text_len: int = 70
    batch_size: int = 32  # per rank, per micro-step
    num_workers: int = 4
    shuffle_buffer: int = 1000
    # training draws its text from the sample's ``sentences`` when ``txt`` is one of them
    # (``drawn_text``); false: always ``txt``
    draw_sentence: bool = True
    # evaluation scores each of those ``sentences`` as a text of the sample's video (MSR-VTT's
    # 20 per video written one sample each); false: ``txt`` only, one text per sample
    eval_all_sentences: bool = False


class DecodeError(RuntimeError):
    """A sample whose clip could not be decoded; the loader skips and counts it."""


def sample_frame_indices(
    num_frames_in_clip: int, num_samples: int, rng: random.Random | None
) -> list[int]:
    """CLIP-ViP's frame sampling: ``num_samples`` evenly spaced indices into [0, N-1].

    Training (``rng`` given) jitters the window: start in [0, i], end in [N-1-i, N-1] with
    i = N // (T - 1), one sampling interval (the official loader's ``sample_jitter``).
    Evaluation (``rng=None``) spans the whole clip. Indices are floored, as the official
    ``np.linspace(...).astype(int)``; they repeat when N < T.
    """
    n = num_frames_in_clip
    if n <= 0:
        raise DecodeError("clip has no frames")
    start, end = 0, n - 1
    if rng is not None and num_samples > 1:
        i = n // (num_samples - 1)
        start = rng.randint(0, min(i, n - 1))
        end = rng.randint(max(start, n - 1 - i), n - 1)
    return [int(x) for x in np.linspace(start, end, num_samples)]


RESIZE_MODES = ("squash", "crop")


def _resized_size(width: int, height: int, short: int, resize: str) -> tuple[int, int]:
    """The size a frame is scaled to: ``short`` x ``short`` (squash), or short side ``short``
    keeping the aspect ratio (crop: the centre square is cut afterwards)."""
    if resize == "squash":
        return short, short
    if resize != "crop":
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    if width <= height:
        return short, max(short, round(height * short / width))
    return max(short, round(width * short / height)), short


def _center_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return rgb[top : top + size, left : left + size]


def _sample_aspect(stream: av.VideoStream) -> float:
    """A stored pixel's width over its height; 1 where the file says nothing or nonsense."""
    sar = stream.sample_aspect_ratio
    return float(sar) if sar is not None and sar > 0 else 1.0


def shown_frames(container: av.container.InputContainer, stream: av.VideoStream) -> int:
    """The frames a player shows: not the header's count, which in an MP4 also counts the
    packets its edit list hides (a stream-copy cut's lead-in); the decoder drops those, so
    indices count shown frames too, as the middle-frame stage does."""
    return sum(1 for p in container.demux(stream) if p.size and not p.is_discard)


def decode_frames(
    mp4: bytes,
    size: int,
    num_samples: int,
    rng: random.Random | None,
    with_middle: bool = False,
    threads: int = 0,
    resize: str = "squash",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode the sampled frames: (T, size, size, 3) uint8, bicubic, squashed or short side
    then centre crop (``resize``, see ``DataConfig``); with ``with_middle`` also frame N // 2
    (for shards without a ``jpg``).
    ``threads``: decoder threads, 0 = FFmpeg's choice (frame threads cost no extra CPU time per
    sample, measured by ``benchmarks.clip_decode``, so a worker per core may keep them)."""
    try:
        with av.open(io.BytesIO(mp4)) as container:
            stream = container.streams.video[0]
            count = shown_frames(container, stream)
        indices = sample_frame_indices(count, num_samples, rng)
        middle = count // 2
        wanted = set(indices) | ({middle} if with_middle else set())
        stop = max(wanted)
        got: dict[int, np.ndarray] = {}
        # One reformatter for the clip: it keeps its scaler between frames of one size, where
        # ``frame.reformat`` builds a bicubic scaler per frame (measured: 1.9 ms a frame instead
        # of 0.6 ms, a third of the sample's decode time for a 3 fps 320 px clip).
        scaler = VideoReformatter()
        with av.open(io.BytesIO(mp4)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.thread_count = threads
            stretch = _sample_aspect(stream)
            for n, frame in enumerate(container.decode(stream)):
                if n in wanted:
                    # A foreign anamorphic clip (DVD, broadcast: stored pixels are not square)
                    # is resized to the picture a player shows, as `prepare` cuts clips.
                    shown_width = max(1, round(frame.width * stretch))
                    w, h = _resized_size(shown_width, frame.height, size, resize)
                    rgb = scaler.reformat(
                        frame, width=w, height=h, format="rgb24", interpolation="BICUBIC"
                    ).to_ndarray()
                    # A foreign clip stored sideways with a display matrix: turn it as a player
                    # does (counterclockwise quarter turns; clips cut by `prepare` are upright).
                    rgb = np.rot90(rgb, round(frame.rotation / 90) % 4)
                    got[n] = _center_crop(rgb, size)
                if n >= stop:
                    break
    except (av.FFmpegError, IndexError, ValueError) as exc:
        raise DecodeError(f"cannot decode clip: {exc}") from exc
    if not got:
        raise DecodeError("no frame decoded")
    last = max(got)  # the header may promise more frames than decode: use the last one
    frames = np.stack([got.get(i, got[last]) for i in indices])
    return frames, (got.get(middle, got[last]) if with_middle else None)


def image_pixels(jpg: bytes, size: int, resize: str = "squash") -> np.ndarray:
    """The middle frame JPEG as (size, size, 3) uint8, bicubic, as the clip's frames are."""
    img = Image.open(io.BytesIO(jpg)).convert("RGB")
    w, h = _resized_size(img.width, img.height, size, resize)
    return _center_crop(np.asarray(img.resize((w, h), Image.Resampling.BICUBIC)), size)


def to_chw(rgb: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) uint8. Pixels cross the loader as bytes (4x less
    than float) and are normalised on the device by ``normalize_pixels``."""
    return torch.from_numpy(np.require(rgb, requirements=["C", "W"])).movedim(-1, -3).contiguous()


def normalize_pixels(x: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float with CLIP's mean and std; float input is returned as is
    (already normalised)."""
    if x.dtype != torch.uint8:
        return x
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(3, 1, 1) * 255.0
    std = torch.tensor(CLIP_STD, device=x.device).view(3, 1, 1) * 255.0
    return (x.float() - mean) / std


def video_identity(sample: dict[str, Any]) -> str:
    """Which video a sample shows: its source video and span, from the sample's JSON.

    Samples of one clip (MSR-VTT's 20 sentences written one sample each, two descriptions of
    one DiDeMo moment) are one video to retrieve, not 20 near-identical candidates that are
    each other's negatives. Shards without that JSON (made elsewhere): every sample its own.
    """
    meta = sample.get("json")
    if isinstance(meta, dict) and meta.get("video") is not None:
        return json.dumps([meta["video"], meta.get("span")])
    return str(sample["key"])


def sentence_choices(sample: dict[str, Any]) -> list[str]:
    """A sample's alternative descriptions: the JSON's ``extra.sentences`` when its ``txt`` is
    one of them (``clipvip manifest msrvtt`` writes one sample per video so: its first
    sentence in ``txt``, all 20 in ``sentences``); empty otherwise. A ``txt`` joined from them
    (DiDeMo and ActivityNet paragraphs: the official loader joins DiDeMo's too) or absent from
    them has no alternatives: it is the one text. Neither has a sample written once per
    sentence (``--per-sentence``: ``extra.sentence_index``): the other sentences are samples
    of their own, so drawing or expanding them here would count each one 20 times.
    """
    meta = sample.get("json")
    extra = meta.get("extra") if isinstance(meta, dict) else None
    sentences = extra.get("sentences") if isinstance(extra, dict) else None
    if not isinstance(sentences, list) or sample.get("txt", "") not in sentences:
        return []
    if "sentence_index" in extra:
        return []
    return [s for s in sentences if isinstance(s, str) and s.strip()]


def drawn_text(sample: dict[str, Any], rng: random.Random) -> str:
    """The text a training step sees: one of the clip's ``sentence_choices``, drawn anew each
    epoch, as the official CLIP-ViP loader draws one of MSR-VTT's 20 sentences per video;
    ``txt`` when it has none."""
    choices = sentence_choices(sample)
    return rng.choice(choices) if choices else sample.get("txt", "")


class ClipTransform:
    """A decoded shard sample -> video, middle frame, subtitle and caption (or None on failure).

    Evaluation keeps the last video's pixels: a clip's several texts are adjacent samples of
    one shard (one worker), and evaluation sampling has no randomness, so they are decoded once.
    """

    def __init__(self, cfg: DataConfig, train: bool, seed: int = 0, epoch: int = 0) -> None:
        self.cfg, self.train, self.seed, self.epoch = cfg, train, seed, epoch
        self._last: tuple[str, torch.Tensor, torch.Tensor] | None = None

    def _pixels(self, sample: dict[str, Any], video_id: str) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.train and self._last is not None and self._last[0] == video_id:
            return self._last[1], self._last[2]
        rng = random.Random(f"{self.seed}:{self.epoch}:{sample['key']}") if self.train else None
        has_jpg = "jpg" in sample
        size, resize = self.cfg.image_size, self.cfg.resize
        video, middle = decode_frames(
            sample["mp4"], size, self.cfg.num_frames, rng, not has_jpg, resize=resize
        )
        # the shard's middle frame; shards made elsewhere (video2dataset) may lack it
        frame = image_pixels(sample["jpg"], size, resize) if has_jpg else middle
        pixels = to_chw(video), to_chw(frame[None])  # (T, 3, S, S), (1, 3, S, S) uint8
        if not self.train:
            self._last = (video_id, *pixels)
        return pixels

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any] | None:
        key = sample["key"]
        video_id = video_identity(sample)
        try:
            video, frame = self._pixels(sample, video_id)
        except (DecodeError, KeyError, OSError) as exc:
            return {"key": key, "error": f"{type(exc).__name__}: {exc}"}
        text = sample.get("txt", "")
        if self.train and self.cfg.draw_sentence:
            text = drawn_text(sample, random.Random(f"{self.seed}:{self.epoch}:{key}:text"))
        out = {
            "key": key,
            "video_id": video_id,
            "video": video,
            "frame": frame,
            "subtitle": text,
            "caption": sample.get("caption.txt"),
        }
        if not self.train and self.cfg.eval_all_sentences and sentence_choices(sample):
            out["texts"] = sentence_choices(sample)
        return out


class Collate:
    """Stack pixels and tokenize texts (CLIP tokenizer, max length 70) for a batch."""

    def __init__(self, tokenizer: Any, max_text_len: int) -> None:
        self.tokenizer, self.max_text_len = tokenizer, max_text_len

    def tokens(self, texts: list[str]) -> dict[str, torch.Tensor]:
        out = self.tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            max_length=self.max_text_len,
            return_tensors="pt",
        )
        return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        good = [s for s in samples if "error" not in s]
        batch: dict[str, Any] = {
            "keys": [s["key"] for s in good],
            "video_ids": [s.get("video_id", s["key"]) for s in good],  # no id: its own video
            "errors": [(s["key"], s["error"]) for s in samples if "error" in s],
        }
        if not good:
            return batch
        batch["video"] = torch.stack([s["video"] for s in good])  # (B, T, 3, S, S)
        batch["frame"] = torch.stack([s["frame"] for s in good])  # (B, 1, 3, S, S)
        batch["subtitle"] = self.tokens([s["subtitle"] for s in good])
        captions = [s["caption"] for s in good]
        batch["caption"] = None if any(c is None for c in captions) else self.tokens(captions)
        if any("texts" in s for s in good):
            self._expand_texts(batch, good)
        return batch

    def _expand_texts(self, batch: dict[str, Any], good: list[dict[str, Any]]) -> None:
        """Evaluation over every sentence: one text per sentence, each pointing at its sample's
        video row (``text_rows``); a sample with several gets keys ``KEY#000``, ``KEY#001``, ...
        (``#`` never occurs in a prepared key, so these cannot collide with another sample).

        ``sentence_ids``: a listed sentence's place in its video's list (``None`` for a sample's
        own ``txt``), so that ``gather_pairs`` scores each place once however many samples of
        the video listed it (per-sentence shards written before ``sentence_index`` list all 20
        in each sample), while a sentence an annotator wrote twice for one video, at two
        places, is scored twice, as every annotation is in the full-annotation protocol."""
        keys, video_ids, rows, texts, places = [], [], [], [], []
        for row, s in enumerate(good):
            listed = s.get("texts")
            choices = listed or [s["subtitle"]]
            for j, text in enumerate(choices):
                keys.append(s["key"] if len(choices) == 1 else f"{s['key']}#{j:03d}")
                video_ids.append(batch["video_ids"][row])
                rows.append(row)
                texts.append(text)
                places.append(str(j) if listed else None)
        batch.update(
            keys=keys,
            video_ids=video_ids,
            text_rows=rows,
            subtitle=self.tokens(texts),
            sentence_ids=places,
        )


class CheckedShards(ClipShardDataset):
    """The shard reader, with a truncated or corrupt tar reported by its name: webdataset's own
    error shows a file object's repr, inside a loader worker's traceback. Such a shard stops the
    run rather than being skipped: evaluation on part of a split, or training on less data than
    planned, would give numbers that look fine and are not."""

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from super().__iter__()
        except ShortShardError as exc:  # a tar cut between members: shorter than its index says
            raise TrainerError(str(exc)) from exc
        except tarfile.TarError as exc:
            url = exc.args[-1] if len(exc.args) > 1 else "a shard"  # webdataset appends the URL
            reason = str(exc.args[0]).split(" @ ")[0] if exc.args else type(exc).__name__
            raise TrainerError(
                f"cannot read {url}: {reason} (a truncated or corrupt tar); write it again with "
                "`clipvip prepare` or drop it from the run's index.json"
            ) from exc


def make_loader(
    source: str | Sequence[str],
    cfg: DataConfig,
    tokenizer: Any,
    train: bool,
    seed: int = 0,
    epoch: int = 0,
    split_by_node: bool = True,
    num_workers: int | None = None,
) -> torch.utils.data.DataLoader:
    """A DataLoader over the shards: this rank's share, shuffled per epoch when training."""
    dataset = CheckedShards(
        source,
        transform=ClipTransform(cfg, train=train, seed=seed, epoch=epoch),
        shuffle=cfg.shuffle_buffer if train else 0,
        split_by_node=split_by_node,
        seed=seed + epoch,
    )
    workers = cfg.num_workers if num_workers is None else num_workers
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        num_workers=workers,
        collate_fn=Collate(tokenizer, cfg.max_text_len),
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
        prefetch_factor=4 if workers else None,
    )


def _joined(a: Any, b: Any) -> Any:
    """Two batches' values of one field, rows of ``a`` then rows of ``b``."""
    if a is None or b is None:
        return None  # e.g. ``caption``: one side has a sample without a caption
    if isinstance(a, torch.Tensor):
        return torch.cat([a, b])
    if isinstance(a, dict):
        return {k: _joined(a[k], b[k]) for k in a}
    return list(a) + list(b)


def _rows(value: Any, start: int, stop: int | None) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: _rows(v, start, stop) for k, v in value.items()}
    return value[start:stop]


def concat_batches(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """One batch of ``a``'s rows then ``b``'s (both with samples): lists and tensors joined,
    ``errors`` of both kept, ``caption`` None if either side has none."""
    if "text_rows" in a or "text_rows" in b:
        raise ValueError("batches with text_rows (evaluation over every sentence) are not merged")
    return {k: _joined(a[k], b[k]) for k in a}


def split_batch(batch: dict[str, Any], n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the first ``n`` rows, the rest); the batch's ``errors`` go with the first part."""
    head = {k: (v if k == "errors" else _rows(v, 0, n)) for k, v in batch.items()}
    rest = {k: ([] if k == "errors" else _rows(v, n, None)) for k, v in batch.items()}
    return head, rest


def merge_partial_batches(
    batches: Iterable[dict[str, Any]], batch_size: int
) -> Iterator[dict[str, Any]]:
    """Full batches from a DataLoader whose workers each end their share of the shards with a
    partial batch (collation stays in the workers): partial batches are joined, and split where
    they exceed ``batch_size``, so a pass gives floor(samples / batch_size) full batches and at
    most one partial one, last. Full batches and batches of only skipped samples pass as they
    are. Training only: evaluation batches with ``text_rows`` are not merged."""
    pending: dict[str, Any] | None = None
    for batch in batches:
        n = len(batch["keys"])
        if n == 0 or n >= batch_size:
            yield batch
            continue
        pending = batch if pending is None else concat_batches(pending, batch)
        if len(pending["keys"]) >= batch_size:
            head, pending = split_batch(pending, batch_size)
            yield head
            if not pending["keys"]:
                pending = None
    if pending is not None:
        yield pending
