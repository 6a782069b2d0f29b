"""The distillation loss of Hinton, Vinyals & Dean (2015), summed over frames.

For student logits ``z``, teacher probabilities ``p_T`` at temperature ``T`` and the hard
senone targets ``y`` of the valid frames::

    loss = alpha * T^2 * KL(p_T || q_T) + (1 - alpha) * CE(softmax(z), y),  q_T = softmax(z / T)

summed over the frames whose hard target is not ``PAD_TARGET`` (the training loop divides
by the frame count); the CE term leaves out the frames of untranscribed audio
(``UNLABELLED_TARGET``, :mod:`asr_kd.train.dataset`), which learn from the teacher alone.
The ``T^2`` keeps the soft term's gradient, ``alpha * T * (q_T - p_T)`` with respect to
``z``, on the scale of the hard term's ``softmax(z) - onehot(y)`` when the temperature
changes (the paper's section 2). The paper's speech experiment weights the hard term
at 0.5 relative to the soft term: ``(1 - alpha) / alpha = 0.5``, i.e. ``alpha = 2/3``
(``alpha = 0.5`` weighs both alike); it tries ``T`` in {1, 2, 5, 10}.

The teacher side comes dense (``[B, T, S]`` log-probabilities, e.g. an ensemble run on
the fly) or sparse (:class:`SparseTargets`, the cached top-k senones per frame). What a
sparse target says about the other ``S - k`` senones is the ``tail``:

- ``group`` (the default): the k senones at their true probabilities ``mass * p_k``,
  and the other senones together as one class holding the ``1 - mass`` the teacher gave
  them: the KL divergence between the two (k + 1)-class distributions. How the student
  shares that mass among them is left to it (and to the hard term);
- ``uniform``: the ``1 - mass`` spread evenly over the other senones;
- ``renormalise`` (no ``mass``): the k probabilities renormalised to 1 and zero
  elsewhere, so the KL divergence runs over the kept senones only.

The tail matters for decoding, which divides posteriors by senone priors. On the small
synth corpus (k = 10, T = 2; dev, 4 teachers) the renormalised targets taught the student
that senones outside the top 10 are impossible: its median log-probability fell to -33
(baseline -17) and dev WER rose to 8.3% (baseline 5.3%). The uniform tail lifted every
rare senone to the same floor (median -10, minimum -15 against the baseline's -33), which
the prior division turns into false evidence: dev WER 11.0%, at a better frame accuracy
than the baseline's. The grouped tail leaves the shape of the tail to the hard term:
dev WER 5.1%, test 5.4% (baseline 5.7%). With ``k = S`` all forms give the same loss.
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
        mass: ``[B, T]`` the probability the k senones held before renormalising, or
            ``None``: the rest is then dropped (``renormalise``, module doc).
        tail: with ``mass``, ``group`` or ``uniform`` (module doc).
    """

    indices: Tensor
    probs: Tensor
    mass: Tensor | None = None
    tail: str = "group"

    def to(self, device: torch.device | str) -> SparseTargets:
        mass = None if self.mass is None else self.mass.to(device)
        return SparseTargets(self.indices.to(device), self.probs.to(device), mass, self.tail)


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
        hard_targets: ``[B, T]`` senone ids, ``PAD_TARGET`` (-100) on padding frames,
            ``UNLABELLED_TARGET`` (-1) on frames of untranscribed audio: the soft term
            covers them, the hard term does not.
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
        log_q_kept = log_q.gather(-1, teacher.indices[valid].long())
        rest = z.shape[-1] - p.shape[-1]
        if teacher.mass is None or rest == 0:
            cross = -(p * log_q_kept).sum()
            entropy = torch.special.xlogy(p, p).sum()
        else:  # the kept senones at their true mass; the rest grouped or spread
            mass = teacher.mass[valid].to(z.dtype).clamp(0.0, 1.0)[:, None]
            p = p * mass
            if teacher.tail == "uniform":
                u = (1.0 - mass) / rest  # [N, 1], each of the other senones
                log_q_rest = log_q.sum(-1, keepdim=True) - log_q_kept.sum(-1, keepdim=True)
                cross = -(p * log_q_kept).sum() - (u * log_q_rest).sum()
                entropy = torch.special.xlogy(p, p).sum() + rest * torch.special.xlogy(u, u).sum()
            else:  # group: the other senones are one class of mass 1 - mass
                kept = torch.zeros_like(log_q, dtype=torch.bool)
                kept.scatter_(-1, teacher.indices[valid].long(), True)
                log_q_other = torch.logsumexp(log_q.masked_fill(kept, float("-inf")), -1)
                cross = -(p * log_q_kept).sum() - ((1.0 - mass[:, 0]) * log_q_other).sum()
                entropy = (
                    torch.special.xlogy(p, p).sum()
                    + torch.special.xlogy(1.0 - mass, 1.0 - mass).sum()
                )
    else:
        log_p = teacher[valid].to(z.dtype)
        p = log_p.exp()
        cross = -(p * log_q).sum()
        entropy = torch.where(p > 0, p * log_p, torch.zeros_like(p)).sum()
    kl = cross + entropy
    hard = hard_targets[valid].long()
    labelled = hard >= 0  # UNLABELLED_TARGET (-1): untranscribed audio, soft term only
    ce = F.cross_entropy(z[labelled], hard[labelled], reduction="sum")
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
        if teacher.mass is not None and teacher.mass.shape != idx.shape[:2]:
            raise ValueError(
                f"sparse teacher targets: mass {list(teacher.mass.shape)} must be [batch, "
                f"frames] {list(idx.shape[:2])}"
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
