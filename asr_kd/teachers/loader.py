"""One loader for every kind of teacher spec (see :mod:`asr_kd.teachers`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from asr_kd.errors import ConfigError, MissingInputError
from asr_kd.teachers.base import Teacher, check_teacher
from asr_kd.teachers.combine import normalise_weights
from asr_kd.teachers.ensemble import EnsembleTeacher
from asr_kd.teachers.neural import MODULE_KEYS, checkpoint_teacher, module_teacher
from asr_kd.teachers.posteriors import (
    DEFAULT_FRAME_SHIFT,
    FORMATS,
    POSTERIOR_KEYS,
    PosteriorTeacher,
    posteriors_format,
)
from asr_kd.teachers.specialists import load_specialist_system
from asr_kd.teachers.specs import (
    ENSEMBLE_PREFIX,
    TEACHER_FILE_SUFFIXES,
    is_specialist_dir,
    parse_ensemble_spec,
)
from asr_kd.train.distributed import resolve_device

__all__ = ["load"]

logger = logging.getLogger(__name__)

Spec = str | Path | Mapping[str, Any]
CHECKPOINT_KEYS = {"kind", "name", "model"}
ENSEMBLE_KEYS = {"kind", "name", "members", "method", "weights"}
KINDS = {"class": "module", "posteriors": "posteriors", "model": "checkpoint",
         "members": "ensemble"}  # fmt: skip
"""The key that says what a teacher file holds, and its kind."""
KEYS = {"module": MODULE_KEYS, "posteriors": POSTERIOR_KEYS, "checkpoint": CHECKPOINT_KEYS,
        "ensemble": ENSEMBLE_KEYS}  # fmt: skip


def load(
    spec: Spec | Sequence[Spec],
    expect_tree_id: str | None = None,
    expect_num_senones: int | None = None,
    expect_frame_shift: float | None = None,
    device: str | torch.device = "auto",
    amp: str = "auto",
    *,
    combination: str | None = None,
    weights: Sequence[float] | None = None,
) -> Teacher:
    """Load a teacher from a spec and check its senone inventory and frame rate.

    Args:
        spec: a ``model.pt`` or the training directory holding it; a ``train-specialists``
            output (the generalist and its specialists combined); a teacher file
            (``.yaml``/``.yml``/``.json``: a plug-in module, posteriors, a named checkpoint
            or an ensemble); a teacher file's mapping (its paths relative to the working
            directory); ``ensemble:A,B[:method]``; or a list of specs, combined into an
            :class:`EnsembleTeacher` by ``combination`` and ``weights``.
        expect_tree_id, expect_num_senones, expect_frame_shift: refuse a teacher built
            for another tree or frame rate (``None``: not checked).
        device: where networks run (``auto``: the GPU if any).
        amp: ``auto`` (bf16 autocast on CUDA), ``bf16`` or ``off``.
        combination, weights: for a list of specs (default arithmetic, equal weights).
            A list of one ensemble is that ensemble, whose method and weights must then
            be these.

    Raises:
        BadInputError: a teacher for another tree, senone count or frame shift; a
            checkpoint that cannot be read or holds NaN/Inf weights.
        ConfigError: a malformed teacher file or spec; a plug-in module that cannot be
            imported or raises while importing.
        MissingInputError: a file it names does not exist.
    """
    loader = _Loader(expect_tree_id, expect_num_senones, expect_frame_shift,
                     resolve_device(device), amp)  # fmt: skip
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        return loader.combined(list(spec), combination or "arithmetic", weights)
    return loader.one(spec)


class _Loader:
    """Loads specs with one set of expectations, device and precision."""

    def __init__(self, tree_id, num_senones, frame_shift, device: torch.device, amp: str):
        self.expect = (tree_id, num_senones, frame_shift)
        self.device, self.amp = device, amp

    def one(self, spec: Spec) -> Teacher:
        if isinstance(spec, Mapping):
            teacher = self.from_config(spec, Path.cwd())
        elif isinstance(spec, str) and spec.startswith(ENSEMBLE_PREFIX):
            members, method = parse_ensemble_spec(spec)
            teacher = EnsembleTeacher([self.one(m) for m in members], method, amp=self.amp)
        else:
            path = Path(spec)
            if is_specialist_dir(path):  # a generalist and its specialists, as one teacher
                teacher = load_specialist_system(path, self.one, self.amp)
            elif path.suffix in TEACHER_FILE_SUFFIXES:
                teacher = self.from_config(_read_teacher_file(path), path.parent, path)
            else:
                teacher = checkpoint_teacher(path, self.device, self.amp)
        check_teacher(teacher, *self.expect)
        logger.info("teacher %s: %d senones of tree %s from %s", teacher.name,
                    teacher.num_senones, teacher.tree_id, teacher.source)  # fmt: skip
        return teacher

    def combined(
        self, specs: list[Spec], method: str, weights: Sequence[float] | None
    ) -> EnsembleTeacher:
        if not specs:
            raise ConfigError("no teachers given: name at least one teacher spec")
        teachers = [self.one(s) for s in specs]
        if len(teachers) == 1 and isinstance(teachers[0], EnsembleTeacher):
            ens = teachers[0]
            try:
                same = ens.weights == normalise_weights(weights, len(ens.members))
            except ValueError:
                same = False
            if ens.method != method or not same:
                raise ConfigError(
                    f"the ensemble {specs[0]!r} combines by {ens.method} with weights "
                    f"{ens.weights} but {method} with {weights} was asked for; make "
                    "the combination and weights agree with it"
                )
            return ens
        return EnsembleTeacher(teachers, method, weights, amp=self.amp)

    def from_config(
        self, config: Mapping[str, Any], base_dir: Path, where: Path | None = None
    ) -> Teacher:
        """A teacher from a teacher file's mapping; paths are relative to ``base_dir``."""
        label = str(where) if where else "config"
        kind = _kind(config, label)
        unknown = sorted(set(config) - KEYS[kind])
        if unknown:
            raise ConfigError(
                f"teacher {label}: unknown key(s) {', '.join(unknown)} for a {kind} teacher; "
                f"known: {', '.join(sorted(KEYS[kind]))}"
            )
        name = config.get("name") or (where.stem if where else None)
        if kind == "ensemble":
            members = config["members"]
            if not isinstance(members, list) or not members:
                raise ConfigError(f"teacher {label}: 'members' must be a list of teacher specs")
            teachers = [self._member(m, base_dir) for m in members]
            return EnsembleTeacher(teachers, config.get("method", "arithmetic"),
                                   config.get("weights"), config.get("name"), self.amp)  # fmt: skip
        if kind == "checkpoint":
            teacher = checkpoint_teacher(base_dir / str(config["model"]), self.device, self.amp)
            teacher.name = name or teacher.name
            return teacher
        declared = _declared(config, label)
        if kind == "module":
            return module_teacher(config, base_dir, label, declared, name, self.device, self.amp)
        return _posterior_teacher(config, base_dir, label, declared, name)

    def _member(self, spec: Any, base_dir: Path) -> Teacher:
        """An ensemble file's member: paths relative to the file."""
        if isinstance(spec, Mapping):
            return self.from_config(spec, base_dir)
        if str(spec).startswith(ENSEMBLE_PREFIX):
            members, method = parse_ensemble_spec(str(spec))
            return self.one(
                f"{ENSEMBLE_PREFIX}{','.join(str(base_dir / m) for m in members)}:{method}"
            )
        return self.one(base_dir / str(spec))


def _posterior_teacher(config, base_dir, label, declared, name) -> PosteriorTeacher:
    fmt = config.get("format")
    path = base_dir / str(config["posteriors"])
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(
            f"teacher {label}: format must be one of {', '.join(FORMATS)}, got {fmt!r}"
        )
    if fmt is not None and path.exists() and posteriors_format(path) != fmt:
        want = {"kaldi": "a .scp or .ark file", "npz": "an .npz file"}
        raise ConfigError(
            f"teacher {label}: format {fmt} needs {want.get(fmt, 'a directory of .npy files')}"
        )
    tree_id, num_senones, frame_shift = declared
    return PosteriorTeacher(path, config.get("domain", "log"), num_senones, tree_id, frame_shift,
                            name)  # fmt: skip


def _read_teacher_file(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise MissingInputError(f"teacher file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
    except yaml.YAMLError as e:
        raise ConfigError(f"teacher file {path} is not valid YAML/JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"teacher file {path} must hold a mapping")
    return data


def _kind(config: Mapping[str, Any], where: str) -> str:
    found = [kind for key, kind in KINDS.items() if key in config]
    if len(found) != 1 or config.get("kind", found[0]) != found[0]:
        raise ConfigError(
            f"teacher {where}: say what it is with exactly one of 'class' (your nn.Module), "
            "'posteriors' (precomputed), 'model' (a model.pt) or 'members' (an ensemble)"
        )
    return found[0]


def _declared(config: Mapping[str, Any], label: str) -> tuple[str, int, float]:
    missing = [k for k in ("tree_id", "num_senones") if config.get(k) in (None, "")]
    if missing:
        raise ConfigError(
            f"teacher {label}: declare its senone inventory ({', '.join(missing)} missing): "
            "the tree id and senone count in the senone-targets info.json it was trained on"
        )
    frame_shift = float(config.get("frame_shift", DEFAULT_FRAME_SHIFT))
    return str(config["tree_id"]), int(config["num_senones"]), frame_shift
