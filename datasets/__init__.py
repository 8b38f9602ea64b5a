"""Posed-image datasets: every format loads into one typed `Scene` (see `datasets.scene`).

This package knows formats and files only; it knows nothing of rays or models.
"""
from nerf.datasets.errors import DatasetError
from nerf.datasets.registry import load_scene
from nerf.datasets.scene import Cameras, Scene

__all__ = ["Cameras", "Scene", "DatasetError", "load_scene"]
