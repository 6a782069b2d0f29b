"""LDA and MLLT feature transforms (Kaldi's ``acc-lda``/``est-lda`` and ``est-mllt``).

The second tri-phone pass (Kaldi's ``steps/train_lda_mllt.sh``) replaces MFCC + deltas
by spliced MFCCs (+/- ``splice`` frames) projected by LDA to ``dim`` dimensions, with
the senones of the previous alignment as classes, then rotated by a maximum-likelihood
linear transform (MLLT, a global semi-tied covariance: Gales 1999, "Semi-tied
covariance matrices for hidden Markov models"), re-estimated on a few of the training
iterations.

Why numpy: kaldi-hmm-gmm 1.1.4 exposes no LDA or MLLT accumulators or estimators
(``python -c "import kaldi_hmm_gmm as k; print(dir(k))"`` lists the GMM, HMM, graph
and decoder classes only, no ``LdaEstimate`` or ``MlltAccs``), and both are small
dense linear algebra: LDA is a generalised symmetric eigenproblem, MLLT Gales's
row-by-row update. The statistics of MLLT are the full-covariance scatters of each
Gaussian (:class:`asr_kd.align.shard.GmmStats` with ``xx``), so the transform is
estimated from the same pass that re-estimates the GMMs, and the GMM statistics are
then carried into the new feature space exactly (``x -> A x``, ``x x^T -> A x x^T A^T``)
before the ML update: the equivalent of Kaldi's ``gmm-transform-means`` followed by a
re-estimation on the transformed features, with one pass over the data fewer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VAR_FLOOR = 1e-6


# --------------------------------------------------------------------------------------
# LDA.


@dataclass
class LdaStats:
    """Per-class frame counts and sums, and the total scatter (``acc-lda``)."""

    count: np.ndarray  # [C]
    sum: np.ndarray  # [C, D]
    scatter: np.ndarray  # [D, D]

    @classmethod
    def zeros(cls, num_classes: int, dim: int) -> LdaStats:
        return cls(np.zeros(num_classes), np.zeros((num_classes, dim)), np.zeros((dim, dim)))

    def add(self, x: np.ndarray, classes: np.ndarray) -> None:
        """Add frames ``x`` ``[T, D]`` of classes ``classes`` ``[T]``."""
        x = np.asarray(x, np.float64)
        np.add.at(self.count, classes, 1.0)
        np.add.at(self.sum, classes, x)
        self.scatter += np.einsum("ti,tj->ij", x, x)

    def merge(self, other: LdaStats) -> LdaStats:
        return LdaStats(self.count + other.count, self.sum + other.sum,
                        self.scatter + other.scatter)  # fmt: skip


def lda_matrices(stats: LdaStats) -> tuple[np.ndarray, np.ndarray]:
    """Within-class and between-class covariances ``[D, D]`` of the statistics."""
    total = stats.count.sum()
    if total <= 0:
        raise ValueError("LDA statistics hold no frames")
    mean = stats.sum.sum(axis=0) / total
    seen = stats.count > 0
    class_means = stats.sum[seen] / stats.count[seen, None]
    between_scatter = np.einsum("c,ci,cj->ij", stats.count[seen], class_means, class_means)
    within = (stats.scatter - between_scatter) / total
    between = between_scatter / total - np.outer(mean, mean)
    return within, between


def estimate_lda(stats: LdaStats, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The LDA projection and its eigenvalues (``est-lda``).

    Solves ``B v = lambda W v`` through the Cholesky factor of ``W``: with
    ``W = L L^T``, the eigenvectors ``U`` of ``L^-1 B L^-T`` give the rows
    ``U^T L^-1``, which make the within-class covariance the identity and the
    between-class one diagonal with the eigenvalues, largest first.

    Returns:
        ``[dim, D]`` matrix, ``[D]`` eigenvalues (descending).

    Raises:
        ValueError: ``dim`` exceeds the feature dimension or the classes, or the
            within-class covariance is singular.
    """
    within, between = lda_matrices(stats)
    full = within.shape[0]
    if not 0 < dim <= full:
        raise ValueError(f"LDA dimension {dim} must lie in [1, {full}] (the spliced features')")
    try:
        chol = np.linalg.cholesky(within)
    except np.linalg.LinAlgError:
        raise ValueError(
            "the within-class covariance of the LDA statistics is singular: too few frames "
            "or constant feature dimensions"
        ) from None
    inv = np.linalg.inv(chol)
    values, vectors = np.linalg.eigh(inv @ between @ inv.T)
    order = np.argsort(values)[::-1]
    return vectors[:, order[:dim]].T @ inv, values[order]


# --------------------------------------------------------------------------------------
# MLLT (semi-tied covariance).


def mllt_log_likelihood(a: np.ndarray, occ: np.ndarray, cov: np.ndarray) -> float:
    """Log-likelihood (without constants) of diagonal Gaussians after the transform ``a``.

    With every Gaussian's variance re-estimated in the new space
    (``diag(a C_g a^T)``), the data log-likelihood is
    ``sum_g occ_g (log|det a| - 0.5 sum_i log var_gi)`` up to a constant.

    Args:
        a: ``[D, D]``.
        occ: ``[G]`` occupancies.
        cov: ``[G, D, D]`` full covariances of the Gaussians in the current space.
    """
    var = np.maximum(np.einsum("ij,gjk,ik->gi", a, cov, a), VAR_FLOOR)
    logdet = np.linalg.slogdet(a)[1]
    return float(occ.sum() * logdet - 0.5 * (occ[:, None] * np.log(var)).sum())


def mllt_auxf(a: np.ndarray, g: np.ndarray, beta: float) -> float:
    """Gales's auxiliary function ``beta log|det a| - 0.5 sum_i a_i G_i a_i^T``."""
    return float(beta * np.linalg.slogdet(a)[1] - 0.5 * np.einsum("ij,ijk,ik->", a, g, a))


def mllt_row_stats(occ: np.ndarray, cov: np.ndarray, var: np.ndarray) -> np.ndarray:
    """``G_i = sum_g occ_g C_g / var_gi``: ``[D, D, D]`` (Kaldi's ``MlltAccs``)."""
    return np.einsum("g,gjk,gi->ijk", occ, cov, 1.0 / var)


def estimate_mllt(
    occ: np.ndarray, cov: np.ndarray, outer_iters: int = 1, inner_iters: int = 10
) -> tuple[np.ndarray, list[float]]:
    """Gales's semi-tied transform from full-covariance Gaussian statistics.

    Each outer iteration fixes the diagonal variances in the current transformed space
    and runs ``inner_iters`` sweeps of the row-by-row update
    ``a_i = c_i G_i^-1 sqrt(beta / (c_i G_i^-1 c_i^T))`` (``c_i``: the cofactor row of
    ``a``), each of which cannot lower the auxiliary function. With ``outer_iters=1``
    this is Kaldi's ``est-mllt`` (variances: the model's).

    Args:
        occ: ``[G]`` Gaussian occupancies (zeros allowed).
        cov: ``[G, D, D]`` their full covariances in the current feature space.

    Returns:
        ``[D, D]`` transform (start: identity), and :func:`mllt_log_likelihood` before
        and after each outer iteration.
    """
    keep = occ > 0
    occ, cov = occ[keep], cov[keep]
    dim = cov.shape[1]
    beta = float(occ.sum())
    a = np.eye(dim)
    history = [mllt_log_likelihood(a, occ, cov)]
    for _ in range(outer_iters):
        var = np.maximum(np.einsum("ij,gjk,ik->gi", a, cov, a), VAR_FLOOR)
        # G_i in the original space: the variance of row i of a x is a_i C a_i^T.
        g = mllt_row_stats(occ, cov, var)
        g_inv = np.linalg.inv(g)
        for _ in range(inner_iters):
            for i in range(dim):
                cofactor = np.linalg.inv(a).T[i] * np.linalg.det(a)
                u = g_inv[i] @ cofactor
                a[i] = u * np.sqrt(beta / (cofactor @ u))
        history.append(mllt_log_likelihood(a, occ, cov))
    return a, history


def gaussian_covariances(occ: np.ndarray, x: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Full covariances ``[G, D, D]`` from counts ``[G]``, sums ``[G, D]``, scatters
    ``[G, D, D]`` (zero for Gaussians without occupancy)."""
    safe = np.maximum(occ, 1e-10)[:, None]
    mean = x / safe
    cov = xx / safe[:, :, None] - np.einsum("gi,gj->gij", mean, mean)
    cov[occ <= 0] = 0.0
    return cov
