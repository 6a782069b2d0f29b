"""LDA and MLLT (semi-tied covariance) estimation, and frame splicing."""

from __future__ import annotations

import numpy as np
import pytest

from asr_kd.align.lda_mllt import (
    LdaStats,
    estimate_lda,
    estimate_mllt,
    gaussian_covariances,
    lda_matrices,
    mllt_auxf,
    mllt_row_stats,
)
from asr_kd.data.gmm_features import splice_frames


def _two_classes(rng: np.random.Generator, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Two 3-D Gaussian classes with a correlated within-class covariance."""
    mix = np.array([[1.0, 0.8, 0.0], [0.0, 0.6, 0.3], [0.2, 0.0, 1.5]])
    classes = rng.integers(0, 2, n)
    means = np.array([[0.0, 0.0, 0.0], [1.0, -0.5, 0.7]])
    x = means[classes] + rng.standard_normal((n, 3)) @ mix.T
    return x, classes


def _ratio(v: np.ndarray, within: np.ndarray, between: np.ndarray) -> float:
    return float(v @ between @ v / (v @ within @ v))


def test_lda_maximises_the_between_within_ratio():
    x, classes = _two_classes(np.random.default_rng(0))
    stats = LdaStats.zeros(2, 3)
    stats.add(x, classes)
    within, between = lda_matrices(stats)
    matrix, values = estimate_lda(stats, 2)
    # the identity of the generalised eigenproblem: M W M^T = I, M B M^T = diag(lambda)
    np.testing.assert_allclose(matrix @ within @ matrix.T, np.eye(2), atol=1e-9)
    np.testing.assert_allclose(matrix @ between @ matrix.T, np.diag(values[:2]), atol=1e-9)
    # two classes: one direction carries all the separation, W^-1 (m1 - m0)
    assert values[0] > 0.1 and abs(values[1]) < 1e-9 and abs(values[2]) < 1e-9
    assert values[0] == pytest.approx(max(np.linalg.eigvals(np.linalg.solve(within, between)).real))
    diff = x[classes == 1].mean(0) - x[classes == 0].mean(0)
    fisher = np.linalg.solve(within, diff)
    cosine = abs(matrix[0] @ fisher) / np.linalg.norm(matrix[0]) / np.linalg.norm(fisher)
    assert cosine == pytest.approx(1.0, abs=1e-9)
    # no other direction (nor any raw feature axis) separates the classes better
    best = _ratio(matrix[0], within, between)
    assert best == pytest.approx(values[0])
    others = np.random.default_rng(1).standard_normal((500, 3))
    assert max(_ratio(v, within, between) for v in [*others, *np.eye(3)]) < best


def test_lda_refuses_a_dimension_beyond_the_features():
    stats = LdaStats.zeros(2, 3)
    stats.add(*_two_classes(np.random.default_rng(0), 100))
    with pytest.raises(ValueError, match="LDA dimension 4"):
        estimate_lda(stats, 4)


def _shared_covariance_gaussians(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Twelve 4-D Gaussians whose covariances share a non-diagonal orientation."""
    rotation = np.linalg.qr(rng.standard_normal((4, 4)))[0]
    occ = rng.uniform(50, 500, 12)
    cov = np.stack([rotation @ np.diag(rng.uniform(0.2, 3.0, 4)) @ rotation.T for _ in occ])
    return occ, cov


def test_mllt_raises_the_auxiliary_function_and_the_log_likelihood():
    occ, cov = _shared_covariance_gaussians(np.random.default_rng(2))
    # every sweep of the row-by-row update raises the auxiliary function (fixed variances)
    g = mllt_row_stats(occ, cov, np.einsum("gii->gi", cov))
    auxf = [mllt_auxf(estimate_mllt(occ, cov, 1, k)[0], g, occ.sum()) for k in range(6)]
    assert all(b >= a - 1e-9 for a, b in zip(auxf, auxf[1:], strict=False)), auxf
    assert auxf[-1] > auxf[0] + 1.0
    # and each outer iteration (variances re-estimated) the data log-likelihood
    a, history = estimate_mllt(occ, cov, outer_iters=5)
    assert all(b >= a_ - 1e-6 for a_, b in zip(history, history[1:], strict=False)), history
    assert history[-1] > history[0] + 10
    # the shared orientation is found: the transformed covariances are nearly diagonal
    rotated = np.einsum("ij,gjk,lk->gil", a, cov, a)
    off = rotated - np.einsum("gii->gi", rotated)[:, :, None] * np.eye(4)
    assert np.abs(off).max() < 0.05 * np.einsum("gii->gi", rotated).min()


def test_mllt_leaves_diagonal_gaussians_alone():
    rng = np.random.default_rng(3)
    occ = rng.uniform(10, 100, 5)
    cov = np.stack([np.diag(rng.uniform(0.5, 2.0, 3)) for _ in occ])
    a, history = estimate_mllt(occ, cov)
    np.testing.assert_allclose(np.abs(a), np.eye(3), atol=1e-9)
    assert history[1] == pytest.approx(history[0])


def test_gaussian_covariances_from_statistics():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1000, 3)) @ np.array([[1.0, 0.5, 0], [0, 1, 0], [0, 0.3, 2]])
    cov = gaussian_covariances(np.array([1000.0, 0.0]), np.stack([x.sum(0), np.zeros(3)]),
                               np.stack([x.T @ x, np.zeros((3, 3))]))  # fmt: skip
    np.testing.assert_allclose(cov[0], np.cov(x.T, bias=True), atol=1e-12)
    assert not cov[1].any()


def test_splice_repeats_the_edge_frames():
    feats = np.arange(12, dtype=np.float64).reshape(4, 3)
    out = splice_frames(feats, 2)
    assert out.shape == (4, 15)
    np.testing.assert_array_equal(out[0], np.concatenate([feats[0], feats[0], feats[0], feats[1],
                                                          feats[2]]))  # fmt: skip
    np.testing.assert_array_equal(out[2, 6:9], feats[2])  # the centre frame in the middle
    np.testing.assert_array_equal(out[3, 12:], feats[3])
    np.testing.assert_array_equal(splice_frames(feats, 0), feats)
