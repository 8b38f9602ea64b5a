"""The layers of the house: no import cycle among the project's modules, render/ imports nothing
of the project above it, datasets/ only camera geometry from render/, and each folder of nerf/
imports only from the layers below it (docs/architecture.md draws them)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"nerf": "nerf", "render": "nerf.render", "datasets": "nerf.datasets"}
# nerf/ from the bottom up: a module may import its own layer and the ones before it
LAYERS = ["errors", "metrics", "settings", "scene_rays", "fields", "models", "config", "runs", "inference",
          "training", "viewer", "inr", "commands", "__main__"]


def _modules() -> dict[str, Path]:
    mods = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([package, *parts])] = path
    return mods


def _imports(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports anywhere in its body (lazy and annotation-only imports
    included); `from a.b import c` counts as a.b.c when c is a module, else as a.b."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                     for a in node.names]
        out.update(n for n in names if n in known)
    return out


GRAPH = {m: _imports(p, set(_modules())) for m, p in _modules().items()}


def _cycle() -> list[str] | None:
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(GRAPH[m]):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        state[m] = "done"
        stack.pop()
        return None

    for m in sorted(GRAPH):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_graph_sees_the_project():
    assert len(GRAPH) > 50 and "nerf.models.fast" in GRAPH["nerf.models"]
    assert "nerf.render.rays" in GRAPH["nerf.scene_rays"]


def test_no_import_cycle():
    assert _cycle() is None, " -> ".join(_cycle())


def test_render_imports_nothing_above_it():
    for m, deps in GRAPH.items():
        if m.startswith("nerf.render"):
            assert all(d.startswith("nerf.render") for d in deps), (m, deps)


def test_datasets_use_only_camera_geometry_from_render():
    for m, deps in GRAPH.items():
        if m.startswith("nerf.datasets"):
            assert all(d.startswith(("nerf.datasets", "nerf.render")) for d in deps), (m, deps)


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2 or parts[1] in ("render", "datasets"):
        return None
    return LAYERS.index(parts[1])


def test_nerf_imports_only_from_layers_below():
    for m, deps in GRAPH.items():
        if _layer(m) is None:
            continue
        above = [d for d in deps if _layer(d) is not None and _layer(d) > _layer(m)]
        assert not above, f"{m} imports {above} from a layer above it"


def test_every_nerf_folder_and_module_has_a_layer():
    top = {p.name.removesuffix(".py") for p in (ROOT / "nerf").iterdir()
           if p.suffix == ".py" or (p / "__init__.py").is_file()} - {"__init__"}
    assert top <= set(LAYERS), top - set(LAYERS)
