"""Frozen dataclass configurations loaded from YAML with command-line overrides.

A recipe config is one YAML file with a section per component (``corpus``,
``features``, ...). A variant names its parent and states only what it changes::

    parent: small.yaml
    corpus:
      noise_prob: 0.8

Overrides given on the command line as ``section.key=value`` (or ``key=value`` for
the section a command reads) win over the file; values are parsed as YAML.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from asr_kd.errors import ConfigError

T = TypeVar("T")


def read_yaml_config(path: Path | str) -> dict[str, Any]:
    """Read a recipe config, resolving ``parent:`` chains (relative to each file)."""
    path = Path(path)
    seen: list[Path] = []
    merged: dict[str, Any] = {}
    while True:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        if path.resolve() in seen:
            raise ConfigError(f"config {path} is its own ancestor (parent cycle)")
        seen.append(path.resolve())
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
        parent = data.pop("parent", None)
        merged = _deep_merge(data, merged)
        if parent is None:
            return merged
        path = path.parent / parent


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_overrides(
    data: dict[str, Any], overrides: Sequence[str], default_section: str
) -> dict[str, Any]:
    """Apply ``[section.]key=value`` overrides to a config mapping."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        section, _, name = key.rpartition(".")
        section = section or default_section
        data.setdefault(section, {})[name] = yaml.safe_load(raw)
    return data


def build_dataclass(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Instantiate a (frozen) dataclass, rejecting unknown keys by name."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in values.items():
        default = getattr(cls, name, None)
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def load_section(
    path: Path | str | None, section: str, cls: type[T], overrides: Sequence[str] = ()
) -> T:
    """Load one component's config from a recipe YAML file plus overrides.

    Args:
        path: the recipe config, or ``None`` for the dataclass defaults.
        section: the YAML section this component reads, e.g. ``"corpus"``.
        cls: the frozen dataclass to build.
        overrides: ``key=value`` or ``section.key=value`` strings.
    """
    data = read_yaml_config(path) if path is not None else {}
    data = apply_overrides(data, overrides, section)
    values = data.get(section) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"section {section!r} of {path} must be a mapping")
    return build_dataclass(cls, values, f"{path or 'defaults'} [{section}]")


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a dataclass config (tuples become lists)."""
    return dataclasses.asdict(config)
