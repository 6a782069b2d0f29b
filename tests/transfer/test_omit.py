"""The omitted phone: the frame mask, the bias correction and the evaluation command."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from transfer_toy import AH, S, toy_tree, train_config

from asr_kd.cli.main import cli
from asr_kd.errors import ConfigError
from asr_kd.train import load_model
from asr_kd.train.dataset import load_split, load_training_data
from asr_kd.train.frames import frame_source
from asr_kd.transfer import add_bias, phone_senones, senone_owners
from asr_kd.transfer.omit import output_bias


def test_a_phones_senones_are_the_leaves_below_its_roots(world):
    assert phone_senones(world["data"], "AH") == AH
    assert phone_senones(world["data"], "s") == [6, 7]
    owners = senone_owners(toy_tree())
    assert owners == {0: {"SIL"}, 1: {"AH"}, 2: {"AH"}, 3: {"AH"}, 4: {"IY"}, 5: {"IY"},
                      6: {"S"}, 7: {"S"}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"'OW' is not a phone of the tree \(AH, IY, S, SIL\)"):
        phone_senones(world["data"], "OW")


def test_the_mask_removes_exactly_the_phones_frames(world):
    data = load_training_data(world["data"], world["feats"])
    config = train_config()
    full = frame_source(data, config, (1, 1))
    masked = frame_source(dataclasses.replace(data, drop_senones=tuple(AH)), config, (1, 1))
    targets = full.store.targets.numpy()
    full.start(0)
    seen_full = torch.cat([b["frame_index"] for b in full]).numpy()
    masked.start(0)
    batches = list(masked)
    seen = torch.cat([b["frame_index"] for b in batches]).numpy()
    assert sorted(seen_full) == list(range(len(targets)))
    # Every frame of another phone once, no frame of AH, and the batches' targets agree.
    assert sorted(seen) == np.flatnonzero(~np.isin(targets, AH)).tolist()
    assert not np.isin(torch.cat([b["targets"][:, 0] for b in batches]).numpy(), AH).any()
    assert masked.count() == -(-len(seen) // config.frame_batch_size)
    # The left-out frames still lie in their neighbours' windows (the features are there).
    assert masked.store.num_frames == full.store.num_frames


def test_the_marker_records_omit_phone_only_when_set(omitted):
    from asr_kd.stage import read_marker

    assert read_marker(omitted / "omit_control")["config"]["train"]["omit_phone"] == "AH"
    assert "omit_phone" not in read_marker(omitted / "student")["config"]["distill"]


def test_omit_phone_needs_the_frame_path():
    with pytest.raises(ValueError, match="omit_phone .* data_path: frames"):
        train_config(omit_phone="AH", data_path="utterances")


def test_the_control_never_predicts_the_phone_and_the_student_does(world, omitted, tmp_path):
    out = tmp_path / "eval"
    args = ["eval-omitted-phone", str(world["data"]), str(out), "--device", "cpu",
            "--test-split", "",
            "--system", f"student={omitted / 'omit_student'}",
            "--system", f"control={omitted / 'omit_control'}",
            "--system", f"full={omitted / 'student'}"]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "omitted_phone.json").read_text())
    assert doc["phone"] == "AH" and doc["senones"] == AH
    systems = doc["systems"]
    for name in ("student", "control", "full"):
        for split in ("dev",):
            e = systems[name][split]
            for key in ("frame_acc_phone", "frame_acc_phone_bias_corrected", "frame_acc_rest"):
                assert 0.0 <= e[key] <= 100.0
    # Targets it never saw: the control's output for AH is never the arg-max.
    assert systems["control"]["dev"]["frame_acc_phone"] < 5.0
    # The student heard about AH from the teachers only, and recognises some of it;
    # the dev-chosen bias helps the student on AH; the full-data student knows AH.
    student, control = systems["student"]["dev"], systems["control"]["dev"]
    # (Toy: the student 0% -> 72% with a bias of +5, the control 0% -> 3% with +8.)
    assert (
        student["frame_acc_phone_bias_corrected"] > control["frame_acc_phone_bias_corrected"] + 30
    )
    assert student["frame_acc_phone_bias_corrected"] >= student["frame_acc_phone"]
    assert systems["full"]["dev"]["frame_acc_phone"] > 50.0
    assert systems["student"]["omitted"] and not systems["full"]["omitted"]
    # Only the omitted-phone systems get a bias-corrected copy.
    assert (out / "student_bias_corrected" / "model.pt").is_file()
    assert not (out / "full_bias_corrected").exists()
    dev = load_split(world["data"], "dev")
    assert doc["utterances"]["dev"] and set(doc["utterances"]["dev"]) <= {c.id for c in dev}


def test_the_bias_correction_changes_only_the_phones_output_biases(world, omitted, tmp_path):
    out = tmp_path / "eval"
    args = ["eval-omitted-phone", str(world["data"]), str(out), "--device", "cpu",
            "--test-split", "",
            "--system", f"student={omitted / 'omit_student'}"]  # fmt: skip
    assert CliRunner().invoke(cli, args, catch_exceptions=False).exit_code == 0
    b = json.loads((out / "omitted_phone.json").read_text())["systems"]["student"]["bias"]
    before, _ = load_model(omitted / "omit_student")
    after, _ = load_model(out / "student_bias_corrected" / "model.pt")
    old, new = before.state_dict(), after.state_dict()
    changed = [k for k in old if not torch.equal(old[k], new[k])]
    assert changed == ([] if b == 0 else ["output.bias"])
    diff = (new["output.bias"] - old["output.bias"]).numpy()
    want = np.zeros(S, dtype=np.float32)
    want[AH] = b
    np.testing.assert_allclose(diff, want, atol=1e-6)

    model, _ = load_model(omitted / "omit_student")
    add_bias(model, [2], S, 1.5)
    assert (output_bias(model, S) - before.state_dict()["output.bias"]).nonzero().tolist() == [[2]]
