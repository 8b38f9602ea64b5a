"""Rendering stays within the chunk budget at any resolution."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from nerf.config import load_config
from nerf.datasets.scene import Cameras
from nerf.inference.views import render_view
from nerf.runs.run_folder import build_run_model
from nerf.scene_rays import SceneInfo

ROOT = Path(__file__).resolve().parent.parent

SMALL_MODEL = ["model.depth=2", "model.width=16", "model.view_width=8", "model.skip_layer=0",
               "model.n_coarse=16", "model.n_fine=16", "model.pos_freqs=2", "model.dir_freqs=1"]


def _camera(w, h):
    c2w = torch.eye(4)
    c2w[2, 3] = 4.0
    one = lambda v: torch.tensor([float(v)])  # noqa: E731
    return Cameras(c2w=c2w[None], fx=one(w), fy=one(w), cx=one(w / 2), cy=one(h / 2), width=w, height=h)


def test_render_never_exceeds_the_chunk():
    cfg = load_config("builtin_nerf", SMALL_MODEL)
    info = SceneInfo(2.0, 6.0, [[-1] * 3, [1] * 3], [1.0, 1.0, 1.0])
    model = build_run_model(cfg, info)
    sizes = []
    real = model.forward

    def spy(rays, mode, generator=None):
        sizes.append(len(rays))
        return real(rays, mode, generator)

    model.forward = spy
    out = render_view(model, _camera(97, 61), 0, info, chunk=1000)
    assert out["rgb"].shape == (61, 97, 3) and out["depth"].shape == (61, 97)
    assert max(sizes) == 1000 and sum(sizes) == 97 * 61


SCRIPT = """
import json, resource, sys, torch
sys.path.insert(0, {root!r})
from tests.test_memory import SMALL_MODEL, _camera
from nerf.config import load_config
from nerf.inference.views import render_view
from nerf.runs.run_folder import build_run_model
from nerf.scene_rays import SceneInfo
torch.manual_seed(0)
cfg = load_config("builtin_nerf", SMALL_MODEL + ["model.n_coarse=4", "model.n_fine=0"])
info = SceneInfo(2.0, 6.0, [[-1] * 3, [1] * 3], [1.0, 1.0, 1.0])
model = build_run_model(cfg, info)
render_view(model, _camera(64, 36), 0, info, chunk=4096)  # warm up allocators
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = render_view(model, _camera(1920, 1080), 0, info, chunk=4096)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"growth_mb": (after - before) / 1024, "shape": list(out["rgb"].shape)}}))
"""


def test_full_hd_frame_renders_within_budget():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(root=str(ROOT))], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["shape"] == [1080, 1920, 3]
    # the frame's own outputs (rgb, depth, opacity) are 41 MB; all its rays and 4 samples per
    # ray at once would be over 500 MB
    assert res["growth_mb"] < 150, res
