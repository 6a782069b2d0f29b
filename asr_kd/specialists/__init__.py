"""Specialists over confusable senone clusters (Hinton et al., 2015, section 5).

- :mod:`~asr_kd.specialists.clusters`: covariance of predicted distributions, online
  k-means over its columns, size-constrained disjoint clusters.
- :mod:`~asr_kd.specialists.combine`: specialist output layers with a dustbin class,
  the dustbin correction, and the KL combination at inference.
- :mod:`~asr_kd.specialists.train`: the ``train-specialists`` stage.
- :mod:`~asr_kd.specialists.system`: the generalist + specialists as one teacher.
- :mod:`~asr_kd.specialists.evaluate`: frame accuracy inside the clusters.
"""

from asr_kd.specialists.clusters import CovarianceAccumulator, find_clusters, online_kmeans
from asr_kd.specialists.combine import (
    active_specialists,
    combine_objective,
    dustbin_shift,
    kl_combine,
    make_specialist,
)
from asr_kd.specialists.evaluate import evaluate_in_clusters
from asr_kd.specialists.system import SpecialistSystem, load_specialist_system
from asr_kd.specialists.train import SpecialistConfig, train_specialists

__all__ = [
    "CovarianceAccumulator",
    "SpecialistConfig",
    "SpecialistSystem",
    "active_specialists",
    "combine_objective",
    "dustbin_shift",
    "evaluate_in_clusters",
    "find_clusters",
    "kl_combine",
    "load_specialist_system",
    "make_specialist",
    "online_kmeans",
    "train_specialists",
]
