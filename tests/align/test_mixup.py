"""Mixing up Gaussians (gmm-est --mix-up) reproducibly."""

from __future__ import annotations

import kaldi_hmm_gmm as khg
import numpy as np

from asr_kd.align.mixup import mix_up, split_targets


def _am(num_pdfs: int, dim: int, seed: int = 0) -> khg.AmDiagGmm:
    """One random Gaussian per pdf."""
    rng = np.random.default_rng(seed)
    am = khg.AmDiagGmm()
    for _ in range(num_pdfs):
        gmm = khg.DiagGmm(1, dim)
        gmm.set_weights(np.ones(1, np.float32))
        gmm.set_means(rng.standard_normal((1, dim)).astype(np.float32))
        gmm.set_invvars(rng.uniform(0.5, 2.0, (1, dim)).astype(np.float32))
        gmm.compute_gconsts()
        am.add_pdf(gmm)
    return am


def _params(am: khg.AmDiagGmm) -> list[np.ndarray]:
    out = []
    for p in range(am.num_pdfs):
        gmm = am.get_pdf(p)
        out += [np.array(gmm.weights), np.array(gmm.means_invvars), np.array(gmm.inv_vars)]
    return out


def test_split_targets_are_kaldis():
    occs = np.random.default_rng(1).uniform(0, 500, 40).astype(np.float32)
    occs[:3] = (0.0, 5.0, 45.0)  # no frames; below min_count; room for one more
    for target, power, min_count in ((120, 0.25, 20.0), (300, 0.5, 5.0), (30, 0.2, 20.0)):
        # kaldi-hmm-gmm's targets: with no perturbation, its random draws do not matter
        kaldi = _am(len(occs), 4)
        kaldi.split_by_count(occs, target, 0.0, power, min_count)
        want = [kaldi.num_gauss_in_pdf(p) for p in range(len(occs))]
        assert split_targets(occs, target, power, min_count) == want
    assert split_targets(occs, 120, 0.25, 20.0)[:3] == [1, 1, 2]


def test_mix_up_is_reproducible_and_keeps_each_split_centred():
    occs = np.random.default_rng(2).uniform(50, 500, 10).astype(np.float32)
    runs = []
    for _ in range(2):
        am = _am(10, 13)
        mix_up(am, occs, 40, 0.01, 0.25, 20.0, np.random.default_rng(0))
        runs.append(_params(am))
    assert am.num_gauss == 40
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)  # bit for bit: the model does not vary
    other = _am(10, 13)
    mix_up(other, occs, 40, 0.01, 0.25, 20.0, np.random.default_rng(1))
    assert any(not np.array_equal(a, b) for a, b in zip(runs[0], _params(other), strict=True))
    # The pieces of a Gaussian share its variance, weight and (on average) mean.
    before, after = _am(10, 13), am
    for p in range(10):
        old, new = before.get_pdf(p), after.get_pdf(p)
        assert np.isclose(np.sum(new.weights), 1.0)
        np.testing.assert_array_equal(new.inv_vars, np.repeat(old.inv_vars, new.num_gauss, 0))
        np.testing.assert_allclose(new.weights @ new.means, old.means[0], atol=1e-5)
        spread = np.abs(new.means - old.means) * np.sqrt(new.inv_vars)
        assert 0 < spread.max() < 0.1  # a few hundredths of a standard deviation
