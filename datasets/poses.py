"""Checks and small conversions of camera poses shared by the loaders."""
from __future__ import annotations

import numpy as np

from datasets.errors import DatasetError


def check_poses(c2w: np.ndarray, source: str, tol: float = 1e-2) -> None:
    """Refuse poses that are not finite rigid transforms; the message names `source` and the index."""
    if not np.all(np.isfinite(c2w)):
        bad = int(np.argwhere(~np.isfinite(c2w).reshape(len(c2w), -1).all(axis=1))[0, 0])
        raise DatasetError(f"{source}: pose {bad} has non-finite values")
    rot = c2w[:, :3, :3]
    gram = rot @ np.swapaxes(rot, 1, 2)
    err = np.abs(gram - np.eye(3)).reshape(len(c2w), -1).max(axis=1)
    if np.any(err > tol):
        bad = int(np.argmax(err > tol))
        raise DatasetError(f"{source}: pose {bad} is not a rigid transform (rotation not orthonormal)")
    det = np.linalg.det(rot)
    if np.any(det < 0):
        bad = int(np.argmax(det < 0))
        raise DatasetError(f"{source}: pose {bad} is a reflection (negative determinant)")


def to_homogeneous(c2w: np.ndarray) -> np.ndarray:
    """(n, 3, 4) or (n, 4, 4) -> (n, 4, 4) float32."""
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.shape[1:] == (3, 4):
        bottom = np.broadcast_to(np.array([0, 0, 0, 1.0]), (len(c2w), 1, 4))
        c2w = np.concatenate([c2w, bottom], axis=1)
    return c2w.astype(np.float32)
