"""Confusable senone clusters from the covariance of a generalist's predictions.

Hinton et al. (2015, section 5.2) give each specialist "a set of classes that are often
predicted together": they cluster the columns of the covariance matrix of the
generalist's predicted distributions, with an online k-means, and need no labels.
Here, for ``S`` senones:

1. :class:`CovarianceAccumulator` sums ``p`` and ``p pᵀ`` over training frames, where
   ``p`` is the generalist's (or the ensemble's) distribution of a frame.
2. :func:`correlation_columns` turns the covariance into correlations (so that a
   frequent senone's large variance does not decide the clusters) and L2-normalises
   each column: senone ``j`` becomes a point on the unit sphere.
3. :func:`online_kmeans` clusters the points: mini-batch k-means (Sculley, 2010) with
   k-means++ seeding and per-centre learning rates ``1 / count`` — the online k-means
   of the paper, run for a few passes.
4. :func:`size_constrained` caps every cluster at ``max_size`` senones (the farthest
   members move to their next-nearest cluster with room) and drops clusters smaller
   than ``min_size``: those senones get no specialist. Clusters are disjoint.
5. :func:`confusion_mass` ranks the clusters by how much probability the generalist
   spreads among their members (the positive covariance between distinct members);
   ``num_specialists`` keeps the most confused ones.

:func:`find_clusters` runs 2–5 on a covariance matrix; :func:`prediction_covariance`
runs a teacher over training frames for step 1; :func:`read_clusters` checks a given
``clusters.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asr_kd.errors import BadInputError

__all__ = [
    "ClusterResult",
    "CovarianceAccumulator",
    "correlation_columns",
    "find_clusters",
    "online_kmeans",
    "size_constrained",
]


class CovarianceAccumulator:
    """Running sums for the covariance of per-frame distributions ``[N, S]``.

    Sums are kept in float64 on the distributions' device (``S²`` numbers: 1.6 GB for
    14,000 senones, so on a GPU for the paper's inventory).
    """

    def __init__(self, num_senones: int, device: torch.device | str = "cpu"):
        self.num_senones = num_senones
        self.frames = 0
        self.sum = torch.zeros(num_senones, dtype=torch.float64, device=device)
        self.outer = torch.zeros(num_senones, num_senones, dtype=torch.float64, device=device)

    def add(self, probs: torch.Tensor) -> None:
        """Add frames ``[N, S]`` (rows are distributions; padding already removed)."""
        if probs.ndim != 2 or probs.shape[1] != self.num_senones:
            raise ValueError(
                f"expected [N, {self.num_senones}] distributions, got {tuple(probs.shape)}"
            )
        p = probs.to(self.sum.device, torch.float64)
        self.frames += p.shape[0]
        self.sum += p.sum(0)
        self.outer += p.T @ p

    def covariance(self) -> torch.Tensor:
        """``E[p pᵀ] - E[p] E[p]ᵀ``, ``[S, S]`` float64."""
        if self.frames < 2:
            raise ValueError(f"covariance of {self.frames} frame(s): need at least 2")
        mean = self.sum / self.frames
        return self.outer / self.frames - torch.outer(mean, mean)


def correlation_columns(cov: torch.Tensor | np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Unit-length columns of the correlation matrix, one row per senone ``[S, S]``.

    A senone never predicted (zero variance) gets a zero row: it joins no cluster
    by similarity and ends where the k-means puts the origin's nearest centre.
    """
    c = torch.as_tensor(cov, dtype=torch.float64)
    std = c.diagonal().clamp(min=0).sqrt()
    corr = c / (std[:, None] * std[None, :]).clamp(min=eps)
    corr[std <= eps] = 0.0
    corr[:, std <= eps] = 0.0
    norm = corr.norm(dim=0).clamp(min=eps)
    return (corr / norm[None, :]).T.contiguous().cpu().numpy()


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding (as scikit-learn's): ``2 + log k`` candidates drawn with
    probability ∝ squared distance, the one that lowers the total squared distance most
    becomes the next centre. Plain k-means++ often seeds one group twice when clusters
    are not tight, and the k-means then merges two others."""
    trials = 2 + int(math.log(k))
    centres = [x[rng.integers(len(x))]]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:
            i = int(rng.integers(len(x)))
        else:
            candidates = rng.choice(len(x), size=trials, p=d2 / total)
            new = np.minimum(d2[None, :], _distances(x, x[candidates]).T.clip(min=0))
            i = int(candidates[new.sum(1).argmin()])
        centres.append(x[i])
        d2 = np.minimum(d2, ((x - x[i]) ** 2).sum(1))
    return np.stack(centres).astype(np.float64)


def online_kmeans(
    x: np.ndarray, k: int, passes: int = 20, batch_size: int = 64, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Mini-batch (online) k-means: ``(centres [k, D], assignment [N])``.

    Each pass visits the points in a random order, in mini-batches; a centre moves
    towards each point assigned to it by ``1 / (points it has seen)``.
    """
    x = np.asarray(x, dtype=np.float64)
    if not 1 <= k <= len(x):
        raise ValueError(f"cannot make {k} clusters of {len(x)} points")
    rng = np.random.default_rng(seed)
    centres = _kmeans_pp(x, k, rng)
    counts = np.zeros(k)
    for _ in range(passes):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch_size):
            batch = x[order[start : start + batch_size]]
            nearest = _nearest(batch, centres)
            for point, c in zip(batch, nearest, strict=True):
                counts[c] += 1
                centres[c] += (point - centres[c]) / counts[c]
    return centres, _nearest(x, centres)


def _distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``[N, k]`` without an ``[N, k, D]`` intermediate."""
    return (x**2).sum(1)[:, None] - 2 * x @ centres.T + (centres**2).sum(1)[None, :]


def _nearest(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return _distances(x, centres).argmin(1)


def size_constrained(
    x: np.ndarray, centres: np.ndarray, min_size: int, max_size: int
) -> list[list[int]]:
    """Disjoint clusters of at most ``max_size`` points; smaller than ``min_size`` dropped.

    Points are placed in order of how close they are to their nearest centre; a
    point whose nearest centres are full goes to the nearest with room. Clusters come
    out largest first, members sorted.
    """
    if max_size < 1 or min_size < 1 or min_size > max_size:
        raise ValueError(f"need 1 <= min_size <= max_size, got {min_size}, {max_size}")
    d2 = _distances(x, centres)  # [N, k]
    preference = np.argsort(d2, axis=1)
    order = np.argsort(d2.min(1), kind="stable")
    members: list[list[int]] = [[] for _ in range(len(centres))]
    for i in order:
        for c in preference[i]:
            if len(members[c]) < max_size:
                members[c].append(int(i))
                break
    kept = [sorted(m) for m in members if len(m) >= min_size]
    return sorted(kept, key=lambda m: (-len(m), m[0]))


def confusion_mass(cov: torch.Tensor | np.ndarray, cluster: list[int]) -> float:
    """``Σ_{i≠j ∈ cluster} max(cov_ij, 0)``: probability the generalist shares among members."""
    c = torch.as_tensor(cov, dtype=torch.float64)
    idx = torch.as_tensor(cluster, dtype=torch.long)
    block = c[idx][:, idx].clamp(min=0)
    return float(block.sum() - block.diagonal().sum())


@dataclass(frozen=True)
class ClusterResult:
    """Clusters of senone ids and how they were found."""

    clusters: list[list[int]]
    assignment: list[int]
    """The k-means cluster of every senone before the size constraints."""
    frames: int
    confusion: list[float]
    """:func:`confusion_mass` of every cluster kept."""

    def to_dict(self) -> dict:
        sizes = [len(c) for c in self.clusters]
        return {
            "num_clusters": len(self.clusters),
            "sizes": sizes,
            "covered_senones": int(sum(sizes)),
            "frames": self.frames,
            "confusion_mass": [round(x, 6) for x in self.confusion],
            "clusters": self.clusters,
        }


def find_clusters(
    cov: torch.Tensor | np.ndarray,
    num_clusters: int,
    min_size: int,
    max_size: int,
    passes: int = 20,
    seed: int = 0,
    frames: int = 0,
    num_specialists: int = 0,
) -> ClusterResult:
    """Confusable senone clusters from the covariance of predicted distributions.

    Args:
        cov: ``[S, S]`` covariance (:class:`CovarianceAccumulator`).
        num_clusters: k of the k-means (before dropping small clusters).
        min_size, max_size: bounds on the senones of one cluster.
        passes, seed: of :func:`online_kmeans`.
        frames: how many frames the covariance came from (recorded).
        num_specialists: keep this many clusters, the most confused (0: all), in
            order of confusion mass.
    """
    x = correlation_columns(cov)
    centres, assignment = online_kmeans(x, num_clusters, passes=passes, seed=seed)
    clusters = size_constrained(x, centres, min_size, max_size)
    mass = [confusion_mass(cov, c) for c in clusters]
    order = sorted(range(len(clusters)), key=lambda i: -mass[i])
    if num_specialists > 0:
        order = order[:num_specialists]
    return ClusterResult(
        [clusters[i] for i in order], [int(a) for a in assignment], frames, [mass[i] for i in order]
    )


def prediction_covariance(teacher, cuts, max_frames: int, max_duration: float, device):
    """Covariance of the teacher's distributions over (up to) ``max_frames`` frames."""
    from lhotse.dataset import SimpleCutSampler

    cuts = cuts.sort_by_duration()  # a deterministic, length-homogeneous order
    if max_frames > 0:
        ids = sorted(c.id for c in cuts)
        order = np.random.default_rng(0).permutation(len(ids))
        keep, frames = [], 0
        by_id = {c.id: c for c in cuts}
        for i in order:
            if frames >= max_frames:
                break
            keep.append(ids[i])
            frames += by_id[ids[i]].num_frames
        cuts = cuts.subset(cut_ids=keep)
    acc = CovarianceAccumulator(teacher.num_senones, device)
    sampler = SimpleCutSampler(cuts, max_duration=max_duration)
    for batch in sampler:
        log_probs, lengths = teacher.log_probs_batch(list(batch))
        valid = (
            torch.arange(log_probs.shape[1], device=log_probs.device)
            < lengths.to(log_probs.device)[:, None]
        )
        acc.add(log_probs[valid].exp())
    return acc


def read_clusters(path: Path, num_senones: int) -> list[list[int]]:
    """The clusters of a ``clusters.json`` (an earlier run's, or the user's), checked
    against the senone inventory: ids in range, no cluster empty, none overlapping."""
    try:
        doc = json.loads(Path(path).read_text())
        clusters = [[int(s) for s in c] for c in doc["clusters"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInputError(f"{path}: not a clusters file ({e}); 'clusters': [[ids]]") from None
    seen: set[int] = set()
    for i, c in enumerate(clusters):
        bad = [s for s in c if not 0 <= s < num_senones]
        if bad or not c:
            raise BadInputError(
                f"{path}: cluster {i} is empty or names senones outside 0..{num_senones - 1} "
                f"({bad[:5]}); it was made for another tree"
            )
        if seen & set(c):
            raise BadInputError(f"{path}: cluster {i} overlaps an earlier one")
        seen |= set(c)
    return clusters
