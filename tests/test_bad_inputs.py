"""Bad inputs end in one line naming the file and the stages, and leave no output.

Each damage a user's disk or corpus can do (truncated checkpoints and archives, a
FLAC damaged in the middle, config values of the wrong type, two runs of one stage)
gets its own test; the messages are asserted, and so is the absence of partial output.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from asr_kd.checked import check_h5, open_checkpoint, read_json
from asr_kd.cli.main import cli
from asr_kd.data.manifests import read_manifest
from asr_kd.errors import BadInputError, MissingInputError


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_checkpoint_names_file_reader_and_maker(tmp_path):
    from asr_kd.train.checkpoint import load_model

    path = tmp_path / "model.pt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, path)
    _truncate(path)
    with pytest.raises(BadInputError) as e:
        open_checkpoint(path, maker="train", reader="decode")
    assert str(e.value).startswith(f"decode: {path} is truncated or not a torch checkpoint")
    assert "rerun 'train'" in str(e.value)
    with pytest.raises(BadInputError, match="model.pt is truncated or not a torch checkpoint"):
        load_model(tmp_path)
    path.write_bytes(b"")
    with pytest.raises(BadInputError, match="model.pt is empty"):
        load_model(path)
    with pytest.raises(MissingInputError, match="run 'train' first"):
        open_checkpoint(tmp_path / "none.pt")


def test_truncated_h5_is_found_up_front(tmp_path):
    import h5py
    import numpy as np

    path = tmp_path / "soft_train.h5"
    with h5py.File(path, "w") as f:
        for i in range(20):
            f.create_dataset(f"cut{i}", data=np.random.default_rng(i).random((500, 10)))
    assert check_h5(path, "cache-soft-targets") == 20
    _truncate(path, 0.6)
    with pytest.raises(
        BadInputError,
        match=r"soft_train.h5 is truncated or not a HDF5 file.*rerun 'cache-soft-targets'",
    ):
        check_h5(path, "cache-soft-targets", reader="distill")


def test_damaged_json_and_manifest_are_named(tmp_path):
    (tmp_path / "info.json").write_text('{"tree_id": ')
    with pytest.raises(
        BadInputError, match=r"info.json is truncated or not a JSON file.*rerun 'build-tree'"
    ):
        read_json(tmp_path / "info.json", "build-tree")
    (tmp_path / "cuts.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(
        BadInputError, match=r"cuts.jsonl.gz is truncated or not a cut manifest.*'prepare'"
    ):
        read_manifest(tmp_path / "cuts.jsonl.gz", "prepare")


def test_inconsistent_manifest_is_named_where_a_stage_takes_it(tiny_manifests, tmp_path):
    from lhotse import CutSet
    from lhotse.utils import fastcopy

    cuts = list(CutSet.from_file(tiny_manifests / "synth_cuts_dev.jsonl.gz"))
    path = tmp_path / "synth_cuts_dev.jsonl.gz"
    CutSet.from_cuts([*cuts, fastcopy(cuts[0])]).to_file(path)  # one cut twice
    with pytest.raises(BadInputError) as e:
        read_manifest(path, "prepare", reader="compute-features")
    assert str(e.value).startswith(f"compute-features: {path}: cut id {cuts[0].id} appears "
                                   "more than once; fix it and rerun 'prepare'")  # fmt: skip
    sup = cuts[1].supervisions[0]
    late = fastcopy(cuts[1], supervisions=[fastcopy(sup, duration=sup.duration + 60.0)])
    CutSet.from_cuts([cuts[0], late]).to_file(path)
    with pytest.raises(BadInputError, match=rf"utterance {sup.id} ends at [\d.]+ s, after its"):
        read_manifest(path, "prepare", reader="compute-features")
    CutSet.from_cuts(cuts).to_file(path)
    rate = cuts[0].recording.sampling_rate
    assert len(read_manifest(path, "prepare", sampling_rate=rate)) == len(cuts)
    with pytest.raises(BadInputError, match=f"sampling rate {rate} Hz, expected 8000 Hz"):
        read_manifest(path, "prepare", reader="compute-features", sampling_rate=8000)


def _run(args, env=None):
    return CliRunner().invoke(cli, args, env=env)


def test_cli_config_error_is_one_line(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("features:\n  num_mel_bins: eighty\n")
    (tmp_path / "m").mkdir()
    result = _run(
        ["compute-features", "--config", str(conf), str(tmp_path / "m"), str(tmp_path / "f")]
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("asr-kd compute-features: error: ")
    assert f"{conf} [features]: num_mel_bins must be an integer, got 'eighty'" in lines[-1]
    assert "Traceback" not in result.output
    assert not (tmp_path / "f").exists()
    result = _run(
        ["compute-features", "--set", "teachr.lr=1", str(tmp_path / "m"), str(tmp_path / "f")]
    )
    assert result.exit_code == 1 and "unknown section 'teachr'" in result.output


def test_cli_unexpected_error_is_one_line_traceback_under_debug(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / ".done.json").write_text(json.dumps({"stage": "synth-corpus", "config": {}}))
    args = ["prepare", "synth", str(corpus), str(tmp_path / "manifests")]
    result = _run(args)
    assert result.exit_code == 1
    assert "asr-kd prepare: error: unexpected KeyError" in result.output
    assert "--debug" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "manifests").exists()
    log = tmp_path / "run.log"
    result = _run(["--log-file", str(log), *args])
    assert "Traceback" not in result.output
    assert "asr-kd prepare: error: unexpected KeyError" in log.read_text()
    assert "Traceback" in log.read_text()  # the log file keeps it, for a bug report
    for debug_args, env in ((["--debug", *args], None), (args, {"ASR_KD_DEBUG": "1"})):
        result = CliRunner().invoke(cli, debug_args, env=env)
        assert result.exit_code == 1
        assert "Traceback" in result.output  # CliRunner mixes stderr into output


def test_recipe_argument_errors(tmp_path):
    run = Path(__file__).resolve().parents[1] / "recipes" / "synth" / "run.sh"
    (tmp_path / "file").write_text("x")
    cases = [
        (["--config", "nosuch"], "no config nosuch", "small"),
        (["--stage", "30", "--stop-stage", "2"], "runs no stage", None),
        (["--stage", "30"], "runs no stage (stages are 0-", None),
        (["--stage", "x"], "take stage numbers", None),
        (["--work-dir", str(tmp_path / "file")], "is a file", None),
    ]
    for args, message, listed in cases:
        proc = subprocess.run(["bash", str(run), *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0, args
        assert message in proc.stderr, (args, proc.stderr)
        if listed:
            assert listed in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def _redo(out: Path) -> None:
    """Redo a finished stage with its own configuration and files (as ``--force`` would)."""
    import shutil

    from asr_kd.stage import read_marker, stage_output

    marker = read_marker(out)
    saved = out.with_name(out.name + ".saved")
    shutil.copytree(out, saved, ignore=shutil.ignore_patterns(".done.json"))
    with stage_output(out, marker["stage"], marker["config"], force=True) as tmp:
        shutil.copytree(saved, tmp, dirs_exist_ok=True)
    shutil.rmtree(saved)


def test_eval_ensemble_is_a_stage_that_refuses_a_retrained_teacher(tmp_path, tmp_path_factory):
    import shutil

    from teacher_toy import toy_data, toy_teachers

    from asr_kd.stage import read_marker

    data, _ = toy_data(tmp_path_factory)
    teachers = []
    for t in toy_teachers(tmp_path_factory)[:2]:
        teachers.append(tmp_path / t.name)
        shutil.copytree(t, teachers[-1])
    out = tmp_path / "eval" / "ensemble"
    args = ["eval-ensemble", str(data), *map(str, teachers), "--split", "dev", "--device", "cpu",
            "--out-dir", str(out)]  # fmt: skip
    assert _run(args).exit_code == 0
    doc = json.loads((out / "eval.json").read_text())
    assert set(doc["splits"]["dev"]["systems"]) >= {"teacher1", "teacher2", "ensemble_arithmetic"}
    inputs = read_marker(out)["inputs"]
    assert {str(t.resolve()) for t in teachers} <= set(inputs)
    assert read_marker(out)["command"] == ["asr-kd", *args]  # the command that wrote it
    run_id = read_marker(out)["run_id"]
    assert _run(args).exit_code == 0 and read_marker(out)["run_id"] == run_id  # skipped
    _redo(teachers[1])  # teacher2 retrained
    result = _run(args)
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    maker = read_marker(teachers[1])["stage"]
    assert f"{teachers[1].resolve()} was redone by '{maker}' since" in line
    assert "rerun 'eval-ensemble' with --force" in line
    assert read_marker(out)["run_id"] == run_id  # the old output is left as it was
    assert _run([*args, "--force"]).exit_code == 0
    assert read_marker(out)["run_id"] != run_id


_TRAIN = """
import sys
from pathlib import Path
sys.path[:0] = [sys.argv[4], sys.argv[4] + "/train"]
from teacher_toy import toy_config
from asr_kd.train import train_model
train_model(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]),
            toy_config(max_epochs=int(sys.argv[5])), device="cpu")
"""


def test_a_second_training_of_one_output_fails_at_once(tmp_path):
    import os
    import time

    import train_toy
    from teacher_toy import toy_config

    from asr_kd.errors import StageBusyError
    from asr_kd.train import train_model

    data, feats = train_toy.make_toy_data(tmp_path / "toy")
    out = tmp_path / "exp" / "baseline"
    tests = str(Path(__file__).resolve().parent)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-c", _TRAIN, str(data), str(feats), str(out), tests, "40"]
    first = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lock = out.with_name("baseline.lock")
    deadline = time.time() + 300  # importing torch on a loaded machine takes minutes
    while not lock.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert lock.exists(), first.stderr.read().decode() if first.poll() is not None else "no lock"
    with pytest.raises(
        StageBusyError, match=rf"another asr-kd \S+ \(pid {first.pid}\) is writing {out}"
    ):
        train_model(data, feats, out, toy_config(max_epochs=40), device="cpu")
    assert first.wait(300) == 0, first.stderr.read().decode()
    assert sorted(p.name for p in out.parent.iterdir()) == ["baseline"]  # no lock, work, tmp
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_truncated_soft_target_cache_stops_distill_before_training(tmp_path, tmp_path_factory):
    from teacher_toy import toy_config, toy_data, toy_teachers

    from asr_kd.distill import DistillConfig, cache_soft_targets, distill

    data, feats = toy_data(tmp_path_factory)
    teacher = str(toy_teachers(tmp_path_factory)[0])
    cache = tmp_path / "soft"
    config = DistillConfig(temperature=2.0, teachers=(teacher,), k=4, cache_dir=str(cache))
    cache_soft_targets(data, feats, cache, config, device="cpu", max_duration=3.0)
    archive = cache / "soft_train.h5"
    _truncate(archive, 0.7)
    out = tmp_path / "exp" / "student"
    with pytest.raises(BadInputError) as e:
        distill(data, feats, out, config, toy_config(), device="cpu")
    assert f"{archive} is truncated" in str(e.value)  # than cache-soft-targets wrote it
    assert "rerun 'cache-soft-targets'" in str(e.value)
    assert not (tmp_path / "exp").exists() or list((tmp_path / "exp").iterdir()) == []


def test_truncated_teacher_model_given_to_eval_ensemble(tmp_path, tmp_path_factory):
    import shutil

    from teacher_toy import toy_data, toy_teachers

    data, _ = toy_data(tmp_path_factory)
    teacher = tmp_path / "teacher1"
    shutil.copytree(toy_teachers(tmp_path_factory)[0], teacher)
    _truncate(teacher / "model.pt")
    out = tmp_path / "eval"
    result = _run(
        ["eval-ensemble", str(data), str(teacher), "--device", "cpu", "--out-dir", str(out)]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("asr-kd eval-ensemble: error: ")
    assert f"{teacher / 'model.pt'} is truncated" in line and "rerun 'train'" in line
    assert not out.exists()


def test_plug_in_teacher_module_that_raises_while_importing(tmp_path, tmp_path_factory,
                                                           monkeypatch):  # fmt: skip
    import yaml
    from teacher_toy import FEAT_DIM, NUM_SENONES, TREE_ID, toy_data

    data, feats = toy_data(tmp_path_factory)
    (tmp_path / "broken_teacher_h22.py").write_text(
        "import torch\nSCALE = {}['missing']  # a bug in the user's module\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = {"class": "broken_teacher_h22:Net", "kwargs": {"feat_dim": FEAT_DIM},
            "tree_id": TREE_ID, "num_senones": NUM_SENONES, "frame_shift": 0.01,
            "feature_stats": str(feats)}  # fmt: skip
    (tmp_path / "teacher.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "eval"
    result = _run(["eval-ensemble", str(data), str(tmp_path / "teacher.yaml"), "--device", "cpu",
                   "--split", "dev", "--out-dir", str(out)])  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("asr-kd eval-ensemble: error: ")
    assert "importing its module broken_teacher_h22 raised KeyError" in line
    assert "python -c 'import broken_teacher_h22'" in line  # how to see the traceback
    assert not out.exists()


def test_redoing_prepare_makes_compute_features_refuse(tiny_corpus, tmp_path):
    from asr_kd.data.features import FeatureConfig, compute_features
    from asr_kd.data.synth_prepare import prepare_synth
    from asr_kd.errors import StaleInputError
    from asr_kd.stage import read_marker

    manifests, mfcc = tmp_path / "manifests", tmp_path / "mfcc"
    config = FeatureConfig(kind="mfcc", device="cpu")
    prepare_synth(tiny_corpus, manifests)
    compute_features(manifests, mfcc, config)
    inputs = read_marker(mfcc)["inputs"]
    assert inputs[str(manifests.resolve())]["stage"] == "prepare"
    compute_features(manifests, mfcc, config)  # unchanged: skipped
    prepare_synth(tiny_corpus, manifests, force=True)
    with pytest.raises(StaleInputError) as e:
        compute_features(manifests, mfcc, config)
    assert f"{manifests.resolve()} was redone by 'prepare' since" in str(e.value)
    assert "rerun 'compute-features' with --force" in str(e.value)
    compute_features(manifests, mfcc, config, force=True)


def test_truncated_senone_targets_are_named_before_training(tmp_path):
    import train_toy

    from asr_kd.train.dataset import load_split

    data, _ = train_toy.make_toy_data(tmp_path / "toy", num_train=4, num_dev=2)
    archives = sorted(data.glob("senones_train*.h5"))
    assert archives
    _truncate(archives[0], 0.5)
    load_split(data, "dev")  # another split's archive is not this one's business
    with pytest.raises(BadInputError) as e:
        load_split(data, "train")
    assert f"{archives[0]} is truncated or not a HDF5 file" in str(e.value)
    assert "rerun 'senone-targets'" in str(e.value)


def test_damaged_feature_archive_names_the_cut_and_the_file(tmp_path):
    """lilcom's "decompress_float returned 7" becomes the cut, the archive and its maker."""
    import numpy as np
    from lhotse import LilcomChunkyWriter, MonoCut
    from lhotse.features import Features

    from asr_kd.checked import load_features

    x = np.random.default_rng(0).standard_normal((300, 80)).astype(np.float32)
    with LilcomChunkyWriter(tmp_path / "feats") as writer:
        key = writer.write("utt1", x)
    archive = tmp_path / "feats.lca"
    features = Features(type="fbank", num_frames=300, num_features=80, frame_shift=0.01,
                        sampling_rate=16000, start=0, duration=3.0,
                        storage_type="lilcom_chunky", storage_path=str(archive),
                        storage_key=key)  # fmt: skip
    cut = MonoCut("utt1", 0, 3.0, 0, features=features)
    assert np.abs(load_features(cut) - x).max() < 0.05
    data = bytearray(archive.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 200] = bytes(200)  # zeros in the middle
    archive.write_bytes(bytes(data))
    with pytest.raises(BadInputError) as e:
        load_features(cut, reader="train")
    message = str(e.value)
    assert message.startswith(f"train: cut utt1: the features in {archive} cannot be read")
    assert "rerun 'compute-features'" in message and "\n" not in message


def test_an_error_from_a_dataloader_worker_is_its_own_message():
    from asr_kd.cli.main import _original_lines

    text = (
        "Caught BadInputError in DataLoader worker process 0.\nOriginal Traceback (most "
        'recent call last):\n  File "x.py", line 3, in f\n    raise BadInputError(m)\n'
        "asr_kd.errors.BadInputError: train: cut utt1: the features cannot be read\n"
    )
    assert _original_lines(text) == ["train: cut utt1: the features cannot be read"]
    assert _original_lines("two\nlines") == ["two", "lines"]


def test_a_model_file_that_is_no_asr_kd_model_or_does_not_fit_is_named(tmp_path, tmp_path_factory):
    from teacher_toy import toy_teachers

    from asr_kd.train.checkpoint import load_model

    source = toy_teachers(tmp_path_factory)[0] / "model.pt"
    doc = torch.load(source, weights_only=True)
    plain = tmp_path / "plain.pt"
    torch.save(doc["state_dict"], plain)  # a bare state_dict, as a user's training saves
    with pytest.raises(BadInputError, match=r"plain.pt is a torch file but no asr-kd model"):
        load_model(plain)
    name = next(k for k in doc["state_dict"] if k.endswith("weight"))
    doc["state_dict"][name] = doc["state_dict"][name][:-1]  # one row short
    edited = tmp_path / "edited.pt"
    torch.save(doc, edited)
    with pytest.raises(BadInputError) as e:
        load_model(edited)
    message = str(e.value)
    assert f"the weights in {edited} do not fit the model it describes" in message
    assert "size mismatch" in message and "\n" not in message and "rerun 'train'" in message


def test_sigterm_removes_the_stages_temporary_output_and_lock(tmp_path):
    """A batch system's time limit or ``kill`` unwinds the stage as Ctrl-C does."""
    import signal
    import time

    out = tmp_path / "corpus"
    conf = Path(__file__).parents[1] / "recipes" / "synth" / "conf" / "tiny.yaml"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from asr_kd.cli.main import cli; cli()", "synth-corpus",
         "--config", str(conf), str(out)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while not list(tmp_path.glob("corpus.tmp-*")) and time.time() < deadline:
        time.sleep(0.1)
    assert list(tmp_path.glob("corpus.tmp-*")), "the stage never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1] == "asr-kd synth-corpus: terminated"
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no tmp dir, no lock, no output


def test_a_missing_stage_output_given_as_text_names_its_stage(tmp_path):
    """Not click's "Invalid value for '--words-from': File ... does not exist"."""
    missing = tmp_path / "data" / "manifests" / "synth_supervisions_train.jsonl.gz"
    result = _run(["prepare-lang", "--words-from", str(missing), str(tmp_path / "lang")])
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert line == (f"asr-kd prepare-lang: error: manifest {missing} does not exist: run the "
                    "'prepare' stage that writes it first")  # fmt: skip
    assert not (tmp_path / "lang").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_full_disk_is_one_line_in_a_command_and_in_a_library_thread(monkeypatch, tmp_path):
    """A write that finds no space (the kernel's /dev/full: ENOSPC) ends the command with
    one line saying what to do (and the file, when the error names one); one in a
    library's background thread (as tensorboard's event writer on a full disk) is one
    line too, never a raw traceback."""
    import threading

    from asr_kd.protocol import ProtocolConfig

    def write_full() -> None:
        with open("/dev/full", "w") as f:
            f.write("x" * 65536)

    def in_a_thread(self, key):
        thread = threading.Thread(target=write_full, name="event-writer")
        thread.start()
        thread.join()
        return "yes"

    monkeypatch.setattr(ProtocolConfig, "value", in_a_thread)
    result = _run(["--log-file", str(tmp_path / "run.log"), "protocol", "sweeps"])
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert "background thread event-writer failed: OSError: [Errno 28]" in result.output
    assert "Traceback" in (tmp_path / "run.log").read_text()  # kept for a bug report

    monkeypatch.setattr(ProtocolConfig, "value", lambda self, key: write_full())
    result = _run(["protocol", "sweeps"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("asr-kd protocol: error: no space left on the device"), line
    assert "rerun the same command" in line

    # an error that names its file (io.open of a new file on a full disk) names it too
    def full(self, key):
        raise OSError(errno.ENOSPC, "No space left on device", "/w/exp/student/log/events")

    monkeypatch.setattr(ProtocolConfig, "value", full)
    result = _run(["protocol", "sweeps"])
    assert "no space left on the device writing /w/exp/student/log/events" in result.output


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
