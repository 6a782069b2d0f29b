"""Data-fraction subsets: stratified by speaker, and given the whole set's updates."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter

import pytest
from lhotse import CutSet
from lhotse.testing.dummies import dummy_cut, dummy_supervision
from test_frames import _frames_config

from asr_kd.train import train_model
from asr_kd.train.config import updates_for_fraction
from asr_kd.train.dataset import load_training_data, select_subset


def _speaker_cuts(per_speaker: dict[str, int]) -> CutSet:
    cuts, n = [], 0
    for spk, count in per_speaker.items():
        for _ in range(count):
            cut = dummy_cut(n, supervisions=[dummy_supervision(n)])
            cut.supervisions[0].speaker = spk
            cuts.append(cut)
            n += 1
    return CutSet.from_cuts(cuts)


def _speakers(cuts: CutSet) -> Counter:
    return Counter(c.supervisions[0].speaker for c in cuts)


def test_a_small_subset_keeps_every_speakers_share():
    # 10 speakers x 30 cuts; 10% -> exactly 3 cuts from every speaker, whatever the seed.
    cuts = _speaker_cuts({f"spk{i}": 30 for i in range(10)})
    for seed in range(5):
        sub = select_subset(cuts, 0.1, seed)
        assert _speakers(sub) == {f"spk{i}": 3 for i in range(10)}
    assert select_subset(cuts, 0.1, 0).ids != select_subset(cuts, 0.1, 1).ids


def test_remainders_go_to_the_largest_shares_and_the_total_is_exact():
    # 3% of 40 + 20 + 10 cuts: quotas 1.2, 0.6, 0.3 -> 1 + 1 + 0 (total round(2.1) = 2).
    cuts = _speaker_cuts({"a": 40, "b": 20, "c": 10})
    sub = select_subset(cuts, 0.03, 0)
    assert len(sub) == 2 and _speakers(sub) == {"a": 1, "b": 1}


def test_updates_for_fraction_gives_the_whole_sets_steps():
    # 3% of 400,000 frames on the frame path: epochs of ceil(1/0.03) = 34 passes over the
    # subset, stopped at the whole set's ceil(400,000 / 256) = 1563 steps an epoch.
    config = _frames_config(train_fraction=0.03, updates_as_full=True, max_epochs=8,
                            frame_batch_size=256)  # fmt: skip
    out = updates_for_fraction(config, 12_000, 400_000)
    assert (out.max_steps, out.max_epochs, out.frame_passes) == (1563 * 8, 8, 34)
    # The utterance path: 47 steps a subset epoch -> ceil(47 / 0.03) a whole-set epoch.
    utts = dataclasses.replace(config, data_path="utterances")
    out = updates_for_fraction(utts, 12_000, 400_000, subset_steps=47)
    assert out.max_steps == math.ceil(47 * 400_000 / 12_000) * 8
    assert out.max_epochs == math.ceil(out.max_steps / 47) and out.frame_passes == 1
    off = dataclasses.replace(config, updates_as_full=False)
    assert updates_for_fraction(off, 12_000, 400_000) is off
    capped = dataclasses.replace(config, max_steps=100)
    assert updates_for_fraction(capped, 12_000, 400_000).max_steps == 100


@pytest.mark.parametrize("fraction", [0.25, 0.5])
def test_a_subset_trains_as_many_updates_as_the_whole_set(toy_data, tmp_path, fraction):
    """The paper's 3% experiment: same training, less data (on the frame path, where an
    update is frame_batch_size frames, the counts are exact)."""
    data_dir, feature_dir = toy_data
    full = _frames_config(max_epochs=2)
    train_model(data_dir, feature_dir, tmp_path / "full", full, device="cpu")
    sub = _frames_config(max_epochs=2, train_fraction=fraction, updates_as_full=True)
    train_model(data_dir, feature_dir, tmp_path / "sub", sub, device="cpu")
    full_doc = json.loads((tmp_path / "full" / "train.json").read_text())
    sub_doc = json.loads((tmp_path / "sub" / "train.json").read_text())
    assert sub_doc["total_steps"] == full_doc["total_steps"]
    assert sub_doc["num_epochs"] == full_doc["num_epochs"] == 2  # dev scored as often
    data = load_training_data(data_dir, feature_dir, train_fraction=fraction)
    assert sub_doc["train_cuts"] == len(data.train) < data.train_total
