"""Frozen dataclass configurations loaded from YAML with command-line overrides.

A recipe config is one YAML file with a section per component (``corpus``,
``features``, ...). A variant names its parent and states only what it changes::

    parent: small.yaml
    corpus:
      noise_prob: 0.8

Overrides given on the command line as ``section.key=value`` (or ``key=value`` for
the section a command reads) win over the file; values are parsed as YAML.

Every value is checked against its dataclass field's type (``num_mel_bins: eighty``
or ``80.5`` is refused, naming the key, the expected type and the file), and every
section name against :data:`SECTIONS`, so that a misspelt section (``teachr:``) is
refused rather than silently ignored. A section of a user's own (another training
section for ``--section``) is declared in the file: ``extra_sections: [my_teacher]``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from asr_kd.errors import ConfigError

T = TypeVar("T")

SECTIONS: dict[str, str] = {
    # section name -> the command that reads it. A new section is one line here.
    "corpus": "synth-corpus",
    "features": "compute-features",
    "mfcc": "compute-features --section mfcc",
    "mono": "train-mono",
    "align": "align",
    "tree": "build-tree",
    "tri1": "train-tri",
    "lda": "estimate-lda",
    "tri2": "train-tri --section tri2 --transform",
    "graph": "make-graph",
    "lm": "train-lm",
    "decode": "decode, adjust-priors",
    "teacher": "train, train-ensemble",
    "ensemble": "train-ensemble",
    "distill": "distill, cache-soft-targets",
    "student": "distill",
    "hard_3pct": "train --section hard_3pct",
    "student_3pct": "distill --train-section student_3pct",
    "specialists": "train-specialists",
    "protocol": "protocol (the recipe's systems, seeds and data fractions)",
    "transfer": "transfer-config, synth-unlabelled, eval-omitted-phone",
}
"""Every config section the toolkit reads, and the command that reads it."""

EXTRA_SECTIONS_KEY = "extra_sections"
"""Top-level key of a config file listing sections of its own (e.g. for ``--section``)."""


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
    """Apply ``[section.]key=value`` overrides to a config mapping.

    Raises:
        ConfigError: an override not of the form ``[section.]key=value`` or whose value
            is not valid YAML.
    """
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for item in overrides:
        key, sep, raw = item.partition("=")
        section, _, name = key.strip().rpartition(".")
        if not sep or not name or (section == "" and key.strip().startswith(".")):
            raise ConfigError(
                f"--set {item!r} is not of the form key=value or section.key=value "
                "(e.g. --set lr=0.1 or --set teacher.lr=0.1)"
            )
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            first = str(e).splitlines()[0]
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({first})") from None
        section = section or default_section
        if not isinstance(data.get(section, {}), dict):
            raise ConfigError(f"--set {item!r}: section {section!r} is not a mapping")
        data.setdefault(section, {})[name] = value
    return data


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp in _TYPE_NAMES:
        return _TYPE_NAMES[tp]
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin in (tuple, list, Sequence):
        return f"a list ({tp})"
    if origin in (dict, Mapping):
        return "a mapping"
    return str(tp)


def check_value(value: Any, tp: Any) -> Any:
    """``value`` as field type ``tp`` wants it (lists become tuples, ints floats).

    Raises:
        TypeError: it is not of that type (a bool is not an integer, 80.5 is not one).
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or isinstance(tp, TypeVar):
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return check_value(value, arg)
            except TypeError:
                continue
        raise TypeError(tp)
    if tp is type(None):
        if value is None:
            return None
        raise TypeError(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError(tp)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError(tp)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise TypeError(tp)
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError(tp)
    if origin in (tuple, list, Sequence):
        if not isinstance(value, list | tuple):
            raise TypeError(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise TypeError(tp)
            items = [check_value(v, a) for v, a in zip(value, args, strict=True)]
        else:
            items = [check_value(v, args[0]) for v in value] if args else list(value)
        return list(items) if origin is list else tuple(items)
    if origin in (dict, Mapping):
        if not isinstance(value, dict):
            raise TypeError(tp)
        return value
    return value  # a type this check does not know: the dataclass's own check decides


def build_dataclass(
    cls: type[T], values: dict[str, Any], where: str, from_cli: Sequence[str] = ()
) -> T:
    """Instantiate a (frozen) dataclass, rejecting unknown keys and wrong types by name.

    Args:
        cls: the dataclass.
        values: its fields' values.
        where: the file and section, for messages.
        from_cli: the keys given with ``--set`` (named so in messages).
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
        )
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation that does not resolve: no type check
        hints = {}
    kwargs = {}
    for name, value in values.items():
        tp = hints.get(name, Any)
        try:
            kwargs[name] = check_value(value, tp)
        except TypeError:
            origin = " (from --set)" if name in from_cli else ""
            raise ConfigError(
                f"{where}: {name}{origin} must be {_type_name(tp)}, "
                f"got {value!r} ({type(value).__name__})"
            ) from None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def check_sections(data: Mapping[str, Any], where: str, also: Sequence[str] = ()) -> None:
    """Refuse section names that no command reads (a misspelt section is otherwise ignored).

    Args:
        data: the merged config mapping.
        where: the file, for messages.
        also: further known names (the section being loaded).
    """
    extra = data.get(EXTRA_SECTIONS_KEY) or []
    if not isinstance(extra, list) or not all(isinstance(x, str) for x in extra):
        raise ConfigError(f"{where}: {EXTRA_SECTIONS_KEY} must be a list of section names")
    known = {*SECTIONS, *extra, *also, EXTRA_SECTIONS_KEY}
    for name in data:
        if name in known:
            continue
        close = difflib.get_close_matches(str(name), sorted(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"{where}: unknown section {name!r} (known: {', '.join(SECTIONS)}){hint} "
            f"A section of your own (for --section): list it under '{EXTRA_SECTIONS_KEY}:'"
        )


def check_override_sections(overrides: Sequence[str], reads: Sequence[str]) -> None:
    """Refuse ``--set section.key=value`` for a section the command does not read.

    The one rule for ``--set`` in every command: ``key=value`` sets the command's own
    section (``reads[0]``: the one its ``--section`` names, or its default), and
    ``section.key=value`` sets that section, which must be one the command reads;
    otherwise the value would be silently ignored.
    """
    for item in overrides:
        section = item.partition("=")[0].strip().rpartition(".")[0]
        if section and section not in reads:
            raise ConfigError(
                f"--set {item!r}: this command reads section(s) {', '.join(reads)}, not "
                f"{section!r}, so the value would have no effect (key=value sets {reads[0]!r})"
            )


def load_section(
    path: Path | str | None,
    section: str,
    cls: type[T],
    overrides: Sequence[str] = (),
    reads: Sequence[str] = (),
) -> T:
    """Load one component's config from a recipe YAML file plus overrides.

    Args:
        path: the recipe config, or ``None`` for the dataclass defaults.
        section: the YAML section this component reads, e.g. ``"corpus"``.
        cls: the frozen dataclass to build.
        overrides: ``key=value`` or ``section.key=value`` strings (see
            :func:`check_override_sections`).
        reads: the other sections the command reads (``section.key=value`` may name them).

    Raises:
        ConfigError: naming the file, section and key: an unknown section or option,
            a value of the wrong type, a malformed override, an override of a section
            the command does not read.
    """
    data = read_yaml_config(path) if path is not None else {}
    data = apply_overrides(data, overrides, section)
    check_sections(data, str(path or "--set"), also=[section])
    check_override_sections(overrides, [section, *reads])
    values = data.get(section) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"section {section!r} of {path} must be a mapping")
    from_cli = [o.partition("=")[0].rpartition(".")[2] for o in overrides
                if o.partition("=")[0].rpartition(".")[0] in ("", section)]  # fmt: skip
    return build_dataclass(cls, values, f"{path or 'defaults'} [{section}]", from_cli)


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a dataclass config (tuples become lists)."""
    return dataclasses.asdict(config)
