"""Combining the per-frame senone distributions of several teachers.

Hinton et al. (2015) average the teachers' *probabilities* (the arithmetic mean); the
geometric mean (a weighted mean of log-probabilities, renormalised) is the other
common choice, a product of experts. Both take the teachers' log-softmax outputs at
the distillation temperature ``T``, so the soft targets of an ensemble at ``T`` are::

    soft = combine_log_probs(torch.stack([log_softmax(z_k / T) for z_k in logits]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["METHODS", "combine_log_probs", "normalise_weights"]

METHODS = ("arithmetic", "geometric")


def normalise_weights(weights: Sequence[float] | None, num_teachers: int) -> list[float]:
    """Teacher weights scaled to sum to 1 (``None``: equal weights).

    Raises:
        ValueError: a weight count other than ``num_teachers``, a negative or
            non-finite weight, or all weights zero.
    """
    if num_teachers < 1:
        raise ValueError("an ensemble needs at least one teacher")
    if weights is None:
        return [1.0 / num_teachers] * num_teachers
    weights = [float(w) for w in weights]
    if len(weights) != num_teachers:
        raise ValueError(f"got {len(weights)} weights for {num_teachers} teachers")
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be finite, non-negative and not all zero, got {weights}")
    total = sum(weights)
    return [w / total for w in weights]


def combine_log_probs(
    log_probs: Tensor,
    method: str = "arithmetic",
    weights: Sequence[float] | None = None,
) -> Tensor:
    """Combine the teachers' distributions frame by frame.

    Args:
        log_probs: ``[N, ..., S]`` per-teacher log-probabilities (log-softmax at the
            temperature the soft targets use), e.g. ``[N, B, T, S]``.
        method: ``arithmetic``: ``log sum_k w_k p_k`` (the paper's ensemble);
            ``geometric``: ``sum_k w_k log p_k``, renormalised over ``S``.
        weights: ``N`` non-negative teacher weights, normalised to sum to 1 here
            (``None``: equal). A teacher of weight 0 is left out.

    Returns:
        ``[..., S]`` log-probabilities (each row's probabilities sum to 1), in float32
        or ``log_probs``' dtype if wider.

    Raises:
        ValueError: an unknown method, bad weights, or ``log_probs`` with fewer than
            two dimensions.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if log_probs.dim() < 2:
        raise ValueError(
            f"log_probs must be [teachers, ..., senones], got shape {list(log_probs.shape)}"
        )
    n = log_probs.shape[0]
    w = torch.tensor(normalise_weights(weights, n), dtype=torch.float64)
    dtype = torch.promote_types(log_probs.dtype, torch.float32)
    keep = w > 0
    if not bool(keep.all()):
        log_probs, w = log_probs[keep.to(log_probs.device)], w[keep]
    x = log_probs.to(dtype)
    w = w.to(device=x.device, dtype=dtype).view(-1, *([1] * (x.dim() - 1)))
    if method == "arithmetic":
        return torch.logsumexp(x + w.log(), dim=0)
    mean = (x * w).sum(dim=0)
    return mean - torch.logsumexp(mean, dim=-1, keepdim=True)
