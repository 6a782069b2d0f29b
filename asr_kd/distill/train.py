"""The distillation stage (``asr-kd distill``): a student trained on the teachers' soft targets.

The student trains with :func:`asr_kd.train.train_model` and the loss of
:mod:`asr_kd.distill.loss`; everything else (batches, schedule, checkpoints, resuming,
DDP, the output contract ``<out>/model.pt``, ``train.json``, ``checkpoints/``, ``log/``)
is the training stage's, so the student decodes like any model. Epochs are selected by
the dev frame accuracy of the student's plain logits (temperature 1).

The soft targets come from a cache (``source: cache``, written by
``asr-kd cache-soft-targets``; a cache for another tree or temperature is refused) or
from the teachers run in the same batch (``source: on_the_fly``). A recipe config holds
a ``distill:`` section (:class:`DistillConfig`) and a training section for the student
(``student:`` by default, a :class:`~asr_kd.train.TrainConfig`)::

    distill:
      temperature: 2
      alpha: 0.5                     # the soft term's weight; the hard term gets 1 - alpha
      source: cache
      cache_dir: exp/soft_targets
      teachers: [exp/teacher1, exp/teacher2, exp/teacher3]
      combination: arithmetic
      k: 10
    student:
      lr: 0.05
      max_epochs: 12

The student's architecture is ``distill.student`` (a model spec: a registry ``arch``, or
a plug-in ``package.module:Class`` built as ``Class(feat_dim=, num_senones=, **options)``);
by default that of the first teacher, read from its ``model.pt``. The training
section's ``model`` is replaced by it.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from asr_kd.config import to_dict
from asr_kd.distill.cache import (
    ROWS,
    SOFT_IDX,
    SOFT_MASS,
    SOFT_PROB,
    CachedSoftTargets,
    check_cache,
    read_cache_info,
)
from asr_kd.distill.loss import SparseTargets, kd_loss
from asr_kd.errors import BadInputError, ConfigError
from asr_kd.stage import require_done
from asr_kd.teachers import EnsembleTeacher, load, teacher_digests, teacher_model_file
from asr_kd.train import TrainConfig, train_model
from asr_kd.train.checkpoint import load_file, registry_builder, resolved_spec
from asr_kd.train.dataset import TARGETS_STAGE, Batch, load_split, read_targets_info

logger = logging.getLogger(__name__)

STAGE = "distill"
SOURCES = ("cache", "on_the_fly")
COMBINATIONS = ("arithmetic", "geometric")
PROB_DTYPES = ("float16", "float32")
TAILS = ("group", "uniform", "renormalise")


@dataclass(frozen=True)
class DistillConfig:
    """What the student learns from (YAML section ``distill``).

    Attributes:
        temperature: T of the soft targets and of the student's soft term.
        alpha: weight of the soft term ``T^2 KL``; the hard cross-entropy gets
            ``1 - alpha`` (the paper: the hard term at 0.5 relative to the soft one,
            ``alpha = 2/3``).
        source: ``cache`` (read ``cache_dir``) or ``on_the_fly`` (run the teachers).
        cache_dir: a ``cache-soft-targets`` output, for ``source: cache``.
        teachers: teacher specs for ``asr_kd.teachers.load`` (a training
            directory, ...). With ``source: cache`` they may be left out (the cache
            records its own); if given, the cache must have been made from them.
        combination: ``arithmetic`` or ``geometric`` mean of the teachers.
        weights: one weight per teacher, or ``None`` (equal).
        k: senones kept per frame in the cache.
        tail: what a cached target says of the senones outside its k: ``group`` (they
            hold the teacher's remaining mass together), ``uniform`` (that mass spread
            evenly) or ``renormalise`` (nothing: the k renormalised); see
            :mod:`asr_kd.distill.loss`.
        prob_dtype: the cached probabilities' type, ``float16`` or ``float32``.
        student: the student's model spec (``arch``, ``preset``, ``options``), or
            ``None`` for the first teacher's architecture.
        amp: the teachers' inference precision: ``auto`` (bf16 on CUDA), ``bf16``, ``off``.
    """

    temperature: float = 2.0
    alpha: float = 0.5
    source: str = "cache"
    cache_dir: str | None = None
    teachers: tuple[Any, ...] = ()
    combination: str = "arithmetic"
    weights: tuple[float, ...] | None = None
    k: int = 10
    tail: str = "group"
    prob_dtype: str = "float16"
    student: dict[str, Any] | None = None
    amp: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "teachers", tuple(self.teachers or ()))
        if self.weights is not None:
            object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        for name, value, allowed in (
            ("source", self.source, SOURCES),
            ("combination", self.combination, COMBINATIONS),
            ("prob_dtype", self.prob_dtype, PROB_DTYPES),
            ("tail", self.tail, TAILS),
            ("amp", self.amp, ("auto", "bf16", "off")),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if self.weights is not None and self.teachers and len(self.weights) != len(self.teachers):
            raise ValueError(f"{len(self.weights)} weights for {len(self.teachers)} teachers")
        if self.student is not None and "arch" not in self.student:
            raise ValueError(f"student must be a model spec with 'arch', got {self.student!r}")


class DistillLoss:
    """The training loop's ``loss_fn``: :func:`kd_loss` against the batch's soft targets.

    Args:
        temperature, alpha: as in :class:`DistillConfig`.
        teachers: run on every batch (on the fly); ``None`` reads the cached
            ``batch["soft_idx"]``/``batch["soft_prob"]`` (:class:`CachedSoftTargets`).
    """

    def __init__(
        self,
        temperature: float,
        alpha: float,
        teachers: EnsembleTeacher | None = None,
        tail: str = "group",
    ):
        self.temperature, self.alpha, self.teachers = temperature, alpha, teachers
        self.tail = tail

    def __call__(
        self, logits: torch.Tensor, batch: Batch
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        device = logits.device
        if self.teachers is not None:
            target = self.teachers.batch_log_probs(batch, self.temperature, device)
        elif SOFT_IDX in batch:
            mass = None if self.tail == "renormalise" else batch.get(SOFT_MASS)
            target = SparseTargets(batch[SOFT_IDX], batch[SOFT_PROB], mass, self.tail)
            target = target.to(device)
        else:
            raise ValueError("no soft targets in the batch: add the CachedSoftTargets hook")
        hard = batch["targets"].to(device)
        return kd_loss(logits, target, hard, self.temperature, self.alpha)


def student_builder(
    spec: dict[str, Any], feat_dim: int, num_senones: int
) -> tuple[torch.nn.Module, dict, dict]:
    """A ``ModelBuilder`` for registry models and plug-ins (``arch: "package.module:Class"``).

    A plug-in is built as ``Class(feat_dim=..., num_senones=..., **options)`` and must
    follow the acoustic-model contract (``forward(feats, lengths) -> (logits, lengths)``).
    Load its ``model.pt`` with ``load_model(path, builder=student_builder)``.
    """
    arch = str(spec["arch"])
    if ":" not in arch:
        return registry_builder(spec, feat_dim, num_senones)
    module, _, name = arch.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(
            f"student arch {arch!r}: cannot import {name} from {module} ({e})"
        ) from None
    options = dict(spec.get("options") or {})
    model = cls(feat_dim=feat_dim, num_senones=num_senones, **options)
    config = {"feat_dim": feat_dim, "num_senones": num_senones, **options}
    return model, {"arch": arch, "preset": None, "options": options}, config


def student_spec(config: DistillConfig, teachers: Sequence[Any]) -> dict[str, Any]:
    """The student's model spec: ``config.student``, else the first teacher's architecture.

    Raises:
        ConfigError: no student spec and the first teacher has no ``model.pt``.
    """
    if config.student is not None:
        return {"preset": None, "options": {}, **dict(config.student)}
    path = teacher_model_file(teachers[0]) if teachers else None
    if path is None:
        first = teachers[0] if teachers else None
        raise ConfigError(
            f"the first teacher ({first!r}) has no model.pt to copy the student's architecture "
            "from; set distill.student to a model spec, e.g. {arch: dnn, preset: small}"
        )
    doc = load_file(path)
    return resolved_spec(doc["spec"], doc.get("model_config") or {})


def distill(
    data_dir: Path | str,
    feature_dir: Path | str,
    out_dir: Path | str,
    config: DistillConfig,
    train: TrainConfig,
    *,
    train_split: str = "train",
    dev_split: str = "dev",
    device: str = "auto",
    force: bool = False,
    builder=student_builder,
    callbacks: Sequence = (),
) -> Path:
    """Distil the teachers into a student (``asr-kd distill``); resumes if killed.

    Args:
        data_dir: a finished ``senone-targets`` output (hard targets, cuts).
        feature_dir: its ``compute-features`` output (statistics).
        out_dir: the student's training directory (``model.pt`` contract).
        config: temperature, weights and the source of the soft targets.
        train: the student's training settings (its ``model`` is replaced by
            :func:`student_spec`).
        train_split, dev_split, device, force, callbacks: as in ``train_model``.
        builder: builds the student from its spec (default: registry or plug-in).

    Returns:
        ``out_dir``.

    Raises:
        BadInputError: a cache for another tree, temperature or cut set, or one whose
            frame counts differ from the features (naming the cut).
    """
    data_dir = require_done(Path(data_dir).resolve(), TARGETS_STAGE)
    info = read_targets_info(data_dir)
    tree, num_senones = str(info["tree_id"]), int(info["num_senones"])
    record: dict[str, Any] = to_dict(config)
    if config.source == "cache" and not config.cache_dir:
        raise ConfigError("distill.source: cache needs distill.cache_dir ('cache-soft-targets')")
    if config.source == "on_the_fly" and not config.teachers:
        raise ConfigError("distill.source: on_the_fly needs distill.teachers")
    if config.source == "cache" and train.augmented:
        raise ConfigError(
            "augment_* perturb the student's inputs, but cached soft targets were computed "
            "on the clean ones: set distill.source: on_the_fly (the teachers then see the "
            "same perturbed frames) or turn the augmentation off"
        )
    if config.source == "cache":
        cache_dir = Path(config.cache_dir).resolve()
        cache = read_cache_info(cache_dir)
        check_cache(cache, str(cache_dir), tree, num_senones, config)
        if config.tail != "renormalise" and cache.get("rows") != ROWS:
            raise BadInputError(
                f"the soft-target cache {cache_dir} holds renormalised rows (an older "
                "'cache-soft-targets'): rerun it with --force for distill.tail: "
                f"{config.tail}, or "
                "set distill.tail: renormalise"
            )
        hook = CachedSoftTargets.from_dir(cache_dir, train_split)
        hook.check(load_split(data_dir, train_split))
        loss_fn = DistillLoss(config.temperature, config.alpha, tail=config.tail)
        hooks, teachers = [hook], None
        specs = config.teachers or tuple(cache.get("teachers") or ())
        record["cache"] = {k: cache.get(k) for k in ("teachers", "combination", "weights", "k",
                                                     "prob_dtype", "bytes_per_hour")}  # fmt: skip
        record["cache_dir"] = str(cache_dir)
        record["teacher_digests"] = cache.get("teacher_digests")
    else:
        teachers = _load_teachers(
            data_dir, feature_dir, config, train_split, tree, num_senones, device
        )
        loss_fn = DistillLoss(config.temperature, config.alpha, teachers)
        hooks, specs = teachers.collate_hooks(), config.teachers
        record["teacher_digests"] = teacher_digests(config.teachers)
    spec = student_spec(config, specs)
    train = dataclasses.replace(train, model=spec)
    logger.info(
        "%s: student %s from %d teacher(s) (%s, T=%g, alpha=%g, soft targets %s)",
        STAGE, spec, len(specs), config.combination, config.temperature, config.alpha,
        config.source if teachers is None else f"on the fly, batched {teachers.batched}",
    )  # fmt: skip
    return train_model(
        data_dir, feature_dir, out_dir, train, train_split=train_split, dev_split=dev_split,
        device=device, force=force, loss_fn=loss_fn, collate_hooks=hooks, callbacks=callbacks,
        builder=builder, stage=STAGE, extra_config={"distillation": record},
    )  # fmt: skip


def _load_teachers(data_dir, feature_dir, config, split, tree, num_senones, device):
    from asr_kd.data.features import load_stats
    from asr_kd.train.dataset import FeatureNormalizer
    from asr_kd.train.distributed import resolve_device

    # The device train_model will give this rank (the teachers are moved there anyway).
    dev = resolve_device(device, int(os.environ.get("LOCAL_RANK", "0")))
    stats, _ = load_stats(require_done(Path(feature_dir), "compute-features"))
    first = next(iter(load_split(data_dir, split)))
    teachers = load(
        list(config.teachers), tree, num_senones, float(first.frame_shift), dev, config.amp,
        combination=config.combination, weights=config.weights,
    )  # fmt: skip
    teachers.set_batch_normalizer(FeatureNormalizer(stats.mean, stats.var))
    return teachers
