"""The second tri-phone pass (train_lda_mllt.sh): LDA on tri1's senones, the tree rebuilt
on the LDA features, MLLT re-estimated during training, alignment with the result."""

from __future__ import annotations

import json

import numpy as np
import pytest
from lhotse import CutSet

from asr_kd.align.align import ALI_KEY, align, alignment_accuracy, load_gmm
from asr_kd.align.lda_stage import LdaConfig, estimate_lda_stage
from asr_kd.align.tri import TriModel, train_tri
from asr_kd.data.features import load_stats
from asr_kd.data.gmm_features import load_transform
from asr_kd.errors import BadInputError
from asr_kd.testing.synth import FAST_TRI, LENIENT_ALIGN
from asr_kd.tree.build import TreeConfig
from asr_kd.tree.targets import build_tree_stage

LDA = LdaConfig(splice=4, dim=40)


@pytest.fixture(scope="module")
def tri1_ali(data, tri_dir):
    return align(data / "mfcc", data / "lang", tri_dir, data / "tri1_ali", LENIENT_ALIGN)


@pytest.fixture(scope="module")
def lda_dir(data, tri1_ali):
    return estimate_lda_stage(tri1_ali, data / "mfcc", data / "lang", data / "tree",
                              data / "tri2_lda", LDA)  # fmt: skip


@pytest.fixture(scope="module")
def tree2(data, tri1_ali, lda_dir):
    config = TreeConfig(num_leaves=120, min_occupancy=30.0)
    return build_tree_stage(tri1_ali, data / "mfcc", data / "lang", data / "tree2", config,
                            transform_dir=lda_dir)  # fmt: skip


def _train(data, tri1_ali, tree2, lda_dir, name: str):
    return train_tri(tri1_ali, data / "mfcc", data / "lang", tree2, data / name, FAST_TRI,
                     transform_dir=lda_dir)  # fmt: skip


@pytest.fixture(scope="module")
def tri2(data, tri1_ali, tree2, lda_dir):
    return _train(data, tri1_ali, tree2, lda_dir, "tri2")


def test_lda_stage_writes_a_40_dimensional_projection(lda_dir):
    info = json.loads((lda_dir / "info.json").read_text())
    assert info["input_dim"] == 13 * 9 and info["dim"] == 40
    assert info["classes_seen"] > 50 and info["skipped_utterances"] == 0
    eig = info["eigenvalues"]
    assert eig == sorted(eig, reverse=True) and eig[0] > 1.0
    _, transform = load_transform(lda_dir)
    assert transform.matrix.shape == (40, 117) and transform.splice == 4


def test_tree_is_rebuilt_on_the_lda_features(tree2, data):
    info = json.loads((tree2 / "info.json").read_text())
    first = json.loads((data / "tree" / "info.json").read_text())
    assert info["tree_id"] != first["tree_id"]
    assert 50 < info["num_senones"] <= 120 + 10  # leaves plus states never seen


def test_tri2_log_likelihood_rises_and_mllt_gains(tri2, lda_dir):
    ll = json.loads((tri2 / "log_likelihood.json").read_text())
    info = json.loads((tri2 / "info.json").read_text())
    assert info["feature_transform"] == "lda_mllt" and info["feature_dim"] == 40
    assert info["mllt_iters"] == FAST_TRI.mllt_schedule() == [1, 3]
    assert all(g > 0 for g in info["mllt_gain_per_frame"].values()), info
    assert all(b >= a - 0.05 for a, b in zip(ll, ll[1:], strict=False)), ll
    assert ll[-1] > ll[1] + 1 and info["failed"] == {}
    model = TriModel.load(tri2 / "final.mdl")
    _, lda = load_transform(lda_dir)
    # the model's transform is the LDA followed by the MLLTs, saved beside it
    saved = np.load(tri2 / "transform.npz")["matrix"]
    np.testing.assert_array_equal(saved, model.transform.matrix)
    assert model.transform.matrix.shape == lda.matrix.shape
    assert not np.allclose(model.transform.matrix, lda.matrix)
    mllt = model.transform.matrix @ np.linalg.pinv(lda.matrix)
    assert abs(np.linalg.det(mllt)) > 0.1  # an invertible 40x40 rotation-and-scale


def test_tri2_reruns_are_bit_identical(data, tri1_ali, tree2, lda_dir, tri2):
    again = _train(data, tri1_ali, tree2, lda_dir, "tri2_again")
    assert (again / "final.mdl").read_bytes() == (tri2 / "final.mdl").read_bytes()
    lda_again = estimate_lda_stage(tri1_ali, data / "mfcc", data / "lang", data / "tree",
                                   data / "tri2_lda_again", LDA)  # fmt: skip
    np.testing.assert_array_equal(load_transform(lda_again)[1].matrix,
                                  load_transform(lda_dir)[1].matrix)  # fmt: skip


def test_align_with_tri2_applies_its_transform(data, tri2):
    out = align(data / "mfcc", data / "lang", tri2, data / "tri2_ali", LENIENT_ALIGN)
    model = load_gmm(tri2)
    assert isinstance(model, TriModel) and model.transform is not None
    cut = next(iter(CutSet.from_file(data / "mfcc" / "synth_cuts_dev.jsonl.gz")))
    assert model.features(cut, load_stats(data / "mfcc")[1]).shape == (cut.num_frames, 40)
    summary = json.loads((out / "summary.json").read_text())
    for split in ("train", "dev", "test"):
        assert (out / f"failed_{split}.txt").read_text() == ""
        for c in CutSet.from_file(out / f"synth_cuts_{split}.jsonl.gz"):
            assert c.load_custom(ALI_KEY).shape == (c.num_frames, 2)
        wb = summary[split]["word_boundaries"]
        assert wb["unmatched_utterances"] == 0
        # dev and test: 6 utterances of unseen speakers (39 words); tri1 gets 0.95/0.92
        assert wb["start_within_50ms"] >= 0.85 and wb["end_within_50ms"] >= 0.75, wb
    train = summary["train"]["word_boundaries"]  # ~560 words; tri1 0.93, mono 0.90
    assert train["start_within_20ms"] >= 0.9 and train["start_within_50ms"] >= 0.97, train


def test_report_lists_every_alignment_with_its_dev_word_starts(data, tri2):
    """results.json's ``alignments``: each exp/*_ali's dev share of starts within 20 ms."""
    out = align(data / "mfcc", data / "lang", tri2, data / "tri2_ali", LENIENT_ALIGN)
    found = alignment_accuracy(data)
    assert {"mono_ali", "tri1_ali", "tri2_ali"} <= set(found)
    dev = json.loads((out / "summary.json").read_text())["dev"]["word_boundaries"]
    assert found["tri2_ali"] == dev["start_within_20ms"] > 0.5


def test_transform_with_other_normalisation_is_refused(data, tri1_ali, tree2):
    other = estimate_lda_stage(tri1_ali, data / "mfcc", data / "lang", data / "tree",
                               data / "lda_utt", LdaConfig(cmvn="utterance"))  # fmt: skip
    with pytest.raises(BadInputError, match="cmvn='utterance'.*cmvn='speaker'"):
        train_tri(tri1_ali, data / "mfcc", data / "lang", tree2, data / "tri2_bad", FAST_TRI,
                  transform_dir=other)  # fmt: skip
