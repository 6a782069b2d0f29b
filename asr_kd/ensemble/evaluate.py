"""Frame accuracy and cross-entropy of teachers and of their ensembles.

:func:`evaluate_systems` (``asr-kd eval-ensemble``) scores every teacher and ensemble
on the senone targets of some splits. The teachers are loaded by
:func:`asr_kd.teachers.load`; :func:`load_systems` reads the command's arguments, where
an ensemble spec (``ensemble:A,B:geometric`` or an ensemble file) contributes its
members as teachers and itself as one combination of them (:class:`Combo`), so that it
is scored as what it is and not as one more teacher under every ensemble row.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lhotse.cut import Cut
from lhotse.dataset import SimpleCutSampler

from asr_kd.errors import BadInputError, ConfigError
from asr_kd.stage import atomic_write_text
from asr_kd.teachers import (
    METHODS,
    EnsembleTeacher,
    Teacher,
    check_teacher,
    combine_log_probs,
    load,
    member_log_probs,
    normalise_weights,
)
from asr_kd.train.dataset import PAD_TARGET, TARGETS_KEY, load_split, read_targets_info

__all__ = [
    "Combo",
    "batch_targets",
    "cut_targets",
    "evaluate_systems",
    "format_table",
    "load_systems",
    "teacher_name",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Combo:
    """An ensemble to score: a method over some teachers (``None``: all), weighted."""

    method: str = "arithmetic"
    members: tuple[str, ...] | None = None
    weights: tuple[float, ...] | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        """``name``, or e.g. ``ensemble_arithmetic_teacher1+teacher2_w3:1``."""
        if self.name:
            return self.name
        parts = [f"ensemble_{self.method}"]
        if self.members:
            parts.append("+".join(self.members))
        if self.weights:
            parts.append("w" + ":".join(f"{w:g}" for w in self.weights))
        return "_".join(parts)


def _combos(combos: Sequence[str | Combo], names: Sequence[str]) -> list[Combo]:
    out = [Combo(method=c) if isinstance(c, str) else c for c in combos]
    for c in out:
        if c.method not in METHODS:
            raise ConfigError(f"ensemble method must be one of {', '.join(METHODS)}: {c}")
        missing = sorted(set(c.members or ()) - set(names))
        if missing:
            raise ConfigError(f"{c.label}: no teacher named {', '.join(missing)}")
        try:
            normalise_weights(c.weights, len(c.members or names))
        except ValueError as e:
            raise ConfigError(f"{c.label}: {e}") from None
    labels = [c.label for c in out]
    clash = sorted({x for x in labels if labels.count(x) > 1} | (set(labels) & set(names)))
    if clash:
        raise ConfigError(f"system names used twice: {', '.join(clash)}")
    return out


def cut_targets(cut: Cut) -> np.ndarray:
    """A cut's ``[T]`` int64 senone targets.

    Raises:
        BadInputError: the cut has none.
    """
    if not cut.has_custom(TARGETS_KEY):
        raise BadInputError(f"cut {cut.id} has no '{TARGETS_KEY}' targets: run 'senone-targets'")
    return np.rint(cut.load_custom(TARGETS_KEY)).astype(np.int64).reshape(-1)


def batch_targets(cuts: Sequence[Cut], lengths: torch.Tensor, num_senones: int) -> torch.Tensor:
    """``[B, T]`` senone targets of a batch of cuts (``PAD_TARGET`` after each length).

    Raises:
        BadInputError: a cut without targets, or whose target count is not its output's.
    """
    targets = torch.full((len(cuts), int(lengths.max())), PAD_TARGET, dtype=torch.int64)
    for i, cut in enumerate(cuts):
        t = cut_targets(cut)
        if len(t) != int(lengths[i]):
            raise BadInputError(
                f"cut {cut.id}: {len(t)} senone targets for {int(lengths[i])} frames of "
                "teacher output; rerun 'senone-targets' with these features"
            )
        targets[i, : len(t)] = torch.from_numpy(t)
    return targets


def _score_split(
    teachers: Mapping[str, Teacher],
    combos: list[Combo],
    cuts: Any,
    max_duration: float,
) -> tuple[dict[str, dict[str, float]], int]:
    """Frame accuracy and cross-entropy of every system on some cuts, and the frames."""
    names = list(teachers)
    members = [teachers[n] for n in names]
    labels = names + [c.label for c in combos]
    correct = dict.fromkeys(labels, 0)
    logp = dict.fromkeys(labels, 0.0)
    frames = 0
    sampler = SimpleCutSampler(cuts.sort_by_duration(), max_duration=max_duration)
    for batch in sampler:
        batch = list(batch)
        stacked, lengths = member_log_probs(members, batch)
        targets = batch_targets(batch, lengths, stacked.shape[-1]).to(stacked.device)
        valid = targets != PAD_TARGET
        safe = targets.clamp(min=0)[..., None]
        systems = {n: stacked[k] for k, n in enumerate(names)}
        for c in combos:
            idx = [names.index(m) for m in (c.members or names)]
            systems[c.label] = combine_log_probs(stacked[idx], c.method, c.weights)
        for label, lp in systems.items():
            correct[label] += int(((lp.argmax(-1) == targets) & valid).sum())
            logp[label] += float(lp.gather(-1, safe)[..., 0][valid].double().sum())
        frames += int(valid.sum())
    scores = {
        label: {"frame_acc": correct[label] / max(frames, 1), "ce": -logp[label] / max(frames, 1)}
        for label in labels
    }
    return scores, frames


def evaluate_systems(
    teachers: Mapping[str, Teacher],
    data_dir: Path | str,
    splits: Sequence[str] = ("dev", "test"),
    combos: Sequence[str | Combo] = ("arithmetic", "geometric"),
    out_file: Path | str | None = None,
    max_duration: float = 30.0,
) -> dict[str, Any]:
    """Frame accuracy and cross-entropy of each teacher and ensemble (``asr-kd eval-ensemble``).

    Args:
        teachers: name -> teacher, all of the targets' senone inventory.
        data_dir: a ``senone-targets`` output.
        splits: the splits to score.
        combos: ensembles to score: methods over all teachers, or :class:`Combo`.
        out_file: also write the result here as JSON (atomically).
        max_duration: seconds of audio per batch (all teachers' outputs for a batch
            are held at once: ``N x frames x S`` floats).

    Returns:
        ``{"splits": {split: {"cuts", "frames", "systems": {name: {"frame_acc", "ce"}},
        "mean_teacher_frame_acc", "best_teacher"}}, "teachers": {name: source}, ...}``.

    Raises:
        BadInputError: a teacher for another tree or frame rate than the targets.
    """
    start = time.time()
    if not teachers:
        raise ConfigError("no teachers to evaluate")
    info = read_targets_info(data_dir)
    combos = _combos(combos, list(teachers))
    result: dict[str, Any] = {
        "data_dir": str(data_dir),
        "tree_id": info["tree_id"],
        "num_senones": int(info["num_senones"]),
        "teachers": {n: t.source for n, t in teachers.items()},
        "combos": {
            c.label: {
                "method": c.method,
                "members": list(c.members or teachers),
                "weights": normalise_weights(c.weights, len(c.members or teachers)),
            }
            for c in combos
        },  # fmt: skip
        "splits": {},
    }
    for split in splits:
        cuts = load_split(data_dir, split)
        shift = next(iter(cuts)).features.frame_shift
        for t in teachers.values():
            check_teacher(t, info["tree_id"], int(info["num_senones"]), shift,
                          f"{data_dir} ({split})")  # fmt: skip
        scores, frames = _score_split(teachers, combos, cuts, max_duration)
        accs = [scores[n]["frame_acc"] for n in teachers]
        result["splits"][split] = {
            "cuts": len(cuts),
            "frames": frames,
            "systems": scores,
            "mean_teacher_frame_acc": float(np.mean(accs)),
            "best_teacher": max(teachers, key=lambda n: scores[n]["frame_acc"]),
        }
        logger.info("eval-ensemble %s: %s", split, format_table({split: result["splits"][split]}))
    result["seconds"] = round(time.time() - start, 2)
    if out_file is not None:
        Path(out_file).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(out_file), json.dumps(result, indent=2) + "\n")
    logger.info(
        "eval-ensemble: %d teachers, %d ensembles, splits %s in %.1f s%s",
        len(teachers), len(combos), ", ".join(splits), result["seconds"],
        f"; wrote {out_file}" if out_file else "",
    )  # fmt: skip
    return result


def format_table(splits: Mapping[str, Any]) -> str:
    """A plain-text table: one row per system, frame accuracy (%) and CE per split."""
    names = list(next(iter(splits.values()))["systems"])
    width = max(len(n) for n in names + ["system"])
    head = "system".ljust(width) + "".join(f"  {s + ' acc%':>12}  {s + ' ce':>10}" for s in splits)
    rows = [head]
    for n in names:
        cells = "".join(
            f"  {100 * v['systems'][n]['frame_acc']:12.2f}  {v['systems'][n]['ce']:10.4f}"
            for v in splits.values()
        )
        rows.append(n.ljust(width) + cells)
    return "\n".join(rows)


def teacher_name(spec: str) -> str:
    """A table name for a spec: ``exp/teacher1/model.pt`` -> ``teacher1``."""
    path = Path(spec)
    if path.name == "model.pt":
        return path.parent.name
    return path.stem if path.suffix else path.name


def load_systems(
    items: Sequence[str], device: str = "auto"
) -> tuple[dict[str, Teacher], list[Combo]]:
    """The teachers and ensembles that ``eval-ensemble``'s arguments name.

    Args:
        items: teacher specs, each optionally named ``NAME=SPEC`` (default name:
            :func:`teacher_name`). An ensemble spec adds its members as teachers
            (named by their own names; one teacher named in two ensembles is loaded
            once) and itself as a :class:`Combo` of them with its method and weights,
            named ``NAME`` if given.
        device: where networks run.

    Returns:
        ``(teachers, combos)``; a combo over all teachers with equal weights and no
        name is ``Combo(method)``, the same as ``--method`` gives.

    Raises:
        ConfigError: two different teachers under one name.
    """
    teachers: dict[str, Teacher] = {}
    named: list[tuple[str | None, EnsembleTeacher]] = []

    def add(name: str, teacher: Teacher, spec: str) -> None:
        if name in teachers and teachers[name].source != teacher.source:
            raise ConfigError(
                f"two teachers named {name} ({teachers[name].source} and {teacher.source} from "
                f"{spec}); name them: NAME=SPEC, and an ensemble's members one by one"
            )
        teachers[name] = teacher

    for item in items:
        name, sep, spec = item.partition("=")
        name, spec = (name, spec) if sep else (None, item)
        system = load(spec, device=device)
        if isinstance(system, EnsembleTeacher):
            for member in system.members:
                add(member.name, member, spec)
            named.append((name, system))
        else:
            add(name or teacher_name(spec), system, spec)
    combos = []
    for name, ens in named:
        members = tuple(m.name for m in ens.members)
        equal = len(set(ens.weights)) == 1
        if equal and sorted(members) == sorted(teachers):
            combos.append(Combo(ens.method, name=name))
        else:
            weights = None if equal else tuple(ens.weights)
            combos.append(Combo(ens.method, members, weights, name))
    return teachers, combos
