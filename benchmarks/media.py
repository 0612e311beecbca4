"""Benchmark inputs made on the spot with ffmpeg (cached under the benchmark's work folder)."""

from __future__ import annotations

from pathlib import Path

from pipelines.ff import Limits, run_tool


def make_h264(
    path: Path, seconds: float, size: str = "1280x720", rate: int = 30, gop: int = 250
) -> Path:
    """An H.264 MP4 of moving test patterns, keyframe every 250 frames as on YouTube.

    x264 ``ultrafast`` writes no B-frames (every frame is a reference); ``benchmarks.middle_frame
    --bframes`` makes a clip with them, as YouTube serves.
    """
    if not path.exists():
        run_tool(
            [
                "ffmpeg",
                "-nostdin",
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                f"testsrc2=size={size}:rate={rate}",
                "-t",
                str(seconds),
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                str(gop),
                "-pix_fmt",
                "yuv420p",
                str(path),
            ],
            Limits(timeout_s=900, memory_mb=0),
        )
    return path


def make_h264_bframes(path: Path, seconds: float) -> Path:
    """720p H.264 with B-frames (x264 ``veryfast``: 3 B-frames, keyframe every 250), as YouTube
    serves."""
    if not path.exists():
        run_tool(
            ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi"]
            + ["-i", "testsrc2=size=1280x720:rate=30", "-t", str(seconds)]
            + ["-c:v", "libx264", "-preset", "veryfast", "-g", "250", "-pix_fmt", "yuv420p"]
            + [str(path)],
            Limits(timeout_s=900, memory_mb=0),
        )
    return path
