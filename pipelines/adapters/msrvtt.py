"""MSR-VTT: the 1k-A test CSV (``key, vid_key, video_id, sentence``) and the annotation JSON.

The CSV picks the 1,000 test videos and one sentence each; the annotation JSON
(``{videos: [...], sentences: [{video_id, caption, sen_id}]}``) holds all 20 sentences of every
video. Given both, the CSV's videos get their 20 sentences from the JSON. One row per video: its
``text`` is the first sentence (the CSV's, when a CSV is given) and ``sentences`` all of them;
``per_sentence`` gives one row per sentence instead. MSR-VTT videos are already clips, so the
span is the whole video.

The JSON alone lists all 10k videos, train, validate and test (``videos[].split``): training on
it would include the 1k-A test videos. ``split`` keeps one split's videos (the others dropped,
counted); without it every video is kept, and the report's notes count the rows of each split.
"""

from __future__ import annotations

from collections.abc import Iterator

from pipelines.adapters.base import (
    AdapterOptions,
    AdapterReport,
    Row,
    VideoFolder,
    clean_sentence,
    iter_csv,
    load_json,
    make_row,
    require,
)
from pipelines.manifest import ManifestError

CSV_COLUMNS = ("video_id", "sentence")


def _read_csv(uri: str) -> list[tuple[str, str]]:
    return [
        (fields["video_id"].strip(), clean_sentence(fields["sentence"]))
        for _, fields in iter_csv(uri, CSV_COLUMNS)
    ]


def _read_json(uri: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Sentences by video (in ``sen_id`` order) and each listed video's split."""
    data = require(load_json(uri), dict, uri)
    sentences = require(data.get("sentences"), list, f"{uri}: field 'sentences'")
    by_video: dict[str, list[tuple[int, str]]] = {}
    for i, item in enumerate(sentences):
        where = f"{uri}: sentences[{i}]"
        require(item, dict, where)
        vid = require(item.get("video_id"), str, f"{where}.video_id")
        caption = require(item.get("caption"), str, f"{where}.caption")
        sen_id = item.get("sen_id", i)
        by_video.setdefault(vid, []).append(
            (int(sen_id) if isinstance(sen_id, int) else i, caption)
        )
    listed = data.get("videos")
    splits: dict[str, str] = {}
    for j, video in enumerate(
        [] if listed is None else require(listed, list, f"{uri}: field 'videos'")
    ):
        if isinstance(video, dict) and isinstance(video.get("video_id"), str):
            by_video.setdefault(video["video_id"], [])
            if video.get("split") is not None:
                split = require(video["split"], str, f"{uri}: videos[{j}].split")
                splits[video["video_id"]] = split
    sentences = {v: [clean_sentence(c) for _, c in sorted(s)] for v, s in by_video.items()}
    return sentences, splits


def _check_split(split: str, splits: dict[str, str]) -> None:
    """Stop when ``split`` can select nothing: an empty manifest, or a typo keeping no video,
    should name what the JSON holds rather than look like missing videos."""
    if not splits:
        raise ManifestError(
            f"msrvtt: --split {split} needs the annotation JSON (its videos[].split)"
        )
    if split not in splits.values():
        names = ", ".join(sorted(set(splits.values())))
        raise ManifestError(f"msrvtt: --split {split!r} matches no video (the JSON has: {names})")


def read(
    sources: list[str], videos: VideoFolder | None, opts: AdapterOptions, report: AdapterReport
) -> Iterator[Row]:
    if videos is None:
        raise ManifestError("msrvtt: --videos DIR is required (the folder of videoNNNN.mp4 files)")
    picked: list[tuple[str, str]] = []
    annotations: dict[str, list[str]] = {}
    splits: dict[str, str] = {}
    for uri in sources:
        if uri.lower().endswith(".csv"):
            picked.extend(_read_csv(uri))
        elif uri.lower().endswith(".json"):
            sentences, in_split = _read_json(uri)
            annotations.update(sentences)
            splits.update(in_split)
        else:
            raise ManifestError(f"{uri}: msrvtt reads the 1k-A .csv and the annotation .json")
    if not picked:  # the JSON alone: every video it lists, first sentence as text
        picked = [(vid, sents[0] if sents else "") for vid, sents in sorted(annotations.items())]
    if opts.split is not None:
        _check_split(opts.split, splits)
    dataset = opts.dataset or "msrvtt"
    for vid, first in picked:
        sentences = annotations.get(vid) or [first]
        if first and first in sentences:  # the CSV's sentence leads
            sentences = [first] + [s for s in sentences if s != first]
        elif first:
            sentences = [first, *sentences]
        if not any(sentences):  # listed in the JSON without a caption: no text to train on
            report.read += 1
            report.drop("no sentences")
            continue
        rows = len(sentences) if opts.per_sentence else 1
        report.read += rows
        if opts.split is not None and splits.get(vid) != opts.split:
            for _ in range(rows):
                report.drop(f"not in --split {opts.split}")
            continue
        path = videos.find(vid, f"{vid}.mp4")
        if path is None:
            for _ in sentences if opts.per_sentence else [vid]:
                report.drop("video not found", vid)
            continue
        if vid in splits:  # which split the kept rows come from, for the user to check
            for _ in range(rows):
                report.note(f"rows of split {splits[vid]}")
        if opts.per_sentence:
            for j, sentence in enumerate(sentences):
                yield report.keep(
                    make_row(
                        path,
                        None,
                        None,
                        sentence,
                        f"{vid}-s{j:02d}",
                        dataset,
                        source_id=vid,
                        sentences=sentences,
                        sentence_index=j,  # this row stands for one of them (the trainer)
                    )
                )
        else:
            yield report.keep(
                make_row(
                    path,
                    None,
                    None,
                    sentences[0] if sentences else "",
                    vid,
                    dataset,
                    source_id=vid,
                    sentences=sentences,
                )
            )
