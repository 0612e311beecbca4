"""Small real videos made with ffmpeg's test sources (fast to make, several codecs)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def make_video(
    path: Path,
    source: str = "testsrc2",
    size: str = "160x120",
    rate: int = 25,
    seconds: float = 4.0,
    codec: tuple[str, ...] = ("-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p"),
    audio: bool = False,
) -> Path:
    args = ["-f", "lavfi", "-i", f"{source}=size={size}:rate={rate}"]
    if audio:
        args += [
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=300:sample_rate=22050",
            "-c:a",
            "aac",
            "-shortest",
        ]
    ffmpeg(*args, "-t", str(seconds), *codec, str(path))
    return path


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> dict[str, Path]:
    """Named sample videos, each a few KB to a few hundred KB."""
    d = tmp_path_factory.mktemp("videos")
    out = {
        "h264": make_video(d / "bars.mp4", "smptebars", audio=True),
        "h264_long": make_video(d / "testsrc2.mp4", "testsrc2", seconds=6.0),
        "mpeg4_avi": make_video(d / "rgb.avi", "rgbtestsrc", codec=("-c:v", "mpeg4")),
        "vp9_webm": make_video(
            d / "mandel.webm",
            "mandelbrot",
            size="128x96",
            rate=10,
            seconds=3.0,
            codec=("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"),
        ),
    }
    # WebM written to a pipe: the container states no duration (a live stream's layout).
    nodur = d / "no_duration.webm"
    piped = subprocess.run(  # through a real pipe, so ffmpeg cannot seek back to write a duration
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=128x96:rate=12",
            "-t",
            "2.5",
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-live",
            "1",
            "-f",
            "webm",
            "pipe:1",
        ],
        capture_output=True,
        check=True,
    )
    nodur.write_bytes(piped.stdout)
    out["no_duration"] = nodur
    audio_only = d / "audio_only.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=500", "-t", "2", "-c:a", "aac", str(audio_only))
    out["audio_only"] = audio_only
    empty = d / "empty.mp4"
    empty.write_bytes(b"")
    out["empty"] = empty
    corrupt = d / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x20ftypisom" + bytes(range(256)) * 40)
    out["corrupt"] = corrupt
    truncated = d / "truncated.mp4"
    data = out["h264_long"].read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    out["truncated"] = truncated
    jpeg_as_mp4 = d / "image.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x48",
        "-frames:v",
        "1",
        "-f",
        "image2",
        "-c:v",
        "mjpeg",
        str(jpeg_as_mp4),
    )
    out["jpeg_as_mp4"] = jpeg_as_mp4
    return out


def prepared_run(videos: dict[str, Path], folder: Path, good: int) -> Path:
    """A real finished local run of ``good`` rows and one that fails at probe, one task a row;
    its --out folder (status tests read it, or damage it)."""
    import json

    from pipelines.config import PrepareConfig
    from pipelines.prepare import EngineOptions, prepare

    rows = [{"key": f"k{i}", "video": str(videos["h264"]), "text": f"row {i}"} for i in range(good)]
    rows.append({"key": "bad", "video": str(videos["corrupt"]), "text": "broken"})
    manifest = folder / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = folder / "out"
    cfg = PrepareConfig(out=str(out), shard_size=1, frame_short_side=64, captioner="none")
    prepare(str(manifest), cfg, EngineOptions(runner="local"), progress=False)
    return out
