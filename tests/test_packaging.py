"""The installed package: one top-level name (`nerf`), every package folder listed for setuptools,
and every console script runs as installed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from conftest import installed_script

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]


def test_every_package_folder_is_installed():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    mapped = {v: k for k, v in PYPROJECT["tool"]["setuptools"]["package-dir"].items()}
    found = set()
    for folder in ("nerf", "render", "datasets"):
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT)
            top = mapped.get(rel.parts[0], rel.parts[0])
            found.add(".".join([top, *rel.parts[1:]]))
    assert found == listed
    assert all(p == "nerf" or p.startswith("nerf.") for p in listed)  # one top-level name


@pytest.mark.parametrize("command", sorted(SCRIPTS))
def test_console_script_help_runs_as_installed(command):
    proc = subprocess.run([str(installed_script(command)), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: {command}") and proc.stderr == ""


def test_another_datasets_package_does_not_shadow_ours(tmp_path):
    """A user's environment with Hugging Face's `datasets` (here a stand-in first on the path):
    both import, each its own."""
    fake = tmp_path / "datasets"
    fake.mkdir()
    (fake / "__init__.py").write_text("WHO = 'someone else'\n")
    code = ("import datasets, nerf.datasets; print(datasets.WHO); "
            "print(nerf.datasets.load_scene.__module__)")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["someone", "else", "nerf.datasets.registry"]
    proc = subprocess.run([str(installed_script("train-scene")), "--help"], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
