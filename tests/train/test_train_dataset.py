"""Batches, normalisation, input checks and the training subset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lhotse import CutSet
from train_toy import make_toy_data

from asr_kd.data.features import load_stats
from asr_kd.errors import BadInputError, MissingInputError
from asr_kd.train.dataset import (
    PAD_TARGET,
    TARGETS_KEY,
    FeatureNormalizer,
    SenoneDataset,
    check_cuts,
    load_split,
    load_training_data,
    select_subset,
)


def _dataset(feature_dir, hooks=()) -> SenoneDataset:
    stats, _ = load_stats(feature_dir)
    return SenoneDataset(FeatureNormalizer(stats.mean, stats.var), 8, hooks)


def test_batch_is_padded_normalised_and_extensible(toy_data):
    data_dir, feature_dir = toy_data
    cuts = load_split(data_dir, "train").subset(first=3)

    def soft_targets(cuts: CutSet, batch: dict) -> None:
        batch["soft"] = torch.zeros(*batch["targets"].shape, 4)

    batch = _dataset(feature_dir, [soft_targets])[cuts]
    lengths = [c.num_frames for c in cuts]
    assert batch["cut_ids"] == [c.id for c in cuts]
    assert batch["lengths"].tolist() == lengths
    assert batch["feats"].shape == (3, max(lengths), 6) and batch["feats"].dtype == torch.float32
    assert batch["targets"].dtype == torch.int64 and batch["soft"].shape == (3, max(lengths), 4)
    for i, cut in enumerate(cuts):
        n = lengths[i]
        assert (batch["targets"][i, n:] == PAD_TARGET).all()
        assert batch["targets"][i, :n].tolist() == cut.load_custom(TARGETS_KEY).tolist()
        assert (batch["feats"][i, n:] == 0).all()
    # Normalised with the training statistics: about zero mean, unit variance.
    feats = torch.cat([batch["feats"][i, :n] for i, n in enumerate(lengths)])
    assert feats.mean(0).abs().max() < 0.5 and (feats.std(0) - 1).abs().max() < 0.5


def test_training_data_and_their_checks(toy_data, tmp_path):
    data_dir, feature_dir = toy_data
    data = load_training_data(data_dir, feature_dir)
    assert (data.num_senones, data.tree_id, data.feat_dim) == (8, "toytree00000000", 6)
    assert len(data.train) == data.train_total == 24 and len(data.dev) == 8
    with pytest.raises(MissingInputError, match="no 'eval' split"):
        load_training_data(data_dir, feature_dir, dev_split="eval")
    with pytest.raises(
        BadInputError, match=r"train-000 \(train\) has 6-dim features but the statistics 4"
    ):
        check_cuts(data.train, 4, "train")
    with pytest.raises(MissingInputError, match="run the 'senone-targets' stage first"):
        load_training_data(tmp_path / "nothing", feature_dir)

    bad_dir, _ = make_toy_data(tmp_path / "short", short_targets="dev-001")
    with pytest.raises(BadInputError, match=r"dev-001 \(dev\): \d+ senone targets for \d+"):
        load_training_data(bad_dir, feature_dir)


def test_frame_count_mismatch_found_when_loading_too(tmp_path):
    data_dir, feature_dir = make_toy_data(tmp_path, short_targets="train-001")
    cut = load_split(data_dir, "train")["train-001"]
    with pytest.raises(BadInputError, match="train-001: .* senone targets .*'senone-targets'"):
        _dataset(feature_dir)[CutSet.from_cuts([cut])]


def test_train_fraction_is_a_deterministic_subset(toy_data):
    data_dir, _ = toy_data
    cuts = load_split(data_dir, "train")
    first = select_subset(cuts, 0.25, seed=3)
    assert len(first) == 6 and set(first.ids) <= set(cuts.ids)
    reordered = CutSet.from_cuts(reversed(list(cuts)))
    assert sorted(select_subset(reordered, 0.25, seed=3).ids) == sorted(first.ids)
    assert select_subset(cuts, 0.25, seed=4).ids != first.ids
    assert len(select_subset(cuts, 0.001, seed=0)) == 1
    assert select_subset(cuts, 1.0, seed=0) is cuts


def test_train_fraction_is_recorded(toy_data, tmp_path):
    from test_loop import _config
    from train_toy import toy_builder

    from asr_kd.train import train_model

    data_dir, feature_dir = toy_data
    out = tmp_path / "exp"
    config = _config(max_epochs=1, train_fraction=0.25, subset_seed=3)
    train_model(data_dir, feature_dir, out, config, builder=toy_builder)
    ids = (out / "train_subset.txt").read_text().split()
    assert sorted(ids) == sorted(select_subset(load_split(data_dir, "train"), 0.25, 3).ids)
    doc = __import__("json").loads((out / "train.json").read_text())
    assert doc["train_cuts"] == 6 and doc["train_fraction"] == 0.25


def test_normalizer():
    norm = FeatureNormalizer([1.0, 2.0], [4.0, 0.25])
    out = norm(np.array([[3.0, 2.5]], dtype=np.float64))
    assert out.dtype == np.float32 and out.tolist() == [[1.0, 1.0]]
    with pytest.raises(ValueError):
        FeatureNormalizer([0.0, 1.0], [1.0])
