"""One settings system for every command: YAML files validated into typed dataclasses, plus
`key.sub=value` overrides.

Precedence: dataclass defaults < a base mapping (a run's saved config) < `--config FILE` (which may
name another file to include with a top-level `base: NAME` key) < command-line overrides. Unknown
keys are errors that name the closest valid key; values are checked for type, and each section's
`validate()` checks ranges. Every error is a one-line `ConfigError` naming the file or option.

Why not OmegaConf: its structured configs would do the merging and type checks, but every error
would still have to be caught and rewritten into one line with the closest key, range checks stay
in `validate()`, and old spellings (aliases) need hooks of their own; what is left to replace is
this module's ~150 lines, less than the wrapping would cost (see docs/architecture.md).
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path

import yaml

from nerf.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
BASE_KEY = "base"  # a config file's include: `base: NAME` (a path, or a file in configs/)


def all_keys(cls, prefix: str = "") -> dict[str, type]:
    """Every dotted leaf key of a settings dataclass with its annotated type."""
    out = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        if dataclasses.is_dataclass(t):
            out.update(all_keys(t, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = t
    return out


class Schema:
    """The keys of one settings dataclass, with `aliases` (old spelling -> key) still accepted."""

    def __init__(self, cls, aliases: dict[str, str] | None = None):
        self.cls, self.keys, self.aliases = cls, all_keys(cls), dict(aliases or {})
        self.sections = {k.rsplit(".", 1)[0] for k in [*self.keys, *self.aliases] if "." in k}
        for key in self.sections.copy():  # every enclosing section too (model.fast -> model)
            while "." in key:
                key = key.rsplit(".", 1)[0]
                self.sections.add(key)

    def resolve(self, key: str, source: str) -> str:
        key = self.aliases.get(key, key)
        if key not in self.keys:
            close = difflib.get_close_matches(key, list(self.keys), n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown config key '{key}'{hint}")
        return key

    def flatten(self, d: dict, source: str, prefix: str = "") -> dict:
        """{dotted key: value} of a nested mapping, aliases resolved; unknown sections are errors."""
        flat = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict) and key in self.sections:
                flat.update(self.flatten(v, source, key + "."))
            else:
                flat[self.resolve(key, source)] = v
        return flat


def _coerce(key: str, value, typ, source: str):
    """Check `value` against the annotated type `typ`; ints are accepted for floats."""
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none")):
            return None
        typ = next(a for a in args if a is not type(None))
    if typ is float and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if typ is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    ok = (
        (typ is bool and isinstance(value, bool))
        or (typ is int and isinstance(value, int) and not isinstance(value, bool))
        or (typ is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (typ is str and isinstance(value, str))
    )
    if not ok:
        raise ConfigError(f"{source}: '{key}' must be {typ.__name__}, got {value!r}")
    return float(value) if typ is float else value


def set_key(obj, schema: Schema, key: str, value, source: str) -> None:
    key = schema.resolve(key, source)
    *path, leaf = key.split(".")
    for p in path:
        obj = getattr(obj, p)
    setattr(obj, leaf, _coerce(key, value, schema.keys[key], source))


def read_yaml(path: Path) -> dict:
    """A YAML mapping from `path`, or a one-line error naming the file and the problem."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{where} ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    return data


def resolve_config_path(name: str, relative_to: Path | None = None) -> Path:
    """A config file path (relative to an including file's folder, or to the working folder), or
    the name of a file in configs/ (with or without .yaml)."""
    for cand in ([relative_to / name] if relative_to else []) + [Path(name), CONFIG_DIR / name,
                                                                 CONFIG_DIR / f"{name}.yaml"]:
        if cand.is_file():
            return cand
    return Path(name)


def read_config_file(path: Path, _seen: tuple = ()) -> list[tuple[dict, str]]:
    """The mappings of `path` and of the files it includes (`base: NAME`), base first, each with
    its file name for error messages."""
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: includes itself through '{BASE_KEY}'")
    data = read_yaml(path)
    base = data.pop(BASE_KEY, None)
    if base is None:
        return [(data, str(path))]
    if not isinstance(base, str):
        raise ConfigError(f"{path}: '{BASE_KEY}' must name a config file, got {base!r}")
    base_path = resolve_config_path(base, path.parent)
    if not base_path.is_file():
        raise ConfigError(f"{path}: base config '{base}' not found")
    return read_config_file(base_path, _seen + (path.resolve(),)) + [(data, str(path))]


def parse_override(schema: Schema, text: str) -> tuple[str, object]:
    """`KEY=VALUE` -> (key, value typed by the key's annotation; YAML for the rest)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected KEY=VALUE, e.g. train.max_steps=1000")
    key, raw = text.split("=", 1)
    key = schema.resolve(key.strip(), f"override '{text}'")
    typ = schema.keys[key]
    if typ is str:
        return key, raw
    for conv in ((int,) if typ is int else (float,) if typ is float else ()):
        try:
            return key, conv(raw)
        except ValueError:
            pass
    try:
        return key, yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        return key, raw


def load_settings(schema: Schema, config_file: str | None = None, overrides: typing.Sequence[str] = (),
                  base: dict | None = None):
    """Build and validate the settings dataclass of `schema` from an optional base mapping, a
    YAML file (with its includes) and `KEY=VALUE` overrides."""
    obj = schema.cls()
    layers = [(base, "base config")] if base is not None else []
    if config_file:
        path = resolve_config_path(config_file)
        if not path.is_file():
            raise ConfigError(f"{config_file}: config file not found (nor in {CONFIG_DIR})")
        layers += read_config_file(path)
    for data, source in layers:
        for k, v in schema.flatten(data, source).items():
            set_key(obj, schema, k, v, source)
    for text in overrides:
        key, value = parse_override(schema, text)
        set_key(obj, schema, key, value, f"override '{text}'")
    validate(obj)
    return obj


def validate(obj) -> None:
    """Run the settings object's `validate()` (a list of `key: problem` lines); the first problem
    is raised as a ConfigError."""
    errs = obj.validate()
    if errs:
        raise ConfigError(errs[0])


def save_settings(obj, path: Path) -> None:
    path.write_text(yaml.safe_dump(dataclasses.asdict(obj), sort_keys=False))
