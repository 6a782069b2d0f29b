"""The paper's claims in the report: intervals, paired comparisons, data fractions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asr_kd.report import report
from asr_kd.scoring import compute_wer, format_errs

REFS = {f"u{i:02d}": "the cat sat on the mat" for i in range(40)}


def _system(exp: Path, name: str, wrong: int, dev_acc: float, test_acc: float, epochs=None):
    """A system whose test decode gets ``wrong`` of 40 utterances one word wrong."""
    d = exp / name
    hyps = {u: ("the dog sat on the mat" if i < wrong else r)
            for i, (u, r) in enumerate(sorted(REFS.items()))}  # fmt: skip
    result = compute_wer(REFS, hyps)
    for split in ("dev", "test"):
        (d / f"decode_{split}").mkdir(parents=True)
        (d / f"decode_{split}" / "errs.txt").write_text(format_errs(result))
        (d / f"decode_{split}" / "wer.json").write_text(json.dumps({
            "wer": result.wer, "lm_weight": 10.0, "word_ins_penalty": 0.0,
            "selected_by": "given" if split == "test" else "best_on_this_set"}))  # fmt: skip
    (d / "eval.json").write_text(json.dumps({"dev": {"frame_acc": dev_acc},
                                             "test": {"frame_acc": test_acc}}))  # fmt: skip
    accs = epochs or [dev_acc]
    (d / "train.json").write_text(json.dumps({"best_epoch": 1, "epochs": [
        {"epoch": i + 1, "dev_frame_acc": a, "train_frame_acc": 0.9, "train_loss": 1.0}
        for i, a in enumerate(accs)]}))  # fmt: skip


def test_protocol_fields(tmp_path):
    exp = tmp_path / "exp"
    _system(exp, "baseline", 20, 0.50, 0.50)
    _system(exp, "teacher1", 19, 0.51, 0.51)
    _system(exp, "ensemble", 8, 0.55, 0.55)
    _system(exp, "student", 10, 0.54, 0.54)
    _system(exp, "student_s1", 11, 0.53, 0.53)
    _system(exp, "hard_3pct", 30, 0.20, 0.20, epochs=[0.20, 0.15])  # best 1, final 2
    _system(exp, "soft_3pct", 24, 0.30, 0.30)
    _system(exp, "hard_3pct_s1", 30, 0.22, 0.22)
    _system(exp, "student_unlab", 9, 0.545, 0.545)
    doc = report(exp, tmp_path / "report", device="cpu")
    s = doc["systems"]
    lo, hi = s["baseline"]["test"]["wer_interval"]
    assert lo < s["baseline"]["test"]["wer"] < hi
    assert s["ensemble"]["test"]["wer_interval"] != [0.0, 0.0]
    assert s["baseline"]["train"]["frame_acc"] == 90.0
    # singles 50, 51 -> 50.5; ensemble 55; students 54, 53 keep 77.8% and 55.6%.
    kept = doc["gain_kept"]
    assert kept["frame_acc_interval"] == [pytest.approx(55.5556, abs=1e-3),
                                          pytest.approx(77.7778, abs=1e-3)]  # fmt: skip
    assert kept["frame_acc"] == pytest.approx(66.6667, abs=1e-3)
    assert kept["students"] == ["student", "student_s1"]
    pairs = {(c["a"], c["b"]): c for c in doc["comparisons"]}
    # 12 of 40 utterances fixed, none broken: significant, every resample improves
    ens = pairs[("baseline", "ensemble")]
    assert ens["delta"] < 0 and ens["significant"] and ens["p_improve"] == 1.0
    assert pairs[("hard_3pct", "soft_3pct")]["significant"]
    # the transfer-set student against the student it extends (one utterance fixed)
    assert pairs[("student", "student_unlab")]["delta"] == pytest.approx(-100 / 240, abs=1e-3)
    assert ("omit_control", "omit_student") not in pairs  # not run here
    rows = doc["data_fraction"]
    assert [r["fraction"] for r in rows] == [0.03, 1.0]
    hard = rows[0]["hard"]
    assert hard["systems"] == ["hard_3pct", "hard_3pct_s1"]
    assert hard["dev"]["frame_acc"] == pytest.approx(21.0)  # mean over subset seeds
    assert hard["dev"]["frame_acc_final"] == pytest.approx(18.5)  # (15 + 22) / 2
    assert rows[1]["soft"]["systems"] == ["student", "student_s1"]
    md = (tmp_path / "report" / "RESULTS.md").read_text()
    assert "| baseline | ensemble |" in md and "| 3% | 21.00 (18.50) |" in md
    assert (tmp_path / "report" / "data_fraction.png").is_file()
