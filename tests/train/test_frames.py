"""The frame-level training path: the utterance path's inputs and targets, frame by frame.

Every check runs on the toy senone task of ``tests/train`` (train_toy.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import types

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from lhotse import NumpyHdf5Writer
from train_toy import Kill, ToyModel, kill_at, state_dicts_equal, toy_train_config

from asr_kd.distill import (
    CachedSoftTargets,
    DistillConfig,
    DistillLoss,
    cache_soft_targets,
    distill,
)
from asr_kd.errors import ConfigError
from asr_kd.models import ModelSpec, build_model, splice_frames
from asr_kd.teachers import EnsembleTeacher, NeuralTeacher, attach_cuts
from asr_kd.train import FeatureNormalizer, TrainConfig, cross_entropy, train_model
from asr_kd.train.checkpoint import load_file
from asr_kd.train.dataset import SenoneDataset, load_training_data
from asr_kd.train.evaluate import forward_logits
from asr_kd.train.frames import FrameStore, frame_source

S, T = 8, 2.0
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data(toy_data):
    return load_training_data(*toy_data)


def _source(data, context=(2, 3), batch=100, seed=0, rank=0, world=1, hooks=()):
    config = types.SimpleNamespace(frame_batch_size=batch, seed=seed, num_workers=0, model={})
    return frame_source(data, config, context, rank, world, hooks)


def _utterances(data, hooks=()):
    """All training cuts as one padded utterance batch (the utterance path's input)."""
    return SenoneDataset(data.normalizer, S, hooks)[data.train]


def _epoch(source, epoch=0, skip=0):
    source.start(epoch, skip)
    return list(source)


def _model(arch, seed=0, **options):
    torch.manual_seed(seed)
    return build_model(ModelSpec(arch, "tiny", options), 6, S).eval()


def test_every_frame_gets_the_utterance_paths_window_and_target(data):
    left, right = 2, 3
    source = _source(data, (left, right))
    ref = _utterances(data)
    spliced = splice_frames(ref["feats"], ref["lengths"], left, right)  # [B, T, K * F]
    valid = ref["targets"] != -100
    want_windows = spliced[valid].view(-1, left + 1 + right, 6)  # cut after cut, as the store
    want_targets = ref["targets"][valid]
    want_cuts = np.repeat(ref["cut_ids"], ref["lengths"].numpy())
    seen = []
    for batch in _epoch(source):
        index = batch["frame_index"]
        assert batch["frame_window"] and batch["feats"].shape == (len(index), 6, 6)
        assert batch["lengths"].tolist() == [6] * len(index)
        assert torch.equal(batch["feats"], want_windows[index])
        assert torch.equal(batch["targets"][:, 0], want_targets[index])
        assert batch["cut_ids"] == want_cuts[index.numpy()].tolist()
        seen.append(index)
    # One epoch: every frame once, in 100-frame batches and a short last one.
    seen = torch.cat(seen)
    assert sorted(seen.tolist()) == list(range(int(valid.sum())))
    assert source.count(0) == -(-int(valid.sum()) // 100) == len(_epoch(source, 1))


def test_the_shuffle_depends_on_seed_and_epoch_only_and_ranks_share_it_out(data):
    def order(batches):
        return torch.cat([b["frame_index"] for b in batches]).tolist()

    one = _source(data)
    first = order(_epoch(one, 0))
    assert order(_epoch(one, 0)) == first == order(_epoch(_source(data), 0))
    assert order(_epoch(one, 1)) != first and order(_epoch(_source(data, seed=1), 0)) != first
    # A resumed epoch skips the batches already consumed.
    assert order(_epoch(one, 0, skip=3)) == first[300:]
    # Two ranks take alternate batches of the one-process sequence, as many each.
    ranks = [_source(data, rank=r, world=2) for r in (0, 1)]
    per_rank = [_epoch(r, 0) for r in ranks]
    assert len(per_rank[0]) == len(per_rank[1]) == ranks[0].count(0) == len(_epoch(one, 0)) // 2
    merged = [b for pair in zip(*per_rank, strict=True) for b in pair]
    assert order(merged) == first[: 100 * len(merged)]


def test_the_model_scores_windows_as_it_scores_utterances(data):
    """forward_logits and the cross-entropy: the same sums on both paths (eval mode)."""
    for model in (_model("dnn"), _model("tdnn")):
        ref = _utterances(data)
        loss_fn = cross_entropy()
        source = _source(data, model.frame_context, batch=256)
        with torch.no_grad():
            want = loss_fn(forward_logits(model, ref, CPU, None), ref)[0]
            got = sum(loss_fn(forward_logits(model, b, CPU, None), b)[0] for b in source)
        assert float(got) == pytest.approx(float(want), rel=1e-5)


def _cache(data, tmp_path) -> CachedSoftTargets:
    """Top-3 rows of random teacher distributions per cut, stored as the cache stores them."""
    rng = np.random.default_rng(0)
    arrays = {}
    with NumpyHdf5Writer(tmp_path / "soft.h5") as writer:
        for cut in data.train:
            p = rng.dirichlet(np.ones(S), size=cut.num_frames)
            idx = np.argsort(-p, 1)[:, :3].astype(np.int32)
            prob = np.take_along_axis(p, idx.astype(np.int64), 1).astype(np.float16)
            arrays[cut.id] = tuple(
                writer.store_array(f"{cut.id}.{n}", a, frame_shift=0.01, temporal_dim=0)
                for n, a in (("idx", idx), ("prob", prob))
            )
    return CachedSoftTargets(arrays, S, str(tmp_path))


def test_cached_soft_targets_are_the_utterance_batches_rows(data, tmp_path):
    hook = _cache(data, tmp_path)
    model, loss_fn = _model("dnn"), DistillLoss(T, 0.5)
    source = _source(data, model.frame_context, hooks=[hook])
    ref = _utterances(data, [hook])
    valid = ref["targets"] != -100
    for batch in _epoch(source):
        index = batch["frame_index"]
        for key in ("soft_idx", "soft_prob", "soft_mass"):
            assert batch[key].shape[:2] == (len(index), 1)
            assert torch.equal(batch[key][:, 0], ref[key][valid][index])
    # The distillation loss reads them unchanged: equal sums on both paths.
    with torch.no_grad():
        want = loss_fn(forward_logits(model, ref, CPU, None), ref)[0]
        got = sum(loss_fn(forward_logits(model, b, CPU, None), b)[0] for b in _epoch(source))
    assert float(got) == pytest.approx(float(want), rel=1e-5)


def test_on_the_fly_teachers_score_their_own_windows_of_the_same_frames(data):
    """Teachers with other contexts and statistics than the student give, per frame,
    the distribution they give on the utterance path."""
    stats = data.normalizer
    own = FeatureNormalizer(stats.mean + 1.0, stats.var * 2.0)

    def teacher(model, normalizer, name):
        return NeuralTeacher(model, normalizer, S, data.tree_id, 0.01, name, name, amp="off")

    dnn = teacher(_model("dnn", 1, left_context=4, right_context=1), own, "dnn")
    ensemble = EnsembleTeacher([dnn, teacher(_model("tdnn", 2), None, "tdnn")], amp="off")
    ensemble.set_batch_normalizer(stats)
    ref = _utterances(data)
    want = ensemble.batch_log_probs(ref, T, CPU)[ref["targets"] != -100]
    for batch in _epoch(_source(data, (1, 1), batch=128)):
        got = ensemble.batch_log_probs(batch, T, CPU)
        assert got.shape == (len(batch["frame_index"]), 1, S)
        torch.testing.assert_close(got[:, 0], want[batch["frame_index"]], atol=1e-5, rtol=1e-5)
    lstm = EnsembleTeacher([teacher(_model("lstm"), None, "lstm")])
    lstm.set_batch_normalizer(stats)
    with pytest.raises(ConfigError, match="teacher lstm cannot score single frames.*cache"):
        lstm.batch_log_probs(batch, T, CPU)


def _augmented_source(data, context, **augment):
    config = types.SimpleNamespace(frame_batch_size=128, seed=0, num_workers=0, model={},
                                   **{f"augment_{k}": v for k, v in augment.items()})  # fmt: skip
    return frame_source(data, config, context, 0, 1, ())


def test_augmented_windows_are_the_same_for_student_and_on_the_fly_teachers(data):
    """Frequency masks and noise perturb the student's windows; a teacher's windows of
    another context hold the same perturbed frames where they overlap; the draw depends
    on (seed, epoch, batch) only, so a resumed epoch perturbs as the first run did."""
    clean = _epoch(_source(data, (2, 3), batch=128))
    source = _augmented_source(data, (2, 3), freq_masks=2, freq_width=3, noise=0.5)
    first = _epoch(source)
    assert len(first) == len(clean)
    for got, ref in zip(first, clean, strict=True):
        assert torch.equal(got["frame_index"], ref["frame_index"])
        assert torch.equal(got["targets"], ref["targets"])
        diff = got["feats"] - ref["feats"]
        assert 0.3 < float(diff[diff != 0].std()) < 1.5  # noise (and masked bins) of ~0.5
        wide = got["windows_of"](4, 5)  # a teacher with a wider context
        torch.testing.assert_close(wide[:, 2:8], got["feats"])
        assert torch.equal(got["windows_of"](2, 3), got["feats"])
    # a masked bin is 0 across the frame's whole window, at most 2 masks of 3 bins
    masks_only = _epoch(_augmented_source(data, (2, 3), freq_masks=2, freq_width=3))
    for got in masks_only:
        zero = (got["feats"] == 0).all(dim=1)  # [N, F]
        assert zero.any() and int(zero.sum(dim=1).max()) <= 6
    assert torch.equal(_epoch(source, skip=2)[0]["feats"], first[2]["feats"])
    assert not torch.equal(_epoch(source, epoch=1)[0]["feats"], _epoch(source, epoch=1)[1]["feats"])
    with pytest.raises(ValueError, match="augment_.*data_path: frames"):
        TrainConfig(augment_noise=0.1)


def test_sequence_models_and_per_cut_teachers_are_refused(data):
    with pytest.raises(ConfigError, match="lstm is a sequence model.*data_path: utterances"):
        config = TrainConfig(model={"arch": "lstm", "preset": "tiny"})
        frame_source(data, config, None, 0, 1, ())
    with pytest.raises(ConfigError, match="attach_cuts.*cache-soft-targets"):
        _source(data, hooks=[attach_cuts])
    assert _source(data, batch=100_000).count(0) == 1  # one short batch
    plug_in = ToyModel(6, S)  # a plug-in that claims a context but scores no windows
    plug_in.frame_context = (1, 1)
    batch = next(iter(_source(data, plug_in.frame_context)))
    with pytest.raises(ConfigError, match="ToyModel has no forward_windows.*utterances"):
        forward_logits(plug_in, batch, CPU, None)
    with pytest.raises(ConfigError, match="no batch of 100000 frames for each of 2 ranks"):
        _source(data, batch=100_000, world=2)


def test_the_store_holds_the_split_in_cut_order(data):
    store = FrameStore.load(data.train, data.normalizer, S)
    cuts = list(data.train)
    assert store.cut_ids == [c.id for c in cuts]
    assert store.num_frames == sum(c.num_frames for c in cuts)
    first = cuts[0]
    feats = torch.from_numpy(data.normalizer(first.load_features()))
    assert torch.equal(store.feats[: first.num_frames], feats)
    assert store.first[: first.num_frames].tolist() == [0] * first.num_frames
    assert store.last[first.num_frames].item() == first.num_frames + cuts[1].num_frames - 1


def _frames_config(**changes) -> TrainConfig:
    model = {"arch": "dnn", "preset": "tiny", "options": {"dropout": 0.1}}
    base = dict(model=model, data_path="frames", frame_batch_size=64, optimizer="adam", lr=3e-3,
                max_epochs=2, patience=0)  # fmt: skip
    return toy_train_config(**{**base, **changes})


def test_the_trainer_learns_and_resumes_on_frames(toy_data, tmp_path):
    """``data_path: frames`` through train_model: it learns, and a killed training
    resumes mid-epoch to bitwise the weights of an uninterrupted one (dropout on)."""
    data_dir, feature_dir = toy_data
    config = _frames_config(checkpoint_interval=10)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train_model(data_dir, feature_dir, whole, config, device="cpu")
    doc = json.loads((whole / "train.json").read_text())
    assert doc["epochs"][-1]["dev_frame_acc"] > 0.85
    frames = sum(c.num_frames for c in load_training_data(*toy_data).train)
    assert doc["total_steps"] == 2 * math.ceil(frames / 64)
    with pytest.raises(Kill):
        train_model(data_dir, feature_dir, parts, config, device="cpu", callbacks=[kill_at(25)])
    train_model(data_dir, feature_dir, parts, config, device="cpu")
    assert "resumed from step-20" in (parts / "log" / "train.log").read_text()
    a, b = load_file(whole / "model.pt"), load_file(parts / "model.pt")
    assert state_dicts_equal(a["state_dict"], b["state_dict"])


def test_students_learn_on_frames_from_cached_and_on_the_fly_targets_alike(toy_data, tmp_path):
    data_dir, feature_dir = toy_data
    teacher = tmp_path / "teacher"
    train_model(data_dir, feature_dir, teacher, _frames_config(seed=5, max_epochs=1), device="cpu")
    kd = DistillConfig(temperature=T, teachers=(str(teacher),), k=S, prob_dtype="float32",
                       cache_dir=str(tmp_path / "cache"))  # fmt: skip
    cache_soft_targets(data_dir, feature_dir, kd.cache_dir, kd, device="cpu", max_duration=3.0)
    outs = []
    for source in ("cache", "on_the_fly"):
        out = tmp_path / f"student_{source}"
        config = dataclasses.replace(kd, source=source)
        distill(
            data_dir, feature_dir, out, config, _frames_config(seed=3, max_epochs=1), device="cpu"
        )
        epochs = json.loads((out / "train.json").read_text())["epochs"]
        assert epochs[-1]["dev_frame_acc"] > 0.85 and epochs[-1]["train_kl"] > 0
        outs.append(load_file(out / "model.pt"))
    # k = S in float32: the same targets, so the same student up to float rounding.
    for key, value in outs[0]["state_dict"].items():
        torch.testing.assert_close(value, outs[1]["state_dict"][key], atol=1e-3, rtol=1e-3)
    # perturbed inputs: the teachers on the fly see them (and learn), the cache is refused
    augmented = _frames_config(seed=3, max_epochs=1, augment_noise=0.2, augment_freq_masks=1,
                               augment_freq_width=2)  # fmt: skip
    with pytest.raises(ConfigError, match="cached soft targets.*on_the_fly"):
        distill(data_dir, feature_dir, tmp_path / "no", kd, augmented, device="cpu")
    assert not (tmp_path / "no").exists() and not (tmp_path / "no.work").exists()
    out = tmp_path / "student_augmented"
    distill(data_dir, feature_dir, out, dataclasses.replace(kd, source="on_the_fly"), augmented,
            device="cpu")  # fmt: skip
    assert json.loads((out / "train.json").read_text())["epochs"][-1]["dev_frame_acc"] > 0.8


def _run_rank(rank: int, world_size: int, port: int, args: tuple) -> None:
    """One process of a frame-path training (spawned: a fresh interpreter)."""
    if world_size > 1:
        os.environ.update(
            RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
        )  # fmt: skip
    torch.set_num_threads(1)
    train_model(*args, device="cpu")


def test_two_ranks_on_frames_equal_one_process_accumulating_their_batches(toy_data, tmp_path):
    """Rank r takes frame batches r, r + 2, ...: the update of one process that adds
    each pair's gradients (accum_grad=2); no dropout, so no per-rank masks."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = _frames_config(max_steps=6, model={"arch": "dnn", "preset": "tiny"})
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    mp.spawn(_run_rank, args=(2, port, (*toy_data, ddp, config)), nprocs=2, join=True)
    accum = dataclasses.replace(config, accum_grad=2)
    mp.spawn(_run_rank, args=(1, 0, (*toy_data, single, accum)), nprocs=1, join=True)
    a, b = load_file(ddp / "model.pt")["state_dict"], load_file(single / "model.pt")["state_dict"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5)
    da, db = (json.loads((d / "train.json").read_text())["epochs"][0] for d in (ddp, single))
    assert da["frames"] == db["frames"] == 6 * 2 * 64
    assert da["train_frame_acc"] == db["train_frame_acc"]
