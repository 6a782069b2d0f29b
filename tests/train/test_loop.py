"""The training stage end to end on the toy task, with the stand-in model."""

from __future__ import annotations

import json
import math

import pytest
import torch
from train_toy import Kill, kill_at, make_toy_data, state_dicts_equal, toy_builder, toy_train_config

from asr_kd.errors import AsrKdError, BadInputError
from asr_kd.stage import is_done
from asr_kd.train import (
    NonFiniteLossError,
    evaluate_frame_accuracy,
    frame_accuracy,
    load_model,
    log_posteriors,
    train_model,
)
from asr_kd.train.checkpoint import load_file
from asr_kd.train.dataset import EpochBatches, load_split, make_sampler

_config = toy_train_config


def test_learns_the_toy_task_and_writes_the_contract(toy_data, tmp_path):
    data_dir, feature_dir = toy_data
    out = tmp_path / "exp"
    train_model(data_dir, feature_dir, out, _config(max_epochs=4), builder=toy_builder)

    assert is_done(out) and not (tmp_path / "exp.work").exists()
    doc = json.loads((out / "train.json").read_text())
    epochs = doc["epochs"]
    assert len(epochs) == 4 and doc["stop_reason"] == "max_epochs"
    assert epochs[-1]["train_loss"] < 0.5 * epochs[0]["train_loss"]
    assert epochs[-1]["train_frame_acc"] > epochs[0]["train_frame_acc"]
    assert max(e["dev_frame_acc"] for e in epochs) > 0.9  # chance is 1/8
    best = max(range(4), key=lambda i: epochs[i]["dev_frame_acc"])
    assert doc["best_epoch"] == best + 1 and doc["params"] == 8 * 32 + 6 * 32 + 32 + 8
    assert all(e["frames_per_second"] > 0 and e["lr"] == 0.1 for e in epochs)
    names = {p.name for p in (out / "checkpoints").iterdir()}
    assert names == {"epoch-1.pt", "epoch-2.pt", "epoch-3.pt", "epoch-4.pt", "best.pt"}
    assert (out / "log" / "train.log").read_text().count("dev frame acc") >= 4
    assert list((out / "log" / "tensorboard").glob("events.out.tfevents.*"))

    saved = load_file(out / "model.pt")
    assert saved["num_senones"] == 8 and saved["tree_id"] == "toytree00000000"
    assert saved["feat_dim"] == 6 and saved["frame_shift"] == 0.01
    assert saved["best_epoch"] == best + 1 and saved["train_config"]["lr"] == 0.1
    best_ckpt = load_file(out / "checkpoints" / "best.pt")
    assert state_dicts_equal(saved["state_dict"], best_ckpt["model"])

    # The model file alone reproduces the dev accuracy it reports.
    model, info = load_model(out, "cpu", builder=toy_builder)
    dev = load_split(data_dir, "dev")
    acc = frame_accuracy(model, dev, info.normalizer, info.num_senones)
    assert acc == pytest.approx(info.dev_frame_acc, abs=1e-9)
    cut = next(iter(dev))
    logp = log_posteriors(model, cut, info.normalizer)
    assert logp.shape == (cut.num_frames, 8) and logp.dtype == torch.float32
    assert torch.allclose(logp.exp().sum(-1), torch.ones(cut.num_frames), atol=1e-5)
    result = evaluate_frame_accuracy(out, data_dir, "dev", "cpu", builder=toy_builder)
    assert result["frame_acc"] == pytest.approx(acc)

    # A rerun with the same settings skips; another configuration is refused.
    stamp = (out / "model.pt").stat().st_mtime_ns
    train_model(data_dir, feature_dir, out, _config(max_epochs=4), builder=toy_builder)
    assert (out / "model.pt").stat().st_mtime_ns == stamp
    with pytest.raises(AsrKdError, match="another configuration"):
        train_model(data_dir, feature_dir, out, _config(max_epochs=5), builder=toy_builder)


@pytest.mark.parametrize("kill_step", [6, 14])
def test_killed_training_resumes_to_bitwise_identical_weights(toy_data, tmp_path, kill_step):
    data_dir, feature_dir = toy_data
    # Dropout makes the result depend on the restored RNG state; one worker process
    # on the loader checks that prefetching does not move the resume point.
    config = _config(
        max_epochs=2, checkpoint_interval=4, num_workers=1,
        model={"arch": "toy", "options": {"hidden": 32, "dropout": 0.2}},
    )  # fmt: skip
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train_model(data_dir, feature_dir, whole, config, builder=toy_builder)

    with pytest.raises(Kill):
        train_model(data_dir, feature_dir, parts, config, builder=toy_builder,
                    callbacks=[kill_at(kill_step)])  # fmt: skip
    work = tmp_path / "parts.work"
    assert not parts.exists() and (work / "checkpoints" / "resume.json").is_file()
    train_model(data_dir, feature_dir, parts, config, builder=toy_builder)

    assert "resumed from step-" in (parts / "log" / "train.log").read_text()
    for name in ("epoch-1.pt", "epoch-2.pt"):
        a, b = load_file(whole / "checkpoints" / name), load_file(parts / "checkpoints" / name)
        assert state_dicts_equal(a["model"], b["model"])
        assert state_dicts_equal(a["optimizer"], b["optimizer"])
        assert a["state"]["step"] == b["state"]["step"]
    model_a, model_b = load_file(whole / "model.pt"), load_file(parts / "model.pt")
    assert state_dicts_equal(model_a["state_dict"], model_b["state_dict"])
    timing = ("seconds", "dev_seconds", "frames_per_second")
    ea, eb = (json.loads((d / "train.json").read_text())["epochs"] for d in (whole, parts))
    assert [{k: v for k, v in e.items() if k not in timing} for e in ea] == [
        {k: v for k, v in e.items() if k not in timing} for e in eb
    ]


def test_unfinished_training_with_other_settings_is_refused(toy_data, tmp_path):
    data_dir, feature_dir = toy_data
    out = tmp_path / "exp"
    config = _config(checkpoint_interval=2)
    with pytest.raises(Kill):
        train_model(data_dir, feature_dir, out, config, builder=toy_builder,
                    callbacks=[kill_at(3)])  # fmt: skip
    with pytest.raises(AsrKdError, match=r"unfinished training with different options \(train\)"):
        train_model(data_dir, feature_dir, out, _config(lr=0.05), builder=toy_builder)
    train_model(data_dir, feature_dir, out, _config(lr=0.05, max_epochs=1), builder=toy_builder,
                force=True)  # fmt: skip
    assert "resumed" not in (out / "log" / "train.log").read_text()
    assert json.loads((out / "train.json").read_text())["epochs"][0]["lr"] == 0.05


def test_nan_loss_stops_naming_the_cuts_and_writes_no_nan_checkpoint(toy_data, tmp_path):
    # Poison a cut of the 4th batch (the same cuts as toy_data, one with NaN features).
    batches = EpochBatches(make_sampler(load_split(toy_data[0], "train"), 3.0, True, seed=0))
    batches.start(0)
    bad = list(batches)[3][0].id
    data_dir, feature_dir = make_toy_data(tmp_path / "data", nan_cut=bad)
    out = tmp_path / "exp"
    with pytest.raises(NonFiniteLossError, match=rf"non-finite loss at step 4 .*{bad}"):
        train_model(data_dir, feature_dir, out, _config(checkpoint_interval=1),
                    builder=toy_builder)  # fmt: skip
    assert not out.exists()
    checkpoints = list((tmp_path / "exp.work" / "checkpoints").glob("*.pt"))
    assert checkpoints  # the steps before the bad batch were checkpointed
    for path in checkpoints:
        weights = load_file(path)["model"]
        assert all(bool(torch.isfinite(t).all()) for t in weights.values())


def test_frame_count_mismatch_is_refused_naming_cut_and_stage(tmp_path):
    data_dir, feature_dir = make_toy_data(tmp_path / "data", short_targets="train-004")
    with pytest.raises(BadInputError, match=r"train-004.*senone-targets"):
        train_model(data_dir, feature_dir, tmp_path / "exp", _config(), builder=toy_builder)
    assert not (tmp_path / "exp").exists() and not (tmp_path / "exp.work").exists()


def test_senone_ids_beyond_the_inventory_are_refused(tmp_path):
    data_dir, feature_dir = make_toy_data(tmp_path / "data", bad_senone_cut="train-002")
    with pytest.raises(BadInputError, match=r"train-002.*outside 0\.\.7.*another tree"):
        train_model(data_dir, feature_dir, tmp_path / "exp", _config(), builder=toy_builder)


def test_model_and_data_senone_inventories_must_match(toy_data, tmp_path):
    data_dir, feature_dir = toy_data
    wrong = _config(model={"arch": "toy", "options": {"force_outputs": 9}})
    with pytest.raises(BadInputError, match="outputs 9 classes but the targets have 8"):
        train_model(data_dir, feature_dir, tmp_path / "exp", wrong, builder=toy_builder)
    # failed before its first checkpoint: no exp/ and no exp.work/ left to refuse a rerun
    assert not (tmp_path / "exp").exists() and not (tmp_path / "exp.work").exists()
    train_model(data_dir, feature_dir, tmp_path / "exp", _config(max_epochs=1, lr=0.05),
                builder=toy_builder)  # fmt: skip
    assert is_done(tmp_path / "exp")

    out = tmp_path / "ok"
    train_model(data_dir, feature_dir, out, _config(max_epochs=1), builder=toy_builder)
    other, _ = make_toy_data(tmp_path / "other", num_senones=12, tree_id="othertree")
    with pytest.raises(BadInputError, match=r"8 senones of tree toytree.*12 senones of tree"):
        evaluate_frame_accuracy(out, other, "dev", "cpu", builder=toy_builder)


def test_max_steps_and_early_stopping(toy_data, tmp_path):
    data_dir, feature_dir = toy_data
    train_model(data_dir, feature_dir, tmp_path / "a", _config(max_steps=5), builder=toy_builder)
    doc = json.loads((tmp_path / "a" / "train.json").read_text())
    assert doc["stop_reason"] == "max_steps" and doc["total_steps"] == 5

    # A learning rate of ~0 never improves on the first epoch: patience 2 stops at 3.
    config = _config(lr=1e-12, max_epochs=10, patience=2, schedule="constant")
    train_model(data_dir, feature_dir, tmp_path / "b", config, builder=toy_builder)
    doc = json.loads((tmp_path / "b" / "train.json").read_text())
    assert doc["stop_reason"] == "early_stopping" and len(doc["epochs"]) == 3
    assert doc["best_epoch"] == 1 and not math.isnan(doc["best_dev_frame_acc"])
