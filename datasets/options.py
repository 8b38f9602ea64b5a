"""What a caller may ask of a loader: the `data.*` section of a run's config."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SyntheticOptions:
    """The built-in procedural scene (`datasets.synthetic`)."""

    seed: int = 0
    resolution: int = 64
    n_train: int = 40
    n_val: int = 4
    n_test: int = 12
    supersample: int = 4  # rays per pixel side: a faithful area average even where rods are thinner than a pixel
    fov_degrees: float = 40.0
    random_content: bool = False  # draw the shapes from the seed too (seed 0 stays the reference scene)
    # Materials and shapes real benchmarks have (datasets/synthetic.py), each off by default:
    gloss: float = 0.0  # weight of a white Blinn-Phong highlight on every surface (moves with the view)
    shininess: float = 40.0  # its exponent
    metal: bool = False  # the blue sphere becomes polished metal mirroring a procedural environment
    rods: int = 0  # thin upright rods standing on the slab in a ring
    rod_radius: float = 0.015  # their radius (a 64x64 view's pixel spans about 0.045 at the centre)
    grille: bool = False  # an upright panel of fine black and white bars behind the objects
    grille_period: float = 0.1  # width of one black and one white bar
    glass: float = 0.0  # opacity of a tinted semi-transparent sphere in front (0: none)
    exposure: float = 0.0  # per training image, a random exposure and white balance change of this log-spread
    pose_noise: float = 0.0  # training poses given with a random error of this many degrees (and shift, see synthetic.py)
    unbounded: bool = False  # a textured sky sphere far outside the objects: no alpha, an unbounded capture


@dataclass
class DataOptions:
    """path: the scene folder (None = the built-in scene); format: auto-detected unless named
    (blender, llff, transforms, colmap, builtin); downscale: integer image reduction (area-averaged;
    LLFF reads the images_K folder instead, configs/llff.yaml sets 8); max_side: real captures
    (transforms.json, COLMAP), when > 0: the downscale grows until the images' longer side is at
    most this many pixels (nerfstudio caps its automatic downscale the same way), so a capture of
    full-size phone photos or 4K frames trains and renders at a size this CPU handles (0: downscale
    as given); max_images: cap per split
    (0 = all); view_offset, view_count: a block of the views max_images keeps (skip the first
    view_offset, then keep view_count of them; 0 = the rest), so a large split can be loaded and
    scored a block at a time; background: white | black, for formats with alpha (real photos have none and are
    rendered over black).

    Real captures (LLFF, transforms.json, COLMAP): holdout_every: when the files give no split,
    every N-th view (0, N, 2N, ...) is the test (and val) split and the rest train; ndc: LLFF
    forward-facing scenes are rendered in normalised device coordinates (ignored with spherify and
    by other formats); spherify: LLFF inward-facing 360 captures, poses centred on the point the
    cameras look at and scaled to mean radius 1 (no NDC); near, far: ray bounds in the loader's
    normalised world units (0 = derived from the data; not used with NDC)."""

    path: str | None = None
    format: str = "auto"
    downscale: int = 1
    max_side: int = 0
    max_images: int = 0
    view_offset: int = 0
    view_count: int = 0
    background: str = "white"
    holdout_every: int = 8
    ndc: bool = True
    spherify: bool = False
    near: float = 0.0
    far: float = 0.0
    synthetic: SyntheticOptions = field(default_factory=SyntheticOptions)

    def validate(self) -> list[str]:
        """Problems with these options as `key: reason` strings (empty if fine)."""
        errs = []
        if self.downscale < 1:
            errs.append(f"data.downscale: must be >= 1, got {self.downscale}")
        if self.max_side < 0:
            errs.append(f"data.max_side: must be >= 0 (0 = no cap), got {self.max_side}")
        if self.max_images < 0:
            errs.append(f"data.max_images: must be >= 0, got {self.max_images}")
        if self.view_offset < 0 or self.view_count < 0:
            errs.append(f"data.view_offset/view_count: must be >= 0, got {self.view_offset}, {self.view_count}")
        if self.holdout_every < 2:
            errs.append(f"data.holdout_every: must be >= 2, got {self.holdout_every}")
        if self.near < 0 or self.far < 0:
            errs.append(f"data.near/data.far: must be >= 0 (0 = from the data), got {self.near}, {self.far}")
        elif self.far and self.near >= self.far:
            errs.append(f"data.near: must be below data.far, got {self.near} >= {self.far}")
        if self.background not in ("white", "black"):
            errs.append(f"data.background: must be 'white' or 'black', got {self.background!r}")
        s = self.synthetic
        if s.resolution < 8:
            errs.append(f"data.synthetic.resolution: must be >= 8, got {s.resolution}")
        if min(s.n_train, s.n_val, s.n_test) < 1:
            errs.append("data.synthetic.n_train/n_val/n_test: must each be >= 1")
        if s.supersample < 1:
            errs.append(f"data.synthetic.supersample: must be >= 1, got {s.supersample}")
        if not 1.0 <= s.fov_degrees <= 170.0:
            errs.append(f"data.synthetic.fov_degrees: must be in [1, 170], got {s.fov_degrees}")
        if s.gloss < 0 or s.shininess <= 0:
            errs.append(f"data.synthetic.gloss/shininess: must be >= 0 and > 0, got {s.gloss}, {s.shininess}")
        if s.rods < 0 or not 0 < s.rod_radius < 0.2:
            errs.append(f"data.synthetic.rods/rod_radius: must be >= 0 and in (0, 0.2), got {s.rods}, {s.rod_radius}")
        if not 0 < s.grille_period < 1:
            errs.append(f"data.synthetic.grille_period: must be in (0, 1), got {s.grille_period}")
        if not 0 <= s.glass < 1:
            errs.append(f"data.synthetic.glass: must be in [0, 1), got {s.glass}")
        return errs
