"""Video and image output: colour-mapping depth and streaming frames to mp4 with imageio's ffmpeg plugin."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

# A perceptually ordered ramp (dark blue -> teal -> yellow), linearly interpolated.
_RAMP = torch.tensor([
    [0.05, 0.03, 0.25], [0.20, 0.10, 0.50], [0.15, 0.35, 0.65], [0.10, 0.55, 0.60],
    [0.20, 0.70, 0.45], [0.55, 0.80, 0.25], [0.95, 0.90, 0.15],
])


def colormap(values: torch.Tensor) -> torch.Tensor:
    """Map (...,) values in [0, 1] to (..., 3) RGB along the ramp."""
    v = values.clamp(0, 1) * (len(_RAMP) - 1)
    lo = v.floor().long().clamp(max=len(_RAMP) - 2)
    frac = (v - lo)[..., None]
    return _RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac


def depth_to_rgb(depth: torch.Tensor, near: float, far: float, opacity: torch.Tensor | None = None) -> torch.Tensor:
    """Colour-map depth (H, W) between near and far (near = bright); empty pixels (opacity < 0.5) black."""
    v = 1.0 - (depth - near) / max(far - near, 1e-8)
    rgb = colormap(v)
    if opacity is not None:
        rgb = rgb * (opacity[..., None] >= 0.5)
    return rgb


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(H, W, 3) float in [0, 1] -> uint8 array."""
    return (img.detach().float().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


class VideoWriter:
    """Streams frames to an H.264 mp4 (even dimensions are padded); use as a context manager."""

    def __init__(self, path: Path, fps: float):
        import imageio.v2 as iio2

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = iio2.get_writer(
            str(self.path), format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=8,
            macro_block_size=1, ffmpeg_log_level="error", pixelformat="yuv420p",
        )

    def write(self, frame: torch.Tensor | np.ndarray) -> None:
        arr = to_uint8(frame) if isinstance(frame, torch.Tensor) else frame
        h, w = arr.shape[:2]
        if h % 2 or w % 2:  # yuv420p needs even sizes
            arr = np.pad(arr, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        self._writer.append_data(arr)

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
