"""The report on fabricated experiment directories: schema, arithmetic, sources, plots."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import train_toy
from click.testing import CliRunner

from asr_kd.report import gain_kept, report
from asr_kd.stage import read_marker
from asr_kd.train.checkpoint import ModelInfo, save_model


def _write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def _decode(d: Path, split: str, wer: float, lm: float = 10.0, given: bool = False, sweep=()):
    _write(d / f"decode_{split}" / "wer.json", {
        "wer": wer, "lm_weight": lm, "word_ins_penalty": 0.0, "rtf": 0.02,
        "selected_by": "given" if given else "best_on_this_set",
        "sweep": [{"lm_weight": a, "word_ins_penalty": 0.0, "wer": w} for a, w in sweep],
    })  # fmt: skip


def _curve(d: Path, params: int, accs: list[float]) -> None:
    epochs = [{"epoch": i + 1, "dev_frame_acc": a, "train_frame_acc": a + 0.05,
               "train_loss": 2.0 - a} for i, a in enumerate(accs)]  # fmt: skip
    _write(d / "train.json", {"params": params, "epochs": epochs})


def _model(d: Path, dev_acc: float) -> int:
    """A real (tiny) model.pt; returns its parameter count."""
    from asr_kd.models import ModelSpec, build_model

    spec = ModelSpec("dnn", options={"num_layers": 1, "hidden_dim": 4, "left_context": 0,
                                     "right_context": 0})  # fmt: skip
    model = build_model(spec, 3, 5)
    info = ModelInfo(spec=spec.to_dict(), model_config={}, feat_dim=3, num_senones=5,
                     tree_id="t", frame_shift=0.01, feature_mean=[0.0] * 3,
                     feature_var=[1.0] * 3, dev_frame_acc=dev_acc)  # fmt: skip
    d.mkdir(parents=True, exist_ok=True)
    save_model(d / "model.pt", info, model.state_dict())
    return sum(p.numel() for p in model.parameters())


def _ensemble_eval(exp: Path, accs: dict[str, float]) -> None:
    """An eval-ensemble document for exp/ensemble: the arithmetic mean of teacher2 alone."""
    splits = {
        split: {"systems": {"teacher1": {"frame_acc": 0.5}, "teacher2": {"frame_acc": 0.5},
                            "ensemble_arithmetic": {"frame_acc": acc}}}
        for split, acc in accs.items()
    }  # fmt: skip
    _write(exp / "ensemble" / "eval.json", {
        "teachers": {"teacher1": "model:a", "teacher2": "model:b"},
        "combos": {"ensemble_arithmetic": {"method": "arithmetic", "members": ["teacher2"]}},
        "splits": splits,
    })  # fmt: skip


@pytest.fixture
def exp(tmp_path) -> Path:
    """baseline, two teachers, their ensemble, a student, and a half-finished hard_3pct."""
    e = tmp_path / "exp"
    _curve(e / "baseline", 1000, [0.40, 0.50])
    _write(e / "baseline" / "eval.json", {"dev": {"frame_acc": 0.50}, "test": {"frame_acc": 0.48}})
    _decode(e / "baseline", "dev", 19.0)
    _decode(e / "baseline", "test", 20.0, given=True)
    for i, acc in ((1, 0.55), (2, 0.56)):
        _curve(e / f"teacher{i}", 1000, [0.45, acc])
        _write(e / f"teacher{i}" / "eval.json", {"dev": {"frame_acc": acc},
                                                 "test": {"frame_acc": acc - 0.01}})  # fmt: skip
        _decode(e / f"teacher{i}", "dev", 17.0 + i)
        _decode(e / f"teacher{i}", "test", 18.0 + i, given=True)
    _write(e / "ensemble" / "eval.json", {"dev": {"frame_acc": 0.60}, "test": {"frame_acc": 0.58}})
    _decode(e / "ensemble", "dev", 14.0)
    _decode(e / "ensemble", "test", 15.0, given=True)
    # The student: model.pt (dev accuracy), eval-frame-acc's test file, and a test decode
    # that chose its own LM weight: the report takes dev's point from the test sweep.
    _model(e / "student", 0.57)
    _write(e / "student" / "eval_test.json", {"split": "test", "frame_acc": 0.53})
    _decode(e / "student", "dev", 16.0, lm=10.0)
    _decode(e / "student", "test", 16.5, lm=12.0, sweep=[(10.0, 17.0), (12.0, 16.5)])
    _decode(e / "hard_3pct", "dev", 30.0)
    (e / "student.work").mkdir()  # an unfinished training is no system
    (e / "soft_targets").mkdir()  # nor is a directory without results
    _write(e / "soft_targets" / "info.json", {"k": 10})
    return e


def test_results_json_has_the_exact_schema_and_the_gain_kept(exp):
    out = exp / "report"
    doc = report(exp, out, device="cpu")
    assert json.loads((out / "results.json").read_text()) == doc
    assert set(doc) == {"systems", "gain_kept", "seed_spread", "ensemble_gain", "comparisons",
                        "data_fraction"}  # fmt: skip
    assert {"frame_acc", "wer", "frame_acc_interval", "reference"} <= set(doc["gain_kept"])
    names = ["baseline", "teacher1", "teacher2", "ensemble", "student", "hard_3pct"]
    assert list(doc["systems"]) == names
    for row in doc["systems"].values():
        assert set(row) == {"params", "dev", "test", "train"}
        assert set(row["dev"]) == set(row["test"]) == {"frame_acc", "wer", "wer_interval"}

    def plain(row):
        return {k: ({m: v for m, v in x.items() if m != "wer_interval"} if k in ("dev", "test")
                    else x) for k, x in row.items() if k != "train"}  # fmt: skip

    s = doc["systems"]
    assert plain(s["baseline"]) == {"params": 1000, "dev": {"frame_acc": 50.0, "wer": 19.0},
                                    "test": {"frame_acc": 48.0, "wer": 20.0}}  # fmt: skip
    assert s["baseline"]["train"] == {"frame_acc": 55.0}  # train.json, epoch 2 (the last)
    assert s["ensemble"]["params"] == 2000  # the sum of its teachers
    params = sum(p.numel() for p in torch.load(exp / "student" / "model.pt")["state_dict"].values())
    assert plain(s["student"]) == {"params": params, "dev": {"frame_acc": 57.0, "wer": 16.0},
                                   "test": {"frame_acc": 53.0, "wer": 17.0}}  # fmt: skip
    assert plain(s["hard_3pct"]) == {"params": None, "dev": {"frame_acc": None, "wer": 30.0},
                                     "test": {"frame_acc": None, "wer": None}}  # fmt: skip
    assert s["student"]["test"]["wer_interval"] is None  # no errs.txt: no interval
    # The gain is measured from the mean of the single models (baseline, teachers), test:
    # frame accuracy 48, 54, 55 -> 52.33; ensemble 58; student 53: 100 * 0.67 / 5.67.
    # WER 20, 19, 20 -> 19.67; ensemble 15; student 17: 100 * 2.67 / 4.67.
    assert doc["ensemble_gain"]["test"]["frame_acc"]["gain"] == pytest.approx(5.6667, abs=1e-4)
    assert doc["gain_kept"]["frame_acc"] == pytest.approx(100 * (53 - 157 / 3) / (58 - 157 / 3))
    assert doc["gain_kept"]["wer"] == pytest.approx(100 * (59 / 3 - 17) / (59 / 3 - 15))
    assert doc["gain_kept"]["frame_acc_interval"] == [pytest.approx(11.7647, abs=1e-3)] * 2
    # The single models that differ in their seed: baseline 50, teachers 55 and 56 (dev).
    spread = doc["seed_spread"]
    assert spread["systems"] == ["baseline", "teacher1", "teacher2"]
    dev = spread["dev"]["frame_acc"]
    assert dev == {"mean": pytest.approx(53.6667, abs=1e-4), "std": pytest.approx(3.2146, abs=1e-4),
                   "n": 3}  # fmt: skip
    assert spread["test"]["wer"]["n"] == 3

    pngs = {p.name for p in out.glob("*.png")}
    assert pngs == {"systems.png", "learning_curves.png", "ensemble_size.png",
                    "data_fraction.png"}  # fmt: skip
    # hard_3pct (no soft_3pct) and the full-data pair: the baseline and the student.
    rows = doc["data_fraction"]
    assert [r["fraction"] for r in rows] == [0.03, 1.0]
    assert rows[0]["hard"]["systems"] == ["hard_3pct"] and rows[0]["soft"]["systems"] == []
    assert rows[0]["hard"]["dev"]["wer"] == 30.0
    assert rows[1]["hard"]["test"]["frame_acc"] == 48.0 and rows[1]["soft"]["dev"]["wer"] == 16.0
    assert rows[1]["hard"]["dev"]["frame_acc_final"] == 50.0  # train.json's last epoch
    assert all((out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    md = (out / "RESULTS.md").read_text()
    assert "| student | " in md and "| 57.00 | 53.00 | 16.00 | 17.00 | 0.020 |" in md
    assert "dev frame acc 53.67 ± 3.21" in md
    assert "- frame accuracy: 11.8% (on test)" in md and "- WER: 57.1% (on test)" in md
    assert "over mean of the single models baseline, teacher1, teacher2" in md
    assert "from the test sweep at dev's point lm_weight=10" in md


def test_gain_kept_arithmetic_is_sign_aware():
    assert gain_kept(40.0, 50.0, 45.0, lower_is_better=False) == pytest.approx(50.0)
    assert gain_kept(20.0, 10.0, 12.0, lower_is_better=True) == pytest.approx(80.0)
    assert gain_kept(20.0, 10.0, 22.0, lower_is_better=True) == pytest.approx(-20.0)
    assert gain_kept(20.0, 20.0, 18.0, lower_is_better=True) is None  # no gain to keep
    # an ensemble worse than the baseline: nothing to keep, not "85.7% kept"
    assert gain_kept(5.24, 6.22, 6.08, lower_is_better=True) is None
    assert gain_kept(46.0, 45.0, 44.0, lower_is_better=False) is None
    assert gain_kept(None, 10.0, 12.0, lower_is_better=True) is None


def test_reruns_skip_until_an_input_changes_and_roles_can_be_renamed(exp, tmp_path):
    out = exp / "report"
    report(exp, out, device="cpu")
    first = read_marker(out)["finished"]
    report(exp, out, device="cpu")
    assert read_marker(out)["finished"] == first  # nothing changed: skipped
    _decode(exp / "student", "dev", 15.0)  # a new dev decode: redone without --force
    _decode(exp / "student", "test", 16.0, given=True)
    doc = report(exp, out, device="cpu")
    assert doc["systems"]["student"]["test"]["wer"] == 16.0
    assert doc["gain_kept"]["wer"] == pytest.approx(100 * (59 / 3 - 16) / (59 / 3 - 15))

    systems = {"base": "baseline", "ens": {"dir": "ensemble", "members": ["t1", "t2"]},
               "t1": "teacher1", "t2": "teacher2", "kd": str(exp / "student")}  # fmt: skip
    roles = {"baseline": "base", "ensemble": "ens", "student": "kd"}
    doc = report(exp, tmp_path / "r2", systems=systems, roles=roles, device="cpu")
    assert set(doc["systems"]) == set(systems) and doc["systems"]["ens"]["params"] == 2000
    # Renamed roles: no single models named baseline/teacher<N>: gain over the baseline.
    assert doc["gain_kept"]["wer"] == pytest.approx(80.0)
    # Missing roles: null, not an error.
    doc = report(exp, tmp_path / "r3", systems={"baseline": "baseline"}, device="cpu")
    assert doc["gain_kept"]["frame_acc"] is None and doc["gain_kept"]["wer"] is None


def test_an_eval_ensemble_document_is_read_for_the_ensemble(exp, tmp_path):
    _ensemble_eval(exp, {"dev": 0.61, "test": 0.59})
    doc = report(exp, tmp_path / "r", device="cpu")
    row = doc["systems"]["ensemble"]
    assert row["dev"]["frame_acc"] == 61.0 and row["test"]["frame_acc"] == 59.0
    assert row["params"] == 1000  # its one member
    # against the mean of the single models (48, 54, 55 on test)
    assert doc["gain_kept"]["frame_acc"] == pytest.approx(100 * (53 - 157 / 3) / (59 - 157 / 3))


def test_frame_accuracy_missing_from_eval_files_is_evaluated_on_the_data(tmp_path):
    from asr_kd.train import TrainConfig, train_model

    data, feats = train_toy.make_toy_data(tmp_path / "toy", num_train=8, num_dev=4)
    shutil.copy(data / "toy_cuts_dev.jsonl.gz", data / "toy_cuts_test.jsonl.gz")
    model = {"arch": "dnn", "options": {"num_layers": 1, "hidden_dim": 8, "left_context": 0,
                                        "right_context": 0}}  # fmt: skip
    config = TrainConfig(model=model, max_epochs=1, max_duration=3.0, num_workers=0)
    train_model(data, feats, tmp_path / "exp" / "baseline", config, device="cpu")
    doc = report(tmp_path / "exp", tmp_path / "exp" / "report", data_dir=data, device="cpu")
    row = doc["systems"]["baseline"]
    assert row["test"]["frame_acc"] == pytest.approx(row["dev"]["frame_acc"], abs=1e-6)
    assert 0 < row["dev"]["frame_acc"] <= 100
    md = (tmp_path / "exp" / "report" / "RESULTS.md").read_text()
    assert "test frame accuracy evaluated by the report" in md


def test_the_report_command_prints_the_table(exp, tmp_path):
    from asr_kd.cli.distill import report as report_cmd

    manifest = tmp_path / "systems.yaml"
    manifest.write_text("systems:\n  baseline: baseline\n  ensemble: ensemble\n  kd: student\n"
                        "student: kd\n")  # fmt: skip
    out = tmp_path / "rep"
    args = [str(exp), str(out), "--systems", str(manifest), "--device", "cpu"]
    result = CliRunner().invoke(report_cmd, args, catch_exceptions=False)
    assert result.exit_code == 0
    assert result.output == (out / "RESULTS.md").read_text()
    assert "| kd |" in result.output and "WER: 60.0% (on test)" in result.output


def test_evaluation_stage_outputs_under_exp_eval_are_read(exp, tmp_path):
    from asr_kd.stage import stage_output

    def eval_stage(name: str, dev: float, test: float) -> None:
        with stage_output(exp / "eval" / name, "eval-ensemble", {"name": name}) as out:
            _write(out / "eval.json", {"dev": {"frame_acc": dev}, "test": {"frame_acc": test}})

    eval_stage("ensemble", 0.62, 0.60)  # read before exp/ensemble/eval.json
    eval_stage("ensemble_2", 0.59, 0.57)  # evaluated, never decoded: still a system
    doc = report(exp, tmp_path / "r", device="cpu")
    assert "eval" not in doc["systems"]
    assert doc["systems"]["ensemble"]["test"]["frame_acc"] == 60.0
    row = doc["systems"]["ensemble_2"]
    assert row["dev"] == {"frame_acc": 59.0, "wer": None, "wer_interval": None}
    assert row["params"] == 2000
    assert list(doc["systems"]).index("ensemble_2") < list(doc["systems"]).index("ensemble")


def test_cuts_dropped_upstream_of_the_data_are_counted(exp, tmp_path):
    from asr_kd.stage import require_done, stage_output

    feats, data = tmp_path / "fbank", tmp_path / "senones"
    with stage_output(feats, "compute-features", {}) as out:
        _write(out / "summary.json", {"splits": {}, "dropped": 2})
        (out / "dropped.txt").write_text("train a bad\ntrain b bad\n")
    require_done(feats, "compute-features")
    with stage_output(data, "senone-targets", {}) as out:
        (out / "info.json").write_text("{}")
    report(exp, tmp_path / "r", data_dir=data, device="cpu")
    md = (tmp_path / "r" / "RESULTS.md").read_text()
    assert f"- data: 2 cuts dropped by the stage that wrote {feats.resolve()}" in md


def test_a_corpus_with_other_split_names_reports_them_as_dev_and_test(exp, tmp_path):
    """LibriSpeech's eval documents say dev-clean and test-clean: ``--dev-split`` and
    ``--test-split`` name them, and results.json keeps its dev and test keys."""
    from asr_kd.cli.distill import report as report_cmd

    _ensemble_eval(exp, {"dev-clean": 0.61, "test-clean": 0.59})
    default = report(exp, tmp_path / "default", device="cpu")
    assert default["systems"]["ensemble"]["dev"]["frame_acc"] is None  # not found as "dev"
    args = [str(exp), str(tmp_path / "r"), "--device", "cpu", "--dev-split", "dev-clean",
            "--test-split", "test-clean"]  # fmt: skip
    assert CliRunner().invoke(report_cmd, args, catch_exceptions=False).exit_code == 0
    row = json.loads((tmp_path / "r" / "results.json").read_text())["systems"]["ensemble"]
    assert row["dev"]["frame_acc"] == 61.0 and row["test"]["frame_acc"] == 59.0
    assert row["test"]["wer"] == 15.0  # decode_test, whatever the data calls the split
