"""WER by voice in the report: per-engine test subsets and the held-out voices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lhotse import CutSet, MonoCut
from lhotse.testing.dummies import dummy_recording

from asr_kd.report.collect import ROLES, discover_systems
from asr_kd.report.voices import voice_results, voices_markdown
from asr_kd.scoring import compute_wer, format_errs

REF = "the cat sat on the mat"  # 6 words
TEST = {"espeak": [f"e{i:02d}" for i in range(20)], "piper": [f"p{i:02d}" for i in range(20)]}
HELD = {"espeak": [f"he{i:02d}" for i in range(10)], "hibari": [f"hh{i:02d}" for i in range(10)]}


def _decode(d: Path, wrong: set[str], ids: list[str], lm_weight: float, given: bool) -> None:
    """A decode dir whose utterances in ``wrong`` get one word of six wrong."""
    refs = dict.fromkeys(ids, REF)
    hyps = {u: ("the dog sat on the mat" if u in wrong else REF) for u in ids}
    result = compute_wer(refs, hyps)
    d.mkdir(parents=True)
    (d / "errs.txt").write_text(format_errs(result))
    selected = "given" if given else "best_on_this_set"
    doc = {"wer": result.wer, "lm_weight": lm_weight, "word_ins_penalty": 0.0,
           "selected_by": selected}  # fmt: skip
    (d / "wer.json").write_text(json.dumps(doc))


def _system(exp: Path, name: str, wrong: set[str], heldout_lm_weight: float | None = 8.0):
    test = [u for ids in TEST.values() for u in ids]
    _decode(exp / name / "decode_dev", set(), test, 8.0, given=False)
    _decode(exp / name / "decode_test", wrong, test, 8.0, given=True)
    if heldout_lm_weight is not None:
        held = [u for ids in HELD.values() for u in ids]
        _decode(exp / name / "decode_heldout", wrong, held, heldout_lm_weight, given=True)


def _manifests(d: Path, split: str, ids: list[str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    cuts = CutSet.from_cuts(
        MonoCut(u, start=0.0, duration=1.0, channel=0, recording=dummy_recording(i))
        for i, u in enumerate(ids)
    )
    cuts.to_file(d / f"synth_cuts_{split}.jsonl.gz")


@pytest.fixture
def work(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    # baseline: 2 of 20 espeak test utterances wrong, 10 of 20 piper, and 12 of 20 held out
    _system(exp, "baseline", {*TEST["espeak"][:2], *TEST["piper"][:10], *HELD["espeak"][:4],
                              *HELD["hibari"][:8]})  # fmt: skip
    _system(exp, "ensemble", {*TEST["piper"][:4], *HELD["hibari"][:6]})
    # the student's held-out decode chose its own LM weight: not comparable, left out
    _system(exp, "student", {*TEST["piper"][:6]}, heldout_lm_weight=12.0)
    _system(exp, "teacher1", {*TEST["piper"][:9]}, heldout_lm_weight=None)
    for engine, ids in TEST.items():
        _manifests(data / "manifests", f"test_{engine}", ids)
    _manifests(data / "manifests", "test", [u for ids in TEST.values() for u in ids])
    for engine, ids in HELD.items():
        _manifests(data / "manifests_heldout", f"heldout_{engine}", ids)
    return exp, [data / "manifests", data / "manifests_heldout"]


def test_per_engine_and_heldout_wer_from_hand_made_decodes(work):
    exp, manifests = work
    voices = voice_results(discover_systems(exp), {r: r for r in ROLES}, manifests)
    splits = voices["splits"]
    assert list(splits) == ["test", "test_espeak", "test_piper", "heldout", "heldout_espeak",
                            "heldout_hibari"]  # fmt: skip
    assert voices["systems"] == ["baseline", "ensemble", "student"]  # teacher1: no voices split
    base = {s: splits[s]["baseline"]["wer"] for s in splits}
    assert base["test_espeak"] == pytest.approx(100 * 2 / 120, abs=1e-3)
    assert base["test_piper"] == pytest.approx(100 * 10 / 120, abs=1e-3)
    assert base["test"] == pytest.approx(100 * 12 / 240, abs=1e-3)
    assert base["heldout"] == pytest.approx(100 * 12 / 120, abs=1e-3)
    assert base["heldout_hibari"] == pytest.approx(100 * 8 / 60, abs=1e-3)
    assert splits["test_piper"]["baseline"]["utterances"] == 20
    low, high = splits["test_piper"]["baseline"]["wer_interval"]
    assert low < base["test_piper"] < high
    assert splits["test_espeak"]["ensemble"]["wer"] == 0.0
    # heldout 10% vs test 5%: twice; the ensemble 5% vs 1.67%: three times
    ratio = voices["heldout_over_in_domain"]
    assert ratio["baseline"] == pytest.approx(2.0)
    assert ratio["ensemble"] == pytest.approx(3.0)
    assert "student" not in ratio and "student" not in splits["heldout"]
    assert "student" in splits["test_piper"]
    assert any("student: heldout left out" in n and "--tuned-on" in n for n in voices["notes"])
    md = "\n".join(voices_markdown({"voices": voices}))
    assert "| split | utterances | baseline | ensemble | student |" in md
    assert "| test_piper | 20 | 8.33 [" in md
    assert "| heldout / test | | 2.00× | 3.00× | – |" in md


def test_no_voices_section_without_a_split_besides_dev_and_test(tmp_path):
    exp = tmp_path / "exp"
    _system(exp, "baseline", {"p00"}, heldout_lm_weight=None)
    assert voice_results(discover_systems(exp), {r: r for r in ROLES}) is None
    assert voices_markdown({}) == []


def test_report_writes_the_voices_section(work, tmp_path):
    from asr_kd.report import report

    exp, manifests = work
    doc = report(exp, tmp_path / "report", voice_splits=manifests, device="cpu")
    saved = json.loads((tmp_path / "report" / "results.json").read_text())
    assert saved["voices"] == doc["voices"]
    assert saved["voices"]["heldout_over_in_domain"]["baseline"] == pytest.approx(2.0)
    md = (tmp_path / "report" / "RESULTS.md").read_text()
    assert "WER by voice" in md and "| heldout_hibari | 10 | 13.33 [" in md
