"""Posed-image datasets: every format loads into one typed `Scene` (see `datasets.scene`).

This package knows formats and files only; it knows nothing of rays or models.
"""
from datasets.errors import DatasetError
from datasets.scene import Cameras, Scene
from datasets.registry import load_scene

__all__ = ["Cameras", "Scene", "DatasetError", "load_scene"]
