"""Training settings (one YAML section per trained model) and what they build.

A recipe config names one section per training, e.g. ``teacher:`` or ``student:``::

    teacher:
      model: {arch: dnn, preset: small}
      optimizer: sgd
      lr: 0.05
      schedule: newbob
      max_epochs: 12

:class:`LrSchedule` turns the schedule options into a learning rate per optimiser step
and keeps the state a resumed training needs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("newbob", "newbob_ce", "cosine", "constant")
AMP_MODES = ("auto", "bf16", "off")
SELECTS = ("dev_acc", "dev_ce", "last")
DATA_PATHS = ("utterances", "frames")
_MODEL_KEYS = ("arch", "preset", "options")


def _default_model() -> dict[str, Any]:
    return {"arch": "dnn", "preset": "small", "options": {}}


@dataclass(frozen=True)
class WindowAugment:
    """Perturbations of a frame batch's windows (``TrainConfig.augment_*``).

    Attributes:
        freq_masks: frequency masks per frame (SpecAugment's F masks), each of a width
            drawn from ``0..freq_width``, set to 0 (the normalised features' mean) over the
            frame's whole window.
        freq_width: the widest mask, in feature bins.
        noise: standard deviation of Gaussian noise added to the normalised features.
    """

    freq_masks: int = 0
    freq_width: int = 0
    noise: float = 0.0

    @classmethod
    def of(cls, config: Any) -> WindowAugment:
        """The ``augment_*`` settings of a training config (0: off)."""
        return cls(
            int(getattr(config, "augment_freq_masks", 0)),
            int(getattr(config, "augment_freq_width", 0)),
            float(getattr(config, "augment_noise", 0.0)),
        )

    @property
    def enabled(self) -> bool:
        return (self.freq_masks > 0 and self.freq_width > 0) or self.noise > 0


@dataclass(frozen=True)
class TrainConfig:
    """Frame-level cross-entropy training of one acoustic model.

    Attributes:
        model: the registry model: ``arch``, optional ``preset`` and ``options``
            (``asr_kd.models.ModelSpec``'s fields).
        seed: seeds the weights (identical on every rank) and the training RNG.
        max_epochs: passes over the (sub-sampled) training cuts.
        max_steps: stop after this many optimiser steps (0: no limit); the partial
            epoch is evaluated and checkpointed like a whole one.
        optimizer: ``sgd`` (``momentum``, ``nesterov``), ``adam`` or ``adamw``.
        lr: peak learning rate (0: the weights stay as they are).
        momentum, nesterov: SGD only.
        weight_decay: L2 (``sgd``, ``adam``) or decoupled (``adamw``) weight decay.
        schedule: ``newbob`` (Kaldi/Hinton-era: once dev frame accuracy improves on the
            best by less than ``newbob_threshold``, multiply the rate by
            ``newbob_factor`` after every epoch), ``newbob_ce`` (Kaldi nnet1's
            ``train_scheduler.sh`` on dev cross-entropy: once its relative improvement
            on the best falls under ``newbob_start``, multiply the rate by
            ``newbob_factor`` after every epoch; once it then falls under
            ``newbob_stop``, stop: the training has converged and ``max_epochs`` is only
            a cap), ``cosine`` (to ``min_lr`` over the whole training) or ``constant``.
        warmup_steps: linear warm-up from 0 over this many optimiser steps.
        newbob_threshold: absolute dev frame-accuracy gain (0.002 = 0.2 points).
        newbob_factor: the newbob multiplier.
        newbob_start, newbob_stop: ``newbob_ce``'s relative dev cross-entropy
            improvements (Kaldi: 0.01 and 0.001).
        select: the epoch whose weights ``model.pt`` keeps: the best ``dev_acc`` (dev
            frame accuracy), the best ``dev_ce`` (dev cross-entropy) or the ``last``.
        min_lr: the cosine schedule's final rate.
        max_duration: seconds of audio per batch and rank (Lhotse's ``max_duration``).
        accum_grad: batches per optimiser step on each rank; the global batch is
            ``max_duration * accum_grad * world_size`` seconds.
        grad_clip: clip the gradient's global L2 norm to this (0: no clipping).
        label_smoothing: cross-entropy label smoothing.
        amp: ``auto`` (bf16 autocast on CUDA, off on CPU), ``bf16`` or ``off``.
        compile: wrap the model in ``torch.compile``.
        patience: stop after this many epochs without a better dev frame accuracy
            (dev cross-entropy with ``select: dev_ce``; 0: never stop early).
        num_workers: DataLoader worker processes reading features.
        log_interval: optimiser steps between log lines and TensorBoard points.
        checkpoint_interval: optimiser steps between mid-epoch checkpoints (0: only
            at the end of every epoch).
        train_fraction: train on this deterministic random fraction of the training
            cuts (the paper's 3%-of-the-data experiment); the chosen ids are recorded.
        subset_seed: seeds the choice of that subset.
        data_path: ``utterances`` (padded batches of whole cuts, any model) or
            ``frames`` (Kaldi nnet1's: globally shuffled minibatches of spliced frames,
            for frame classifiers; :mod:`asr_kd.train.frames`).
        frame_batch_size: frames per minibatch of the ``frames`` path (Kaldi: 256).
        updates_as_full: with ``train_fraction`` < 1, give the subset as many optimiser
            updates as ``max_epochs`` epochs of the whole training set (the paper's 3%
            experiment: same training, less data; :func:`updates_for_fraction`).
        frame_passes: shuffled passes over the training frames in one epoch of the frame
            path (set by ``updates_as_full``: a subset's epoch then has a whole-set
            epoch's updates, and the dev set is scored as often).
        omit_phone: leave every training frame whose senone belongs to this phone (a
            name of the lang's phone set, e.g. ``AH``) out of the training, frame path
            only (the paper's omitted "3"; :mod:`asr_kd.transfer.omit`). Dev is unchanged.
        augment_freq_masks, augment_freq_width, augment_noise: frame path only: perturb
            every training window (frequency masks up to ``augment_freq_width`` bins wide,
            Gaussian noise of this standard deviation on the normalised features); on-the-fly
            teachers see the same perturbed frames (:class:`WindowAugment`).
    """

    model: dict[str, Any] = field(default_factory=_default_model)
    seed: int = 0
    max_epochs: int = 10
    max_steps: int = 0
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    schedule: str = "newbob"
    warmup_steps: int = 0
    newbob_threshold: float = 0.002
    newbob_factor: float = 0.5
    newbob_start: float = 0.01
    newbob_stop: float = 0.001
    select: str = "dev_acc"
    min_lr: float = 0.0
    max_duration: float = 60.0
    accum_grad: int = 1
    grad_clip: float = 5.0
    label_smoothing: float = 0.0
    amp: str = "auto"
    compile: bool = False
    patience: int = 3
    num_workers: int = 2
    log_interval: int = 50
    checkpoint_interval: int = 0
    train_fraction: float = 1.0
    subset_seed: int = 0
    data_path: str = "utterances"
    frame_batch_size: int = 256
    updates_as_full: bool = False
    frame_passes: int = 1
    omit_phone: str | None = None
    augment_freq_masks: int = 0
    augment_freq_width: int = 0
    augment_noise: float = 0.0

    def __post_init__(self) -> None:
        model = dict(self.model or {})
        unknown = sorted(set(model) - set(_MODEL_KEYS))
        if "arch" not in model or unknown:
            raise ValueError(
                f"model must be a mapping with 'arch' and optionally 'preset' and 'options' "
                f"(unknown: {unknown}), got {self.model!r}"
            )
        model.setdefault("preset", None)
        model["options"] = dict(model.get("options") or {})
        object.__setattr__(self, "model", model)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("amp", self.amp, AMP_MODES)
        _choice("select", self.select, SELECTS)
        _choice("data_path", self.data_path, DATA_PATHS)
        if self.omit_phone is not None and self.data_path != "frames":
            raise ValueError(
                f"omit_phone ({self.omit_phone}) masks frames of the frame path: set "
                "data_path: frames"
            )
        if self.augmented and self.data_path != "frames":
            raise ValueError("augment_* perturb the frame path's windows: set data_path: frames")
        if self.nesterov and self.optimizer == "sgd" and self.momentum <= 0:
            raise ValueError("nesterov needs momentum > 0 (set nesterov: false or momentum)")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if not 0.0 < self.newbob_factor < 1.0:
            raise ValueError(f"newbob_factor must be in (0, 1), got {self.newbob_factor}")
        if not 0.0 <= self.newbob_stop <= self.newbob_start:
            raise ValueError(
                f"need 0 <= newbob_stop <= newbob_start, got {self.newbob_stop}, "
                f"{self.newbob_start}"
            )
        for name in ("max_epochs", "accum_grad", "log_interval", "frame_batch_size",
                     "frame_passes"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_duration <= 0:
            raise ValueError(f"max_duration must be positive, got {self.max_duration}")
        for name in (
            "lr",  # 0 freezes the weights
            "max_steps",
            "warmup_steps",
            "patience",
            "num_workers",
            "checkpoint_interval",
            "grad_clip",
            "weight_decay",
            "min_lr",
            "augment_freq_masks",
            "augment_freq_width",
            "augment_noise",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")

    @property
    def augmented(self) -> bool:
        """Whether the training windows are perturbed (``augment_*``)."""
        return WindowAugment.of(self).enabled


def updates_for_fraction(
    config: TrainConfig,
    subset_frames: int,
    total_frames: int,
    subset_steps: int | None = None,
    world_size: int = 1,
) -> TrainConfig:
    """``config`` changed so that a data subset gets the whole set's optimiser updates.

    Unchanged unless ``updates_as_full`` and ``train_fraction`` < 1. On the frame path
    an epoch becomes ``frame_passes`` = ceil(total / subset) shuffled passes over the
    subset, at least as many updates as a whole-set epoch, and ``max_steps`` stops the
    training at exactly the whole set's updates in ``max_epochs`` epochs: the dev set is
    scored as often as for a full-data model. On the utterance path the epochs are
    multiplied instead (one subset epoch is ``subset_steps`` updates; a whole-set epoch
    ``subset_steps * total_frames / subset_frames``).

    Args:
        config: the training settings.
        subset_frames, total_frames: frames in the subset and in the whole set.
        subset_steps: the utterance path's optimiser steps in one subset epoch.
        world_size: data-parallel ranks (the frame path deals batches out to them).
    """
    if not config.updates_as_full or config.train_fraction >= 1.0 or subset_frames <= 0:
        return config
    if config.data_path == "frames":
        full_epoch = -(-total_frames // config.frame_batch_size) // world_size
        steps = full_epoch * config.max_epochs
        passes = math.ceil(total_frames / subset_frames)
        epochs = config.max_epochs
    else:
        if subset_steps is None:
            raise ValueError("the utterance path needs subset_steps")
        steps = math.ceil(subset_steps * total_frames / subset_frames) * config.max_epochs
        passes, epochs = config.frame_passes, 0
    if config.max_steps:
        steps = min(steps, config.max_steps)
    if not epochs:
        epochs = max(1, math.ceil(steps / max(subset_steps or 1, 1)))
    return dataclasses.replace(config, max_steps=steps, max_epochs=epochs, frame_passes=passes)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (``None``: full precision)."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def make_optimizer(params: Iterable[torch.nn.Parameter], config: TrainConfig):
    """The optimiser ``config`` names, at its peak learning rate."""
    params = list(params)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
    cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


class LrSchedule:
    """Learning rate per optimiser step: warm-up times the schedule.

    ``newbob`` keeps a multiplier that :meth:`end_epoch` halves (by
    ``newbob_factor``) once the dev frame accuracy gains less than
    ``newbob_threshold`` on the best so far, and after every later epoch, as Kaldi's
    nnet1 ``train_scheduler.sh``. ``newbob_ce`` does the same on the relative
    improvement of the dev cross-entropy (``newbob_start``) and says when to stop
    (``newbob_stop``). ``cosine`` decays from ``lr`` to ``min_lr`` over
    ``total_steps``.

    Args:
        config: the training settings.
        optimizer: its parameter groups' ``lr`` is set by :meth:`apply`.
        total_steps: optimiser steps in the whole training (for ``cosine``).
    """

    def __init__(self, config: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int):
        self.config = config
        self.optimizer = optimizer
        self.total_steps = max(total_steps, 1)
        self.scale = 1.0
        self.halving = False

    def lr(self, step: int) -> float:
        """The rate for optimiser step ``step`` (0-based)."""
        c = self.config
        warm = min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps else 1.0
        if c.schedule == "cosine":
            progress = min(1.0, step / self.total_steps)
            return warm * (c.min_lr + 0.5 * (c.lr - c.min_lr) * (1 + math.cos(math.pi * progress)))
        return warm * c.lr * self.scale

    def apply(self, step: int) -> float:
        """Set the optimiser's rate for ``step``; returns it."""
        lr = self.lr(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def end_epoch(
        self,
        dev_acc: float,
        best_acc: float | None,
        dev_ce: float | None = None,
        best_ce: float | None = None,
    ) -> bool:
        """Newbob: update the multiplier from this epoch's dev scores.

        Args:
            dev_acc, dev_ce: this epoch's dev frame accuracy and cross-entropy.
            best_acc, best_ce: the best of the earlier epochs (``None``: first epoch).

        Returns:
            Whether ``newbob_ce`` says the training has converged (stop now).
        """
        c = self.config
        if c.schedule == "newbob":
            gain = math.inf if best_acc is None else dev_acc - best_acc
            small = gain < c.newbob_threshold
        elif c.schedule == "newbob_ce":
            if dev_ce is None:
                raise ValueError("schedule newbob_ce needs the dev cross-entropy")
            # Kaldi: the improvement of the accepted (best) loss, never negative.
            if best_ce is None:
                gain = math.inf
            else:
                gain = (best_ce - min(dev_ce, best_ce)) / max(abs(best_ce), 1e-12)
            if self.halving and gain < c.newbob_stop:
                return True
            small = gain < c.newbob_start
        else:
            return False
        if small:
            self.halving = True
        if self.halving:
            self.scale *= c.newbob_factor
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "halving": self.halving, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale = float(state["scale"])
        self.halving = bool(state["halving"])
        self.total_steps = int(state["total_steps"])
