"""Specialists over confusable senone clusters (Hinton et al., 2015, section 5).

- :mod:`~asr_kd.specialists.clusters`: covariance of predicted distributions, online
  k-means over its columns, size-constrained disjoint clusters.
- :mod:`~asr_kd.specialists.combine`: the specialists' training targets (a dustbin
  class) and the dustbin correction.
- :mod:`~asr_kd.specialists.train`: the ``train-specialists`` stage.
- :mod:`~asr_kd.specialists.evaluate`: frame accuracy inside the clusters.

The trained system as one teacher (``asr_kd.teachers.load("exp/specialists")``, a
:class:`asr_kd.teachers.SpecialistSystem`), the specialist heads and the KL combination
at inference are teacher kinds: :mod:`asr_kd.teachers.specialists` and
:mod:`asr_kd.teachers.specialist_combine`.
"""

from asr_kd.specialists.clusters import CovarianceAccumulator, find_clusters, online_kmeans
from asr_kd.specialists.combine import dustbin_shift, specialist_targets
from asr_kd.specialists.evaluate import evaluate_in_clusters
from asr_kd.specialists.train import SpecialistConfig, train_specialists

__all__ = [
    "CovarianceAccumulator",
    "SpecialistConfig",
    "dustbin_shift",
    "evaluate_in_clusters",
    "find_clusters",
    "online_kmeans",
    "specialist_targets",
    "train_specialists",
]
