"""Frame sampling rules, decoding to CLIP pixels, and the CLI's help."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from trainer.data import (
    Collate,
    DataConfig,
    make_loader,
    normalize_pixels,
    sample_frame_indices,
)


def test_eval_sampling_spans_the_whole_clip_evenly() -> None:
    assert sample_frame_indices(23, 12, None) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22]
    assert sample_frame_indices(3, 5, None) == [0, 0, 1, 1, 2]  # repeats when N < T
    # floored as the official np.linspace(...).astype(int), not rounded
    assert sample_frame_indices(10, 4, None) == [0, 3, 6, 9]
    assert sample_frame_indices(8, 3, None) == [0, 3, 7]


@pytest.mark.parametrize(("n", "frames", "interval"), [(110, 12, 10), (70, 8, 10), (45, 16, 3)])
def test_train_sampling_jitters_start_and_end_within_one_sampling_interval(
    n: int, frames: int, interval: int
) -> None:
    """The official ``sample_jitter``: start in [0, i], end in [N-1-i, N-1], i = N // (T-1),
    whatever the frame count T (not a window sized for T = 12 only)."""
    starts, ends = set(), set()
    for seed in range(300):
        idx = sample_frame_indices(n, frames, random.Random(seed))
        assert len(idx) == frames and idx == sorted(idx)
        starts.add(idx[0])
        ends.add(idx[-1])
    assert min(starts) == 0 and max(starts) == interval
    assert min(ends) == n - 1 - interval and max(ends) == n - 1


def test_train_sampling_of_a_one_or_two_frame_clip_stays_inside_it() -> None:
    for n in (1, 2, 3):
        for frames in (1, 2, 12):
            for seed in range(20):
                idx = sample_frame_indices(n, frames, random.Random(seed))
                assert len(idx) == frames and all(0 <= i < n for i in idx)


def test_loader_yields_clip_normalised_pixels_and_tokens(
    train_shards: Path, tiny_weights: Path
) -> None:
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(tiny_weights), local_files_only=True)
    cfg = DataConfig(num_frames=4, image_size=32, max_text_len=70, batch_size=8, num_workers=0)
    batches = list(make_loader(str(train_shards), cfg, tok, train=False, split_by_node=False))
    assert len(batches) == 1
    b = batches[0]
    assert b["video"].shape == (8, 4, 3, 32, 32) and b["frame"].shape == (8, 1, 3, 32, 32)
    assert b["subtitle"]["input_ids"].shape == (8, 70) and b["caption"] is not None
    red = b["keys"].index("red")
    # a red clip: R channel high, G and B low after CLIP normalisation
    assert b["video"].dtype == torch.uint8  # normalised on the device, not in the workers
    means = normalize_pixels(b["video"][red]).mean(dim=(0, 2, 3))
    assert means[0] > 1.0 and means[1] < -1.0 and means[2] < -1.0
    video0, frame = b["video"][red, 0].float(), b["frame"][red, 0].float()
    assert (video0 - frame).abs().mean() < 8  # the middle frame looks like the clip


def test_collate_drops_failed_samples_and_keeps_their_reason() -> None:
    class Tok:
        def __call__(self, texts, **kw):
            return {
                "input_ids": torch.zeros(len(texts), 4, dtype=torch.long),
                "attention_mask": torch.ones(len(texts), 4, dtype=torch.long),
            }

    good = {
        "key": "a",
        "video": torch.zeros(2, 3, 8, 8),
        "frame": torch.zeros(1, 3, 8, 8),
        "subtitle": "x",
        "caption": None,
    }
    batch = Collate(Tok(), 4)([good, {"key": "b", "error": "DecodeError: no frames"}])
    assert batch["keys"] == ["a"] and batch["errors"] == [("b", "DecodeError: no frames")]
    assert batch["caption"] is None  # a batch without captions: only loss 'vs' can use it


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_help_explains_every_option_with_examples(
    command: str, capsys: pytest.CaptureFixture
) -> None:
    from clipvip.cli import main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and f"clipvip {command} --" in text


SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
V2D_TAR = SHARED / "shards" / "video2dataset_return_all_test.tar"


@pytest.mark.shared_data
@pytest.mark.skipif(not V2D_TAR.is_file(), reason="../shared/data is not present")
def test_video2dataset_shard_is_read_with_frames_from_the_clip(tiny_weights: Path) -> None:
    """A real foreign shard: no .jpg (the middle frame is taken from the clip), and three 'mp4'
    members that are JPEG images: PyAV reads them as 1-frame videos, so they become stills."""
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(tiny_weights), local_files_only=True)
    cfg = DataConfig(num_frames=3, image_size=32, batch_size=6, num_workers=0)
    loader = make_loader([str(V2D_TAR)], cfg, tok, train=True, split_by_node=False)
    (b,) = list(loader)
    assert len(b["keys"]) == 6 and b["errors"] == []
    assert b["video"].shape == (6, 3, 3, 32, 32) and b["frame"].shape == (6, 1, 3, 32, 32)
    still = [bool((v == v[0]).all()) for v in b["video"]]
    assert sum(still) == 3  # the three JPEGs; the three YouTube clips move
    assert b["caption"] is None  # no caption.txt: only loss 'vs' applies


def test_decoded_frames_are_exactly_each_frame_scaled_on_its_own(tmp_path: Path) -> None:
    """The clip-wide scaler that ``decode_frames`` keeps (for speed) gives the pixels a scaler
    built for each frame gives, and any decoder thread count gives the same frames."""
    import io
    import subprocess

    import av
    import numpy as np

    from trainer.data import _center_crop, _resized_size, decode_frames

    clip = tmp_path / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=142x80:rate=3", "-t", "4"]
        + ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(clip)],
        check=True,
    )
    mp4 = clip.read_bytes()
    for resize in ("squash", "crop"):
        frames, middle = decode_frames(mp4, 48, 5, None, with_middle=True, resize=resize)
        with av.open(io.BytesIO(mp4)) as container:
            alone = []
            for frame in container.decode(video=0):
                w, h = _resized_size(frame.width, frame.height, 48, resize)
                rgb = frame.reformat(width=w, height=h, format="rgb24", interpolation="BICUBIC")
                alone.append(_center_crop(rgb.to_ndarray(), 48))
        indices = sample_frame_indices(len(alone), 5, None)
        assert np.array_equal(frames, np.stack([alone[i] for i in indices]))
        assert np.array_equal(middle, alone[len(alone) // 2])
        one_thread, _ = decode_frames(mp4, 48, 5, None, threads=1, resize=resize)
        assert np.array_equal(one_thread, frames)


def test_clip_whose_edit_list_hides_frames_is_sampled_over_the_shown_frames(
    tmp_path: Path,
) -> None:
    """A stream-copy cut at a non-keyframe keeps packets its MP4 edit list hides (its header
    counts them); sampling and the middle frame use only the frames a player shows."""
    import io
    import subprocess

    import av
    import numpy as np

    from trainer.data import decode_frames

    source, cut = tmp_path / "source.mp4", tmp_path / "cut.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-t", "4"]
        + ["-c:v", "libx264", "-bf", "0", "-g", "20", "-pix_fmt", "yuv420p", str(source)],
        check=True,
    )
    subprocess.run(
        ["ffmpeg", "-v", "error", "-ss", "1.3", "-i", str(source), "-c", "copy", str(cut)],
        check=True,
    )
    mp4 = cut.read_bytes()
    with av.open(io.BytesIO(mp4)) as container:
        header = container.streams.video[0].frames
        shown = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert header > len(shown), "the fixture must hide frames behind its edit list"
    frames, middle = decode_frames(mp4, 48, 4, None, with_middle=True)
    indices = sample_frame_indices(len(shown), 4, None)
    whole = decode_frames(mp4, 48, len(shown), None)[0]  # every shown frame, in order
    assert np.array_equal(frames, whole[indices])
    assert np.array_equal(middle, whole[len(shown) // 2])
    assert not np.array_equal(frames[-1], frames[-2]), "the last sample is a real, distinct frame"


def test_clip_stored_sideways_is_decoded_upright(tmp_path: Path) -> None:
    """A foreign clip with a display matrix (a phone's portrait video) gives the frames a player
    shows: the same as the clip re-encoded upright (losslessly) by ffmpeg."""
    import subprocess

    import av
    import numpy as np

    from trainer.data import decode_frames

    source, phone, upright = (tmp_path / n for n in ("source.mp4", "phone.mp4", "upright.mp4"))
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10", "-t", "2"]
        + ["-c:v", "libx264", "-pix_fmt", "yuv444p", "-qp", "0", str(source)],
        check=True,
    )
    with av.open(str(source)) as inp, av.open(str(phone), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        stream.set_display_rotation(90)
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    subprocess.run(  # ffmpeg turns the picture as the matrix says; qp 0 keeps every pixel
        ["ffmpeg", "-v", "error", "-i", str(phone), "-c:v", "libx264", "-qp", "0"]
        + ["-pix_fmt", "yuv444p", str(upright)],
        check=True,
    )
    turned, _ = decode_frames(phone.read_bytes(), 48, 4, None)
    reference, _ = decode_frames(upright.read_bytes(), 48, 4, None)
    sideways, _ = decode_frames(source.read_bytes(), 48, 4, None)
    # (swscale's vertical and horizontal passes round differently: a level or two apart)
    diff = np.abs(turned.astype(int) - reference)
    assert diff.max() <= 2 and diff.mean() < 0.5
    assert np.abs(sideways.astype(int) - reference).mean() > 20


def test_anamorphic_clip_is_resized_to_the_picture_a_player_shows(tmp_path: Path) -> None:
    """A foreign clip whose stored pixels are twice as wide as tall (sample aspect ratio 2:1)
    gives the frames of its square-pixel twin, not a squeezed picture: the centre crop of the
    stretched picture misses the white band at the left edge."""
    import subprocess

    import numpy as np

    from trainer.data import decode_frames

    band = "color=black:size=120x120:rate=10,drawbox=x=0:y=0:w=20:h=120:color=white:t=fill"
    anamorphic, twin = tmp_path / "anamorphic.mp4", tmp_path / "twin.mp4"
    encode = ["-c:v", "libx264", "-pix_fmt", "yuv444p", "-qp", "0"]
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"{band},setsar=2", "-t", "1"]
        + [*encode, str(anamorphic)],
        check=True,
    )
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(anamorphic), "-vf", "scale=240:120,setsar=1"]
        + [*encode, str(twin)],
        check=True,
    )
    stretched, _ = decode_frames(anamorphic.read_bytes(), 64, 2, None, resize="crop")
    reference, _ = decode_frames(twin.read_bytes(), 64, 2, None, resize="crop")
    assert stretched.shape == reference.shape == (2, 64, 64, 3)
    assert np.abs(stretched.astype(int) - reference).mean() < 2
    assert stretched[:, :, :8].max() < 40, "the band (left sixth of the picture) is cropped off"


def test_default_squash_keeps_the_whole_wide_frame_as_the_official_loader(tmp_path: Path) -> None:
    """CLIP-ViP's loaders resize a frame to S x S (torchvision ``Resize((S, S))``), so the edges
    of a 16:9 clip stay in the picture; ``resize: crop`` (CLIP's preprocessing) cuts them off.
    The shard's middle-frame JPEG goes through the same resize as the clip's frames."""
    import io
    import subprocess

    from PIL import Image

    from trainer.data import decode_frames, image_pixels

    band = "color=black:size=160x90:rate=10,drawbox=x=0:y=0:w=16:h=90:color=white:t=fill"
    clip = tmp_path / "wide.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", band, "-t", "1"]
        + ["-c:v", "libx264", "-pix_fmt", "yuv444p", "-qp", "0", str(clip)],
        check=True,
    )
    squashed, middle = decode_frames(clip.read_bytes(), 40, 2, None, with_middle=True)
    cropped, _ = decode_frames(clip.read_bytes(), 40, 2, None, resize="crop")
    assert squashed.shape == cropped.shape == (2, 40, 40, 3)
    assert squashed[:, :, :3].min() > 215, "the band (left tenth) is in the squashed frame"
    assert cropped[:, :, :3].max() < 40, "and cropped off by the centre square"
    jpg = io.BytesIO()
    Image.new("RGB", (160, 90)).save(jpg, "PNG")  # lossless stand-in for the shard's frame
    assert image_pixels(jpg.getvalue(), 40).shape == (40, 40, 3)
    assert image_pixels(jpg.getvalue(), 40, "crop").shape == (40, 40, 3)


def test_unknown_resize_mode_is_refused_by_the_config() -> None:
    from trainer.config import load_config

    with pytest.raises(ValueError, match="data.resize must be one of squash, crop"):
        load_config("tiny", {"data.resize": "letterbox"})


SENTENCES = ["a man sings on a stage", "music video", "someone is singing", "a concert"]


def test_training_draws_one_of_a_videos_sentences_each_epoch(tmp_path: Path) -> None:
    """MSR-VTT written one sample per video (its first sentence in txt, all 20 in the JSON):
    training sees another of them each epoch, as the official loader does, seeded so a rerun
    sees the same; evaluation always the txt; a paragraph joined from the sentences (DiDeMo,
    ActivityNet) stays whole."""
    import json

    from pipelines.adapters import build_manifest
    from pipelines.config import PrepareConfig
    from pipelines.manifest import write_manifest
    from pipelines.prepare import EngineOptions, prepare
    from shards import iter_samples
    from trainer.data import ClipTransform

    from .conftest import _make_clip

    videos = tmp_path / "videos"
    videos.mkdir()
    _make_clip(videos / "video1.mp4", "testsrc")
    sentences = [{"video_id": "video1", "caption": c, "sen_id": i} for i, c in enumerate(SENTENCES)]
    annotations = tmp_path / "data.json"
    annotations.write_text(json.dumps({"videos": [{"video_id": "video1"}], "sentences": sentences}))
    rows, _ = build_manifest("msrvtt", [str(annotations)], str(videos))
    paragraph = " ".join(SENTENCES)
    rows.append({**rows[0], "key": "paragraph", "text": paragraph, "sentences": SENTENCES})
    write_manifest(rows, str(tmp_path / "manifest.jsonl"))
    cfg = PrepareConfig(out=str(tmp_path / "run"), name="t", captioner="none")
    prepare(str(tmp_path / "manifest.jsonl"), cfg, EngineOptions(runner="local"), progress=False)
    samples = {s["key"]: s for s in iter_samples(str(tmp_path / "run"))}
    video = samples["video1"]
    assert video["txt"] == SENTENCES[0]

    data = DataConfig(num_frames=2, image_size=32)

    def seen(sample, epoch: int, train: bool = True, cfg: DataConfig = data) -> str:
        return ClipTransform(cfg, train=train, seed=0, epoch=epoch)(sample)["subtitle"]

    drawn = [seen(video, epoch) for epoch in range(12)]
    assert set(drawn) <= set(SENTENCES) and len(set(drawn)) > 1
    assert drawn == [seen(video, epoch) for epoch in range(12)], "seeded by (seed, epoch, key)"
    assert {seen(video, epoch, train=False) for epoch in range(4)} == {SENTENCES[0]}
    assert {seen(samples["paragraph"], epoch) for epoch in range(6)} == {paragraph}
    fixed = DataConfig(num_frames=2, image_size=32, draw_sentence=False)
    assert {seen(video, epoch, cfg=fixed) for epoch in range(4)} == {SENTENCES[0]}
