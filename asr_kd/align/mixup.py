"""Mixing up a GMM acoustic model with a seeded generator (``gmm-est --mix-up``).

kaldi-hmm-gmm's ``AmDiagGmm.split_by_count`` (``DiagGmm::Split``) perturbs the new
means with ``RandnVector``, which seeds itself from ``std::random_device`` on every
call: two trainings on the same data then give different models. This module does
the same split (Kaldi's ``GetSplitTargets`` and ``DiagGmm::Split``) with the
perturbation drawn from a ``numpy`` generator, so training is reproducible.
"""

from __future__ import annotations

import heapq

import kaldi_hmm_gmm as khg
import numpy as np


def split_targets(occs: np.ndarray, target: int, power: float, min_count: float) -> list[int]:
    """Gaussians per pdf after mixing up to ``target`` (Kaldi's ``GetSplitTargets``).

    Each step gives one more Gaussian to the pdf with the largest
    ``occ ** power / num_gauss``; a pdf stops growing when another Gaussian would
    have less than ``min_count`` occupancy. Ties go to the lower pdf index.

    Args:
        occs: ``[num_pdfs]`` occupancy of each pdf.
        target: total Gaussians wanted.
        power: exponent of the occupancy.
        min_count: minimum occupancy per Gaussian.

    Returns:
        the number of Gaussians of each pdf (at least 1).
    """
    occs = np.asarray(occs, np.float32)
    num = [1] * len(occs)

    def priority(p: int) -> float:  # max-heap on occ ** power / num
        return -float(np.float32(float(occs[p]) ** power)) / num[p]

    heap = [(priority(p), p) for p in range(len(occs))]
    heapq.heapify(heap)
    total = len(occs)
    while total < target and heap and heap[0][0] < 0:
        _, p = heapq.heappop(heap)
        if (num[p] + 1) * min_count >= occs[p]:
            continue  # min-count reached: Kaldi sets its priority to 0
        num[p] += 1
        total += 1
        heapq.heappush(heap, (priority(p), p))
    return num


def split_gmm(
    gmm: khg.DiagGmm, target: int, perturb_factor: float, rng: np.random.Generator
) -> None:
    """Split ``gmm`` in place to ``target`` Gaussians (Kaldi's ``DiagGmm::Split``).

    The heaviest Gaussian is halved, repeatedly; the two halves' means move
    ``perturb_factor`` standard deviations apart along a random direction drawn
    from ``rng``.
    """
    n, dim = gmm.num_gauss, gmm.dim
    if target <= n:
        return
    weights = np.zeros(target, np.float32)
    inv_vars = np.zeros((target, dim), np.float32)
    means_invvars = np.zeros((target, dim), np.float32)
    weights[:n] = gmm.weights
    inv_vars[:n] = gmm.inv_vars
    means_invvars[:n] = gmm.means_invvars
    for new in range(n, target):
        g = int(np.argmax(weights[:new]))  # the first of equal weights, as Kaldi
        weights[g] /= 2
        weights[new] = weights[g]
        # means_invvars has the dimension of an inverse standard deviation
        step = (perturb_factor * rng.standard_normal(dim) * np.sqrt(inv_vars[g])).astype(np.float32)
        inv_vars[new] = inv_vars[g]
        means_invvars[new] = means_invvars[g] + step
        means_invvars[g] -= step
    gmm.resize(target, dim)
    gmm.set_weights(weights)
    gmm.set_invvars_and_means(inv_vars, means_invvars / inv_vars)
    gmm.compute_gconsts()


def mix_up(
    am: khg.AmDiagGmm,
    occs: np.ndarray,
    target: int,
    perturb_factor: float,
    power: float,
    min_count: float,
    rng: np.random.Generator,
) -> None:
    """Split the pdfs of ``am`` in place towards ``target`` Gaussians in all.

    ``AmDiagGmm.split_by_count`` with the perturbation drawn from ``rng``; the
    same ``rng`` state gives the same model.

    Args:
        am: the acoustic model.
        occs: ``[num_pdfs]`` occupancy of each pdf in the last statistics.
        target: total Gaussians wanted.
        perturb_factor: mean perturbation, in standard deviations.
        power: exponent of the occupancy when allocating Gaussians to pdfs.
        min_count: minimum occupancy per Gaussian.
        rng: the source of the perturbations.
    """
    targets = split_targets(occs, target, power, min_count)
    for p, t in enumerate(targets):
        split_gmm(am.get_pdf(p), t, perturb_factor, rng)  # a live reference
