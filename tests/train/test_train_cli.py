"""``asr-kd train`` and ``asr-kd eval-frame-acc`` with a registry model (dnn, tiny)."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner

from asr_kd.cli.train import eval_frame_acc, train
from asr_kd.train import load_model, log_posteriors
from asr_kd.train.dataset import load_split


def test_train_and_eval_commands(toy_data, tmp_path):
    data_dir, feature_dir = toy_data
    conf = tmp_path / "conf.yaml"
    conf.write_text(
        "teacher:\n"
        "  model: {arch: dnn, preset: tiny, options: {hidden_dim: 64}}\n"
        "  max_duration: 3.0\n  num_workers: 0\n  lr: 0.05\n"
    )
    out = tmp_path / "teacher"
    args = [str(data_dir), str(feature_dir), str(out), "--config", str(conf)]
    result = CliRunner().invoke(
        train, [*args, "--section", "teacher", "--set", "max_epochs=3", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "train.json").read_text())
    assert len(doc["epochs"]) == 3 and doc["best_dev_frame_acc"] > 0.5  # chance: 1/8
    assert doc["flops_per_frame"] > 0

    model, info = load_model(out, "cpu")
    assert info.spec == {"arch": "dnn", "preset": "tiny", "options": {"hidden_dim": 64}}
    assert info.model_config["hidden_dim"] == 64 and info.model_config["num_layers"] == 2
    cut = next(iter(load_split(data_dir, "dev")))
    logp = log_posteriors(model, cut, info.normalizer)
    assert logp.shape == (cut.num_frames, 8) and torch.isfinite(logp).all()

    report = tmp_path / "acc.json"
    result = CliRunner().invoke(
        eval_frame_acc, [str(out), str(data_dir), "--device", "cpu", "--out", str(report)]
    )
    assert result.exit_code == 0, result.output
    acc = json.loads(report.read_text())["frame_acc"]
    assert abs(acc - doc["best_dev_frame_acc"]) < 1e-9
    assert f"{100 * acc:.2f}%" in result.output
