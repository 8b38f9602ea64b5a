"""Format detection and dispatch: a folder (or None for the built-in scene) -> a `Scene` split.

Loaders register a `detect(root) -> bool` and a `load(root, split, opts) -> Scene`; detection
tries them in order, and a folder that matches none gets an error naming what was looked for.

Folders often hold more than one format's files; the order settles it:
1. blender: transforms_train.json with a transforms_val.json or transforms_test.json beside it
   (a lone transforms_train.json that holds frames is an instant-ngp capture: 2.);
2. transforms: transforms.json (nerfstudio, instant-ngp), even beside nerfstudio's colmap/ model;
3. colmap: a sparse model (sparse/0, sparse, colmap/sparse/0 or the folder), even beside a
   poses_bounds.npy (COLMAP's model is the fuller description of the same photos), except when
   that poses_bounds.npy is forward-facing: LLFF's own scenes ship their sparse/ model too, and
   are read as LLFF (NDC rays), as the NeRF paper does;
4. llff: poses_bounds.npy.
data.format names a loader and skips detection.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from nerf.datasets.blender import is_blender, load_blender
from nerf.datasets.colmap import MODEL_DIRS, is_colmap, load_colmap
from nerf.datasets.errors import DatasetError
from nerf.datasets.llff import is_llff, llff_forward_facing, load_llff
from nerf.datasets.options import DataOptions
from nerf.datasets.scene import Scene
from nerf.datasets.synthetic import load_synthetic
from nerf.datasets.transforms_json import is_lone_train_capture, is_transforms_json, load_transforms_json


def _blender(root: Path) -> bool:
    return is_blender(root) and not is_lone_train_capture(root)


def _colmap(root: Path) -> bool:
    return is_colmap(root) and not (is_llff(root) and llff_forward_facing(root))


# name -> (detect, load, what detection looks for), tried in this order (see the module docstring)
FORMATS: dict[str, tuple[Callable[[Path], bool], Callable[[Path, str, DataOptions], Scene], str]] = {
    "blender": (_blender, load_blender, "transforms_train.json"),
    "transforms": (is_transforms_json, load_transforms_json, "transforms.json"),
    "colmap": (_colmap, load_colmap,
               "cameras.bin/.txt + images.bin/.txt in " + ", ".join(d for d in MODEL_DIRS if d != ".") + " or the folder"),
    "llff": (is_llff, load_llff, "poses_bounds.npy"),
}


def detect_format(root: Path) -> str:
    for name, (detect, _, _) in FORMATS.items():
        if detect(root):
            return name
    looked = ", ".join(f"{what} ({name})" for name, (_, _, what) in FORMATS.items())
    raise DatasetError(f"{root}: no known dataset format found; looked for {looked}")


def load_scene(opts: DataOptions, split: str) -> Scene:
    """Load split 'train', 'val' or 'test' of the scene that `opts` names."""
    if opts.path is None or opts.format == "builtin":
        return load_synthetic(split, opts)
    root = Path(opts.path).expanduser()
    if not root.exists():
        raise DatasetError(f"{root}: dataset folder not found")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (pass the scene folder, not a file in it)")
    fmt = detect_format(root) if opts.format == "auto" else opts.format
    if fmt not in FORMATS:
        raise DatasetError(f"data.format: unknown format {fmt!r}; known: auto, builtin, {', '.join(FORMATS)}")
    return FORMATS[fmt][1](root, split, opts)
