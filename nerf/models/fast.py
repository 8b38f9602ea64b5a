"""The fast method: a grid-backed field (nerf/fields/grid_field.py) sampled through an occupancy grid
(render/occupancy.py) and composited from packed samples (render/packed.py).

Per batch: march every ray through the occupied cells at a fixed step, evaluating density
without gradients in a few rounds to find where each ray becomes opaque; then evaluate the
field with gradients only on the samples that matter and composite them packed. Training,
evaluation and video all sample this way, except that training skips the no-gradient pass
while it drops little (`_prune_in_training`), and that renders (mode "render") fetch colour in the
marching rounds themselves. The occupancy grid is refreshed in `before_step`
from the field's density, with a generator seeded by (train.seed, step), so a resumed run
refreshes exactly as an uninterrupted one; the grid's state is in buffers, saved with the model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from nerf.fields.grid_field import FastField
from nerf.fields.grids import build_encoding
from nerf.metrics import psnr_from_mse
from nerf.models.base import RENDER, TRAIN, RenderModel
from nerf.models.camera_refine import CameraRefinement
from nerf.render.carving import camera_coverage, silhouette_hull
from nerf.render.gradient_scaling import near_camera_scale, scale_gradient
from nerf.render.occupancy import STEP_GROWTH, OccupancyGrid
from nerf.render.packed import composite_packed, distortion_loss, segment_sum
from nerf.render.rays import RayBundle
from nerf.scene_rays import SceneInfo, ndc_frusta_box

NDC_BOX = [[-1.5, -1.5, -1.0], [1.5, 1.5, 1.0]]


@dataclass
class FastConfig:
    """Options of the fast method (`model.fast.*`): a grid-backed field marched through an occupancy grid.

    encoding: tensorf (vector-matrix factors, `grid_res`, `tensorf_comp` per plane), hash
    (multiresolution hash grid), dense (voxel grid of `dense_features` at `dense_res`^3, or
    `grid_res`^3 when dense_res is 0), or auto: tensorf in a box, dense in contracted space
    (see `resolve_encoding`). detail_levels: when > 0, that many hash levels (`hash_features` per
    level, a table of 2^`hash_log2_size` rows each) from twice the grid's final resolution up to
    `hash_max_res` beside the tensorf or dense grid, their features joined to the grid's
    (`WithDetail`): finer resolution where training needs it, at the cost of a hash lookup per
    level and point (off; benchmarks/results holds what it costs and gives).
    hidden/geo_features/colour_hidden: the small MLP heads; sh_degree: spherical harmonics of the
    view direction (1-5). reflect: the colour head also sees the view direction mirrored about a
    normal it learns (`FastField`), for highlights and mirror-like materials.
    steps: marching steps along the scene box's diagonal. step_pixels: in a box (neither NDC nor
    contracted), when > 0, at least as many steps as make a step no longer than this many pixel
    widths at the content's centre (`SceneInfo.pixel_size`), at most MAX_STEPS: finer images get
    finer steps, so a surface's colour is not smeared over several pixels along the rays that
    cross it. grid_pixels: likewise for the tensorf planes in a box, when > 0: a final
    `grid_res` of at least the scene box's longest side over this many pixel widths (rounded to
    a multiple of 16, at most MAX_GRID_RES), so finer images get finer planes. occ_*: the
    occupancy grid (resolution, refresh interval in steps, warm-up steps, cells refreshed per
    update (0 = all in warm-up, a quarter after), opacity threshold, decay). early_stop: stop a
    ray below this transmittance; alpha_min: drop samples with less opacity. grid_lr_scale:
    learning-rate factor of the grid parameters relative to train.lr. carve: start the occupancy
    grid from the training silhouettes (visual hull) when the images have alpha. init_alpha: opacity
    per marching step of the initial fog: above occ_threshold every cell stays occupied until
    training has shown it empty; below it (colmap.yaml) the fog is thin enough that rays reach
    the surfaces behind it from the start, and the first refreshes keep only the cells above the
    mean, as instant-ngp starts. tv_weight: weight of a
    total-variation loss on the grid's factors (tensorf, dense; TensoRF's regulariser against
    floaters when few views see the scene; on in llff.yaml).
    tv_decay: scale tv_weight by the learning rate's decay (lr / train.lr), as TensoRF shrinks its
    TV weights with its learning rate (off). tv_cells: the dense grid's TV over this many vertices
    drawn at random each step (0: all of them; Plenoxels' and DVGO's sampled regulariser, so the
    term costs little on a large voxel grid); the factorised grid always uses all its entries.
    random_background: for captures without alpha (real
    photos: every pixel sees a surface), composite training rays over a random colour per ray, so
    a ray matches its pixel only by becoming opaque; no dark fog passing for dark surfaces, and
    opaque rays stop early. Renders are unaffected. render_weight_min: renders skip the colour
    head on samples whose compositing weight is at most this (they count as black; opacity and
    depth are unchanged). render_early_stop: renders (evaluation, video) stop a ray below this
    transmittance instead of early_stop (0: early_stop); a ray's colour then misses at most this
    share of its light (set in llff.yaml).
    distortion_weight: weight of mip-NeRF 360's distortion loss (depths normalised to [0, 1]
    between near and far), which gathers each ray's weight onto a surface instead of a fog:
    sharper geometry and fewer samples per ray on forward-facing captures (on in llff.yaml).
    distortion_warmup: training steps over which the distortion weight ramps up from 0 (0: full
    weight from the start), so the loss does not pull rays onto a surface before the far content's
    place is learned.
    fit_box: before training, span the grid encoding over the box content can occupy (the
    silhouettes' visual hull when carved, the training frusta in NDC) instead of the whole
    scene box: finer cells on the content for the same parameters (TensoRF's box shrinking). On in
    blender.yaml; off by default, because on the built-in scene's short run the finer cells
    converge slower (benchmarks/results holds both figures).
    grid_res_start: coarse-to-fine training (TensoRF's schedule, tensorf and dense grids; the hash
    grid, multiresolution by construction, ignores it): start
    the grid at this resolution and resample it up to `grid_res` (a dense grid: `dense_res` when
    set) in `grid_upsample_count` steps
    of equal ratio, evenly spaced up to step `grid_upsample_until`; 0, or a start at or above the
    final resolution (a config's start kept while `grid_res` is lowered), starts at `grid_res`.
    grid_upsample_budget: in a run scheduled on its clock (`train.lr_decay_over: minutes`),
    upsampling i of n also happens once i/n of this share of the time budget is spent, if that
    comes before its step: on a slow machine a short budget would otherwise end before the
    schedule's steps, on a coarse grid. 0 (the default): steps only; blender.yaml sets it.
    contraction: unbounded scenes (mip-NeRF 360's scene contraction): none, l2, linf, or auto
    (linf for captures without alpha that are not in NDC: real photos whose background reaches
    the horizon; none for objects on a background colour, for NDC, and for captures whose file
    states the scene's box, instant-ngp's aabb_scale or an aabb, at most 32 units wide: see
    `resolve_contraction`). Contracted, the grid encoding and the occupancy grid cover the
    contracted world around the content box (its centre; its half-width, at most the cameras'
    unit ball, maps to the unit ball) and steps grow with distance (cone stepping: a step is the larger of the fixed step and
    `cone_angle` times the distance travelled, as instant-ngp), out to `contraction_far` times
    the radius. step_growth: quadratic makes the steps beyond that knee grow with the square of
    the distance instead (uniform in disparity, as mip-NeRF 360), as fast as the contracted grid's
    cells do, so far space costs about as many steps as the stretch before the knee.
    train_samples: at most this many samples with gradients per training batch (0: no cap);
    past it, a random subset of whole rays is trained on and the rest skipped, so a step costs
    about the same while the occupancy grid is still fog (instant-ngp's fixed sample budget,
    with the rays per step adapting).
    appearance_dim: length of a learned code per training image fed to the colour head (0: none;
    nerfacto's appearance embedding), so exposure and white balance that change from photo to
    photo need no floaters to explain them; renders of new views use the mean code.
    appearance_mode: how a code acts: affine (default) maps it to a gain and an offset per colour
    channel applied to the colour head's output; head feeds it to the colour head with the view
    direction, as nerfacto does, which on a real capture let the head learn each photo as a
    function of direction in front of its camera instead of the scene.
    pose_refine: learn a small SE(3) correction per training image (nerf/models/camera_refine.py)
    at pose_lr_scale times train.lr; not with NDC rays.
    carve_unseen: for captures without alpha, mark the occupancy cells no training camera sees
    empty before training (instant-ngp's rule): they get no gradient, so they would keep the
    initial fog for good, costing samples in every render that looks their way.
    near_grad_distance: training scales the gradient of a sample closer than this (world units)
    to its camera by (t / near_grad_distance)^2, against floaters in front of the cameras
    (render/gradient_scaling.py); 0: off.
    prune_min_share: training skips its no-gradient pruning pass (which drops the steps behind
    opaque surfaces) while the last probe, every occ_update_every steps, dropped less than this
    share of the steps; 0 always prunes. render_first_round: steps per ray in a render's first
    density round (rounds then double; see render/occupancy.py). The rounds decide only how much
    density is evaluated past where a ray stops, not the image. render_window: marching steps per
    ray whose occupied cells a render lists at once before its density rounds (windows then
    double, for the rays still alive); a smaller window lists fewer steps behind surfaces, a
    larger one makes fewer passes. render_window_max: the widest window the doubling reaches (0:
    no limit); on captures whose rays cross empty space to a far background, it keeps a render
    from listing hundreds of steps per ray behind where the rays stop. Both change the work, not
    the image.
    depth_weight: weight of a sparse depth loss (DS-NeRF's idea, for captures whose structure
    from motion saw scene points: `Scene.sparse_depth`, COLMAP models): depth_rays of each
    batch's rays go through keypoints instead of random pixels, and each such ray is asked to
    stop within depth_margin (a fraction of the distance) around its point: the opacity it gathers
    before that window plus the light it lets past it (`sparse_depth_error`), so content that few
    photos see is placed where the matched features put it (0: off; not with NDC rays, and
    ignored without points)."""

    encoding: str = "tensorf"
    grid_res: int = 128
    tensorf_comp: int = 16
    dense_features: int = 12
    dense_res: int = 0
    hash_levels: int = 16
    hash_features: int = 2
    hash_log2_size: int = 19
    hash_base_res: int = 16
    hash_max_res: int = 1024
    detail_levels: int = 0
    hidden: int = 64
    geo_features: int = 15
    colour_hidden: int = 64
    sh_degree: int = 4
    reflect: bool = False
    steps: int = 512
    step_pixels: float = 0.0
    grid_pixels: float = 0.0
    occ_res: int = 128
    occ_update_every: int = 16
    occ_warmup: int = 256
    occ_cells: int = 0
    occ_threshold: float = 0.01
    occ_decay: float = 0.95
    early_stop: float = 1e-4
    alpha_min: float = 0.0
    grid_lr_scale: float = 1.0
    carve: bool = True
    carve_unseen: bool = True
    near_grad_distance: float = 0.0
    init_alpha: float = 0.02
    tv_weight: float = 0.0
    tv_decay: bool = False
    tv_cells: int = 0
    random_background: bool = True
    render_weight_min: float = 1e-4
    render_early_stop: float = 0.0
    distortion_weight: float = 0.0
    distortion_warmup: int = 0
    fit_box: bool = False
    grid_res_start: int = 0
    grid_upsample_until: int = 2000
    grid_upsample_count: int = 4
    grid_upsample_budget: float = 0.0
    prune_min_share: float = 0.2
    render_first_round: int = 4
    render_window: int = 256
    render_window_max: int = 0
    train_samples: int = 0
    appearance_dim: int = 0
    appearance_mode: str = "affine"
    pose_refine: bool = False
    pose_lr_scale: float = 0.2
    contraction: str = "auto"
    cone_angle: float = 1 / 256
    contraction_far: float = 32.0
    step_growth: str = "linear"
    depth_weight: float = 0.0
    depth_rays: int = 512
    depth_margin: float = 0.05

    def validate(self) -> list[str]:
        errs = []
        if self.encoding not in ("auto", "tensorf", "hash", "dense"):
            errs.append(f"model.fast.encoding: must be auto, tensorf, hash or dense, got {self.encoding!r}")
        if self.dense_res < 0 or self.dense_res == 1:
            errs.append(f"model.fast.dense_res: must be 0 (grid_res) or >= 2, got {self.dense_res}")
        if self.grid_res < 2:
            errs.append(f"model.fast.grid_res: must be >= 2, got {self.grid_res}")
        for k in ("tensorf_comp", "dense_features", "hash_levels", "hash_features", "hash_base_res",
                  "hash_max_res", "hidden", "geo_features", "colour_hidden", "steps", "occ_res", "occ_update_every",
                  "render_first_round", "render_window"):
            if getattr(self, k) < 1:
                errs.append(f"model.fast.{k}: must be >= 1, got {getattr(self, k)}")
        if not 10 <= self.hash_log2_size <= 24:
            errs.append(f"model.fast.hash_log2_size: must be in [10, 24], got {self.hash_log2_size}")
        if not 1 <= self.sh_degree <= 5:
            errs.append(f"model.fast.sh_degree: must be in [1, 5], got {self.sh_degree}")
        for k in ("occ_warmup", "distortion_warmup", "occ_cells", "train_samples", "appearance_dim", "detail_levels",
                  "alpha_min", "tv_cells", "render_window_max", "render_weight_min", "distortion_weight",
                  "near_grad_distance", "step_pixels", "grid_pixels", "depth_weight", "depth_rays"):
            if getattr(self, k) < 0:
                errs.append(f"model.fast.{k}: must be >= 0, got {getattr(self, k)}")
        if not 0 < self.depth_margin < 1:
            errs.append(f"model.fast.depth_margin: must be in (0, 1), got {self.depth_margin}")
        if not 0 <= self.prune_min_share <= 1:
            errs.append(f"model.fast.prune_min_share: must be in [0, 1], got {self.prune_min_share}")
        if not 0 <= self.render_early_stop < 1:
            errs.append(f"model.fast.render_early_stop: must be in [0, 1), got {self.render_early_stop}")
        for k in ("occ_threshold", "early_stop", "init_alpha"):
            if not 0 < getattr(self, k) < 1:
                errs.append(f"model.fast.{k}: must be in (0, 1), got {getattr(self, k)}")
        if not 0 < self.occ_decay <= 1:
            errs.append(f"model.fast.occ_decay: must be in (0, 1], got {self.occ_decay}")
        if self.detail_levels and self.encoding == "hash":
            errs.append("model.fast.detail_levels: hash levels beside a tensorf or dense grid, not beside the hash grid")
        if self.tv_weight < 0:
            errs.append(f"model.fast.tv_weight: must be >= 0, got {self.tv_weight}")
        elif self.tv_weight > 0 and self.encoding == "hash":
            errs.append("model.fast.tv_weight: total variation needs a tensorf or dense grid, not the hash grid")
        if not 0 <= self.grid_upsample_budget <= 1:
            errs.append(f"model.fast.grid_upsample_budget: must be in [0, 1], got {self.grid_upsample_budget}")
        if self.grid_res_start:
            if self.grid_res_start < 2:
                errs.append(f"model.fast.grid_res_start: must be 0 (off) or >= 2, got {self.grid_res_start}")
            for k in ("grid_upsample_until", "grid_upsample_count"):
                if getattr(self, k) < 1:
                    errs.append(f"model.fast.{k}: must be >= 1, got {getattr(self, k)}")
        if self.appearance_mode not in ("affine", "head"):
            errs.append(f"model.fast.appearance_mode: must be affine or head, got {self.appearance_mode!r}")
        if self.contraction not in ("auto", "none", "l2", "linf"):
            errs.append(f"model.fast.contraction: must be auto, none, l2 or linf, got {self.contraction!r}")
        if self.step_growth not in STEP_GROWTH:
            errs.append(f"model.fast.step_growth: must be {' or '.join(STEP_GROWTH)}, got {self.step_growth!r}")
        for k in ("cone_angle", "contraction_far"):
            if not getattr(self, k) > 0:
                errs.append(f"model.fast.{k}: must be > 0, got {getattr(self, k)}")
        if not self.pose_lr_scale > 0:
            errs.append(f"model.fast.pose_lr_scale: must be > 0, got {self.pose_lr_scale}")
        if not self.grid_lr_scale > 0:
            errs.append(f"model.fast.grid_lr_scale: must be > 0, got {self.grid_lr_scale}")
        return errs


MAX_STEPS = 2048  # the most marching steps along the box's diagonal that step_pixels asks for
MAX_GRID_RES = 512  # the finest tensorf planes grid_pixels asks for
FILE_BOX_LIMIT = 32.0  # widest box stated by a capture file that auto marches in (scene units)


def sparse_depth_error(weights: torch.Tensor, t_mid: torch.Tensor, ray_idx: torch.Tensor, target: torch.Tensor,
                       margin: float, ray_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The sparse depth loss, a line-of-sight loss as Urban Radiance Fields': for each ray with a
    finite `target` distance D (n,) (and kept by `ray_mask`), the opacity its samples (weights (m,)
    at midpoints t_mid (m,), ray_idx (m,)) gather before D (1 - margin) plus the transmittance
    left after D (1 + margin), which is 1 minus the opacity inside that window: 0 when the ray
    stops within the margin around the point. Density in front of the point is penalised only as
    far as the window around it has opacity, so while that is still empty the loss grows none
    there. Mean over those rays."""
    n = target.shape[0]
    d = target[ray_idx]  # NaN for rays without a point: every comparison below is False
    window = (t_mid >= d * (1.0 - margin)) & (t_mid <= d * (1.0 + margin))
    inside = segment_sum(torch.where(window, weights, torch.zeros_like(weights)), ray_idx, n)
    valid = torch.isfinite(target)
    if ray_mask is not None:
        valid &= ray_mask
    idx = valid.nonzero()[:, 0]
    if idx.numel() == 0:
        return weights.sum() * 0.0
    return (1.0 - inside[idx]).mean()


def resolve_contraction(fc: FastConfig, info: SceneInfo) -> str:
    """model.fast.contraction with auto decided: linf for captures without alpha outside NDC,
    except where the capture file states the scene's box (instant-ngp's aabb_scale, an aabb) and
    that box is at most FILE_BOX_LIMIT wide: the file's author bounded the scene there, and the
    box's coarser cells keep the field from hiding photos in floaters near the cameras."""
    if fc.contraction != "auto":
        return fc.contraction
    if info.background is not None or info.ndc:
        return "none"
    box = torch.as_tensor(info.bbox, dtype=torch.float32)
    if info.box_from_file and float((box[1] - box[0]).max()) <= FILE_BOX_LIMIT:
        return "none"
    return "linf"


def resolve_encoding(fc: FastConfig, contraction: str) -> FastConfig:
    """`fc` with encoding auto decided and the grid resolution of the encoding chosen: tensorf in
    a box; dense in contracted space, where on inward-looking photo captures the vector-matrix
    factors, whose planes and lines every region shares, fall into painting each photo on a
    screen at the cameras' near plane (a band around the camera path that low-rank factors hold
    cheaply) and never learn the object; a voxel grid has no such shortcut. A dense grid takes
    dense_res when it is set."""
    enc = fc.encoding
    if enc == "auto":
        enc = "tensorf" if contraction == "none" else "dense"
    res = fc.dense_res if enc == "dense" and fc.dense_res else fc.grid_res
    return replace(fc, encoding=enc, grid_res=res)


def pixel_grid_res(fc: FastConfig, info: SceneInfo, contraction: str) -> FastConfig:
    """`fc` with the tensorf planes' final resolution raised where `grid_pixels` asks for cells of
    at most that many pixel widths across the scene box (in a box, not NDC): the planes were sized
    on small images, and on finer ones a cell spans more pixels than the colour can vary over."""
    if fc.grid_pixels <= 0 or fc.encoding != "tensorf" or contraction != "none" or info.ndc or not info.pixel_size:
        return fc
    box = torch.as_tensor(info.bbox, dtype=torch.float32)
    wanted = 16 * round(float((box[1] - box[0]).max()) / (fc.grid_pixels * info.pixel_size) / 16)
    return replace(fc, grid_res=max(fc.grid_res, min(wanted, MAX_GRID_RES)))


def contraction_frame(bbox, camera_box=None) -> tuple[list[float], float]:
    """Centre and radius of the region kept uncontracted: the box around the content and the
    training cameras (mip-NeRF 360 keeps its cameras in the uncontracted ball: a camera in the
    contracted shell would see its near space through cells many times coarser, and the field
    hides each photo in fog there), its centre and half-width, the radius at most 1 (the
    cameras' ball); a box larger than that (a file's huge aabb, the frusta of outward-looking
    cameras) falls back to the cameras' ball itself. Without a camera box (runs saved before it
    was recorded): the content box alone."""
    box = torch.as_tensor(bbox, dtype=torch.float32)
    if camera_box is not None:
        cams = torch.as_tensor(camera_box, dtype=torch.float32)
        box = torch.stack([torch.minimum(box[0], cams[0]), torch.maximum(box[1], cams[1])])
    centre, half = (box[0] + box[1]) / 2, float((box[1] - box[0]).max()) / 2
    if half > 1.0 or float(centre.norm()) + half > 2.0:
        return [0.0, 0.0, 0.0], 1.0
    return centre.tolist(), max(half, 0.05)


def box_steps(fc: FastConfig, info: SceneInfo) -> int:
    """Marching steps along the scene box's diagonal: `steps`, or more where `step_pixels` asks
    for a step of at most that many pixel widths (not in NDC, whose box is not the world's)."""
    if fc.step_pixels <= 0 or info.ndc or not info.pixel_size:
        return fc.steps
    box = torch.as_tensor(info.bbox, dtype=torch.float32)
    wanted = math.ceil(float((box[1] - box[0]).norm()) / (fc.step_pixels * info.pixel_size))
    return max(fc.steps, min(wanted, MAX_STEPS))


class FastNeRF(RenderModel):
    def __init__(self, cfg: FastConfig, info: SceneInfo, precision: str = "fp32", seed: int = 0):
        super().__init__(info, precision, seed)
        self.lr_factor = 1.0  # the learning rate's decay so far, from the before_step hook
        self.step = 0  # the training step in progress, from the before_step hook
        self.contraction = resolve_contraction(cfg, info)
        fc = self.fc = pixel_grid_res(resolve_encoding(cfg, self.contraction), info, self.contraction)
        if info.ndc and self.contraction != "none":
            raise ValueError("model.fast.contraction: NDC rays (data.ndc) are already bounded; use contraction=none")
        grid_kw = {}
        if self.contraction != "none":
            centre, radius = contraction_frame(info.bbox, info.camera_box)
            bbox = [[-2.0] * 3, [2.0] * 3]
            step = 2.0 * math.sqrt(3.0) * radius / fc.steps  # the inner cube's diagonal in `steps`
            knee = step / fc.cone_angle  # the fixed step up to there, then cone_angle times the distance
            grid_kw = {"contraction": self.contraction, "centre": centre, "radius": radius, "knee": knee,
                       "growth": fc.step_growth}
            self.far_limit = 1.0 + float(torch.tensor(centre).norm()) + fc.contraction_far * radius
        else:
            bbox = NDC_BOX if info.ndc else info.bbox
            step = None
        box = torch.tensor(bbox, dtype=torch.float32)
        if step is None:
            step = float((box[1] - box[0]).norm()) / box_steps(fc, info)
        # Start as a uniform fog whose opacity per marching step (init_alpha) is above the
        # occupancy threshold: every cell stays occupied until training has shown it empty,
        # instead of the first refresh culling half the cells at random around the mean.
        bias = math.log(-math.log(1.0 - fc.init_alpha) / step)
        self.field = FastField(build_encoding(fc, bbox), fc.hidden, fc.geo_features, fc.colour_hidden, fc.sh_degree,
                               density_bias=bias, appearance_dim=fc.appearance_dim,
                               appearance_mode=fc.appearance_mode, reflect=fc.reflect)
        per_image = fc.appearance_dim > 0 or fc.pose_refine
        if per_image and info.n_images < 1:
            raise ValueError("model.fast.appearance_dim / pose_refine: the scene does not say how many training images it has")
        if fc.pose_refine and info.ndc:
            raise ValueError("model.fast.pose_refine: camera refinement needs world-space rays, not NDC (data.ndc=false)")
        self.appearance = None
        if fc.appearance_dim:
            self.appearance = torch.nn.Embedding(info.n_images, fc.appearance_dim)
            torch.nn.init.normal_(self.appearance.weight, std=0.01)
        self.cameras = CameraRefinement(info.n_images) if fc.pose_refine else None
        self.code_override = None  # renders use this code instead of the mean one when set
        self.grid = OccupancyGrid(box, fc.occ_res, step, fc.occ_threshold, fc.occ_decay, **grid_kw)
        # Share of the candidate steps the last probe's density pass kept (see `_prune_in_training`);
        # a buffer, so a resumed run decides as an uninterrupted one.
        self.register_buffer("kept_share", torch.tensor(0.0))
        # density evaluations plus samples per marched ray in the last batch (the sample budget's estimate)
        self.register_buffer("ray_cost", torch.tensor(0.0))
        self._probe = True

    @torch.no_grad()
    def density(self, x: torch.Tensor) -> torch.Tensor:
        """Density without gradients (m,), for marching and occupancy refreshes."""
        with self.autocast(x.device.type):
            return self.field.density(self.grid.to_grid(x)).float()

    def prepare(self, scene) -> None:
        """Before a fresh run: carve the occupancy grid to the training silhouettes (visual hull)
        when the capture has alpha, so the first steps sample only where content can be; then
        (`fit_box`) span the grid encoding over the box that content can occupy, as TensoRF
        shrinks its box, so its cells are spent on the content: the hull's box when carved, the
        training cameras' frusta in NDC. Without alpha (`carve_unseen`), the cells no training
        camera sees start empty."""
        grid = self.grid
        carve = self.fc.carve and scene.alpha is not None and not self.info.ndc
        if carve:
            centres = grid.cell_centres(torch.arange(grid.res ** 3, device=grid.opacity.device))
            grid.restrict(silhouette_hull(centres, scene.cameras, scene.alpha.to(centres.device), grid.cell_radius()))
        elif self.fc.carve_unseen and not self.info.ndc:
            centres, radii = grid.cell_spheres(far=self.fc.contraction_far)
            seen = camera_coverage(centres, radii, scene.cameras, near=float(self.info.near)) > 0
            grid.restrict(seen & grid.allowed)
        if not self.fc.fit_box or grid.contracted:
            return
        if carve:
            pad = (grid.bbox[1] - grid.bbox[0]) / grid.res  # one occupancy cell
            box = torch.stack([grid.occupied_box[0] - pad, grid.occupied_box[1] + pad])
        elif self.info.ndc:
            box = ndc_frusta_box(scene.cameras, self.info)
        else:
            return
        lo, hi = torch.maximum(box[0], grid.bbox[0]), torch.minimum(box[1], grid.bbox[1])
        if bool((hi > lo).all()):
            self.field.encoding.fit_box(torch.stack([lo, hi]))

    def grid_schedule(self) -> dict[int, int]:
        """Coarse-to-fine: {step: grid resolution from that step on}, empty when off. Resolutions
        grow by an equal ratio from grid_res_start to grid_res (TensoRF's log-linear schedule)."""
        fc = self.fc
        if not fc.grid_res_start or fc.grid_res_start >= fc.grid_res or fc.encoding == "hash":
            return {}  # the hash grid's own levels are its coarse-to-fine
        n, lo, hi = fc.grid_upsample_count, math.log(fc.grid_res_start), math.log(fc.grid_res)
        return {round(fc.grid_upsample_until * i / n): round(math.exp(lo + (hi - lo) * i / n)) for i in range(1, n + 1)}

    def grid_res_at(self, step: int, budget: float = 0.0) -> int | None:
        """The coarse-to-fine resolution for `step` with `budget` of a time budget spent: that of
        the last upsampling whose step is reached, or whose share of grid_upsample_budget is
        spent; None before the first or when the schedule is off."""
        schedule, share = sorted(self.grid_schedule().items()), self.fc.grid_upsample_budget
        reached = [res for i, (at, res) in enumerate(schedule, 1)
                   if step >= at or (share > 0 and budget >= share * i / len(schedule))]
        return reached[-1] if reached else None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.setdefault(prefix + "kept_share", torch.zeros_like(self.kept_share))  # saved before it existed
        state_dict.setdefault(prefix + "ray_cost", torch.zeros_like(self.ray_cost))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _prune_in_training(self) -> bool:
        """Whether a training batch runs the no-gradient density pass that drops the steps behind
        opaque surfaces (transmittance below early_stop) before the pass with gradients.

        On a capture whose rays seldom turn opaque inside the occupied cells (fern keeps nearly
        every step) the pass costs a density evaluation per step and saves almost nothing, so it
        is skipped while the last probe (every occ_update_every steps) kept more than
        1 - prune_min_share of the steps: the gradient pass then also sees the few steps behind
        opaque surfaces, whose compositing weights are below early_stop. Always on when
        alpha_min > 0 (it needs the densities) and on a contracted grid, whose rays run to the
        horizon: there the pass is what stops them at the first surface."""
        fc = self.fc
        if self.grid.contracted:  # rays run out to the horizon: without the pass every step behind a surface counts
            return True
        return self._probe or fc.alpha_min > 0 or float(self.kept_share) <= 1.0 - fc.prune_min_share

    def before_step(self, step: int, lr_factor: float = 1.0, budget: float = 0.0) -> bool:
        fc, resized = self.fc, False
        self.lr_factor = lr_factor
        self.step = step
        self._probe = step % fc.occ_update_every == 0
        res = self.grid_res_at(step, budget)
        if res is not None and res != self.field.encoding.res:
            self.field.encoding.resize(res)
            resized = True
        if step % fc.occ_update_every == 0:
            gen = torch.Generator(device=self.grid.opacity.device).manual_seed(self.seed * 1_000_003 + step)
            self.grid.update(self.density, gen, warmup=step < fc.occ_warmup, n_cells=fc.occ_cells)
        return resized

    def forward(self, rays: RayBundle, mode: str = RENDER, generator: torch.Generator | None = None,
                jitter: bool | None = None) -> dict:
        n = len(rays)
        o, d = rays.origins, rays.directions
        ray_mask = None
        train = mode == TRAIN
        if train if jitter is None else jitter:
            offset = torch.rand(n, generator=generator, device=o.device, dtype=o.dtype)
        else:
            offset = torch.full((n,), 0.5, device=o.device, dtype=o.dtype)
        fc, vdirs, grid = self.fc, rays.view_directions, self.grid
        far = rays.far if not grid.contracted else torch.full_like(rays.far, self.far_limit)
        cam = rays.cam_idx if train else None  # per-image parameters apply to training rays only
        if self.cameras is not None and cam is not None:
            o, d = self.cameras.apply(o, d, cam)
            vdirs = d
        code = self.appearance_codes(cam, n, o.device)
        if train:
            # march on density alone, then evaluate the kept samples with gradients
            prune = not self.training or self._prune_in_training()
            density = self.density if prune else None
            pick = self._rays_within_budget(n, generator, o.device) if fc.train_samples and self.training else None
            if pick is None:
                t, ray_idx, evaluated = grid.march(o, d, rays.near, far, offset, density, fc.early_stop, fc.alpha_min)
            else:  # march only the rays the budget affords; the others get no samples and no loss
                t, ray_idx, evaluated = grid.march(o[pick], d[pick], rays.near[pick], far[pick], offset[pick], density,
                                                   fc.early_stop, fc.alpha_min)
                ray_idx = pick[ray_idx]
                ray_mask = torch.zeros(n, dtype=torch.bool, device=o.device).index_fill_(0, pick, True)
            if self.training and self._probe and evaluated:
                self.kept_share.fill_(t.numel() / evaluated)
            if self.training and fc.train_samples:
                self.ray_cost.fill_((evaluated + t.numel()) / (n if pick is None else pick.numel()))
                if t.numel() > fc.train_samples:
                    t, ray_idx, ray_mask = self._sample_budget(t, ray_idx, n, generator, ray_mask)
            sigma = rgb = None
        else:  # rendering: colour comes with the marching rounds, one field evaluation per sample
            def field_fn(pts, r_idx):
                with self.autocast(pts.device.type):
                    return self.field.density_features(grid.to_grid(pts))

            def colour_fn(features, r_idx):  # only for the samples that are kept
                with self.autocast(features.device.type):
                    return self.field.colour(features, vdirs[r_idx], None if code is None else code[r_idx]).float()

            t, ray_idx, evaluated, sigma, rgb = grid.march_field(o, d, rays.near, far, offset, field_fn,
                                                                      fc.render_early_stop or fc.early_stop,
                                                                      fc.alpha_min,
                                                                      fc.render_first_round, payload_fn=colour_fn,
                                                                      weight_min=fc.render_weight_min,
                                                                      window=fc.render_window,
                                                                      window_max=fc.render_window_max)
        t_start, t_end = grid.intervals(t)
        if t.numel() == 0:  # nothing occupied: one empty interval keeps the graph for backward
            t = t_start = t_end = rays.near[:1, 0]
            ray_idx = torch.zeros(1, dtype=torch.long, device=o.device)
            sigma = rgb = None
        if sigma is None:
            pts = o[ray_idx] + d[ray_idx] * t[:, None]
            with self.autocast(o.device.type):
                sigma, rgb = self.field(grid.to_grid(pts), vdirs[ray_idx],  # real directions, also in NDC
                                        None if code is None else code[ray_idx])
            if train and fc.near_grad_distance > 0 and not self.info.ndc:
                scale = near_camera_scale(t, fc.near_grad_distance)
                sigma, rgb = scale_gradient(sigma, scale), scale_gradient(rgb, scale)
        background = self.ray_background(rays)
        if background is None and fc.random_background and self.training and train and jitter is not False:
            background = torch.rand(n, 3, generator=generator, device=o.device)
        out = composite_packed(sigma.float(), rgb.float(), t_start, t_end, ray_idx, n, background, far)
        if fc.distortion_weight > 0 and train:
            # on depths normalised to [0, 1] between each ray's near and far (NDC t already is),
            # warped as the steps are (contracted: log-distance or disparity beyond the knee)
            near_s = grid.to_s(rays.near[:, 0])
            near, span = near_s[ray_idx], (grid.to_s(far[:, 0]) - near_s)[ray_idx]
            dist = distortion_loss(out["weights"], (grid.to_s(t_start) - near) / span,
                                   (grid.to_s(t_end) - near) / span, ray_idx, n)
            out["distortion"] = (dist if ray_mask is None else dist[ray_mask]).mean()
        if train and rays.depth_target is not None and self.depth_rays():
            out["depth_error"] = sparse_depth_error(out["weights"], 0.5 * (t_start + t_end), ray_idx, rays.depth_target,
                                                    fc.depth_margin, ray_mask)
        if ray_mask is not None:
            out["ray_mask"] = ray_mask
        out["ray_idx"] = ray_idx  # the ray of each sample in out["weights"]
        out["samples_per_ray"] = float(t_start.numel()) / max(n, 1)
        out["evaluated_per_ray"] = float(evaluated) / max(n, 1)
        return out

    def appearance_codes(self, cam: torch.Tensor | None, n: int, device) -> torch.Tensor | None:
        """Per-ray appearance codes (n, appearance_dim): the ray's image's code in training, else
        the mean code (new views have no code of their own); None without codes."""
        if self.appearance is None:
            return None
        if cam is not None:
            return self.appearance(cam)
        if self.code_override is not None:  # a code fitted to a held-out photo (inference/appearance_fit.py)
            return self.code_override.reshape(1, -1).expand(n, -1)
        return self.appearance.weight.mean(0, keepdim=True).expand(n, -1)

    def refined_cameras(self, c2w: torch.Tensor) -> torch.Tensor:
        """The training cameras (n_images, 4, 4) as refined (unchanged without refinement)."""
        return c2w if self.cameras is None else self.cameras.refined(c2w)

    def _rays_within_budget(self, n: int, generator, device) -> torch.Tensor | None:
        """Sorted indices of a random subset of the batch's rays whose marching, at the last
        batch's cost per ray (density evaluations plus samples), fits train_samples; None: all."""
        cost = float(self.ray_cost)
        m = n if cost <= 0 else min(n, max(64, int(self.fc.train_samples / cost)))
        if m >= n:
            return None
        return torch.randperm(n, generator=generator, device=device)[:m].sort().values

    def _sample_budget(self, t, ray_idx, n: int, generator, ray_mask=None):
        """Whole rays in a random order, as many as fit in train_samples samples (at least one):
        their samples and a mask (n,) of the rays kept."""
        counts = torch.bincount(ray_idx, minlength=n)
        perm = torch.randperm(n, generator=generator, device=t.device)
        if ray_mask is not None:  # among the rays marched
            perm = perm[ray_mask[perm]]
        within = torch.cumsum(counts[perm], 0) <= self.fc.train_samples
        within[0] = True
        keep = torch.zeros(n, dtype=torch.bool, device=t.device)
        keep[perm[within]] = True
        sel = keep[ray_idx].nonzero()[:, 0]
        return t[sel], ray_idx[sel], keep

    def loss(self, outputs: dict, target: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        rgb = outputs["rgb"]
        if "ray_mask" in outputs:  # rays skipped by the sample budget take no part
            rgb, target = rgb[outputs["ray_mask"]], target[outputs["ray_mask"]]
        mse = F.mse_loss(rgb, target)
        losses, metrics = {"rgb": mse}, {"psnr": psnr_from_mse(mse.item())}
        if self.fc.tv_weight > 0:
            gen = None
            if self.fc.tv_cells > 0:  # seeded by (train.seed, step): a resumed run draws the same cells
                gen = torch.Generator(device=target.device).manual_seed(self.seed * 1_000_003 + self.step + 500_009)
            tv = self.field.encoding.total_variation(self.fc.tv_cells, gen)
            metrics["tv"] = float(tv.detach())
            losses["tv"] = self.tv_weight() * tv
        if "distortion" in outputs:
            metrics["distortion"] = float(outputs["distortion"].detach())
            losses["distortion"] = self.distortion_weight() * outputs["distortion"]
        if "depth_error" in outputs:
            metrics["depth_error"] = float(outputs["depth_error"].detach())
            losses["depth"] = self.fc.depth_weight * outputs["depth_error"]
        if "evaluated_per_ray" in outputs:  # density evaluations spent finding the samples
            metrics["evaluated_per_ray"] = outputs["evaluated_per_ray"]
        return losses, metrics

    def depth_rays(self) -> int:
        """Rays per batch through the sparse depth's keypoints (0: no depth loss)."""
        return self.fc.depth_rays if self.fc.depth_weight > 0 and not self.info.ndc else 0

    def tv_weight(self) -> float:
        """model.fast.tv_weight, times the learning rate's decay so far with tv_decay (TensoRF's
        schedule: a strong prior early, against floaters, that lets fine detail in late)."""
        return self.fc.tv_weight * (self.lr_factor if self.fc.tv_decay else 1.0)

    def distortion_weight(self) -> float:
        """model.fast.distortion_weight, ramped up linearly over the first distortion_warmup steps."""
        warm = self.fc.distortion_warmup
        return self.fc.distortion_weight * (min(1.0, self.step / warm) if warm > 0 else 1.0)

    def param_groups(self, lr: float) -> list[dict]:
        s = self.fc.grid_lr_scale
        groups = [{"name": "grid", "params": self.field.grid_parameters(), "lr": lr * s, "lr_scale": s},
                  {"name": "mlp", "params": self.field.mlp_parameters(), "lr": lr, "lr_scale": 1.0}]
        if self.appearance is not None:
            groups.append({"name": "appearance", "params": list(self.appearance.parameters()), "lr": lr, "lr_scale": 1.0})
        if self.cameras is not None:
            p = self.fc.pose_lr_scale
            groups.append({"name": "cameras", "params": list(self.cameras.parameters()), "lr": lr * p, "lr_scale": p})
        return groups
