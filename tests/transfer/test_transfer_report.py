"""The transfer experiments in the report: results.json keys, RESULTS.md, the plot."""

from __future__ import annotations

import json
import shutil

from click.testing import CliRunner

from asr_kd.cli.main import cli
from asr_kd.report import report
from asr_kd.report.transfer import group_wer


def _errs(path, rows):
    """A hand-made decode's errs.txt: ``(utt, C, S, I, D)`` per utterance."""
    path.mkdir(parents=True)
    (path / "errs.txt").write_text(
        "".join(f"{u} #csid {c} {s} {i} {d}\n" for u, c, s, i, d in rows)
    )


def test_the_report_shows_both_experiments(world, omitted, tmp_path):
    exp = omitted
    out = exp / "eval" / "omitted_phone"
    args = ["eval-omitted-phone", str(world["data"]), str(out), "--device", "cpu",
            "--test-split", "", "--system", f"student={exp / 'omit_student'}",
            "--system", f"control={exp / 'omit_control'}",
            "--system", f"full={exp / 'student'}"]  # fmt: skip
    assert CliRunner().invoke(cli, args, catch_exceptions=False).exit_code == 0
    with_phone = json.loads((out / "omitted_phone.json").read_text())["utterances"]["dev"]
    # The student's decode: 1 error in 4 words on each utterance with AH, none elsewhere;
    # its bias-corrected copy's: no error at all.
    rows = [(u, 3, 1, 0, 0) for u in with_phone] + [("dev-no-ah", 5, 0, 0, 0)]
    _errs(exp / "omit_student" / "decode_dev", rows)
    _errs(out / "student_bias_corrected" / "decode_dev", [(u, 4, 0, 0, 0) for u in with_phone])
    assert group_wer(exp / "omit_student" / "decode_dev", with_phone) == (25.0, 0.0)

    # A student trained with untranscribed audio (its training data says how much).
    unlab_data = tmp_path / "senones_unlab"
    unlab_data.mkdir()
    (unlab_data / "info.json").write_text(json.dumps(
        {"unlabelled": {"hours": 0.5, "labelled_hours": 0.25, "cuts": 9}}))  # fmt: skip
    shutil.copytree(exp / "student", exp / "student_unlab")
    marker = json.loads((exp / "student_unlab" / ".done.json").read_text())
    marker["config"]["data_dir"] = str(unlab_data)
    (exp / "student_unlab" / ".done.json").write_text(json.dumps(marker))

    doc = report(exp, tmp_path / "report", device="cpu")
    omitted_doc = doc["omitted_phone"]
    assert omitted_doc["phone"] == "AH" and omitted_doc["senones"] == 3
    student = omitted_doc["student"]["dev"]
    for key in ("frame_acc_phone", "frame_acc_phone_bias_corrected", "frame_acc_rest"):
        assert 0.0 <= student[key] <= 100.0
        assert 0.0 <= omitted_doc["control"]["dev"][key] <= 100.0
    assert (student["wer_phone"], student["wer_rest"]) == (25.0, 0.0)
    assert student["wer_phone_bias_corrected"] == 0.0
    assert omitted_doc["control"]["dev"]["wer_phone"] is None  # not decoded
    assert "wer_phone_bias_corrected" not in omitted_doc["full"]["dev"]  # nothing omitted
    unlabelled = doc["unlabelled"]
    assert unlabelled["hours"] == 0.5
    dev_acc = doc["systems"]["student"]["dev"]["frame_acc"]
    assert unlabelled["student"]["dev"]["frame_acc"] == dev_acc
    assert unlabelled["labelled_only"]["dev"]["frame_acc"] == dev_acc
    md = (tmp_path / "report" / "RESULTS.md").read_text()
    assert "Omitted phone AH" in md and "| student | dev |" in md
    assert "0.50 h without transcripts beside 0.25 h transcribed" in md
    assert (tmp_path / "report" / "transfer.png").stat().st_size > 1000
