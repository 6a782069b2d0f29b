"""One trainer for N models, and training to convergence, on the toy task."""

from __future__ import annotations

import json

import pytest
import torch
from train_toy import state_dicts_equal, toy_builder, toy_train_config

from asr_kd.ensemble import seeded_builder
from asr_kd.train import frame_scores, load_model, train_model, train_models
from asr_kd.train.checkpoint import load_file, registry_builder
from asr_kd.train.dataset import load_split

TIMING = ("seconds", "dev_seconds", "frames_per_second")
# Dropout on (each model's RNG stream must match a separate run's) and a newbob
# threshold at which the two models' learning rates part ways.
GROUP = dict(
    model={"arch": "toy", "options": {"hidden": 32, "dropout": 0.2}},
    newbob_threshold=0.02, patience=2, max_epochs=4,
)  # fmt: skip


def _doc(out) -> dict:
    return json.loads((out / "train.json").read_text())


def _epochs(out) -> list[dict]:
    return [{k: v for k, v in e.items() if k not in TIMING} for e in _doc(out)["epochs"]]


@pytest.fixture(scope="module")
def separate(toy_data, tmp_path_factory):
    """Two models (init seeds 3 and 7) trained one after the other with train_model."""
    root = tmp_path_factory.mktemp("separate")
    return [
        train_model(*toy_data, root / f"m{seed}", toy_train_config(**GROUP),
                    builder=seeded_builder(seed, toy_builder))
        for seed in (3, 7)
    ]  # fmt: skip


@pytest.mark.parametrize("forward", ["loop", "vmap"])
def test_a_group_of_two_trains_the_models_of_two_separate_trainings(
    toy_data, separate, tmp_path, forward
):
    builders = [seeded_builder(seed, toy_builder) for seed in (3, 7)]
    outs = train_models(*toy_data, [tmp_path / "a", tmp_path / "b"], toy_train_config(**GROUP),
                        builders, forward=forward)  # fmt: skip
    lrs = []
    for one, grouped in zip(separate, outs, strict=True):
        wa = load_file(one / "model.pt")["state_dict"]
        wb = load_file(grouped / "model.pt")["state_dict"]
        if forward == "loop":  # the same operations in the same order: bitwise
            assert state_dicts_equal(wa, wb)
            assert _epochs(one) == _epochs(grouped)
        else:  # vmap's batched weight gradient sums in another order: float rounding
            for k in wa:
                torch.testing.assert_close(wb[k], wa[k], rtol=1e-5, atol=1e-6)
        da, db = _doc(one), _doc(grouped)
        assert (da["best_epoch"], da["stop_reason"]) == (db["best_epoch"], db["stop_reason"])
        assert list((grouped / "log" / "tensorboard").glob("events.out.tfevents.*"))
        lrs.append([e["lr"] for e in da["epochs"]])
    assert lrs[0] != lrs[1]  # each model followed its own schedule


def test_newbob_on_dev_ce_trains_to_convergence_and_records_the_curves(toy_data, tmp_path):
    config = toy_train_config(schedule="newbob_ce", newbob_start=0.05, newbob_stop=0.01,
                              max_epochs=40, patience=0, select="dev_ce")  # fmt: skip
    out = train_model(*toy_data, tmp_path / "exp", config, builder=toy_builder)
    doc = _doc(out)
    epochs = doc["epochs"]
    assert doc["stop_reason"] == "converged" and doc["converged"] is True
    assert doc["num_epochs"] == len(epochs) < 40
    for e in epochs:
        assert 0 < e["train_frame_acc"] <= 1 and 0 < e["dev_frame_acc"] <= 1
        assert e["train_ce"] == pytest.approx(e["train_loss"]) and e["dev_ce"] > 0
    # The rate halves once the relative gain of dev CE is under 5%, every epoch after.
    ces = [e["dev_ce"] for e in epochs]
    gains = [(min(ces[:i]) - min(ces[: i + 1])) / min(ces[:i]) for i in range(1, len(ces))]
    first = next(n for n, g in enumerate(gains, 2) if g < 0.05)  # halving after this epoch
    for n, e in enumerate(epochs, 1):
        assert e["lr"] == pytest.approx(0.1 * 0.5 ** max(0, n - first))
    assert gains[-1] < 0.01 and all(g >= 0.01 for g in gains[first - 1 : -1])
    # select: dev_ce keeps the epoch of the lowest dev CE; model.pt reproduces its scores
    best = min(range(len(ces)), key=ces.__getitem__) + 1
    assert doc["best_epoch"] == best and doc["best_dev_ce"] == ces[best - 1]
    model, info = load_model(out, "cpu", builder=toy_builder)
    acc, ce = frame_scores(model, load_split(toy_data[0], "dev"), info.normalizer, 8, 3.0)
    assert acc == pytest.approx(doc["best_dev_frame_acc"], abs=1e-9)
    assert ce == pytest.approx(ces[best - 1], rel=1e-5)


def test_select_last_keeps_the_last_epoch(toy_data, tmp_path):
    config = toy_train_config(select="last", max_epochs=3, lr=0.3)
    out = train_model(*toy_data, tmp_path / "exp", config, builder=toy_builder)
    doc = _doc(out)
    assert doc["best_epoch"] == 3 and doc["stop_reason"] == "max_epochs"
    assert doc["converged"] is False and doc["select"] == "last"
    last = load_file(out / "checkpoints" / "epoch-3.pt")["model"]
    assert state_dicts_equal(load_file(out / "model.pt")["state_dict"], last)


def test_a_group_on_the_frame_path_trains_the_models_of_separate_trainings(toy_data, tmp_path):
    """Frame minibatches (``data_path: frames``) through the stacked (vmap) group."""
    dnn = {"arch": "dnn", "options": {"num_layers": 1, "hidden_dim": 32, "left_context": 1,
                                      "right_context": 1}}  # fmt: skip
    config = toy_train_config(model=dnn, max_epochs=2, data_path="frames", frame_batch_size=64)
    builders = [seeded_builder(seed, registry_builder) for seed in (3, 7)]
    outs = [tmp_path / "a", tmp_path / "b"]
    train_models(*toy_data, outs, config, builders, forward="vmap", device="cpu")
    for seed, grouped in zip((3, 7), outs, strict=True):
        one = train_model(*toy_data, tmp_path / f"one{seed}", config, device="cpu",
                          builder=seeded_builder(seed, registry_builder))  # fmt: skip
        wa = load_file(one / "model.pt")["state_dict"]
        wb = load_file(grouped / "model.pt")["state_dict"]
        for k in wa:
            torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5)
        assert _doc(grouped)["best_dev_frame_acc"] > 0.9  # chance: 1/8
    assert not state_dicts_equal(*(load_file(o / "model.pt")["state_dict"] for o in outs))
