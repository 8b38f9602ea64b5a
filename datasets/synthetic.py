"""The built-in procedural scene: analytic shapes, textured and shaded, ray-cast exactly.

Two spheres and a rotated box stand on a slab inside [-1.1, 1.1]^3 (z up, as in Blender). Colour
is a smooth procedural texture times Lambertian shading from a fixed light, so it does not depend
on the view direction; pixels are averaged over `supersample`^2 rays (premultiplied, like a real
camera's area integral), and the true depth (distance along the pixel-centre ray, inf on a miss)
comes with every view. Cameras sit on a sphere of radius 4 looking at the origin; train, val and
test views are drawn from separate random streams of `seed`, so test views are genuinely held out.
Any seed and resolution are generated in memory in about a second.

With `random_content` the seed also draws the shapes (positions, sizes, rotation, colours and
texture frequencies of the two spheres and the box; the slab stays): a family of scenes for
meta-learning. Seed 0 is always the reference scene above, with or without it.

Variants with what real benchmarks have and the reference scene lacks, each a `data.synthetic.*`
option and still exact: `gloss` (a white highlight that moves with the view), `metal` (the blue
sphere mirrors a procedural environment: colour that depends on the view alone), `rods` (thin
upright tubes a pixel or two wide), `grille` (a panel of fine high-contrast bars) and `glass`
(a semi-transparent tinted sphere, composited exactly over what lies behind it).

What real captures get wrong, on the training split only (held-out views stay exact):
`exposure` multiplies each training photo by a random gain and white balance (log-normal with
this spread, the white balance at half of it), as a phone's auto-exposure does; `pose_noise`
gives each training camera a pose off by a rotation of that many degrees about a random axis
through its centre and a shift of pose_noise * POSE_SHIFT in a random direction.

`unbounded` turns the scene into a real capture's kind: a textured sky sphere of radius SKY around
the objects fills every pixel (no alpha), and the world is scaled as the capture loaders scale
theirs (cameras on the unit sphere), so the sky lies far outside the unit ball.
"""
from __future__ import annotations

import math

import torch

from nerf.datasets.imageops import composite_stack_, downscale_area
from nerf.datasets.options import DataOptions, SyntheticOptions
from nerf.datasets.scene import Cameras, Scene, select_views
from nerf.render.paths import look_at
from nerf.render.rays import image_rays
from nerf.render.rotations import so3_exp

RADIUS = 4.0
NEAR, FAR = 2.4, 5.6
BBOX = ((-1.1, -1.1, -1.1), (1.1, 1.1, 1.1))
POSE_SHIFT = 0.02  # scene units of shift per degree of pose_noise (a percent of the cameras' distance at 2 degrees)
SKY = 24.0  # radius of the unbounded variant's sky sphere, in the scene's units
LIGHT = torch.nn.functional.normalize(torch.tensor([0.5, -0.35, 0.8]), dim=0)
AMBIENT = 0.3

# (centre, radius, base colour A, base colour B, stripe frequency)
SPHERES = (
    ((-0.40, -0.15, 0.00), 0.45, (0.90, 0.30, 0.15), (0.95, 0.80, 0.20), 3.0),
    ((0.50, 0.45, -0.15), 0.30, (0.15, 0.45, 0.90), (0.60, 0.90, 0.95), 2.0),
)
# (centre, half size, rotation about z in degrees, colour A, colour B, checker cells per unit)
BOXES = (
    ((0.40, -0.45, -0.15), (0.22, 0.22, 0.30), 30.0, (0.20, 0.75, 0.30), (0.95, 0.95, 0.85), 4.0),
    ((0.00, 0.00, -0.55), (0.95, 0.95, 0.05), 0.0, (0.55, 0.55, 0.60), (0.30, 0.30, 0.35), 2.5),
)


def scene_content(seed: int = 0, random_content: bool = False) -> tuple[tuple, tuple]:
    """(spheres, boxes) in the format of SPHERES and BOXES: the reference scene, or with
    `random_content` and seed != 0 shapes drawn from the seed, standing on the unchanged slab."""
    if not random_content or seed == 0:
        return SPHERES, BOXES
    g = torch.Generator().manual_seed(seed * 1000 + 7)
    u = lambda lo, hi, n=None: (lo + (hi - lo) * torch.rand(n or 1, generator=g)).tolist()  # noqa: E731
    top = BOXES[1][0][2] + BOXES[1][1][2]  # the slab's upper face
    spheres = []
    for _ in range(2):
        r = u(0.2, 0.45)[0]
        x, y = u(-0.6, 0.6, 2)
        spheres.append(((x, y, top + r + u(0.0, 0.1)[0]), r, tuple(u(0.1, 0.95, 3)), tuple(u(0.1, 0.95, 3)),
                        u(1.5, 4.0)[0]))
    half = tuple(u(0.12, 0.3, 3))
    x, y = u(-0.6, 0.6, 2)
    box = ((x, y, top + half[2]), half, u(0.0, 90.0)[0], tuple(u(0.1, 0.95, 3)), tuple(u(0.1, 0.95, 3)),
           u(2.0, 5.0)[0])
    return tuple(spheres), (box, BOXES[1])


def _sphere_hits(o, d, centre, radius):
    """Distance to the first hit (inf on miss) and the outward normal there."""
    c = torch.tensor(centre)
    oc = o - c
    b = (oc * d).sum(-1)
    disc = b * b - ((oc * oc).sum(-1) - radius**2)
    sq = torch.sqrt(disc.clamp_min(0))
    t = torch.where(-b - sq > 1e-6, -b - sq, -b + sq)
    t = torch.where((disc > 0) & (t > 1e-6), t, torch.full_like(t, math.inf))
    p = o + d * t.nan_to_num(posinf=0.0)[:, None]
    return t, (p - c) / radius


def _rot_z(deg: float) -> torch.Tensor:
    a = math.radians(deg)
    return torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])


def _box_hits(o, d, centre, half, deg):
    """Slab-method hit distance (inf on miss) and world normal for a box rotated about z."""
    rot = _rot_z(deg)
    lo = (o - torch.tensor(centre)) @ rot  # world -> box frame (rot is orthonormal)
    ld = d @ rot
    h = torch.tensor(half)
    inv = 1.0 / torch.where(ld.abs() < 1e-12, torch.full_like(ld, 1e-12), ld)
    t0, t1 = (-h - lo) * inv, (h - lo) * inv
    tmin, tmax = torch.minimum(t0, t1), torch.maximum(t0, t1)
    t_near, axis = tmin.max(-1)
    t_far = tmax.min(-1).values
    hit = (t_near <= t_far) & (t_far > 1e-6)
    t = torch.where(hit, torch.where(t_near > 1e-6, t_near, t_far), torch.full_like(t_near, math.inf))
    n_local = torch.nn.functional.one_hot(axis, 3).float() * -torch.sign(ld.gather(-1, axis[:, None]))
    return t, n_local @ rot.T


def _mix(a, b, w):
    return torch.tensor(a) * (1 - w[:, None]) + torch.tensor(b) * w[:, None]


def shade(origins: torch.Tensor, dirs: torch.Tensor, content: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact colour (n, 3) and hit distance (n,) of unit rays; colour is 0 where nothing is hit.

    content: (spheres, boxes) from `scene_content`; the reference scene when None."""
    spheres, boxes = content if content is not None else (SPHERES, BOXES)
    best_t = torch.full((origins.shape[0],), math.inf)
    colour = torch.zeros(origins.shape[0], 3)
    normal = torch.zeros(origins.shape[0], 3)
    for centre, radius, ca, cb, freq in spheres:
        t, n = _sphere_hits(origins, dirs, centre, radius)
        closer = t < best_t
        p_local = n  # unit vector from the centre
        w = 0.5 + 0.5 * torch.sin(freq * math.pi * p_local[:, 2] + 2.0 * torch.atan2(p_local[:, 1], p_local[:, 0]))
        colour = torch.where(closer[:, None], _mix(ca, cb, w), colour)
        normal = torch.where(closer[:, None], n, normal)
        best_t = torch.where(closer, t, best_t)
    for centre, half, deg, ca, cb, cells in boxes:
        t, n = _box_hits(origins, dirs, centre, half, deg)
        closer = t < best_t
        p = origins + dirs * t.nan_to_num(posinf=0.0)[:, None]
        q = cells * math.pi * p
        s = torch.sin(q[:, 0]) * torch.sin(q[:, 1]) * torch.cos(q[:, 2])
        w = 0.5 + 0.5 * torch.tanh(4.0 * s)  # a soft checker
        colour = torch.where(closer[:, None], _mix(ca, cb, w), colour)
        normal = torch.where(closer[:, None], n, normal)
        best_t = torch.where(closer, t, best_t)
    lambert = (normal @ LIGHT).clamp_min(0.0)
    colour = colour * (AMBIENT + (1 - AMBIENT) * lambert[:, None])
    return colour.clamp(0, 1), best_t


SLAB_TOP = BOXES[1][0][2] + BOXES[1][1][2]
# rods stand on a ring of this radius (clear of the reference shapes), from the slab's underside up
ROD_RING, ROD_BOTTOM, ROD_TOP = 1.02, BOXES[1][0][2] - BOXES[1][1][2], 0.55
GRILLE_BOX = ((0.0, 0.98, -0.02), (0.75, 0.01, 0.48), 0.0)  # centre, half size, rotation: behind the spheres
GLASS = ((-0.30, -0.80, SLAB_TOP + 0.23), 0.22, (0.55, 0.85, 1.0))  # centre, radius, tint
METAL_TINT = torch.tensor([0.95, 0.88, 0.70])


def environment(r: torch.Tensor) -> torch.Tensor:
    """(n, 3) colour the metal sphere mirrors in the unit directions `r` (n, 3): a sky that
    brightens upwards, crossed by coloured bands around the horizon."""
    up = r[:, 2:3]
    sky = torch.tensor([0.25, 0.45, 0.85]) * (0.5 + 0.5 * up) + torch.tensor([0.9, 0.6, 0.3]) * (0.5 - 0.5 * up)
    bands = 0.5 + 0.5 * torch.tanh(6.0 * torch.sin(5.0 * torch.atan2(r[:, 1], r[:, 0])))[:, None]
    return (sky * (0.55 + 0.45 * bands)).clamp(0, 1)


def sky(origins: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour (n, 3) and distance (n,) where unit rays from inside the sky sphere meet it: a
    texture fixed on the sphere (the environment's gradient and bands, with a finer checker), so
    it moves with parallax like any far surface."""
    b = (origins * dirs).sum(-1)
    t = -b + torch.sqrt(b * b - ((origins * origins).sum(-1) - SKY ** 2))
    p = torch.nn.functional.normalize(origins + dirs * t[:, None], dim=-1)
    az, el = torch.atan2(p[:, 1], p[:, 0]), torch.asin(p[:, 2].clamp(-1, 1))
    checker = 0.5 + 0.5 * torch.tanh(4.0 * torch.sin(12.0 * az) * torch.sin(12.0 * el))
    return environment(p) * (0.7 + 0.3 * checker[:, None]), t


def _tube_hits(o, d, axis_xy, radius, z0, z1):
    """Distance to the first hit (inf on miss) of an upright open tube (x - ax)^2 + (y - ay)^2 = r^2,
    z0 <= z <= z1, and its normal facing the ray."""
    ox, dx = o[:, :2] - torch.tensor(axis_xy), d[:, :2]
    a = (dx * dx).sum(-1).clamp_min(1e-12)
    b = (ox * dx).sum(-1)
    disc = b * b - a * ((ox * ox).sum(-1) - radius**2)
    sq = torch.sqrt(disc.clamp_min(0))
    t = torch.full_like(b, math.inf)
    for cand in ((-b + sq) / a, (-b - sq) / a):  # the nearer one last, so it wins when valid
        z = o[:, 2] + d[:, 2] * cand
        ok = (disc > 0) & (cand > 1e-6) & (z >= z0) & (z <= z1)
        t = torch.where(ok, cand, t)
    p = o + d * t.nan_to_num(posinf=0.0)[:, None]
    n = torch.nn.functional.pad(p[:, :2] - torch.tensor(axis_xy), (0, 1)) / radius
    n = torch.where(((n * d).sum(-1, keepdim=True) > 0), -n, n)
    return t, n


def shade_variant(origins: torch.Tensor, dirs: torch.Tensor, content: tuple | None,
                  so) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact premultiplied colour (n, 3), alpha (n,) and hit distance (n,) of unit rays through the
    scene with the variants `so` (SyntheticOptions) asks for; the reference scene's `shade` when
    none is on."""
    spheres, boxes = content if content is not None else (SPHERES, BOXES)
    colour, t = shade(origins, dirs, content)
    hit = torch.isfinite(t)
    p = origins + dirs * t.nan_to_num(posinf=0.0)[:, None]
    if so.metal or so.gloss:
        normal = torch.zeros_like(p)  # the normal at the hit, recomputed for the shapes that need it
        for centre, radius, *_ in spheres:
            on = hit & ((p - torch.tensor(centre)).norm(dim=-1) - radius).abs().lt(1e-4)
            normal = torch.where(on[:, None], (p - torch.tensor(centre)) / radius, normal)
        for centre, half, deg, *_ in boxes:
            tb, nb = _box_hits(origins, dirs, centre, half, deg)
            normal = torch.where((hit & (tb == t))[:, None], nb, normal)
    if so.metal:
        centre, radius = spheres[1][0], spheres[1][1]
        on = hit & ((p - torch.tensor(centre)).norm(dim=-1) - radius).abs().lt(1e-4)
        n = normal
        mirrored = dirs - 2.0 * (dirs * n).sum(-1, keepdim=True) * n
        colour = torch.where(on[:, None], METAL_TINT * environment(mirrored), colour)
    if so.gloss:
        h = torch.nn.functional.normalize(LIGHT - dirs, dim=-1)
        spec = (normal * h).sum(-1).clamp_min(0.0) ** so.shininess * (normal @ LIGHT > 0)
        colour = torch.where(hit[:, None], (colour + so.gloss * spec[:, None]).clamp(0, 1), colour)
    extra = []  # (distance, colour) of the added opaque shapes
    for k in range(so.rods):
        ang = 2 * math.pi * (k + 0.5) / so.rods
        tr, nr = _tube_hits(origins, dirs, (ROD_RING * math.cos(ang), ROD_RING * math.sin(ang)), so.rod_radius,
                            ROD_BOTTOM, ROD_TOP)
        lit = AMBIENT + (1 - AMBIENT) * (nr @ LIGHT).clamp_min(0.0)
        extra.append((tr, torch.tensor([0.30, 0.28, 0.26]) * lit[:, None]))
    if so.grille:
        centre, half, deg = GRILLE_BOX
        tg, ng = _box_hits(origins, dirs, centre, half, deg)
        pg = origins + dirs * tg.nan_to_num(posinf=0.0)[:, None]
        bar = (torch.sin(2 * math.pi * pg[:, 0] / so.grille_period) > 0).float()[:, None]
        lit = AMBIENT + (1 - AMBIENT) * (ng @ LIGHT).abs()
        extra.append((tg, (0.05 + 0.9 * bar) * lit[:, None]))
    for te, ce in extra:
        closer = te < t
        colour = torch.where(closer[:, None], ce.clamp(0, 1), colour)
        t = torch.where(closer, te, t)
    alpha = torch.isfinite(t).float()
    rgb = colour * alpha[:, None]
    if so.glass:
        centre, radius, tint = GLASS
        tg, ng = _sphere_hits(origins, dirs, centre, radius)
        front = tg < t
        lit = AMBIENT + (1 - AMBIENT) * (ng @ LIGHT).clamp_min(0.0)
        glass_rgb = torch.tensor(tint) * lit[:, None]
        a = so.glass * front.float()
        rgb = a[:, None] * glass_rgb + (1 - a[:, None]) * rgb
        alpha = a + (1 - a) * alpha
        t = torch.where(front, tg, t)
    return rgb, alpha, t


def has_variants(so) -> bool:
    return bool(so.gloss or so.metal or so.rods or so.grille or so.glass)


def camera_positions(n: int, generator: torch.Generator) -> torch.Tensor:
    """`n` random points on the sphere of radius 4, elevation between -15 and 75 degrees."""
    az = torch.rand(n, generator=generator) * 2 * math.pi
    sin_lo, sin_hi = math.sin(math.radians(-15)), math.sin(math.radians(75))
    el = torch.asin(sin_lo + (sin_hi - sin_lo) * torch.rand(n, generator=generator))
    return RADIUS * torch.stack([torch.cos(el) * torch.cos(az), torch.cos(el) * torch.sin(az), torch.sin(el)], -1)


def make_cameras(opts: SyntheticOptions, split: str) -> Cameras:
    """Cameras of one split; each split has its own random stream so views never coincide."""
    n = {"train": opts.n_train, "val": opts.n_val, "test": opts.n_test}[split]
    gen = torch.Generator().manual_seed(opts.seed * 1000 + {"train": 1, "val": 2, "test": 3}[split])
    eye = camera_positions(n, gen)
    c2w = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    res = opts.resolution
    focal = 0.5 * res / math.tan(0.5 * math.radians(opts.fov_degrees))
    full = lambda v: torch.full((n,), float(v))  # noqa: E731
    return Cameras(c2w=c2w, fx=full(focal), fy=full(focal), cx=full(res / 2), cy=full(res / 2), width=res, height=res)


def render_view(cameras: Cameras, index: int, supersample: int, content: tuple | None = None,
                so=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Premultiplied RGB (H, W, 3), alpha (H, W) and pixel-centre depth (H, W) of one view, with
    the variants of `so` (SyntheticOptions) when given. Depth is the first surface's, the glass
    sphere's included."""
    h, w = cameras.height, cameras.width
    variants = so is not None and has_variants(so)
    rays = image_rays(cameras, index, NEAR, FAR, scale=supersample)
    if variants:
        rgb, alpha, _ = shade_variant(rays.origins, rays.directions, content, so)
    else:
        rgb, t = shade(rays.origins, rays.directions, content)
        alpha = torch.isfinite(t).float()
        rgb = rgb * alpha[:, None]
    unbounded = so is not None and so.unbounded
    if unbounded:  # the sky behind whatever the objects leave uncovered
        rgb = rgb + (1.0 - alpha[:, None]) * sky(rays.origins, rays.directions)[0]
        alpha = torch.ones_like(alpha)
    rgba = torch.cat([rgb, alpha[:, None]], -1).reshape(h * supersample, w * supersample, 4)
    rgba = downscale_area(rgba, supersample)
    centre = image_rays(cameras, index, NEAR, FAR)
    if variants:
        depth = shade_variant(centre.origins, centre.directions, content, so)[2]
    else:
        depth = shade(centre.origins, centre.directions, content)[1]
    if unbounded:
        depth = torch.where(torch.isfinite(depth), depth, sky(centre.origins, centre.directions)[1])
    return rgba[..., :3], rgba[..., 3], depth.reshape(h, w)


def _photo_errors(images: torch.Tensor, cams: Cameras, so, split: str, keep: list[int],
                  n_split: int) -> tuple[torch.Tensor, Cameras]:
    """The training split's exposure changes and pose errors (see the module docstring): drawn for
    all `n_split` views, so views `keep` get the same errors however the split is cut."""
    if split != "train" or not (so.exposure or so.pose_noise):
        return images, cams
    g = torch.Generator().manual_seed(so.seed * 1000 + 11)
    n = n_split
    gain = torch.exp(so.exposure * torch.randn(n, 1, generator=g) + 0.5 * so.exposure * torch.randn(n, 3, generator=g))
    images = (images * gain[keep][:, None, None, :]).clamp(0, 1)
    axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)[keep]
    shift = (torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * so.pose_noise * POSE_SHIFT)[keep]
    if so.pose_noise:
        c2w = cams.c2w.clone()
        c2w[:, :3, :3] = so3_exp(axis * math.radians(so.pose_noise)) @ c2w[:, :3, :3]
        c2w[:, :3, 3] += shift
        cams = Cameras(c2w=c2w, fx=cams.fx, fy=cams.fy, cx=cams.cx, cy=cams.cy, width=cams.width, height=cams.height)
    return images, cams


def load_synthetic(split: str, opts: DataOptions) -> Scene:
    """One split of the built-in scene as a `Scene`, with true depth."""
    so = opts.synthetic
    cams = make_cameras(so, split)
    n_split = len(cams)
    keep, in_split = select_views(n_split, opts, "the built-in scene")
    cams = cams[keep]
    if opts.downscale > 1:
        cams = cams.scaled(1.0 / opts.downscale)
    bg = torch.ones(3) if opts.background == "white" else torch.zeros(3)
    content = scene_content(so.seed, so.random_content)
    views = [render_view(cams, i, so.supersample, content, so) for i in range(len(cams))]
    rgb = torch.stack([v[0] for v in views])
    alpha = torch.stack([v[1] for v in views])
    depth = torch.stack([v[2] for v in views])
    images = composite_stack_(rgb, alpha, bg)
    images, cams = _photo_errors(images, cams, so, split, keep, n_split)
    near, far, bbox, meta = NEAR, FAR, torch.tensor(BBOX), {"format": "builtin", "seed": so.seed,
                                                             "random_content": so.random_content,
                                                             "views_in_split": in_split}
    if so.unbounded:  # a capture's frame: cameras on the unit sphere, no alpha, sky out to SKY / RADIUS
        s = 1.0 / RADIUS
        c2w = cams.c2w.clone()
        c2w[:, :3, 3] *= s
        cams = Cameras(c2w=c2w, fx=cams.fx, fy=cams.fy, cx=cams.cx, cy=cams.cy, width=cams.width, height=cams.height)
        near, far, bbox, depth = NEAR * s, (SKY + RADIUS) * s, bbox * s, depth * s
        alpha, bg = None, torch.zeros(3)
        meta.update(scale=s, centre=[0.0, 0.0, 0.0], render_path="orbit")
    return Scene(
        name="builtin", split=split, images=images, cameras=cams, near=near, far=far,
        bbox=bbox, background=bg, alpha=alpha, depth=depth,
        image_names=[f"{split}_{i:03d}" for i in keep], metadata=meta,
    )
