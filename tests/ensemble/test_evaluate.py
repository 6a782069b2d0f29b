"""Ensemble teachers, their specs, frame-accuracy evaluation and the ensemble commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import train_toy as toy
import yaml
from click.testing import CliRunner
from teacher_toy import NUM_SENONES, TREE_ID, toy_data, toy_teachers

from asr_kd.cli.ensemble import eval_ensemble, train_ensemble
from asr_kd.ensemble import Combo, evaluate_systems, load_systems
from asr_kd.errors import BadInputError, ConfigError
from asr_kd.teachers import EnsembleTeacher, combine_log_probs, load, parse_ensemble_spec
from asr_kd.train import load_model
from asr_kd.train.dataset import load_split


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return toy_data(tmp_path_factory)


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    return toy_teachers(tmp_path_factory)


def test_ensemble_frame_accuracy_beats_the_mean_teacher(data, teachers, tmp_path):
    loaded = {t.name: load(t, device="cpu") for t in teachers}
    combos = ["arithmetic", "geometric", Combo("arithmetic", ("teacher1", "teacher2"), (3, 1))]
    out = tmp_path / "ens" / "frame_acc.json"
    result = evaluate_systems(loaded, data[0], ["dev"], combos, out, max_duration=2.0)
    assert json.loads(out.read_text()) == result
    dev = result["splits"]["dev"]
    systems = dev["systems"]
    weighted = "ensemble_arithmetic_teacher1+teacher2_w3:1"
    assert list(systems) == ["teacher1", "teacher2", "teacher3", "ensemble_arithmetic",
                             "ensemble_geometric", weighted]  # fmt: skip
    # every teacher scores what its training recorded (another batching, same frames)
    for t in teachers:
        _, info = load_model(t)
        assert systems[t.name]["frame_acc"] == pytest.approx(info.dev_frame_acc, abs=1e-9)
    accs = [systems[n]["frame_acc"] for n in loaded]
    assert dev["mean_teacher_frame_acc"] == pytest.approx(np.mean(accs))
    assert dev["frames"] == sum(c.num_frames for c in load_split(data[0], "dev"))
    for method in ("arithmetic", "geometric"):
        assert systems[f"ensemble_{method}"]["frame_acc"] >= np.mean(accs)
    # the mixture's cross-entropy is at most the teachers' mean (Jensen), geometric too here
    mean_ce = np.mean([systems[n]["ce"] for n in loaded])
    assert systems["ensemble_arithmetic"]["ce"] <= mean_ce
    assert result["combos"]["ensemble_arithmetic"]["weights"] == pytest.approx([1 / 3] * 3)


def test_weighted_combo_is_scored_under_its_own_name(data, teachers):
    loaded = {t.name: load(t, device="cpu") for t in teachers[:2]}
    combo = Combo("arithmetic", ("teacher1", "teacher2"), (1, 0), name="only_t1")
    result = evaluate_systems(loaded, data[0], ["dev"], [combo])
    systems = result["splits"]["dev"]["systems"]
    assert systems["only_t1"]["frame_acc"] == systems["teacher1"]["frame_acc"]
    assert result["combos"]["only_t1"]["weights"] == [1.0, 0.0]
    with pytest.raises(ConfigError, match="no teacher named teacher9"):
        evaluate_systems(loaded, data[0], ["dev"], [Combo(members=("teacher9",))])
    with pytest.raises(ConfigError, match="names used twice: teacher1"):
        evaluate_systems(loaded, data[0], ["dev"], [Combo(name="teacher1")])


def test_ensemble_spec_is_a_teacher_that_combines_its_members(teachers, data):
    spec = f"ensemble:{teachers[0]},{teachers[1]}/model.pt,{teachers[2]}:geometric"
    assert parse_ensemble_spec(spec) == (
        [str(teachers[0]), f"{teachers[1]}/model.pt", str(teachers[2])],
        "geometric",
    )
    ens = load(spec, TREE_ID, NUM_SENONES, 0.01, device="cpu")
    assert isinstance(ens, EnsembleTeacher) and ens.method == "geometric"
    cut = next(iter(load_split(data[0], "dev")))
    members = [load(t, device="cpu") for t in teachers]
    for temperature in (1.0, 2.0):
        stacked = torch.stack([torch.from_numpy(m.log_probs(cut, temperature)) for m in members])
        expected = combine_log_probs(stacked, "geometric").numpy()
        got = ens.log_probs(cut, temperature)
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert np.allclose(np.exp(got).sum(-1), 1.0, atol=1e-5)
    assert load(f"ensemble:{teachers[0]},{teachers[1]}").method == "arithmetic"
    with pytest.raises(ConfigError, match="names no members"):
        load("ensemble::geometric")
    with pytest.raises(ConfigError, match="unknown combination 'harmonic'; .* arithmetic or geo"):
        parse_ensemble_spec(f"ensemble:{teachers[0]},{teachers[1]}:harmonic")


def test_ensemble_file_with_weights_and_refusals(teachers, tmp_path):
    conf = tmp_path / "ens.yaml"
    conf.write_text(yaml.safe_dump({
        "kind": "ensemble", "name": "big", "method": "arithmetic", "weights": [2, 1],
        "members": [str(teachers[0] / "model.pt"), str(teachers[1])],
    }))  # fmt: skip
    ens = load(conf, device="cpu")
    assert ens.name == "big" and ens.weights == pytest.approx([2 / 3, 1 / 3])
    with pytest.raises(BadInputError, match="tree othertree"):
        load(conf, "othertree", device="cpu")
    # a member of another tree is refused when the ensemble is built
    other = {"posteriors": str(tmp_path), "tree_id": "othertree", "num_senones": NUM_SENONES}
    with pytest.raises(
        BadInputError, match=f"tree othertree but ensemble member .* tree {TREE_ID}"
    ):
        EnsembleTeacher([load(teachers[0], device="cpu"), load(other)])
    with pytest.raises(ConfigError, match="weights"):
        EnsembleTeacher([load(teachers[0], device="cpu")], weights=[1, 2])


def test_eval_ensemble_command(data, teachers, tmp_path):
    out = tmp_path / "acc.json"
    args = [str(data[0]), str(teachers[0]), f"second={teachers[1]}/model.pt", "--split", "dev",
            "--device", "cpu", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(eval_ensemble, args)
    assert result.exit_code == 0, result.output
    systems = json.loads(out.read_text())["splits"]["dev"]["systems"]
    assert set(systems) == {"teacher1", "second", "ensemble_arithmetic", "ensemble_geometric"}
    line = next(x for x in result.output.splitlines() if x.startswith("ensemble_arithmetic"))
    assert f"{100 * systems['ensemble_arithmetic']['frame_acc']:.2f}" in line


def test_train_ensemble_command_fused(data, tmp_path):
    conf = tmp_path / "conf.yaml"
    conf.write_text(
        "ensemble:\n  num_teachers: 3\n  fused: true\n"
        "teacher:\n  model: {arch: dnn, preset: tiny, options: {hidden_dim: 16}}\n"
        "  max_duration: 3.0\n  num_workers: 0\n  max_epochs: 2\n"
    )
    exp = tmp_path / "exp"
    args = [str(data[0]), str(data[1]), str(exp), "--config", str(conf), "--device", "cpu",
            "--set", "ensemble.num_teachers=2", "--set", "lr=0.2"]  # fmt: skip
    result = CliRunner().invoke(train_ensemble, args)
    assert result.exit_code == 0, result.output
    for k in (1, 2):
        _, info = load_model(exp / f"teacher{k}")
        assert info.train_config["lr"] == 0.2 and info.model_config["hidden_dim"] == 16
    assert not (exp / "teacher3").exists()


def _eval(args):
    from asr_kd.cli.main import cli

    return CliRunner().invoke(cli, ["eval-ensemble", *args, "--split", "dev", "--device", "cpu"])


def test_an_ensemble_spec_is_scored_as_a_combination_of_its_members(data, teachers, tmp_path):
    out = tmp_path / "acc.json"
    spec = f"ensemble:{teachers[0]},{teachers[1]}:geometric"
    result = _eval([str(data[0]), spec, "--out", str(out)])
    assert result.exit_code == 0, result.output
    systems = json.loads(out.read_text())["splits"]["dev"]["systems"]
    # its members as teachers, the ensemble as what it is (no teacher named "ensemble")
    assert list(systems) == ["teacher1", "teacher2", "ensemble_geometric", "ensemble_arithmetic"]
    loaded = {t.name: load(t, device="cpu") for t in teachers[:2]}
    direct = evaluate_systems(loaded, data[0], ["dev"])["splits"]["dev"]["systems"]
    for name in systems:
        assert systems[name] == pytest.approx(direct[name], abs=1e-9)
    assert systems["ensemble_arithmetic"]["ce"] != systems["ensemble_geometric"]["ce"]
    # named, weighted, and sharing a member with a teacher given on its own
    conf = tmp_path / "ens.yaml"
    conf.write_text(yaml.safe_dump({"kind": "ensemble", "weights": [3, 1],
                                    "members": [str(teachers[0]), str(teachers[2])]}))  # fmt: skip
    teachers_, combos = load_systems([str(teachers[0]), f"big={conf}"], device="cpu")
    assert list(teachers_) == ["teacher1", "teacher3"]
    assert combos == [Combo("arithmetic", ("teacher1", "teacher3"), (0.75, 0.25), "big")]


def test_eval_ensemble_names_nan_features_or_weights_and_writes_nothing(data, teachers, tmp_path):
    bad_data, _ = toy.make_toy_data(tmp_path / "nan", num_train=2, num_dev=3, nan_cut="dev-001")
    out, out_dir = tmp_path / "acc.json", tmp_path / "eval"
    result = _eval([str(bad_data), str(teachers[0]), "--out", str(out), "--out-dir", str(out_dir)])
    assert result.exit_code == 1 and "eval-ensemble" in result.output
    assert "cut dev-001: its features hold NaN" in result.output
    assert not out.exists() and not out_dir.exists()
    # a diverged teacher: NaN weights, named by its model.pt
    doc = torch.load(teachers[1] / "model.pt", map_location="cpu", weights_only=False)
    next(v for v in doc["state_dict"].values() if v.is_floating_point())[0] = float("nan")
    (tmp_path / "diverged").mkdir()
    torch.save(doc, tmp_path / "diverged" / "model.pt")
    result = _eval([str(data[0]), str(teachers[0]), str(tmp_path / "diverged"), "--out", str(out)])
    assert result.exit_code == 1 and "eval-ensemble" in result.output
    assert f"{tmp_path}/diverged/model.pt" in result.output and "NaN or Inf" in result.output
    assert not out.exists()


def test_a_plug_in_module_that_raises_while_importing_is_one_error(data, tmp_path, monkeypatch):
    (tmp_path / "broken_teacher_mod.py").write_text("raise RuntimeError('no GPU driver')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    conf = tmp_path / "mine.yaml"
    conf.write_text(yaml.safe_dump({"class": "broken_teacher_mod:Net", "checkpoint": "x.pt",
                                    "tree_id": TREE_ID, "num_senones": NUM_SENONES,
                                    "feature_stats": None}))  # fmt: skip
    out = tmp_path / "acc.json"
    result = _eval([str(data[0]), str(conf), "--out", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("asr-kd eval-ensemble: error: ")  # the stage
    assert f"teacher {conf}" in line and "broken_teacher_mod" in line  # the file, the module
    assert "RuntimeError: no GPU driver" in line
    assert not out.exists()
