"""TrainConfig from YAML, the optimisers and the learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch

from asr_kd.config import load_section, to_dict
from asr_kd.errors import ConfigError
from asr_kd.train.config import LrSchedule, TrainConfig, make_optimizer, resolve_amp


def test_section_from_yaml_with_overrides(tmp_path):
    path = tmp_path / "conf.yaml"
    path.write_text(
        "teacher:\n"
        "  model: {arch: dnn, preset: tiny, options: {dropout: 0.1}}\n"
        "  optimizer: adamw\n"
        "  lr: 0.001\n"
        "  schedule: cosine\n"
    )
    config = load_section(path, "teacher", TrainConfig, ["max_epochs=3", "teacher.seed=7"])
    assert config.model == {"arch": "dnn", "preset": "tiny", "options": {"dropout": 0.1}}
    assert (config.optimizer, config.lr, config.max_epochs, config.seed) == ("adamw", 0.001, 3, 7)
    assert to_dict(config)["model"]["preset"] == "tiny"
    assert TrainConfig().model == {"arch": "dnn", "preset": "small", "options": {}}


@pytest.mark.parametrize(
    "override, message",
    [
        ("optimizer=lbfgs", "optimizer must be one of sgd, adam, adamw"),
        ("schedule=step", "schedule must be one of newbob, newbob_ce, cosine, constant"),
        ("select=best", "select must be one of dev_acc, dev_ce, last"),
        ("data_path=cuts", "data_path must be one of utterances, frames"),
        ("newbob_stop=0.1", "need 0 <= newbob_stop <= newbob_start"),
        ("frame_batch_size=0", "frame_batch_size must be at least 1"),
        ("lr=-0.1", "lr must not be negative"),
        ("amp=fp16", "amp must be one of auto, bf16, off"),
        ("train_fraction=0", r"train_fraction must be in \(0, 1\]"),
        ("model={preset: tiny}", "model must be a mapping with 'arch'"),
        ("learning_rate=0.1", "unknown option.*learning_rate"),
        ("max_duration=0", "max_duration must be positive"),
    ],
)
def test_bad_values_are_refused_by_name(override, message):
    with pytest.raises(ConfigError, match=message):
        load_section(None, "train", TrainConfig, [override])


def _schedule(**changes) -> tuple[LrSchedule, torch.optim.Optimizer]:
    config = TrainConfig(**changes)
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(2))], config)
    return LrSchedule(config, opt, total_steps=100), opt


def test_newbob_halves_once_dev_accuracy_stalls_then_every_epoch():
    sched, opt = _schedule(lr=0.1, schedule="newbob", newbob_threshold=0.01)
    accs, best, lrs = [0.50, 0.60, 0.605, 0.70, 0.71], None, []
    for acc in accs:
        sched.end_epoch(acc, best)
        best = acc if best is None else max(best, acc)
        lrs.append(sched.apply(0))
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.025, 0.0125])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0125)
    restored, _ = _schedule(lr=0.1, schedule="newbob")
    restored.load_state_dict(sched.state_dict())
    assert restored.lr(5) == sched.lr(5)


def test_newbob_on_dev_ce_halves_then_stops_where_kaldi_does():
    """Kaldi nnet1's train_scheduler.sh on a toy dev cross-entropy curve: halving starts
    once the relative improvement is under newbob_start (1%), training stops once it is
    then under newbob_stop (0.1%); a worse epoch counts as no improvement."""
    sched, _ = _schedule(lr=0.1, schedule="newbob_ce", newbob_start=0.01, newbob_stop=0.001)
    ces = [2.0, 1.5, 1.3, 1.295, 1.30, 1.2899, 1.2898, 1.0]
    best, lrs, stop = None, [], None
    for epoch, ce in enumerate(ces, 1):
        if sched.end_epoch(0.5, 0.5, ce, best):
            stop = epoch
            break
        best = ce if best is None else min(best, ce)
        lrs.append(sched.apply(0))
    # 1.3 -> 1.295 gains 0.38% < 1%: halving from epoch 4 on; epoch 5 is worse (no gain)
    # while halving: converged, stop (the later, better epochs are never reached).
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.05]) and stop == 5

    sched, _ = _schedule(lr=0.1, schedule="newbob_ce", newbob_start=0.01, newbob_stop=0.001)
    ces, best, lrs, stop = [2.0, 1.98, 1.97, 1.968, 1.9679], None, [], None
    for epoch, ce in enumerate(ces, 1):
        if sched.end_epoch(0.5, None, ce, best):
            stop = epoch
            break
        best = ce if best is None else min(best, ce)
        lrs.append(sched.apply(0))
    # gains: 1% (not under 1%), 0.51% (halve), 0.10% (>= 0.1%: halve again), 0.005% (stop)
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.025]) and stop == 5
    with pytest.raises(ValueError, match="newbob_ce needs the dev cross-entropy"):
        sched.end_epoch(0.5, None)


def test_warmup_and_cosine():
    sched, _ = _schedule(lr=0.1, schedule="cosine", warmup_steps=10, min_lr=0.001)
    assert sched.lr(0) == pytest.approx(0.1 / 10)  # warm-up 1/10 of the cosine's start
    assert sched.lr(50) == pytest.approx(0.001 + 0.5 * 0.099 * (1 + math.cos(math.pi / 2)))
    assert sched.lr(100) == pytest.approx(0.001) and sched.lr(500) == pytest.approx(0.001)
    constant, _ = _schedule(lr=0.1, schedule="constant", warmup_steps=4)
    assert [constant.lr(s) for s in range(6)] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])


def test_optimizers_and_amp():
    p = [torch.nn.Parameter(torch.zeros(1))]
    sgd = make_optimizer(p, TrainConfig(momentum=0.9, nesterov=True))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"]
    assert isinstance(make_optimizer(p, TrainConfig(optimizer="adam")), torch.optim.Adam)
    assert isinstance(make_optimizer(p, TrainConfig(optimizer="adamw")), torch.optim.AdamW)
    assert resolve_amp("auto", torch.device("cpu")) is None
    assert resolve_amp("auto", torch.device("cuda", 0)) is torch.bfloat16
    assert resolve_amp("bf16", torch.device("cpu")) is torch.bfloat16
    assert resolve_amp("off", torch.device("cuda", 0)) is None
