"""The ensemble as a teacher, and frame accuracy of teachers and ensembles.

An :class:`EnsembleTeacher` combines other teachers (:mod:`asr_kd.ensemble.combine`)
and is itself a :class:`~asr_kd.teachers.Teacher`, so the ensemble decodes, evaluates
and distils like any single model. :func:`load_system` reads the specs of both::

    exp/teacher1/model.pt                        one teacher (see asr_kd.teachers)
    conf/my_teacher.yaml                         one teacher file
    ensemble:exp/teacher1,exp/teacher2           the arithmetic mean of their probabilities
    ensemble:exp/teacher1,exp/teacher2:geometric the normalised geometric mean
    conf/ensemble.yaml                           kind: ensemble, members: [...],
                                                 method: ..., weights: [...]

:func:`evaluate_systems` (``asr-kd eval-ensemble``) scores frame accuracy and per-frame
cross-entropy of every teacher and ensemble on the senone targets of some splits.
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

from asr_kd.ensemble.combine import METHODS, combine_log_probs, normalise_weights
from asr_kd.errors import BadInputError, ConfigError
from asr_kd.stage import atomic_write_text
from asr_kd.teachers import (
    TEACHER_FILE_SUFFIXES,
    Teacher,
    check_teacher,
    load_teacher,
)
from asr_kd.train.dataset import PAD_TARGET, TARGETS_KEY, load_split, read_targets_info

__all__ = ["Combo", "EnsembleTeacher", "evaluate_systems", "load_system", "parse_ensemble_spec"]

logger = logging.getLogger(__name__)

ENSEMBLE_PREFIX = "ensemble:"
ENSEMBLE_KEYS = {"kind", "name", "members", "method", "weights"}


class EnsembleTeacher:
    """A teacher whose distribution combines other teachers' at the same temperature.

    Args:
        members: teachers of one senone inventory and frame rate.
        method: ``arithmetic`` or ``geometric`` (:func:`combine_log_probs`).
        weights: per-member weights (``None``: equal).
        name: for tables and logs.

    Raises:
        BadInputError: members with different trees, senone counts or frame shifts.
    """

    def __init__(
        self,
        members: Sequence[Teacher],
        method: str = "arithmetic",
        weights: Sequence[float] | None = None,
        name: str | None = None,
    ):
        if not members:
            raise ConfigError("an ensemble needs at least one member")
        if method not in METHODS:
            raise ConfigError(
                f"ensemble method must be one of {', '.join(METHODS)}, got {method!r}"
            )
        try:
            self.weights = normalise_weights(weights, len(members))
        except ValueError as e:
            raise ConfigError(f"ensemble weights: {e}") from None
        first = members[0]
        for m in members[1:]:
            check_teacher(m, first.tree_id, first.num_senones, first.frame_shift,
                          f"ensemble member {first.name}")  # fmt: skip
        self.members, self.method = list(members), method
        self.num_senones, self.tree_id = first.num_senones, first.tree_id
        self.frame_shift = first.frame_shift
        self.needs_features = any(m.needs_features for m in self.members)
        self.name = name or f"ensemble_{method}"
        parts = ",".join(m.source for m in self.members)
        self.source = f"ensemble[{method}; {self.weights}]({parts})"

    def log_probs_batch(
        self,
        cuts: Sequence[Cut],
        temperature: float = 1.0,
        feats: Sequence[np.ndarray] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        stacked, lengths = member_log_probs(self.members, cuts, temperature, feats)
        return combine_log_probs(stacked, self.method, self.weights), lengths

    def log_probs(self, cut: Cut, temperature: float = 1.0) -> np.ndarray:
        out, _ = self.log_probs_batch([cut], temperature)
        return out[0].cpu().numpy()


def member_log_probs(
    members: Sequence[Teacher],
    cuts: Sequence[Cut],
    temperature: float = 1.0,
    feats: Sequence[np.ndarray] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``([N, B, T, S], lengths [B])``: every member's batch, features read once.

    On the first member's device; padding frames are uniform.
    """
    if feats is None and any(m.needs_features for m in members):
        feats = [cut.load_features() for cut in cuts]
    outs = [m.log_probs_batch(cuts, temperature, feats) for m in members]
    device = outs[0][0].device
    lengths = outs[0][1]
    for m, (_, n) in zip(members, outs, strict=True):
        if not torch.equal(n.cpu(), lengths.cpu()):
            raise BadInputError(
                f"teacher {m.name} gives {n.tolist()} frames for the cuts "
                f"{[c.id for c in cuts]} but {members[0].name} {lengths.tolist()}"
            )
    return torch.stack([o.to(device) for o, _ in outs]), lengths


def parse_ensemble_spec(spec: str) -> tuple[list[str], str]:
    """``ensemble:A,B[,...][:arithmetic|:geometric]`` -> ``([A, B, ...], method)``.

    Members are teacher specs without commas (a model.pt, its directory, a teacher file).
    """
    body = spec[len(ENSEMBLE_PREFIX) :]
    method = "arithmetic"
    head, sep, tail = body.rpartition(":")
    if sep and tail in METHODS:
        body, method = head, tail
    members = [m.strip() for m in body.split(",") if m.strip()]
    if not members:
        raise ConfigError(
            f"ensemble spec {spec!r} names no members; write "
            "ensemble:exp/teacher1/model.pt,exp/teacher2/model.pt[:arithmetic|:geometric]"
        )
    return members, method


def load_system(
    spec: str | Path | Mapping[str, Any],
    expect_tree_id: str | None = None,
    expect_num_senones: int | None = None,
    expect_frame_shift: float | None = None,
    device: str | torch.device = "auto",
    amp: str = "auto",
) -> Teacher:
    """A teacher or an ensemble of teachers from a spec (see the module docstring).

    Raises:
        BadInputError, ConfigError, MissingInputError: as :func:`load_teacher`.
    """
    expect = (expect_tree_id, expect_num_senones, expect_frame_shift)
    if isinstance(spec, str) and spec.startswith(ENSEMBLE_PREFIX):
        members, method = parse_ensemble_spec(spec)
        teachers = [load_teacher(m, *expect, device=device, amp=amp) for m in members]
        return EnsembleTeacher(teachers, method)
    config, base = None, Path.cwd()
    if isinstance(spec, Mapping):
        config = spec
    elif Path(spec).suffix in TEACHER_FILE_SUFFIXES and Path(spec).is_file():
        import yaml

        loaded = yaml.safe_load(Path(spec).read_text())
        if isinstance(loaded, dict) and loaded.get("kind") == "ensemble":
            config, base = loaded, Path(spec).parent
    if config is None or config.get("kind") != "ensemble":
        return load_teacher(spec, *expect, device=device, amp=amp)
    unknown = sorted(set(config) - ENSEMBLE_KEYS)
    if unknown or not config.get("members"):
        raise ConfigError(
            f"ensemble {spec}: needs 'members' (a list of teacher specs) and takes only "
            f"{', '.join(sorted(ENSEMBLE_KEYS))}" + (f"; unknown: {unknown}" if unknown else "")
        )
    teachers = [
        load_teacher(m if isinstance(m, Mapping) else base / str(m), *expect, device=device,
                     amp=amp)
        for m in config["members"]
    ]  # fmt: skip
    weights = config.get("weights")
    return EnsembleTeacher(
        teachers, config.get("method", "arithmetic"), weights, config.get("name")
    )


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


def _targets(cut: Cut, num_senones: int) -> np.ndarray:
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
        t = _targets(cut, num_senones)
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
    if spec.startswith(ENSEMBLE_PREFIX):
        return "ensemble"
    path = Path(spec)
    if path.name == "model.pt":
        return path.parent.name
    return path.stem if path.suffix else path.name
