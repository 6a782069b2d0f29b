"""Teacher specs as paths: what kind each names and which file identifies it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from asr_kd.checked import open_checkpoint
from asr_kd.errors import ConfigError
from asr_kd.stage import file_digest, is_done
from asr_kd.teachers.combine import METHODS
from asr_kd.train.checkpoint import MODEL_FILE

__all__ = [
    "ENSEMBLE_PREFIX",
    "SPECIALISTS_FILE",
    "TEACHER_FILE_SUFFIXES",
    "is_specialist_dir",
    "parse_ensemble_spec",
    "teacher_digests",
    "teacher_file",
    "teacher_model_file",
]

TEACHER_FILE_SUFFIXES = (".yaml", ".yml", ".json")
ENSEMBLE_PREFIX = "ensemble:"
SPECIALISTS_FILE = "specialists.json"
"""Written by ``train-specialists``: the generalist's spec and digest, the specialists."""


def is_specialist_dir(path: Path | str) -> bool:
    """Whether ``path`` is a ``train-specialists`` output."""
    return Path(path).is_dir() and (Path(path) / SPECIALISTS_FILE).is_file()


def parse_ensemble_spec(spec: str) -> tuple[list[str], str]:
    """``ensemble:A,B[,...][:arithmetic|:geometric]`` -> ``([A, B, ...], method)``.

    Members are teacher specs without commas (a model.pt, its directory, a teacher file).

    Raises:
        ConfigError: no members.
    """
    body = spec[len(ENSEMBLE_PREFIX) :]
    method = "arithmetic"
    head, sep, tail = body.rpartition(":")
    if sep and tail in METHODS:
        body, method = head, tail
    elif sep and head and tail.isidentifier() and not Path(body).exists():
        raise ConfigError(
            f"ensemble spec {spec!r}: unknown combination {tail!r}; the ensembles combine by "
            f"{' or '.join(METHODS)} (ensemble:A,B:geometric)"
        )
    members = [m.strip() for m in body.split(",") if m.strip()]
    if not members:
        raise ConfigError(
            f"ensemble spec {spec!r} names no members; write "
            "ensemble:exp/teacher1/model.pt,exp/teacher2/model.pt[:arithmetic|:geometric]"
        )
    return members, method


def teacher_model_file(spec: Any) -> Path | None:
    """The ``model.pt`` a teacher spec points at (a training directory or the file), if any;
    for a specialist system, its generalist's."""
    if isinstance(spec, Mapping):
        paths = [spec[k] for k in ("model", "path", "dir") if isinstance(spec.get(k), str)]
        spec = paths[0] if paths else None
    if not isinstance(spec, str | Path):
        return None
    path = Path(spec)
    if is_specialist_dir(path):  # the generalist's architecture
        return teacher_model_file(json.loads((path / SPECIALISTS_FILE).read_text())["generalist"])
    if path.is_dir() and ((path / MODEL_FILE).is_file() or is_done(path)):
        return path / MODEL_FILE  # a finished training's, even if lost: named when opened
    return path if path.is_file() and path.suffix == ".pt" else None


def teacher_file(spec: Any) -> Path | None:
    """The file that identifies a network teacher spec: its ``model.pt``, or the teacher
    file (a plug-in module) itself; ``None`` for other specs."""
    path = teacher_model_file(spec)
    if path is None and isinstance(spec, str | Path) and Path(spec).is_file():
        path = Path(spec)
    return path


def teacher_digests(specs: Sequence[Any]) -> list[str | None]:
    """A digest of each teacher's ``model.pt`` (``None`` for other kinds of teacher); a
    specialist system's is its ``specialists.json`` (it changes with any specialist)."""
    out = []
    for s in specs:
        if isinstance(s, str | Path) and is_specialist_dir(s):
            out.append(file_digest(Path(s) / SPECIALISTS_FILE))
        elif (p := teacher_model_file(s)) is not None:
            open_checkpoint(p, maker="train")  # a damaged teacher is named, not a stale cache
            out.append(file_digest(p))
        else:
            out.append(None)
    return out
