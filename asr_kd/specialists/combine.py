"""Specialist training targets and the dustbin correction.

A specialist (:func:`asr_kd.teachers.make_specialist`) predicts its cluster's senones
and a *dustbin* class 0 for every other senone. Trained on a mix where the cluster's
frames are oversampled, its dustbin is under-predicted; :func:`dustbin_shift` is the
log of the factor by which the odds of the cluster against the dustbin were raised,
added to the dustbin logit afterwards (the paper's correction), so the outputs
estimate the true posteriors again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["dustbin_shift", "specialist_targets"]


def specialist_targets(cluster: Sequence[int], num_senones: int) -> torch.Tensor:
    """``[S]`` map from senone id to the specialist's class (0: dustbin, 1 + i: member i)."""
    lut = torch.zeros(num_senones, dtype=torch.long)
    lut[torch.as_tensor(list(cluster), dtype=torch.long)] = torch.arange(1, len(cluster) + 1)
    return lut


def dustbin_shift(in_frames: int, out_frames: int, in_share: float) -> tuple[float, float]:
    """``(keep_rate, shift)`` for training on a mix with ``in_share`` cluster frames.

    Every cluster frame is used and each other frame with probability ``keep_rate``, so
    that the cluster makes up ``in_share`` of the frames (or all other frames are kept
    when the cluster is that common already). The odds of cluster against dustbin rise
    by ``1 / keep_rate``; ``shift = log(1 / keep_rate)`` is added to the dustbin logit
    after training to undo it.
    """
    if not 0 < in_share < 1:
        raise ValueError(f"in_share must be in (0, 1), got {in_share}")
    if in_frames <= 0 or out_frames <= 0:
        return 1.0, 0.0
    keep = min(1.0, in_frames * (1 - in_share) / (out_frames * in_share))
    return keep, math.log(1.0 / keep)
