"""The distillation loss of Hinton, Vinyals & Dean (2015), summed over frames.

For student logits ``z``, teacher probabilities ``p_T`` at temperature ``T`` and the hard
senone targets ``y`` of the valid frames::

    loss = alpha * T^2 * KL(p_T || q_T) + (1 - alpha) * CE(softmax(z), y),  q_T = softmax(z / T)

summed over the frames whose hard target is not ``PAD_TARGET`` (the training loop divides
by the frame count). The ``T^2`` keeps the soft term's gradient, ``alpha * T * (q_T - p_T)``
with respect to ``z``, on the scale of the hard term's ``softmax(z) - onehot(y)`` when
the temperature changes (the paper's section 2). The paper's speech experiment weights
the hard term by 0.5 (``alpha = 0.5``) and tries ``T`` in {1, 2, 5, 10}.

The teacher side comes dense (``[B, T, S]`` log-probabilities, e.g. an ensemble run on
the fly) or sparse (:class:`SparseTargets`, the cached top-k senones per frame with
their probabilities renormalised over the k kept): then the KL divergence runs over the
kept senones only, ``sum_k p_k log p_k - sum_k p_k log q_T[idx_k]`` with ``q_T`` the
student's full softmax. With ``k = S`` both forms give the same loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from asr_kd.train.dataset import PAD_TARGET

__all__ = ["SparseTargets", "kd_loss"]


@dataclass(frozen=True)
class SparseTargets:
    """The teacher's top-k senones per frame.

    Attributes:
        indices: ``[B, T, k]`` integer senone ids.
        probs: ``[B, T, k]`` their probabilities at the distillation temperature; each
            frame's row is renormalised to sum to 1 by :func:`kd_loss` (cached float16
            rows sum to 1 only up to rounding). Padding frames may hold anything finite.
    """

    indices: Tensor
    probs: Tensor

    def to(self, device: torch.device | str) -> SparseTargets:
        return SparseTargets(self.indices.to(device), self.probs.to(device))


def kd_loss(
    student_logits: Tensor,
    teacher: Tensor | SparseTargets,
    hard_targets: Tensor,
    temperature: float,
    alpha: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The distillation loss summed over the valid frames.

    Args:
        student_logits: ``[B, T, S]`` the student's logits (at temperature 1).
        teacher: ``[B, T, S]`` the teacher's log-probabilities already at
            ``temperature`` (``log_softmax(z_teacher / T)``, or an ensemble's), or
            :class:`SparseTargets` (top-k at ``temperature``).
        hard_targets: ``[B, T]`` senone ids, ``PAD_TARGET`` (-100) on padding frames.
        temperature: ``T > 0``, the temperature of both softmaxes in the soft term.
        alpha: weight of the soft term in ``[0, 1]``; the hard term gets ``1 - alpha``.

    Returns:
        ``(loss, stats)``: the loss summed over valid frames (a 0-dim tensor with the
        logits' dtype), and the frame sums ``{"kl": KL(p_T || q_T), "ce": CE}``
        (detached, unweighted) for logging.

    Raises:
        ValueError: shapes that do not fit, ``temperature <= 0`` or ``alpha`` outside
            ``[0, 1]``.
    """
    _check(student_logits, teacher, hard_targets, temperature, alpha)
    valid = hard_targets != PAD_TARGET
    z = student_logits[valid]  # [N, S]
    log_q = torch.log_softmax(z / temperature, dim=-1)
    if isinstance(teacher, SparseTargets):
        p = teacher.probs[valid].to(z.dtype)
        p = p / p.sum(-1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)
        cross = -(p * log_q.gather(-1, teacher.indices[valid].long())).sum()
        entropy = torch.special.xlogy(p, p).sum()
    else:
        log_p = teacher[valid].to(z.dtype)
        p = log_p.exp()
        cross = -(p * log_q).sum()
        entropy = torch.where(p > 0, p * log_p, torch.zeros_like(p)).sum()
    kl = cross + entropy
    ce = F.cross_entropy(z, hard_targets[valid].long(), reduction="sum")
    loss = alpha * temperature**2 * kl + (1.0 - alpha) * ce
    return loss, {"kl": kl.detach(), "ce": ce.detach()}


def _check(
    logits: Tensor,
    teacher: Tensor | SparseTargets,
    hard: Tensor,
    temperature: float,
    alpha: float,
) -> None:
    if not temperature > 0:
        raise ValueError(f"the distillation temperature must be positive, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha (the soft term's weight) must be in [0, 1], got {alpha}")
    if logits.dim() != 3:
        raise ValueError(
            f"student logits must be [batch, frames, senones], got {list(logits.shape)}"
        )
    if hard.shape != logits.shape[:2]:
        raise ValueError(
            f"hard targets {list(hard.shape)} do not match the logits' [batch, frames] "
            f"{list(logits.shape[:2])}"
        )
    if isinstance(teacher, SparseTargets):
        idx, probs = teacher.indices, teacher.probs
        if idx.dim() != 3 or idx.shape != probs.shape or idx.shape[:2] != logits.shape[:2]:
            raise ValueError(
                f"sparse teacher targets: indices {list(idx.shape)} and probs "
                f"{list(probs.shape)} must both be [batch, frames, k] with the logits' "
                f"[batch, frames] {list(logits.shape[:2])}"
            )
        if idx.shape[-1] > logits.shape[-1] or idx.dtype.is_floating_point:
            raise ValueError(
                f"sparse teacher targets: need integer indices and k <= {logits.shape[-1]} "
                f"senones, got {idx.dtype} with k = {idx.shape[-1]}"
            )
    elif teacher.shape != logits.shape:
        raise ValueError(
            f"teacher log-probs {list(teacher.shape)} do not match the student logits "
            f"{list(logits.shape)}: teacher and student must share frames and senones (tree)"
        )
