"""Teachers of every kind: checkpoints, a user's nn.Module, precomputed posteriors."""

from __future__ import annotations

import json
import math

import kaldiio
import numpy as np
import pytest
import torch
import yaml
from teacher_toy import NUM_SENONES, TREE_ID, TinyNet, toy_data, toy_teachers

from asr_kd.errors import BadInputError, ConfigError
from asr_kd.teachers import PosteriorTeacher, Teacher, load
from asr_kd.train import load_model, log_posteriors
from asr_kd.train.dataset import FeatureNormalizer, load_split


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return toy_data(tmp_path_factory)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return toy_teachers(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def dev_cuts(data):
    return list(load_split(data[0], "dev"))[:4]


def _sums_to_one(logp: np.ndarray) -> bool:
    return bool(np.allclose(np.exp(logp.astype(np.float64)).sum(-1), 1.0, atol=1e-5))


def test_checkpoint_teacher_gives_the_models_log_posteriors(teacher_dir, dev_cuts):
    teacher = load(teacher_dir / "model.pt", TREE_ID, NUM_SENONES, 0.01, device="cpu")
    assert isinstance(teacher, Teacher) and teacher.name == "teacher1"
    assert (teacher.num_senones, teacher.tree_id, teacher.frame_shift) == (8, TREE_ID, 0.01)
    cut = dev_cuts[0]
    logp = teacher.log_probs(cut)
    assert logp.shape == (cut.num_frames, NUM_SENONES) and logp.dtype == np.float32
    assert _sums_to_one(logp)
    model, info = load_model(teacher_dir, "cpu")
    np.testing.assert_allclose(logp, log_posteriors(model, cut, info.normalizer).numpy(), atol=1e-6)
    # the training directory is a spec too
    same = load(teacher_dir, device="cpu").log_probs(cut)
    np.testing.assert_array_equal(same, logp)


def test_temperature_softens_and_keeps_rows_normalised(teacher_dir, dev_cuts):
    teacher = load(teacher_dir, device="cpu")
    cut = dev_cuts[1]
    logp = teacher.log_probs(cut).astype(np.float64)
    hot = teacher.log_probs(cut, temperature=3.0)
    expected = torch.log_softmax(torch.from_numpy(logp) / 3.0, -1).numpy()  # softmax(z / T)
    np.testing.assert_allclose(hot, expected, atol=1e-5)
    assert _sums_to_one(hot)
    entropy = lambda lp: -(np.exp(lp) * lp).sum(-1).mean()  # noqa: E731
    assert entropy(hot) > entropy(logp) + 0.1
    with pytest.raises(ValueError, match="temperature"):
        teacher.log_probs(cut, temperature=0.0)


def test_batch_matches_single_cuts_and_pads_with_uniform_rows(teacher_dir, dev_cuts):
    teacher = load(teacher_dir, device="cpu")
    out, lengths = teacher.log_probs_batch(dev_cuts, temperature=2.0)
    assert lengths.tolist() == [c.num_frames for c in dev_cuts]
    assert out.shape == (4, max(lengths), NUM_SENONES)
    for i, cut in enumerate(dev_cuts):
        np.testing.assert_allclose(out[i, : lengths[i]], teacher.log_probs(cut, 2.0), atol=1e-6)
        assert torch.allclose(out[i, lengths[i] :], torch.tensor(-math.log(NUM_SENONES)))


def _write_user_teacher(tmp_path, data, **changes) -> tuple:
    torch.manual_seed(0)
    net = TinyNet(6, NUM_SENONES)
    torch.save({"model": net.state_dict()}, tmp_path / "tiny.pt")
    spec = {
        "class": "teacher_toy:TinyNet",
        "kwargs": {"feat_dim": 6, "num_senones": NUM_SENONES},
        "checkpoint": "tiny.pt",
        "state_dict_key": "model",
        "tree_id": TREE_ID,
        "num_senones": NUM_SENONES,
        "frame_shift": 0.01,
        "feature_stats": str(data[1]),  # the compute-features directory
        **changes,
    }
    path = tmp_path / "teacher.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path, net


def test_user_module_teacher_plugs_in_from_a_yaml_file(data, dev_cuts, tmp_path):
    path, net = _write_user_teacher(tmp_path, data)
    teacher = load(path, TREE_ID, NUM_SENONES, 0.01, device="cpu")
    assert teacher.name == "teacher" and "teacher_toy:TinyNet" in teacher.source
    cut = dev_cuts[0]
    logp = teacher.log_probs(cut, temperature=2.0)
    stats = json.loads((data[1] / "stats" / "global.json").read_text())
    feats = torch.from_numpy(FeatureNormalizer(stats["mean"], stats["var"])(cut.load_features()))
    with torch.no_grad():
        logits, _ = net(feats[None], torch.tensor([len(feats)]))
    np.testing.assert_allclose(logp, torch.log_softmax(logits[0] / 2.0, -1).numpy(), atol=1e-5)
    assert _sums_to_one(logp)


def test_user_module_teacher_errors_are_clear(data, dev_cuts, tmp_path):
    path, _ = _write_user_teacher(tmp_path, data, **{"class": "no_such_pkg.mod:Net"})
    with pytest.raises(ConfigError, match="cannot import no_such_pkg.mod"):
        load(path, device="cpu")
    path, _ = _write_user_teacher(tmp_path, data, tree_id=None)
    with pytest.raises(ConfigError, match="declare its senone inventory .tree_id"):
        load(path, device="cpu")
    path, _ = _write_user_teacher(tmp_path, data, num_senones=9)
    teacher = load(path, device="cpu")  # the declaration is checked at the first forward
    with pytest.raises(BadInputError, match="outputs 8 classes but declares 9"):
        teacher.log_probs(dev_cuts[0])
    path, _ = _write_user_teacher(tmp_path, data, state_dict_key=None)
    with pytest.raises(BadInputError, match="do not fit teacher_toy:TinyNet"):
        load(path, device="cpu")
    path, _ = _write_user_teacher(tmp_path, data, senones=8)
    with pytest.raises(ConfigError, match="unknown key.*senones"):
        load(path, device="cpu")


def _posteriors(cuts, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for cut in cuts:
        p = rng.dirichlet(np.ones(NUM_SENONES), size=cut.num_frames)
        out[cut.id] = (p * 1.01).astype(np.float32)  # not quite normalised, as stored data is
    return out


def test_numpy_posteriors_in_probability_domain(dev_cuts, tmp_path):
    post = _posteriors(dev_cuts)
    (tmp_path / "post").mkdir()
    for cid, p in post.items():
        np.save(tmp_path / "post" / f"{cid}.npy", p)
    spec = {"posteriors": str(tmp_path / "post"), "domain": "prob", "tree_id": TREE_ID,
            "num_senones": NUM_SENONES, "format": "npy"}  # fmt: skip
    teacher = load(spec, TREE_ID, NUM_SENONES, 0.01)
    assert isinstance(teacher, PosteriorTeacher) and not teacher.needs_features
    cut = dev_cuts[2]
    p = post[cut.id].astype(np.float64)
    np.testing.assert_allclose(np.exp(teacher.log_probs(cut)), p / p.sum(1, keepdims=True),
                               atol=1e-6)  # fmt: skip
    soft = p ** (1 / 4.0)  # temperature 4: renormalised p^(1/T)
    np.testing.assert_allclose(np.exp(teacher.log_probs(cut, 4.0)),
                               soft / soft.sum(1, keepdims=True), atol=1e-6)  # fmt: skip
    out, lengths = teacher.log_probs_batch(dev_cuts)
    assert out.shape == (4, max(lengths), NUM_SENONES) and _sums_to_one(out.numpy())


@pytest.mark.parametrize("suffix", ["scp", "ark"])
def test_kaldi_posteriors_in_log_domain(dev_cuts, tmp_path, suffix):
    logp = {k: np.log(v / v.sum(1, keepdims=True)) for k, v in _posteriors(dev_cuts, 1).items()}
    ark, scp = tmp_path / "post.ark", tmp_path / "post.scp"
    kaldiio.save_ark(str(ark), logp, scp=str(scp))
    teacher_file = tmp_path / "kaldi_teacher.yaml"
    teacher_file.write_text(yaml.safe_dump({
        "posteriors": f"post.{suffix}", "domain": "log", "tree_id": TREE_ID,
        "num_senones": NUM_SENONES, "frame_shift": 0.01,
    }))  # fmt: skip
    teacher = load(teacher_file, TREE_ID, NUM_SENONES, 0.01)
    assert teacher.name == "kaldi_teacher"
    for cut in dev_cuts:
        np.testing.assert_allclose(teacher.log_probs(cut), logp[cut.id], atol=1e-5)
        assert _sums_to_one(teacher.log_probs(cut, 2.0))


def test_posterior_errors_name_the_cut(dev_cuts, tmp_path):
    post = _posteriors(dev_cuts[:2])
    post[dev_cuts[1].id] = post[dev_cuts[1].id][:-2]  # two frames short
    (tmp_path / "post").mkdir()
    for cid, p in post.items():
        np.save(tmp_path / "post" / f"{cid}.npy", p)
    spec = {"posteriors": str(tmp_path / "post"), "tree_id": TREE_ID, "num_senones": NUM_SENONES}
    teacher = load({**spec, "domain": "prob"})
    with pytest.raises(BadInputError, match=f"cut {dev_cuts[2].id} has no posteriors"):
        teacher.log_probs(dev_cuts[2])
    short, frames = dev_cuts[1].id, dev_cuts[1].num_frames
    with pytest.raises(BadInputError, match=f"cut {short}: {frames - 2} frames of posteriors "
                       f".* {frames} feature frames"):  # fmt: skip
        teacher.log_probs(dev_cuts[1])
    with pytest.raises(
        BadInputError, match="cannot be log-probabilities; are these probabilities .domain: prob"
    ):
        load(spec).log_probs(dev_cuts[0])  # domain defaults to log
    with pytest.raises(BadInputError, match=r"shape \(\d+, 8\) .*expected \[frames, 9\]"):
        load({**spec, "domain": "prob", "num_senones": 9}).log_probs(dev_cuts[0])


def test_teachers_of_another_tree_or_frame_rate_are_refused(teacher_dir, tmp_path):
    spec = {"posteriors": str(tmp_path), "domain": "log", "tree_id": TREE_ID,
            "num_senones": NUM_SENONES, "frame_shift": 0.01}  # fmt: skip
    for s in (teacher_dir / "model.pt", spec):
        with pytest.raises(BadInputError, match=f"8 senones of tree {TREE_ID} but .* 8 senones "
                           "of tree othertree"):  # fmt: skip
            load(s, "othertree", NUM_SENONES, 0.01, device="cpu")
        with pytest.raises(BadInputError, match=f"8 senones of tree {TREE_ID} but .* 9 senones"):
            load(s, TREE_ID, 9, 0.01, device="cpu")
        with pytest.raises(BadInputError, match="frame shift of 0.01 s but .* at 0.03 s"):
            load(s, TREE_ID, NUM_SENONES, 0.03, device="cpu")
    with pytest.raises(ConfigError, match="exactly one of 'class'"):
        load({"tree_id": TREE_ID, "num_senones": 8})


def test_npz_posteriors_are_read_by_cut_id(dev_cuts, tmp_path):
    post = _posteriors(dev_cuts, 2)
    np.savez(tmp_path / "post.npz", **post)
    spec = {"posteriors": str(tmp_path / "post.npz"), "domain": "prob", "tree_id": TREE_ID,
            "num_senones": NUM_SENONES, "format": "npz"}  # fmt: skip
    teacher = load(spec, TREE_ID, NUM_SENONES, 0.01)
    for cut in dev_cuts:
        p = post[cut.id].astype(np.float64)
        np.testing.assert_allclose(np.exp(teacher.log_probs(cut)), p / p.sum(1, keepdims=True),
                                   atol=1e-6)  # fmt: skip
    with pytest.raises(ConfigError, match="format npy needs a directory"):
        load({**spec, "format": "npy"})


def test_a_plug_in_teacher_must_say_how_its_inputs_are_normalised(data, dev_cuts, tmp_path):
    path, net = _write_user_teacher(tmp_path, data)
    spec = yaml.safe_load(path.read_text())
    del spec["feature_stats"]
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match=f"teacher {path}: say how its inputs are normalised"):
        load(path, device="cpu")
    path.write_text(yaml.safe_dump({**spec, "feature_stats": None}))  # raw features, said so
    teacher = load(path, device="cpu")
    assert teacher.normalizer is None and "feature_stats: null" in teacher.source
    cut = dev_cuts[0]
    feats = torch.from_numpy(cut.load_features())
    with torch.no_grad():
        logits, _ = net(feats[None], torch.tensor([len(feats)]))
    np.testing.assert_allclose(teacher.log_probs(cut), torch.log_softmax(logits[0], -1).numpy(),
                               atol=1e-5)  # fmt: skip


def test_nan_features_and_weights_are_named(teacher_dir, dev_cuts, tmp_path):
    teacher = load(teacher_dir, device="cpu")
    cut = dev_cuts[1]
    feats = cut.load_features()
    feats[3, 2] = np.nan
    with pytest.raises(BadInputError, match=f"cut {cut.id}: its features hold NaN or Inf"):
        teacher.log_probs_batch([cut], 1.0, [feats])
    doc = torch.load(teacher_dir / "model.pt", map_location="cpu", weights_only=False)
    first = next(k for k, v in doc["state_dict"].items() if v.is_floating_point())
    doc["state_dict"][first][0] = float("inf")
    (tmp_path / "bad").mkdir()
    torch.save(doc, tmp_path / "bad" / "model.pt")
    with pytest.raises(BadInputError, match=f"teacher bad .*{tmp_path}/bad/model.pt.*NaN or Inf"):
        load(tmp_path / "bad", device="cpu")


def test_a_stage_given_a_bad_plug_in_teacher_writes_nothing(data, tmp_path):
    from asr_kd.distill import DistillConfig, cache_soft_targets

    path, _ = _write_user_teacher(tmp_path, data)
    spec = yaml.safe_load(path.read_text())
    del spec["feature_stats"]
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "soft"
    config = DistillConfig(teachers=(str(path),), k=4)
    with pytest.raises(ConfigError, match=f"teacher {path}: say how its inputs are normalised"):
        cache_soft_targets(data[0], data[1], out, config, device="cpu")
    assert not out.exists() and not list(tmp_path.glob("soft*"))
