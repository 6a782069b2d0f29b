"""Soft targets (cached and on the fly) and the distillation stage on the toy task.

Two small DNN teachers are trained once on the toy senone task of ``tests/train``; the
cache, the on-the-fly path and the students are checked against them.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import train_toy as toy
import yaml
from click.testing import CliRunner
from lhotse import CutSet

from asr_kd.distill import (
    CachedSoftTargets,
    DistillConfig,
    DistillLoss,
    cache_soft_targets,
    distill,
    read_cache_info,
    student_builder,
)
from asr_kd.errors import BadInputError, ConfigError
from asr_kd.stage import read_marker
from asr_kd.teachers import EnsembleTeacher, attach_cuts, combine_log_probs, pad_log_probs
from asr_kd.teachers import load as load_teacher
from asr_kd.train import FeatureNormalizer, TrainConfig, frame_accuracy, load_model, train_model
from asr_kd.train.checkpoint import load_file, resolved_spec
from asr_kd.train.dataset import SenoneDataset, load_split

S, T = 8, 2.0
TEACHER = {"arch": "dnn", "options": {"num_layers": 1, "hidden_dim": 32, "left_context": 1,
                                      "right_context": 1}}  # fmt: skip


def _train_config(**changes) -> TrainConfig:
    base = dict(model=TEACHER, max_epochs=3, max_duration=3.0, lr=0.1, num_workers=0,
                log_interval=100, patience=0)  # fmt: skip
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Toy data, two trained teachers and a k=S float32 cache of their soft targets."""
    root = tmp_path_factory.mktemp("kd")
    data, feats = toy.make_toy_data(root / "toy")
    teachers = []
    for i in (1, 2):
        out = root / "exp" / f"teacher{i}"
        train_model(data, feats, out, _train_config(seed=i), device="cpu")
        teachers.append(str(out))
    config = DistillConfig(temperature=T, teachers=tuple(teachers), k=S, prob_dtype="float32",
                           cache_dir=str(root / "exp" / "cache_full"))  # fmt: skip
    cache_soft_targets(data, feats, config.cache_dir, config, device="cpu", max_duration=3.0)
    return {"root": root, "data": data, "feats": feats, "teachers": teachers, "full": config}


def _reference(world, cut, temperature=T) -> np.ndarray:
    """The ensemble's probabilities from each teacher's own per-cut path."""
    teachers = [load_teacher(t, device="cpu") for t in world["teachers"]]
    stacked = torch.stack([torch.as_tensor(t.log_probs(cut, temperature)) for t in teachers])
    return combine_log_probs(stacked, "arithmetic").exp().numpy()


def _normalizer(world) -> FeatureNormalizer:
    from asr_kd.data.features import load_stats

    stats, _ = load_stats(world["feats"])
    return FeatureNormalizer(stats.mean, stats.var)


def _batch(world, cuts, normalizer=None, hooks=()):
    dataset = SenoneDataset(normalizer or _normalizer(world), S, hooks)
    return dataset[cuts]


def test_cached_top_k_are_the_ensembles_distribution_truncated(world, tmp_path):
    cuts = load_split(world["data"], "train").subset(first=4)
    full = CachedSoftTargets.from_dir(world["full"].cache_dir, "train")
    for cut in cuts:
        idx, prob = full._load(cut.id, cut.num_frames)
        dense = np.zeros((cut.num_frames, S))
        np.put_along_axis(dense, idx.astype(np.int64), prob, axis=1)
        np.testing.assert_allclose(dense, _reference(world, cut), atol=2e-6)  # k = S: equal

    config = dataclasses.replace(world["full"], k=3, prob_dtype="float16")
    cache = cache_soft_targets(world["data"], world["feats"], tmp_path / "c3", config,
                               device="cpu", max_duration=3.0)  # fmt: skip
    top3 = CachedSoftTargets.from_dir(cache, "train")
    for cut in cuts:
        idx, prob = top3._load(cut.id, cut.num_frames)
        p = _reference(world, cut)
        want_idx = np.argsort(-p, axis=1)[:, :3]
        assert (np.sort(idx, 1) == np.sort(want_idx, 1)).all()
        kept = np.take_along_axis(p, idx.astype(np.int64), 1)
        # Stored as the teacher's probabilities (rows keep their mass, for the tail) ...
        np.testing.assert_allclose(prob, kept, atol=1e-3)
        assert prob.dtype == np.float16 and idx.dtype == np.int32
        # ... and served renormalised, with the mass the k held beside them.
        batch = {"lengths": torch.tensor([cut.num_frames]),
                 "feats": torch.zeros(1, cut.num_frames, 1)}  # fmt: skip
        top3(CutSet.from_cuts([cut]), batch)
        np.testing.assert_allclose(batch["soft_prob"][0].numpy(),
                                   kept / kept.sum(1, keepdims=True), atol=1e-3)  # fmt: skip
        np.testing.assert_allclose(batch["soft_mass"][0].numpy(), kept.sum(1), atol=2e-3)

    info = read_cache_info(cache)
    assert info["tree_id"] == "toytree00000000" and info["temperature"] == T and info["k"] == 3
    assert info["teachers"] == world["teachers"] and info["combination"] == "arithmetic"
    split = info["splits"]["train"]
    assert split["cuts"] == 24 and 0.5 < split["mean_mass_kept"] <= 1.0
    # 3 x int32 + 3 x float16 per frame at 100 frames/s, plus HDF5 overhead.
    assert split["bytes_per_hour"] >= 18 * 360_000 and info["bytes_per_hour"] > 0
    manifest = next(cache.glob("toy_cuts_train.jsonl.gz"))
    cut = next(iter(load_split(cache, "train")))
    assert manifest.is_file() and cut.has_custom("senones") and cut.has_custom("soft_prob")


def test_on_the_fly_targets_give_the_cached_loss_and_gradient(world):
    cuts = load_split(world["data"], "train").subset(first=5)
    hook = CachedSoftTargets.from_dir(world["full"].cache_dir, "train")
    batch = _batch(world, cuts, hooks=[hook])
    ensemble = load_teacher(world["teachers"], "toytree00000000", S, 0.01, device="cpu")
    ensemble.set_batch_normalizer(_normalizer(world))
    assert ensemble.batched == [True, True] and ensemble.collate_hooks() == []
    z = torch.randn(*batch["targets"].shape, S, generator=torch.Generator().manual_seed(0))
    grads, losses = [], []
    for loss_fn in (DistillLoss(T, 0.5), DistillLoss(T, 0.5, ensemble)):
        zz = z.clone().requires_grad_(True)
        loss, stats = loss_fn(zz, batch)
        loss.backward()
        grads.append(zz.grad)
        losses.append((loss.item(), stats["kl"].item(), stats["ce"].item()))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-4)


def test_a_teacher_with_other_statistics_sees_its_own_normalisation(world):
    cuts = load_split(world["data"], "dev").subset(first=3)
    teacher = load_teacher(world["teachers"][0], device="cpu")
    stats = _normalizer(world)
    other = FeatureNormalizer(stats.mean + 2.0, stats.var * 3.0)  # the student's statistics
    ensemble = EnsembleTeacher([teacher])
    ensemble.set_batch_normalizer(other)
    out = ensemble.batch_log_probs(_batch(world, cuts, other), T, torch.device("cpu"))
    for b, cut in enumerate(cuts):
        want = teacher.log_probs(cut, T)
        np.testing.assert_allclose(out[b, : cut.num_frames].numpy(), want, atol=1e-4)


def test_an_ensemble_spec_is_flattened_into_batched_members(world):
    spec = "ensemble:" + ",".join(world["teachers"])
    ensemble = load_teacher([spec], "toytree00000000", S, 0.01, device="cpu")
    ensemble.set_batch_normalizer(_normalizer(world))
    assert ensemble.batched == [True, True]
    with pytest.raises(ConfigError, match="combines by arithmetic"):
        load_teacher([spec], device="cpu", combination="geometric")


class _OracleTeacher:
    """A teacher without a network: smoothed reference senones read from the cut."""

    name = source = "oracle"
    num_senones, tree_id, frame_shift, needs_features = S, "toytree00000000", 0.01, False

    def __init__(self, drop: int = 0):
        self.drop = drop

    def log_probs_batch(self, cuts, temperature: float = 1.0, feats=None):
        rows = [torch.from_numpy(self.log_probs(c, temperature)) for c in cuts]
        return pad_log_probs(rows, S)

    def log_probs(self, cut, temperature: float = 1.0) -> np.ndarray:
        senones = np.rint(cut.load_custom("senones")).astype(int)[: cut.num_frames - self.drop]
        logits = np.where(np.eye(S)[senones] > 0, 4.0, 0.0) / temperature
        return (logits - np.log(np.exp(logits).sum(1, keepdims=True))).astype(np.float32)


def test_teachers_without_a_network_get_the_cuts_and_wrong_lengths_name_the_cut(world):
    cuts = load_split(world["data"], "train").subset(first=3)
    ensemble = EnsembleTeacher([_OracleTeacher()])
    ensemble.set_batch_normalizer(_normalizer(world))
    assert ensemble.collate_hooks() == [attach_cuts]
    batch = _batch(world, cuts, hooks=ensemble.collate_hooks())
    out = ensemble.batch_log_probs(batch, 1.0, torch.device("cpu"))
    valid = batch["targets"] != -100
    assert (out.argmax(-1)[valid] == batch["targets"][valid]).all()
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(out.shape[:2]))

    short = EnsembleTeacher([_OracleTeacher(drop=1)])
    short.set_batch_normalizer(_normalizer(world))
    with pytest.raises(BadInputError, match=r"cut train-\d+: teacher oracle gave \d+ frames"):
        short.batch_log_probs(batch, 1.0, torch.device("cpu"))


def test_the_distilled_student_learns_and_writes_the_model_contract(world):
    out = world["root"] / "exp" / "student"
    config = dataclasses.replace(world["full"], alpha=0.5)
    distill(world["data"], world["feats"], out, config, _train_config(seed=7), device="cpu")

    doc = json.loads((out / "train.json").read_text())
    assert doc["best_dev_frame_acc"] > 0.5  # chance is 1/8
    assert all(e["train_kl"] >= 0 and e["train_ce"] > 0 for e in doc["epochs"])
    assert doc["epochs"][-1]["train_kl"] < doc["epochs"][0]["train_kl"]
    saved = load_file(out / "model.pt")
    teacher = load_file(Path(world["teachers"][0]) / "model.pt")
    assert saved["spec"] == resolved_spec(teacher["spec"], teacher["model_config"])
    marker = read_marker(out)
    assert marker["stage"] == "distill"
    assert marker["config"]["distillation"]["temperature"] == T
    # The student loads and scores like any model, at temperature 1.
    model, info = load_model(out, "cpu")
    dev = load_split(world["data"], "dev")
    acc = frame_accuracy(model, dev, info.normalizer, S, 3.0, torch.device("cpu"))
    assert acc == pytest.approx(info.dev_frame_acc)


def test_on_the_fly_and_cached_students_agree(world):
    outs = []
    for source in ("cache", "on_the_fly"):
        out = world["root"] / "exp" / f"agree_{source}"
        config = dataclasses.replace(world["full"], source=source)
        distill(world["data"], world["feats"], out, config, _train_config(max_steps=4, seed=3),
                device="cpu")  # fmt: skip
        outs.append(load_file(out / "model.pt"))
    for key, value in outs[0]["state_dict"].items():
        torch.testing.assert_close(value, outs[1]["state_dict"][key], atol=1e-4, rtol=1e-4)
    assert outs[0]["dev_frame_acc"] == pytest.approx(outs[1]["dev_frame_acc"], abs=0.02)


def test_a_plug_in_student(world):
    out = world["root"] / "exp" / "plugin"
    config = dataclasses.replace(
        world["full"], student={"arch": "train_toy:ToyModel", "options": {"hidden": 16}}
    )
    distill(world["data"], world["feats"], out, config, _train_config(max_steps=2),
            device="cpu")  # fmt: skip
    model, info = load_model(out, "cpu", builder=student_builder)
    assert type(model).__name__ == "ToyModel" and info.spec["arch"] == "train_toy:ToyModel"


def test_caches_for_another_tree_temperature_or_features_are_refused(world, tmp_path):
    other_tree, feats2 = toy.make_toy_data(tmp_path / "tree", tree_id="othertree0000000")
    with pytest.raises(BadInputError, match="tree_id='toytree00000000'.*othertree"):
        distill(other_tree, feats2, tmp_path / "s1", world["full"], _train_config(), device="cpu")
    hot = dataclasses.replace(world["full"], temperature=5.0)
    with pytest.raises(BadInputError, match="temperature=2.0 but the distillation needs"):
        distill(world["data"], world["feats"], tmp_path / "s2", hot, _train_config(), device="cpu")
    # Same cut ids, other lengths: features the cache was not made from.
    other_feats, feats3 = toy.make_toy_data(tmp_path / "len", seed=1)
    with pytest.raises(BadInputError, match=r"cut train-\d+: \d+ cached soft-target frames"):
        distill(other_feats, feats3, tmp_path / "s3", world["full"], _train_config(), device="cpu")
    # The cache stage refuses teachers of another tree, and k above the senone count.
    with pytest.raises(BadInputError, match="othertree"):
        cache_soft_targets(other_tree, feats2, tmp_path / "c1", world["full"], device="cpu")
    big = dataclasses.replace(world["full"], k=S + 1)
    with pytest.raises(ConfigError, match="exceeds"):
        cache_soft_targets(world["data"], world["feats"], tmp_path / "c2", big, device="cpu")
    assert not any(tmp_path.glob("s*")) and not any(tmp_path.glob("c*"))
    # A teacher retrained (or replaced) since the cache was made.
    copies = [shutil.copytree(t, tmp_path / "t" / Path(t).name) for t in world["teachers"]]
    stale = dataclasses.replace(world["full"], teachers=tuple(map(str, copies)),
                                cache_dir=str(tmp_path / "stale"))  # fmt: skip
    cache_soft_targets(world["data"], world["feats"], stale.cache_dir, stale, device="cpu")
    shutil.copytree(copies[1], copies[0], dirs_exist_ok=True)  # model.pt and its record
    with pytest.raises(BadInputError, match="teacher_digests"):
        distill(world["data"], world["feats"], tmp_path / "s5", stale, _train_config())
    with pytest.raises(ConfigError, match="cache_dir"):
        distill(world["data"], world["feats"], tmp_path / "s4", DistillConfig(), _train_config())
    with pytest.raises(ValueError, match="alpha"):
        DistillConfig(alpha=2.0)


def test_the_distill_command_reads_both_sections(world, tmp_path):
    from asr_kd.cli.distill import distill as distill_cmd

    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump({
        "distill": {"temperature": 1.0, "teachers": world["teachers"], "k": S, "cache_dir": "x"},
        "student": {"model": TEACHER, "max_duration": 3.0, "num_workers": 0, "max_epochs": 1},
    }))  # fmt: skip
    out = tmp_path / "student"
    args = [str(world["data"]), str(world["feats"]), str(out), "--config", str(conf),
            "--cache-dir", world["full"].cache_dir, "--set", "temperature=2.0",
            "--set", "student.max_steps=2", "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(distill_cmd, args, catch_exceptions=False)
    assert result.exit_code == 0
    marker = read_marker(out)["config"]
    assert marker["distill"]["max_steps"] == 2 and marker["distillation"]["temperature"] == 2.0


def test_cached_probabilities_that_are_not_finite_name_the_cut_and_the_cache():
    from types import SimpleNamespace

    from asr_kd.distill.cache import CachedSoftTargets
    from asr_kd.errors import BadInputError

    idx = np.array([[0, 1], [1, 2]], dtype=np.int32)
    prob = np.array([[0.7, 0.2], [np.nan, 0.1]], dtype=np.float16)
    arrays = {"utt1": (SimpleNamespace(load=lambda: idx), SimpleNamespace(load=lambda: prob))}
    cache = CachedSoftTargets(arrays, num_senones=3, where="data/soft (soft_train.h5)")
    with pytest.raises(BadInputError, match=r"cut utt1: cached soft targets hold NaN.*soft_train"):
        cache.frame_rows([SimpleNamespace(id="utt1", num_frames=2)])
