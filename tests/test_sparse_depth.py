"""Sparse depth from a COLMAP model's points: the loader's keypoints (`Scene.sparse_depth`) and
the fast method's depth loss (`model.fast.depth_weight`).

The capture is the built-in scene rendered from a ring of cameras (datasets/rendered_capture.py),
written as a COLMAP text model by this file's own writer, with points where the views' pixels
truly hit the scene: each keypoint is where its point projects, so the distance along the ray
through it is exact."""
import json
import math
import shutil

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import DEVICE

from nerf.config import load_config
from nerf.datasets import load_scene
from nerf.datasets.options import DataOptions
from nerf.datasets.rendered_capture import render_views, ring_cameras
from nerf.datasets.synthetic import shade
from nerf.inference.views import render_view
from nerf.models.fast import sparse_depth_error
from nerf.render.rays import rays_from_pixels
from nerf.training.trainer import Trainer

N_VIEWS = 12
POINTS_PER_VIEW = 120


def _qvec(r: np.ndarray) -> np.ndarray:
    """3x3 rotation -> unit quaternion (w, x, y, z)."""
    w = math.sqrt(max(0.0, 1 + r[0, 0] + r[1, 1] + r[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + r[0, 0] - r[1, 1] - r[2, 2])) / 2, r[2, 1] - r[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - r[0, 0] + r[1, 1] - r[2, 2])) / 2, r[0, 2] - r[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - r[0, 0] - r[1, 1] + r[2, 2])) / 2, r[1, 0] - r[0, 1])
    return np.array([w, x, y, z])


def _project(cams, j: int, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel positions (k, 2) of points (k, 3) in view j, and whether view j sees each (in front,
    inside the image, not hidden behind another surface)."""
    c2w = cams.c2w[j]
    cam = (pts - c2w[:3, 3]) @ c2w[:3, :3]  # OpenGL camera axes: x right, y up, looking down -z
    z = -cam[:, 2]
    xy = torch.stack([cams.fx[j] * cam[:, 0] / z + cams.cx[j], cams.cy[j] - cams.fy[j] * cam[:, 1] / z], -1)
    inside = (z > 0) & (xy[:, 0] > 0) & (xy[:, 0] < cams.width) & (xy[:, 1] > 0) & (xy[:, 1] < cams.height)
    dist = (pts - c2w[:3, 3]).norm(dim=-1)
    _, t = shade(c2w[:3, 3].expand_as(pts), (pts - c2w[:3, 3]) / dist[:, None])
    return xy, inside & ((t - dist).abs() < 1e-3)


def write_capture(root, n_views: int = N_VIEWS, points_per_view: int = POINTS_PER_VIEW):
    """The built-in scene's ring capture as images/ plus a COLMAP text model in sparse/0 whose
    points are true surface points: per view, up to `points_per_view` random pixels that hit the
    scene and whose point both neighbouring views see too, each point with a track of those
    three observations (what structure from motion trusts). Returns the cameras and, per view,
    its observations (k, 5): x, y, and the point in the scene's world."""
    cams = ring_cameras(n_views)
    (root / "images").mkdir(parents=True)
    (root / "sparse" / "0").mkdir(parents=True)
    for i, view in enumerate(render_views(cams)):
        iio.imwrite(root / "images" / f"frame_{i:03d}.png", view)
    g = torch.Generator().manual_seed(3)
    f, cx, cy = float(cams.fx[0]), float(cams.cx[0]), float(cams.cy[0])
    (root / "sparse" / "0" / "cameras.txt").write_text(f"1 PINHOLE {cams.width} {cams.height} {f} {f} {cx} {cy}\n")
    obs = [[] for _ in range(n_views)]  # per view: (x, y, point id)
    points = []
    for i in range(n_views):
        x = torch.rand(8 * points_per_view, generator=g) * cams.width
        y = torch.rand(8 * points_per_view, generator=g) * cams.height
        rays = rays_from_pixels(cams, torch.full_like(x, i, dtype=torch.long), x, y, 0.0, 1.0)
        _, t = shade(rays.origins, rays.directions)
        hit = torch.isfinite(t)
        pts = rays.origins + rays.directions * t.nan_to_num(posinf=0.0)[:, None]
        near = [(j % n_views, *_project(cams, j % n_views, pts)) for j in (i - 1, i + 1)]
        keep = (hit & near[0][2] & near[1][2]).nonzero()[:, 0][:points_per_view]
        for k in keep.tolist():
            pid = len(points) + 1
            points.append(pts[k].double().numpy())
            obs[i].append((float(x[k]), float(y[k]), pid))
            for j, xy, _ in near:
                obs[j].append((float(xy[k, 0]), float(xy[k, 1]), pid))
    image_lines, tracks = [], {}
    for i in range(n_views):
        c2w_cv = cams.c2w[i].double().numpy() @ np.diag([1.0, -1.0, -1.0, 1.0])
        w2c = np.linalg.inv(c2w_cv)
        image_lines.append(f"{i + 1} " + " ".join(repr(float(v)) for v in (*_qvec(w2c[:3, :3]), *w2c[:3, 3]))
                           + f" 1 frame_{i:03d}.png")
        image_lines.append(" ".join(f"{px!r} {py!r} {pid}" for px, py, pid in obs[i]))
        for k, (_, _, pid) in enumerate(obs[i]):
            tracks.setdefault(pid, []).append(f"{i + 1} {k}")
    point_lines = [f"{pid} " + " ".join(repr(float(v)) for v in points[pid - 1]) + " 128 128 128 0.5 "
                   + " ".join(tracks[pid]) for pid in sorted(tracks)]
    (root / "sparse" / "0" / "images.txt").write_text("\n".join(image_lines) + "\n")
    (root / "sparse" / "0" / "points3D.txt").write_text("\n".join(point_lines) + "\n")
    seen = [np.array([(px, py, *points[pid - 1]) for px, py, pid in o]).reshape(-1, 5) for o in obs]
    return cams, seen


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    root = tmp_path_factory.mktemp("ring")
    cams, seen = write_capture(root)
    return root, cams, seen


def test_keypoints_give_the_distance_along_their_rays(capture):
    """Every keypoint's ray, made at the loaded size (half), reaches its point at the stored
    distance, in the loader's normalised frame; a subset of the views keeps its own rows,
    renumbered."""
    root, _, seen = capture
    opts = DataOptions(path=str(root), format="colmap", downscale=2)
    scene = load_scene(opts, "train")
    rows = scene.sparse_depth
    assert rows is not None and rows.shape[1] == 4
    views = scene.metadata["indices"]
    assert rows.shape[0] == sum(len(seen[v]) for v in views) > 2 * POINTS_PER_VIEW * len(views)
    view = rows[:, 0].long()
    halved = np.concatenate([seen[v][:, :2] / 2 for v in views])
    assert torch.allclose(rows[:, 1:3], torch.from_numpy(halved).float(), atol=1e-4)
    rays = rays_from_pixels(scene.cameras, view, rows[:, 1], rows[:, 2], 0.0, 1.0)
    at = rays.origins + rays.directions * rows[:, 3:4]
    centre, scale = np.asarray(scene.metadata["centre"]), scene.metadata["scale"]
    truth = np.concatenate([(seen[v][:, 2:] - centre) * scale for v in views])
    assert torch.allclose(at, torch.from_numpy(truth).float(), atol=2e-4)

    part = scene.subset([2, 0])
    assert sorted(part.sparse_depth[:, 0].unique().tolist()) == [0.0, 1.0]
    assert torch.equal(part.sparse_depth[part.sparse_depth[:, 0] == 0, 1:], rows[view == 2, 1:])
    assert torch.equal(part.sparse_depth[part.sparse_depth[:, 0] == 1, 1:], rows[view == 0, 1:])


def test_only_points_seen_three_times_and_fitted_well_give_depth():
    """`reliable_points`: a point seen by two images, or with a reprojection error over twice the
    model's median, is left out."""
    from types import SimpleNamespace

    from nerf.datasets.colmap import reliable_points

    def point(track, error, x):
        return SimpleNamespace(track=SimpleNamespace(length=lambda: track), error=error, xyz=np.array([x, 0.0, 0.0]))

    rec = SimpleNamespace(points3D={1: point(3, 0.5, 1.0), 2: point(2, 0.5, 2.0), 3: point(5, 0.4, 3.0),
                                    4: point(4, 1.1, 4.0), 5: point(3, 0.6, 5.0)})
    ids, xyz = reliable_points(rec)
    assert ids.tolist() == [1, 3, 5] and xyz[:, 0].tolist() == [1.0, 3.0, 5.0]  # median error 0.5: 1.1 is out


# nerfstudio's applied_transform: its worlds swap x and y and flip z relative to COLMAP's
NERFSTUDIO_MOVE = np.array([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def _write_transforms(root, cams, move, shift=0.0):
    """transforms.json beside the model: the cameras moved by `move` (stated as applied_transform
    when it is not the identity) and then by `shift` along x (never stated); frame 1 has a mask
    that ignores the left half of the image."""
    frames = []
    for i in range(len(cams)):
        c2w = move @ cams.c2w[i].double().numpy()
        c2w[0, 3] += shift
        frames.append({"file_path": f"images/frame_{i:03d}.png", "transform_matrix": c2w.tolist()})
    mask = np.full((cams.height, cams.width), 255, dtype=np.uint8)
    mask[:, : cams.width // 2] = 0
    iio.imwrite(root / "mask_001.png", mask)
    frames[1]["mask_path"] = "mask_001.png"
    meta = {"camera_model": "OPENCV", "fl_x": float(cams.fx[0]), "fl_y": float(cams.fy[0]), "cx": float(cams.cx[0]),
            "cy": float(cams.cy[0]), "w": cams.width, "h": cams.height, "frames": frames}
    if not np.array_equal(move, np.eye(4)):
        meta["applied_transform"] = move[:3].tolist()
    (root / "transforms.json").write_text(json.dumps(meta))


def test_transforms_json_takes_the_keypoints_of_the_model_beside_it(capture, tmp_path):
    """process-data's and nerfstudio's layout (transforms.json with sparse/0 beside it): the
    model's keypoints are used, moved by applied_transform, except where a frame's mask ignores
    the pixel; a file whose poses moved without saying so gets none."""
    root, cams, seen = capture
    copy = tmp_path / "capture"
    shutil.copytree(root, copy)
    _write_transforms(copy, cams, NERFSTUDIO_MOVE)
    scene = load_scene(DataOptions(path=str(copy), downscale=2), "train")
    assert scene.metadata["format"] == "transforms"
    rows = scene.sparse_depth
    views = scene.metadata["indices"]
    masked = views.index(1)  # frame 1 (a training view) keeps only the keypoints in its right half
    kept = [seen[v] if v != 1 else seen[v][seen[v][:, 0] >= cams.width // 2] for v in views]
    assert 0 < len(kept[masked]) < len(seen[1])
    assert rows is not None and rows.shape[0] == sum(len(k) for k in kept)
    rays = rays_from_pixels(scene.cameras, rows[:, 0].long(), rows[:, 1], rows[:, 2], 0.0, 1.0)
    at = rays.origins + rays.directions * rows[:, 3:4]
    centre, scale = np.asarray(scene.metadata["centre"]), scene.metadata["scale"]
    truth = np.concatenate([(k[:, 2:] @ NERFSTUDIO_MOVE[:3, :3].T - centre) * scale for k in kept])
    assert torch.allclose(at, torch.from_numpy(truth).float(), atol=2e-4)

    _write_transforms(copy, cams, np.eye(4), shift=0.5)
    assert load_scene(DataOptions(path=str(copy), downscale=2), "train").sparse_depth is None


def test_sparse_depth_error_by_hand():
    """Three rays, two with a point: the opacity each gathers before the window around its
    point plus the light it lets past the window; a ray stopping inside the window costs 0, and
    rays without a point or outside the mask take no part."""
    weights = torch.tensor([0.1, 0.6, 0.2, 0.5, 0.9, 0.3, 0.4])
    t_mid = torch.tensor([0.5, 1.0, 1.5, 1.0, 1.0, 1.0, 2.0])
    ray_idx = torch.tensor([0, 0, 0, 1, 2, 3, 3])
    target = torch.tensor([1.0, float("nan"), 1.02, 2.5])
    got = sparse_depth_error(weights, t_mid, ray_idx, target, 0.05)
    ray0 = 0.1 + (1 - 0.7)  # 0.1 before [0.95, 1.05], 0.3 of the light past it
    ray2 = 0.0 + (1 - 0.9)  # stops inside [0.969, 1.071] but for 0.1
    ray3 = 0.7 + (1 - 0.7)  # all its opacity before [2.375, 2.625], and the rest of the light past it
    assert math.isclose(float(got), (ray0 + ray2 + ray3) / 3, rel_tol=1e-6)
    masked = sparse_depth_error(weights, t_mid, ray_idx, target, 0.05, torch.tensor([False, True, True, False]))
    assert math.isclose(float(masked), ray2, rel_tol=1e-6)
    exact = sparse_depth_error(torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([0]), torch.tensor([1.0]), 0.05)
    assert float(exact) == 0.0


def _train(root, tmp_path, name, weight):
    cfg = load_config("colmap", [f"data.path={root}", "data.downscale=4", "train.max_minutes=0", "train.max_steps=60",
                                 "train.lr_decay_over=steps", "train.lr_decay_steps=60", "train.batch_rays=512",
                                 "model.fast.train_samples=65536", "model.fast.grid_res_start=0", "train.log_every=1000",
                                 "train.eval_every=100000", "train.checkpoint_every=100000",
                                 "model.fast.depth_rays=128", f"model.fast.depth_weight={weight}"])
    tr = Trainer(cfg, tmp_path / name, torch.device(DEVICE), show_progress=False)
    while tr.budget_left():
        tr.train_step()
    return tr


def _held_out_depth_error(tr, root) -> float:
    """Mean |rendered - true distance| over the held-out pixels whose ray hits the scene, in the
    loader's normalised units (the truth traced in the scene's own world)."""
    scene = load_scene(tr.cfg.data, "test")
    centre, scale = torch.tensor(scene.metadata["centre"]).float(), scene.metadata["scale"]
    tr.model.eval()
    errs = []
    with torch.no_grad():
        for i in range(len(scene)):
            depth = render_view(tr.model, scene.cameras.to(DEVICE), i, tr.info, 8192)["depth"].reshape(-1).cpu()
            x, y = torch.meshgrid(torch.arange(scene.width) + 0.5, torch.arange(scene.height) + 0.5, indexing="xy")
            rays = rays_from_pixels(scene.cameras, torch.full((x.numel(),), i), x.reshape(-1), y.reshape(-1), 0.0, 1.0)
            _, t = shade(rays.origins / scale + centre, rays.directions)
            hit = torch.isfinite(t)
            errs.append((depth[hit] - t[hit] * scale).abs())
    return float(torch.cat(errs).mean())


@pytest.mark.slow
def test_depth_loss_places_the_surfaces(capture, tmp_path):
    """Trained the same number of steps on the ring capture, the run with the depth loss renders
    held-out depth closer to the truth than the run without."""
    root = capture[0]
    plain = _held_out_depth_error(_train(root, tmp_path, "plain", 0.0), root)
    depth = _held_out_depth_error(_train(root, tmp_path, "depth", 0.1), root)
    print(f"held-out depth error: plain {plain:.4f}, depth loss {depth:.4f}")
    assert depth < 0.5 * plain
