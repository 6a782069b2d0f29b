"""Monophone GMM-HMM training (train_mono.sh) on a small clean synthetic corpus."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from lhotse import CutSet

from asr_kd.align.mono import KALDI_REALIGN_ITERS, MonoConfig, MonoModel, train_mono
from asr_kd.data.features import load_stats
from asr_kd.data.gmm_features import add_deltas, gmm_features
from asr_kd.errors import AsrKdError, MissingInputError
from asr_kd.lang import prepare_lang
from asr_kd.testing.synth import FAST_MONO


@pytest.fixture(scope="module")
def data(clean_data):
    return clean_data


def test_add_deltas_is_kaldis():
    x = np.random.default_rng(0).standard_normal((7, 3)).astype(np.float32)
    y = add_deltas(x)
    assert y.shape == (7, 9) and y.dtype == np.float32
    np.testing.assert_array_equal(y[:, :3], x)
    # Kaldi's add-deltas filters for window 2, frames clamped at the edges.
    d1 = np.array([-2, -1, 0, 1, 2]) / 10
    d2 = np.array([0.04, 0.04, 0.01, -0.04, -0.1, -0.04, 0.01, 0.04, 0.04])
    for t in range(7):
        want1 = sum(c * x[min(max(t + j - 2, 0), 6)] for j, c in enumerate(d1))
        want2 = sum(c * x[min(max(t + j - 4, 0), 6)] for j, c in enumerate(d2))
        np.testing.assert_allclose(y[t, 3:6], want1, atol=1e-5)
        np.testing.assert_allclose(y[t, 6:], want2, atol=1e-5)


def test_speaker_cmvn_centres_each_speaker(data):
    _, speakers = load_stats(data / "mfcc")
    cuts = CutSet.from_file(data / "mfcc" / "synth_cuts_train.jsonl.gz")
    per_spk: dict[str, list[np.ndarray]] = {}
    for cut in cuts:
        feats = gmm_features(cut, speakers)
        assert feats.shape == (cut.num_frames, 39) and feats.dtype == np.float32
        per_spk.setdefault(cut.supervisions[0].speaker, []).append(feats)
    for feats in per_spk.values():
        np.testing.assert_allclose(np.concatenate(feats)[:, :13].mean(axis=0), 0.0, atol=1e-3)
    one = gmm_features(cuts[0], None, norm_vars=True)
    np.testing.assert_allclose(one[:, :13].std(axis=0), 1.0, atol=1e-3)


def test_realign_schedule_scales_kaldis():
    assert MonoConfig(num_iters=40).schedule() == list(KALDI_REALIGN_ITERS)
    schedule = MonoConfig(num_iters=10).schedule()
    assert schedule[0] == 1 and schedule[-1] < 10 and len(schedule) < 10
    assert MonoConfig(realign_iters=(3, 1, 99)).schedule() == [1, 3]


def test_log_likelihood_rises(model_dir):
    ll = json.loads((model_dir / "log_likelihood.json").read_text())
    assert len(ll) == FAST_MONO.num_iters
    assert ll[-1] > ll[0] + 10, ll
    drops = sum(b < a - 0.05 for a, b in zip(ll, ll[1:], strict=False))
    assert drops <= 2, ll


def test_model_and_info(model_dir, data):
    info = json.loads((model_dir / "info.json").read_text())
    assert info["num_pdfs"] == 39 * 3 + 2 * 5  # 3-state phones, 5-state SIL and SPN
    assert info["num_pdfs"] < info["num_gaussians"] <= FAST_MONO.total_gaussians
    assert info["utterances"] == 80 and info["utterances_aligned"] >= 76
    assert (model_dir / "phones.txt").read_text() == (data / "lang" / "phones.txt").read_text()
    model = MonoModel.load(model_dir / "final.mdl")
    assert model.am.num_gauss == info["num_gaussians"] and model.am.dim == 39
    copy = pickle.loads(pickle.dumps(model))  # what the worker processes receive
    assert copy.trans_model.num_transition_ids == model.trans_model.num_transition_ids


def test_shortest_subset_and_rerun(model_dir, data, tmp_path):
    before = (model_dir / ".done.json").stat().st_mtime_ns
    train_mono(data / "mfcc", data / "lang", model_dir, FAST_MONO)
    assert (model_dir / ".done.json").stat().st_mtime_ns == before
    small = MonoConfig(num_iters=2, max_utterances=5)
    out = train_mono(data / "mfcc", data / "lang", tmp_path / "m", small)
    assert json.loads((out / "info.json").read_text())["utterances"] == 5


def test_training_is_reproducible(model_dir, data, tmp_path):
    """The same data and config give the same model, bit for bit (mixing up included)."""
    again = train_mono(data / "mfcc", data / "lang", tmp_path / "again", FAST_MONO)
    for name in ("final.mdl", "log_likelihood.json"):
        assert (again / name).read_bytes() == (model_dir / name).read_bytes(), name


def test_missing_inputs_are_named(data, tmp_path):
    with pytest.raises(MissingInputError, match="compute-features"):
        train_mono(tmp_path / "nope", data / "lang", tmp_path / "m")
    with pytest.raises(MissingInputError, match="'eval'"):
        train_mono(data / "mfcc", data / "lang", tmp_path / "m", MonoConfig(split="eval"))
    with pytest.raises(AsrKdError, match="could not be aligned"):
        strict = MonoConfig(num_iters=2, oov="skip", max_failed_share=0.0)
        train_mono(data / "mfcc", _lang_without_a_word(data, tmp_path), tmp_path / "m", strict)
    assert not (tmp_path / "m").exists()


def _lang_without_a_word(data, tmp_path):
    """A lang directory that lacks one training word, so its utterances are skipped."""
    text = (data / "corpus" / "train" / "text").read_text().split()
    words = [w for w in text if "-" not in w]
    dropped = words[1]
    return prepare_lang([w for w in words if w != dropped], tmp_path / "lang_missing")
