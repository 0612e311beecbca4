"""The built-in sample corpus: ffmpeg's own test sources, several scenes, codecs and sizes.

Made on the spot (nothing is downloaded or committed): H.264/MP4, MPEG-4/AVI, VP9/WebM and
H.264/MKV videos, some with audio, spans inside them, whole videos, and rows that must fail
(a corrupt file, a missing file, a span past the end), so a demo run shows the error report too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipelines.ff import Limits, ToolError, run_tool
from pipelines.manifest import write_manifest

# (file, lavfi source, size, fps, seconds, video codec args, audio?)
SOURCES: list[tuple[str, str, str, int, float, list[str], bool]] = [
    (
        "testsrc2_720p.mp4",
        "testsrc2",
        "1280x720",
        30,
        12.0,
        ["-c:v", "libx264", "-g", "60", "-pix_fmt", "yuv420p"],
        True,
    ),
    ("smptebars_480p.avi", "smptebars", "640x480", 25, 8.0, ["-c:v", "mpeg4", "-q:v", "5"], False),
    (
        "mandelbrot.webm",
        "mandelbrot",
        "480x360",
        24,
        6.0,
        ["-c:v", "libvpx-vp9", "-b:v", "300k", "-deadline", "realtime", "-cpu-used", "8"],
        False,
    ),
    (
        "life.mkv",
        "life=ratio=0.2:death_color=#C83232:life_color=#00ff00:mold=10",
        "320x240",
        15,
        5.0,
        ["-c:v", "libx264", "-pix_fmt", "yuv420p"],
        False,
    ),
    (
        "rgbtestsrc.mp4",
        "rgbtestsrc",
        "320x240",
        25,
        10.0,
        ["-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p"],
        True,
    ),
]

SUBTITLES = {
    "testsrc2_720p.mp4": [
        "so um today we're gonna look at this test pattern [Music]",
        "and you can see the colors moving right here yeah",
        "okay that's it for the whole video thanks for watching",
    ],
    "smptebars_480p.avi": ["these are the color bars they used on tv back in the day"],
    "mandelbrot.webm": ["zooming into the mandelbrot set which is pretty cool honestly"],
    "life.mkv": ["conway's game of life um running on a little grid"],
    "rgbtestsrc.mp4": ["red green and blue [Applause] that's the rgb test source"],
}


def _make_video(
    folder: Path,
    name: str,
    source: str,
    size: str,
    fps: int,
    seconds: float,
    codec: list[str],
    audio: bool,
) -> None:
    path = folder / name
    if path.is_file() and path.stat().st_size > 0:
        return
    # ffmpeg writes a partial name, renamed once whole: a run stopped mid-write (Ctrl-C, a full
    # disk) leaves no truncated video that the next run would take as made
    partial = folder / f".partial-{name}"  # same extension: ffmpeg picks the muxer by it
    fmt = source.split("=", 1)
    spec = f"{fmt[0]}=size={size}:rate={fps}" + (f":{fmt[1]}" if len(fmt) > 1 else "")
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", spec]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    cmd += ["-t", str(seconds), *codec]
    if audio:
        cmd += ["-c:a", "aac" if not name.endswith(".webm") else "libopus", "-shortest"]
    try:
        run_tool([*cmd, str(partial)], Limits(timeout_s=120))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def build_corpus(folder: str) -> str:
    """Write the sample videos and ``manifest.jsonl`` into ``folder``; return the manifest path.

    A folder that cannot be made or written, or an ffmpeg that cannot make the videos, stops
    the demo with one line (``UserError``) before any run starts.
    """
    from clipvip.cli import UserError

    root = Path(folder)
    try:
        return _build(root)
    except OSError as err:  # a file where a folder belongs, no permission, a full disk
        raise UserError(f"cannot write the sample corpus to {root}: {err}") from err
    except ToolError as err:
        raise UserError(f"cannot make the sample videos in {root}: {err}") from err


def _build(root: Path) -> str:
    root.mkdir(parents=True, exist_ok=True)
    for name, source, size, fps, seconds, codec, audio in SOURCES:
        _make_video(root, name, source, size, fps, seconds, codec, audio)
    broken = root / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(0) + bytes(range(256)) * 64)
    rows: list[dict[str, Any]] = []
    t2 = str(root / "testsrc2_720p.mp4")
    lines = SUBTITLES["testsrc2_720p.mp4"]
    rows += [
        {
            "key": "testsrc2_a",
            "video": t2,
            "start": 0.0,
            "end": 4.0,
            "text": lines[0],
            "dataset": "demo",
        },
        {
            "key": "testsrc2_b",
            "video": t2,
            "start": 4.5,
            "end": 9.25,
            "text": lines[1],
            "dataset": "demo",
        },
        {"key": "testsrc2_whole", "video": t2, "text": lines[2], "dataset": "demo"},
    ]
    for name in ("smptebars_480p.avi", "mandelbrot.webm", "life.mkv"):
        rows.append({"video": str(root / name), "text": SUBTITLES[name][0], "dataset": "demo"})
    rgb = str(root / "rgbtestsrc.mp4")
    rows += [
        {
            "key": "rgb_keyframe_span",
            "video": rgb,
            "start": 2.0,
            "end": 5.0,
            "text": SUBTITLES["rgbtestsrc.mp4"][0],
            "dataset": "demo",
        },
        {
            "key": "broken_file",
            "video": str(broken),
            "text": "this file is not a video",
            "dataset": "demo",
        },
        {
            "key": "missing_file",
            "video": str(root / "no_such_video.mp4"),
            "text": "nobody uploaded this one",
            "dataset": "demo",
        },
        {
            "key": "span_past_end",
            "video": rgb,
            "start": 30.0,
            "end": 35.0,
            "text": "too late",
            "dataset": "demo",
        },
    ]
    manifest = root / "manifest.jsonl"
    write_manifest(rows, str(manifest))
    return str(manifest)
