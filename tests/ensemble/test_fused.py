"""Fused ensemble training gives the teachers of separate trainings, as ordinary outputs."""

from __future__ import annotations

import json

import pytest
import torch
from teacher_toy import DNN, toy_config, toy_data
from train_toy import state_dicts_equal

from asr_kd.ensemble import EnsembleConfig, train_ensemble, train_fused
from asr_kd.ensemble.fused import STAGE
from asr_kd.errors import ConfigError
from asr_kd.stage import is_done, read_marker
from asr_kd.teachers import load as load_teacher
from asr_kd.train import load_model
from asr_kd.train.checkpoint import load_file

# Dropout on (its RNG must match) and a newbob threshold at which the teachers' learning
# rates part ways (each follows its own dev accuracy).
CONFIG = dict(
    model={**DNN, "options": {**DNN["options"], "dropout": 0.2}},
    max_epochs=4, newbob_threshold=0.05, patience=2,
)  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return toy_data(tmp_path_factory)


@pytest.fixture(scope="module")
def separate(data, tmp_path_factory):
    """Two teachers (init seeds 3 and 7) trained one after the other with train_model."""
    ens = EnsembleConfig(num_teachers=2, seeds=(3, 7))
    root = tmp_path_factory.mktemp("separate")
    return train_ensemble(*data, root, ens, toy_config(**CONFIG), device="cpu")


def _weights(out):
    return load_file(out / "model.pt")["state_dict"]


@pytest.mark.parametrize("forward", ["loop", "vmap"])
def test_fused_training_gives_the_weights_of_separate_trainings(data, separate, tmp_path, forward):
    ens = EnsembleConfig(num_teachers=2, seeds=(3, 7), fused=True, fused_forward=forward)
    fused = train_ensemble(*data, tmp_path, ens, toy_config(**CONFIG), device="cpu")
    assert [p.name for p in fused] == ["teacher1", "teacher2"]
    histories = []
    for a, b in zip(separate, fused, strict=True):
        wa, wb = _weights(a), _weights(b)
        if forward == "loop":  # the same operations in the same order: bitwise
            assert state_dicts_equal(wa, wb)
        else:  # vmap's batched weight gradient sums in another order: float rounding
            for k in wa:
                torch.testing.assert_close(wb[k], wa[k], rtol=1e-5, atol=1e-6)
        ja, jb = (json.loads((d / "train.json").read_text()) for d in (a, b))
        assert jb["best_epoch"] == ja["best_epoch"] and jb["stop_reason"] == ja["stop_reason"]
        for ea, eb in zip(ja["epochs"], jb["epochs"], strict=True):
            assert eb["dev_frame_acc"] == ea["dev_frame_acc"] and eb["lr"] == ea["lr"]
            assert eb["train_loss"] == pytest.approx(ea["train_loss"], rel=1e-6)
        histories.append([e["lr"] for e in ja["epochs"]])
    assert histories[0] != histories[1]  # the schedules differed, and fused followed each


def test_fused_teachers_are_ordinary_training_outputs(data, tmp_path):
    outs = [tmp_path / "t1", tmp_path / "t2"]
    train_fused(*data, outs, toy_config(), [1, 2], device="cpu")
    assert not (tmp_path / "t1-t2.fused.work").exists()
    for k, out in enumerate(outs):
        assert is_done(out) and read_marker(out)["stage"] == STAGE
        assert read_marker(out)["config"]["ensemble"] == {
            "teacher": k + 1, "num_teachers": 2, "init_seed": k + 1, "fused": True,
            "fused_forward": "vmap",
        }  # fmt: skip
        model, info = load_model(out, "cpu")
        doc = json.loads((out / "train.json").read_text())
        assert info.dev_frame_acc == doc["best_dev_frame_acc"] > 0.8  # chance: 1/8
        assert doc["fused"]["teachers"] == ["t1", "t2"] and len(doc["epochs"]) == 3
        assert "t1 epoch 3" in (out / "log" / "train.log").read_text()
        assert load_teacher(out, device="cpu").num_senones == 8
    # a rerun skips; another configuration is refused
    stamp = (outs[0] / "model.pt").stat().st_mtime_ns
    train_fused(*data, outs, toy_config(), [1, 2], device="cpu")
    assert (outs[0] / "model.pt").stat().st_mtime_ns == stamp
    with pytest.raises(Exception, match="another configuration"):
        train_fused(*data, outs, toy_config(lr=0.2), [1, 2], device="cpu")


class Kill(RuntimeError):
    pass


def test_killed_fused_training_resumes_to_identical_weights(data, tmp_path):
    config = toy_config(**CONFIG, checkpoint_interval=5)
    whole = [tmp_path / "w1", tmp_path / "w2"]
    train_fused(*data, whole, config, [3, 7], forward="loop", device="cpu")

    def kill(step, info):
        if step == 13:
            raise Kill

    parts = [tmp_path / "p1", tmp_path / "p2"]
    with pytest.raises(Kill):
        train_fused(*data, parts, config, [3, 7], forward="loop", device="cpu", callbacks=[kill])
    assert (tmp_path / "p1-p2.fused.work" / "checkpoints" / "step-10.pt").is_file()
    train_fused(*data, parts, config, [3, 7], forward="loop", device="cpu")
    assert "resumed from step-10.pt" in (parts[0] / "log" / "train.log").read_text()
    for a, b in zip(whole, parts, strict=True):
        assert state_dicts_equal(_weights(a), _weights(b))


def test_batch_norm_models_train_fused_in_loop_mode(data, tmp_path):
    tdnn = {"arch": "tdnn", "preset": "tiny", "options": {"hidden_dim": 16}}
    config = toy_config(model=tdnn, max_epochs=1)
    with pytest.raises(ConfigError, match="vmap needs a model without buffers"):
        train_fused(*data, [tmp_path / "v1", tmp_path / "v2"], config, [1, 2], device="cpu")
    fused = train_fused(*data, [tmp_path / "f1", tmp_path / "f2"], config, [1, 2],
                        forward="loop", device="cpu")  # fmt: skip
    ens = EnsembleConfig(num_teachers=2)
    separate = train_ensemble(*data, tmp_path / "sep", ens, config, device="cpu")
    for a, b in zip(separate, fused, strict=True):
        assert state_dicts_equal(_weights(a), _weights(b))  # running statistics included


def test_ensemble_config_is_checked():
    assert EnsembleConfig(num_teachers=3).init_seeds() == [1, 2, 3]
    with pytest.raises(ValueError, match="2 seeds for 3 teachers"):
        EnsembleConfig(num_teachers=3, seeds=(1, 2))
    with pytest.raises(ValueError, match="seeds must differ"):
        EnsembleConfig(num_teachers=2, seeds=(5, 5))
    archs = ({"arch": "dnn"}, {"arch": "tdnn"})
    assert EnsembleConfig(num_teachers=2, architectures=archs).architectures == archs
    with pytest.raises(ValueError, match="fused training needs one architecture"):
        EnsembleConfig(num_teachers=2, architectures=archs, fused=True)
    with pytest.raises(ValueError, match="1 architectures for 2 teachers"):
        EnsembleConfig(num_teachers=2, architectures=({"arch": "dnn"},))


def test_teachers_trained_at_once_are_those_of_one_thread_trainings(data, tmp_path):
    """--num-jobs 2: two worker processes of one thread each, the same teachers bit for
    bit as one-thread trainings one after another, each an ordinary finished output."""
    ens = EnsembleConfig(num_teachers=2, seeds=(3, 7))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = train_ensemble(*data, tmp_path / "serial", ens, toy_config(**CONFIG), device="cpu")
    finally:
        torch.set_num_threads(threads)
    at_once = train_ensemble(*data, tmp_path / "at_once", ens, toy_config(**CONFIG),
                             device="cpu", num_jobs=2)  # fmt: skip
    assert [p.name for p in at_once] == ["teacher1", "teacher2"]
    for k, (a, b) in enumerate(zip(serial, at_once, strict=True)):
        assert state_dicts_equal(_weights(a), _weights(b))
        assert is_done(b) and read_marker(b)["stage"] == STAGE
        assert read_marker(b)["config"]["ensemble"]["init_seed"] == (3, 7)[k]
    assert not list((tmp_path / "at_once").glob("*.tmp-*"))


def test_a_teacher_that_fails_at_once_names_its_error(data, tmp_path):
    ens = EnsembleConfig(num_teachers=2, seeds=(3, 7))
    with pytest.raises(Exception, match="no_such_split"):
        train_ensemble(*data, tmp_path, ens, toy_config(**CONFIG), device="cpu", num_jobs=2,
                       dev_split="no_such_split")  # fmt: skip
    assert not list(tmp_path.glob("teacher*/.done.json"))
