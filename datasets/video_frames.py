"""Frames of a video for structure from motion: N frames spread evenly over the video, the
sharpest of each neighbourhood.

The video is cut into N windows of equal length (in frames); from each window the frame with
the largest variance of the Laplacian (of its grey image, the sharpness measure nerfstudio
uses) is kept, so a blurred frame gives way to a sharper neighbour. Frames are read once,
in order, through imageio's ffmpeg plugin (imageio-ffmpeg ships the binary; H.264 and HEVC
decode, and a phone's rotation flag is applied); only the current window's best frame is held
in memory. The frame count comes from the container (duration x frame rate); should the video
hold more frames, the extra ones join the last window, and should it hold fewer, the last
windows stay empty and fewer frames come out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from nerf.datasets.errors import DatasetError

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm")
JPEG_QUALITY = 95


@dataclass
class PickedFrame:
    """A kept frame: its file name, index in the video (0-based) and sharpness."""

    name: str
    index: int
    sharpness: float


def is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the grey image (rgb: (H, W, 3) uint8)."""
    g = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def video_info(path: Path) -> dict:
    """fps, duration (s), size (w, h) and estimated frame count of a video; a one-line error
    when ffmpeg cannot open it."""
    import imageio.v3 as iio

    try:
        meta = iio.immeta(path, plugin="FFMPEG")
    except Exception as exc:  # noqa: BLE001 - imageio/ffmpeg raise many types
        raise DatasetError(f"{path}: cannot read as a video ({_first_line(exc)})") from None
    fps, duration = float(meta.get("fps") or 0.0), float(meta.get("duration") or 0.0)
    n = meta.get("nframes")
    if not isinstance(n, (int, float)) or not math.isfinite(n) or n <= 0:
        n = round(fps * duration)
    if n <= 0:
        raise DatasetError(f"{path}: the video reports no frames (frame rate {fps:g}, duration {duration:g} s)")
    return {"fps": fps, "duration": duration, "size": tuple(meta.get("size") or ()), "n_frames": int(n),
            "codec": meta.get("codec")}


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def pick_frames(path: Path, out_dir: Path, n: int, progress: Callable[[int], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> tuple[list[PickedFrame], dict]:
    """Write up to `n` frames of the video at `path` into `out_dir` as frame_00001.jpg, ...

    Returns the kept frames (in video order) and the video's info (`video_info` plus the number
    of frames decoded). `progress(k)` is called with the number of frames read so far;
    `should_stop()` is polled once per frame (a True stops the reading: KeyboardInterrupt).
    """
    import imageio.v3 as iio

    info = video_info(path)
    total = info["n_frames"]
    n = max(1, min(n, total))
    bounds = [round(k * total / n) for k in range(n + 1)]  # window k: frames [bounds[k], bounds[k + 1])
    out_dir.mkdir(parents=True, exist_ok=True)
    kept: list[PickedFrame] = []
    best: tuple[float, int, np.ndarray] | None = None
    window = 0

    def flush():
        nonlocal best
        if best is not None:
            name = f"frame_{len(kept) + 1:05d}.jpg"
            iio.imwrite(out_dir / name, best[2], quality=JPEG_QUALITY)
            kept.append(PickedFrame(name=name, index=best[1], sharpness=best[0]))
            best = None

    decoded = 0
    try:
        for idx, frame in enumerate(iio.imiter(path, plugin="FFMPEG")):
            if should_stop is not None and should_stop():
                raise KeyboardInterrupt
            while window < n - 1 and idx >= bounds[window + 1]:
                flush()
                window += 1
            frame = np.ascontiguousarray(frame[..., :3])
            s = sharpness(frame)
            if best is None or s > best[0]:
                best = (s, idx, frame)
            decoded = idx + 1
            if progress is not None:
                progress(decoded)
    except (KeyboardInterrupt, DatasetError):
        raise
    except Exception as exc:  # noqa: BLE001 - a decoding error mid-stream
        if should_stop is not None and should_stop():  # Ctrl-C reached ffmpeg too
            raise KeyboardInterrupt from None
        if decoded == 0:
            raise DatasetError(f"{path}: cannot read as a video ({_first_line(exc)})") from None
        raise DatasetError(f"{path}: decoding stopped at frame {decoded} ({_first_line(exc)})") from None
    flush()
    if decoded == 0:
        raise DatasetError(f"{path}: the video holds no frames")
    info["n_decoded"] = decoded
    return kept, info
