"""The teacher protocol and the checks every kind of teacher shares."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from lhotse.cut import Cut

from asr_kd.errors import BadInputError

__all__ = [
    "Teacher",
    "TeacherBase",
    "check_finite",
    "check_teacher",
    "check_temperature",
    "pad_log_probs",
]


@runtime_checkable
class Teacher(Protocol):
    """Per-frame senone log-probabilities of cuts.

    Attributes:
        name: a short name for tables and logs (``teacher1``).
        source: what makes the scores (paths and file digests), for provenance.
        num_senones, tree_id: the senone inventory the outputs index.
        frame_shift: seconds per output frame (the input features' frame shift).
        needs_features: whether it reads the cuts' features (a network does, stored
            posteriors do not).
    """

    name: str
    source: str
    num_senones: int
    tree_id: str
    frame_shift: float
    needs_features: bool

    def log_probs(self, cut: Cut, temperature: float = 1.0) -> np.ndarray:
        """``[T, S]`` float32 log-probabilities of a cut at ``temperature``; rows sum to 1."""
        ...

    def log_probs_batch(
        self,
        cuts: Sequence[Cut],
        temperature: float = 1.0,
        feats: Sequence[np.ndarray] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities of a batch: ``([B, T, S] float32, lengths [B])``.

        Padding frames hold the uniform distribution (finite, so combinations stay
        finite). ``feats``: the cuts' raw features if already loaded (the caller loads
        them once for several teachers). The result lives on the teacher's device.
        """
        ...


class TeacherBase:
    """A teacher's :meth:`log_probs` of one cut from its ``log_probs_batch``."""

    def log_probs(self, cut: Cut, temperature: float = 1.0) -> np.ndarray:
        out, _ = self.log_probs_batch([cut], temperature)  # type: ignore[attr-defined]
        return out[0].cpu().numpy()


def check_temperature(temperature: float) -> None:
    """Refuse a temperature that is not positive and finite (``ValueError``)."""
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be positive and finite, got {temperature}")


def pad_log_probs(
    rows: Sequence[torch.Tensor], num_senones: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad ``[T_i, S]`` log-probabilities to ``[B, T_max, S]`` with uniform rows."""
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.int64)
    device = rows[0].device
    out = torch.full(
        (len(rows), int(lengths.max()), num_senones), -math.log(num_senones), device=device
    )
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out, lengths


def check_finite(
    log_probs: torch.Tensor, lengths: torch.Tensor, cuts: Sequence[Cut], teacher: Teacher
) -> None:
    """Refuse NaN or Inf log-probabilities on a batch's valid frames, naming the cut.

    ``-inf`` is a legitimate log-probability (a senone of probability 0); NaN and
    ``+inf`` are not, nor a frame whose every senone is ``-inf``.

    Raises:
        BadInputError: naming the first cut, the frame and the teacher.
    """
    valid = (
        torch.arange(log_probs.shape[1], device=log_probs.device)
        < lengths.to(log_probs.device)[:, None]
    )
    bad_value = torch.isnan(log_probs) | (log_probs == math.inf)
    empty = (log_probs == -math.inf).all(-1)
    bad = (bad_value.any(-1) | empty) & valid
    if bool(bad.any()):
        b, t = (int(i) for i in torch.nonzero(bad)[0])
        raise BadInputError(
            f"cut {cuts[b].id}: teacher {teacher.name} ({teacher.source}) gives NaN or Inf "
            f"log-probabilities at frame {t}; check its inputs (the cut's features or "
            "stored posteriors) and its weights (a diverged model)"
        )


def check_teacher(
    teacher: Teacher,
    tree_id: str | None = None,
    num_senones: int | None = None,
    frame_shift: float | None = None,
    what: str = "the data",
) -> None:
    """Refuse a teacher for another senone inventory or frame rate.

    Raises:
        BadInputError: naming the teacher's and the expected values.
    """
    if (tree_id is not None and teacher.tree_id != tree_id) or (
        num_senones is not None and teacher.num_senones != num_senones
    ):
        raise BadInputError(
            f"teacher {teacher.name} ({teacher.source}) predicts {teacher.num_senones} senones "
            f"of tree {teacher.tree_id} but {what} uses {num_senones} senones of tree "
            f"{tree_id}; use a teacher built on the same tree ('senone-targets')"
        )
    if frame_shift is not None and abs(teacher.frame_shift - frame_shift) > 1e-6:
        raise BadInputError(
            f"teacher {teacher.name} ({teacher.source}) works at a frame shift of "
            f"{teacher.frame_shift} s but {what} at {frame_shift} s"
        )
