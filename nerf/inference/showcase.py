"""Something to look at when a run ends: a contact sheet of the test views (render beside truth)
and a short turntable video, written into the run folder."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import imageio.v3 as iio
import torch
from tqdm import tqdm

from nerf.config import Config
from nerf.datasets import load_scene
from nerf.inference.video import path_cameras
from nerf.inference.views import render_view
from nerf.render.video import VideoWriter, to_uint8
from nerf.runs.run_folder import read_scene_json
from nerf.scene_rays import SceneInfo

TURNTABLE_FRAMES = 48
TURNTABLE_FPS = 24
MAX_SIDE = 256  # the turntable is rendered at most this many pixels on its longer side
SHEET_VIEWS = 12  # at most this many test views on the contact sheet
GAP = 2  # pixels between tiles


def contact_sheet(pairs: list[tuple[torch.Tensor, torch.Tensor]], columns: int = 4) -> torch.Tensor:
    """(H', W', 3) image of (render, truth) pairs (each (H, W, 3)), `columns` pairs a row, on white."""
    h, w = pairs[0][0].shape[:2]
    rows = math.ceil(len(pairs) / columns)
    tile_w = 2 * w + GAP
    sheet = torch.ones(rows * (h + GAP) + GAP, columns * (tile_w + 3 * GAP) + GAP, 3)
    for i, (render, truth) in enumerate(pairs):
        r, c = divmod(i, columns)
        y, x = GAP + r * (h + GAP), GAP + c * (tile_w + 3 * GAP)
        sheet[y:y + h, x:x + w] = render.clamp(0, 1)
        sheet[y:y + h, x + w + GAP:x + tile_w] = truth
    return sheet


def write_showcase(run_dir: Path, cfg: Config, model, show_progress: bool = True) -> tuple[Path, Path]:
    """Write RUN_DIR/renders/contact_sheet.png and RUN_DIR/videos/turntable.mp4; returns (video, sheet)."""
    scene_json = read_scene_json(run_dir)
    info = SceneInfo(**scene_json["info"])
    device = next(model.parameters()).device
    test = load_scene(dataclasses.replace(cfg.data, max_images=SHEET_VIEWS), "test")
    cams = test.cameras.to(device)
    pairs = [(render_view(model, cams, i, info, cfg.render.chunk)["rgb"].cpu(), test.images[i])
             for i in range(len(test))]
    sheet_path = run_dir / "renders" / "contact_sheet.png"
    sheet_path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(sheet_path, to_uint8(contact_sheet(pairs)))

    k = scene_json["intrinsics"]
    downscale = max(1, math.ceil(max(k["width"], k["height"]) / MAX_SIDE))
    frames = path_cameras(scene_json, "auto", TURNTABLE_FRAMES, downscale).to(device)
    video_path = run_dir / "videos" / "turntable.mp4"
    with VideoWriter(video_path, TURNTABLE_FPS) as writer:
        for i in tqdm(range(TURNTABLE_FRAMES), desc="turntable", unit="frame", disable=not show_progress):
            writer.write(render_view(model, frames, i, info, cfg.render.chunk)["rgb"])
    return video_path, sheet_path
