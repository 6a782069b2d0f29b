"""What a :class:`asr_kd.train.Trainer` trains: members, their objectives and progress.

A :class:`Member` is one model of a training group with its :class:`Objective` (the
targets it learns, its loss and its dev scores) and its :class:`LoopState`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from asr_kd.errors import AsrKdError
from asr_kd.train.config import LrSchedule
from asr_kd.train.dataset import PAD_TARGET, Batch
from asr_kd.train.evaluate import frame_sums

CONVERGED = ("converged", "early_stopping")
"""Stop reasons that mean the dev criterion said stop (not a cap on epochs or steps)."""

LossFn = Callable[[torch.Tensor, Batch], tuple[torch.Tensor, dict[str, torch.Tensor]]]
"""``(logits [B, T, S] float32, batch) -> (loss summed over frames, extra sums by name)``.

Sums, not means: the loop divides by the step's global frame count. The extra sums
(e.g. the KL and CE parts of a distillation loss) are logged per frame; every rank
must return the same names. ``"ce"`` is the cross-entropy against the hard targets.
"""
StepCallback = Callable[[int, dict[str, Any]], None]
"""Called after every optimiser step (and its checkpoint) with the step count and facts."""


class NonFiniteLossError(AsrKdError):
    """The loss or the gradient became NaN or infinite."""


def cross_entropy(label_smoothing: float = 0.0) -> LossFn:
    """Frame-level cross-entropy against ``batch["targets"]``, summed over real frames."""

    def loss_fn(logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        targets = batch["targets"].to(logits.device).flatten()
        flat = logits.flatten(0, -2)
        loss = F.cross_entropy(
            flat, targets, ignore_index=PAD_TARGET, reduction="sum",
            label_smoothing=label_smoothing,
        )  # fmt: skip
        ce = loss
        if label_smoothing:
            ce = F.cross_entropy(flat, targets, ignore_index=PAD_TARGET, reduction="sum")
        return loss, {"ce": ce.detach()}

    return loss_fn


class Objective:
    """What one model of a group learns from a batch, and how dev scores it.

    The default: the batch's senone targets, ``loss_fn`` (cross-entropy by default),
    frame accuracy and cross-entropy on dev. Subclasses map the targets (the
    specialists' cluster classes and dustbin) and keep what a resumed training must
    restore in :meth:`state_dict`.

    Args:
        loss_fn: the training loss (summed over frames).
    """

    def __init__(self, loss_fn: LossFn | None = None):
        self.loss_fn = loss_fn or cross_entropy()

    def logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The model's logits as scored (e.g. padding classes masked)."""
        return logits

    def batch(self, batch: Batch) -> Batch:
        """The training batch this model learns from (its ``targets`` may be mapped)."""
        return batch

    def dev_batch(self, batch: Batch) -> Batch:
        """The dev batch it is scored on."""
        return batch

    def loss(self, logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        return self.loss_fn(logits, batch)

    def dev_sums(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        return frame_sums(self.logits(logits), self.dev_batch(batch))

    def dev_record(self, sums: dict[str, float]) -> dict[str, Any]:
        """The epoch record's dev entries: at least ``dev_frame_acc`` and ``dev_ce``."""
        frames = max(sums.get("frames", 0.0), 1.0)
        return {"dev_frame_acc": sums.get("correct", 0.0) / frames,
                "dev_ce": sums.get("ce", 0.0) / frames}  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@dataclasses.dataclass
class LoopState:
    """One model's progress (plain data, saved in every checkpoint)."""

    step: int = 0
    lr: float = 0.0
    sums: dict[str, float] = dataclasses.field(default_factory=dict)
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    best_epoch: int = 0
    best_acc: float | None = None
    best_ce: float | None = None
    bad_epochs: int = 0
    stop_reason: str | None = None


@dataclasses.dataclass
class Position:
    """Where the group's data pass stands."""

    epoch: int = 0
    batches_done: int = 0
    step: int = 0
    epoch_seconds: float = 0.0


@dataclasses.dataclass(eq=False)
class Member:
    """One model of a training group.

    Attributes:
        name: names it in logs (and its output directory).
        model: the model on the trainer's device (weights identical on every rank).
        objective: what it learns.
        spec, model_config: how to rebuild it (written to ``model.pt``).
        out_dir: where its output goes (used by the caller).
    """

    name: str
    model: torch.nn.Module
    objective: Objective = dataclasses.field(default_factory=Objective)
    spec: dict[str, Any] = dataclasses.field(default_factory=dict)
    model_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    out_dir: Path | None = None
    state: LoopState = dataclasses.field(default_factory=LoopState)
    runner: torch.nn.Module | None = None  # the model as run: DDP or compiled
    optimizer: Any = None
    schedule: LrSchedule | None = None
    best: dict[str, torch.Tensor] | None = None  # the selected weights (groups)
    rng: dict[str, torch.Tensor] | None = None  # its dropout stream (loop over a group)
    tb: Any = None
    local: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    interval: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.state.stop_reason is None
