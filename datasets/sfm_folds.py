"""Folded structure-from-motion models: found and remapped (a step of process-data).

A capture of a symmetric or repetitive scene (a can on a tiled floor, a facade) has image pairs
that match well although the photos were taken from opposite sides. Incremental mapping can then
place a whole run of images on the wrong side of the object: the model "folds", and two photos
taken a fraction of a second apart come out facing opposite ways. The sign is in the matches:
two images that share many verified matches cannot look in opposite directions (SIFT does not
match a surface across such a change of view), so such a pair of neighbouring images means the
model is wrong, while such a pair of distant images means the matches are.

The repair keeps only the pairs of images close in name order (a video's frames, and photo sets
numbered as they were taken) and maps again; the new model is kept when it registers as many
images and folds less. Built from neighbours only, it drifts along the path (one object seen twice
in two places); so the distant pairs whose images look the same way in it (the loop closures) are
put back and the images mapped a third time, and that model is kept if it does not fold again."""
from __future__ import annotations

from pathlib import Path

import numpy as np

MIN_INLIERS = 30  # verified matches for a pair to count as seeing the same surface
OPPOSITE_DEGREES = 100.0  # optical axes further apart than this cannot share that many matches
MIN_FOLDED_PAIRS = 1  # neighbouring pairs facing opposite ways that make a model folded (one is a fold)
LOOP_DEGREES = 60.0  # distant pairs looking closer than this in the unfolded model are loop closures


def verified_pairs(db: Path) -> list[tuple[str, str, int]]:
    """(name_a, name_b, inlier matches) of every verified pair in a COLMAP database."""
    import pycolmap

    database = pycolmap.Database.open(db)
    try:
        names = {im.image_id: im.name for im in database.read_all_images()}
        ids, geometries = database.read_two_view_geometries()
    finally:
        database.close()
    pairs = []
    for pair_id, geometry in zip(ids, geometries):
        a, b = pycolmap.pair_id_to_image_pair(pair_id)
        pairs.append((names[a], names[b], len(geometry.inlier_matches)))
    return pairs


def optical_axes(rec) -> dict[str, np.ndarray]:
    """Viewing direction (world frame) of each registered image of a pycolmap.Reconstruction, by name."""
    return {rec.images[i].name: np.asarray(rec.images[i].cam_from_world().rotation.matrix())[2]
            for i in rec.reg_image_ids()}


def opposite_pairs(axes: dict[str, np.ndarray], pairs: list[tuple[str, str, int]],
                   min_inliers: int = MIN_INLIERS, degrees: float = OPPOSITE_DEGREES) -> list[tuple[str, str, int]]:
    """The pairs with at least `min_inliers` verified matches whose images both sit in the model
    and look more than `degrees` apart."""
    limit = np.cos(np.radians(degrees))
    return [(a, b, n) for a, b, n in pairs
            if n >= min_inliers and a in axes and b in axes and float(axes[a] @ axes[b]) < limit]


def name_order(names: list[str]) -> dict[str, int]:
    """Each image's position in name order (capture order for a video's frames and numbered photos)."""
    return {n: i for i, n in enumerate(sorted(names))}


def split_by_distance(pairs: list[tuple[str, str, int]], names: list[str], overlap: int
                      ) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]]:
    """(pairs at most `overlap` apart in name order, the others)."""
    order = name_order(names)
    near = [p for p in pairs if abs(order[p[0]] - order[p[1]]) <= overlap]
    far = [p for p in pairs if abs(order[p[0]] - order[p[1]]) > overlap]
    return near, far


def folded_pairs(rec, pairs: list[tuple[str, str, int]], names: list[str], overlap: int) -> list[tuple[str, str, int]]:
    """Neighbouring pairs (at most `overlap` apart in name order) that share many matches yet face
    opposite ways in the model `rec`: the model's folds."""
    near, _ = split_by_distance(pairs, names, overlap)
    return opposite_pairs(optical_axes(rec), near)


def is_folded(folds: list) -> bool:
    return len(folds) >= MIN_FOLDED_PAIRS


def keep_near_pairs(db: Path, names: list[str], overlap: int) -> list[tuple[int, int, object]]:
    """Delete the verified geometry of every pair more than `overlap` apart in name order from the
    database (their raw matches stay); returns what was deleted, (image_id_a, image_id_b,
    pycolmap.TwoViewGeometry), for `restore_pairs`."""
    import pycolmap

    order = name_order(names)
    database = pycolmap.Database.open(db)
    try:
        by_id = {im.image_id: im.name for im in database.read_all_images()}
        ids, geometries = database.read_two_view_geometries()
        dropped = []
        for pair_id, geometry in zip(ids, geometries):
            a, b = pycolmap.pair_id_to_image_pair(pair_id)
            if abs(order[by_id[a]] - order[by_id[b]]) > overlap:
                database.delete_two_view_geometry(a, b)
                dropped.append((a, b, geometry))
    finally:
        database.close()
    return dropped


def restore_pairs(db: Path, dropped: list[tuple[int, int, object]], rec, degrees: float = LOOP_DEGREES) -> int:
    """Write back the dropped pairs whose images look within `degrees` of each other in the
    unfolded model `rec`: the loop closures (the same side of the scene seen again later), which
    undo the drift of a model built from neighbours only, without the matches across the scene
    that folded it. Returns how many were written back."""
    import pycolmap

    axes = optical_axes(rec)
    limit = np.cos(np.radians(degrees))
    database = pycolmap.Database.open(db)
    try:
        by_id = {im.image_id: im.name for im in database.read_all_images()}
        back = 0
        for a, b, geometry in dropped:
            na, nb = by_id[a], by_id[b]
            if na in axes and nb in axes and float(axes[na] @ axes[nb]) > limit:
                database.write_two_view_geometry(a, b, geometry)
                back += 1
    finally:
        database.close()
    return back
