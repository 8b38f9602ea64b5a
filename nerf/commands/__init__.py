"""The console commands, one module each (`main(argv)` is the installed entry point), and the
helpers they share (common.py). A new command: a module here and a line in COMMANDS and in
pyproject.toml's [project.scripts]."""
from __future__ import annotations

from nerf.commands import evaluate, export, fit_image, meta_train, process_data, train, video, view

COMMANDS = {"train-scene": train.main, "eval-scene": evaluate.main, "render-video": video.main,
            "fit-image": fit_image.main, "meta-train": meta_train.main,
            "process-data": process_data.main, "export-scene": export.main,
            "view-scene": view.main}
