import json
import os
import subprocess
import sys

import pytest

from asr_kd.errors import (
    AsrKdError,
    BadInputError,
    MissingInputError,
    StageBusyError,
    StaleInputError,
)
from asr_kd.stage import acquire_lock, is_done, read_marker, require_done, stage_output


def test_output_appears_only_when_stage_succeeds(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with stage_output(out, "demo", {"a": 1}) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("killed")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []

    with stage_output(out, "demo", {"a": 1}) as tmp:
        (tmp / "result.txt").write_text("done")
    assert (out / "result.txt").read_text() == "done"
    marker = read_marker(out)
    assert marker["stage"] == "demo" and marker["config"] == {"a": 1}
    assert "torch" in marker["versions"] and marker["git_revision"]


def test_rerun_skips_and_config_change_refuses(tmp_path):
    out = tmp_path / "out"
    with stage_output(out, "demo", {"a": 1}) as tmp:
        (tmp / "r.txt").write_text("1")
    with stage_output(out, "demo", {"a": 1}) as tmp:
        assert tmp is None
    with pytest.raises(AsrKdError, match="another configuration"):
        with stage_output(out, "demo", {"a": 2}):
            pass
    with stage_output(out, "demo", {"a": 2}, force=True) as tmp:
        (tmp / "r.txt").write_text("2")
    assert (out / "r.txt").read_text() == "2"
    assert json.loads((out / ".done.json").read_text())["config"] == {"a": 2}


def test_require_done_names_the_stage(tmp_path):
    with pytest.raises(MissingInputError, match="does not exist: run the 'synth-corpus'"):
        require_done(tmp_path / "corpus", "synth-corpus")
    (tmp_path / "corpus").mkdir()
    with pytest.raises(MissingInputError, match="incomplete"):
        require_done(tmp_path / "corpus", "synth-corpus")
    assert not is_done(tmp_path / "corpus")


def _make(out, stage="demo", config=None, inputs=(), force=False):
    """Run a toy stage that checks ``inputs`` (paths, stage) and writes one file."""
    for path, maker in inputs:
        require_done(path, maker)
    with stage_output(out, stage, config or {}, force=force) as tmp:
        if tmp is not None:
            (tmp / "r.txt").write_text("x")
        return tmp is not None


def test_marker_records_inputs_and_redone_input_refuses(tmp_path):
    up, down = tmp_path / "ali", tmp_path / "tree"
    _make(up, "align")
    _make(down, "build-tree", inputs=[(up, "align")])
    inputs = read_marker(down)["inputs"]
    assert list(inputs) == [str(up.resolve())] and inputs[str(up.resolve())]["stage"] == "align"
    assert not _make(down, "build-tree", inputs=[(up, "align")])  # unchanged: skipped
    _make(up, "align", force=True)  # the upstream stage is redone
    with pytest.raises(
        StaleInputError, match=r"ali was redone by 'align'.*rerun 'build-tree' with --force"
    ):
        _make(down, "build-tree", inputs=[(up, "align")])
    assert (down / "r.txt").is_file()  # the old output is left as it was
    assert _make(down, "build-tree", inputs=[(up, "align")], force=True)
    assert not _make(down, "build-tree", inputs=[(up, "align")])


def test_removed_input_refuses(tmp_path):
    up, down = tmp_path / "a", tmp_path / "b"
    _make(up, "align")
    _make(down, "build-tree", inputs=[(up, "align")])
    (up / ".done.json").unlink()
    with pytest.raises(StaleInputError, match="gone or unfinished"):
        _make(down, "build-tree")


def test_second_writer_fails_at_once_and_first_finishes(tmp_path):
    out = tmp_path / "out"
    code = (
        "import sys, time\n"
        "from asr_kd.stage import stage_output\n"
        "with stage_output(sys.argv[1], 'train', {}) as tmp:\n"
        "    print('started', flush=True)\n"
        "    time.sleep(float(sys.argv[2]))\n"
        "    (tmp / 'r.txt').write_text('winner')\n"
    )
    first = subprocess.Popen(
        [sys.executable, "-c", code, str(out), "3"], stdout=subprocess.PIPE, text=True
    )
    assert first.stdout.readline().strip() == "started"
    with pytest.raises(
        StageBusyError, match=rf"another asr-kd train \(pid {first.pid}\) is writing .*out"
    ):
        with stage_output(out, "train", {}):
            pass
    assert first.wait(60) == 0
    assert (out / "r.txt").read_text() == "winner"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no lock, no tmp left
    with stage_output(out, "train", {}) as tmp:
        assert tmp is None


def test_stale_tmp_of_a_dead_process_is_removed(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    (tmp_path / f"mfcc.tmp-{pid}").mkdir()
    (tmp_path / f"mfcc.tmp-{pid}" / "half.lca").write_text("half")
    (tmp_path / f"mfcc.tmp-{os.getppid()}").mkdir()  # a live process's: kept
    _make(tmp_path / "mfcc", "compute-features")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mfcc", f"mfcc.tmp-{os.getppid()}"]


def test_lock_is_reentrant_and_released_by_stage_output(tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    acquire_lock("out", "train")  # a training's work directory holds it for the whole run
    with stage_output(out, "train", {}) as tmp:
        (tmp / "r.txt").write_text("x")
    assert not (tmp_path / "out.lock").exists()


def test_output_under_a_file_is_refused(tmp_path):
    (tmp_path / "exp").write_text("not a directory")
    with pytest.raises(BadInputError, match="exp is a file, not a directory"):
        _make(tmp_path / "exp" / "mono", "train-mono")


def test_an_output_where_nothing_can_be_written_is_refused_before_any_work(tmp_path):
    from click.testing import CliRunner

    from asr_kd.cli.main import cli

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / ".done.json").write_text('{"stage": "prepare", "config": {}}')
    (tmp_path / "m" / "c_cuts_dev.jsonl.gz").write_bytes(b"x")
    # /proc takes no new directories or files, even from root (whom chmod does not stop)
    for out, message in (("/proc/asr-kd-x/out", "cannot create /proc/asr-kd-x"),
                         ("/proc/asr-kd-out", "cannot write into /proc (")):  # fmt: skip
        result = CliRunner().invoke(cli, ["compute-features", str(tmp_path / "m"), out])
        line = result.output.strip().splitlines()[-1]
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert line.startswith("asr-kd compute-features: error: compute-features: "), line
        assert message in line, line
        assert "c_cuts_dev" not in result.output  # refused before reading any input


def test_corrupt_marker_is_named(tmp_path):
    _make(tmp_path / "out")
    (tmp_path / "out" / ".done.json").write_text("{trunc")
    with pytest.raises(BadInputError, match=r"out/.done.json is not a valid completion marker"):
        _make(tmp_path / "out")


def test_a_corrupt_input_marker_is_named_by_the_reading_stage(tmp_path):
    _make(tmp_path / "corpus", stage="synth-corpus")
    (tmp_path / "corpus" / ".done.json").write_text("{trunc")
    with pytest.raises(BadInputError, match=r"corpus/.done.json is not a valid completion"):
        _make(tmp_path / "out", inputs=[(tmp_path / "corpus", "synth-corpus")])
    assert not (tmp_path / "out").exists()


def test_a_directory_of_other_files_is_not_replaced_without_force(tmp_path):
    """An existing directory that no stage finished holds somebody's files: kept."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    with pytest.raises(BadInputError, match=r"out exists and holds files \(precious.txt\)"):
        _make(out)
    assert (out / "precious.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert _make(out, force=True) and not (out / "precious.txt").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _make(empty) and is_done(empty)  # an empty directory is simply filled


def test_an_output_of_another_stage_names_its_writer(tmp_path):
    _make(tmp_path / "fbank", stage="compute-features")
    with pytest.raises(AsrKdError, match="output of 'compute-features', not of 'prepare synth'"):
        _make(tmp_path / "fbank", stage="prepare synth")
    assert read_marker(tmp_path / "fbank")["stage"] == "compute-features"


def test_json_stage_computes_once_and_refuses_after_an_input_is_redone(tmp_path):
    from asr_kd.stage import json_stage

    up, out = tmp_path / "teacher", tmp_path / "eval"
    _make(up, "train")
    calls = []

    def compute():
        calls.append(1)
        return {"frame_acc": 0.5}

    def run(force=False):
        require_done(up, "train")
        return json_stage(out, "eval-ensemble", {"k": 1}, compute, force)

    assert run() == {"frame_acc": 0.5} and json.loads((out / "eval.json").read_text())
    assert run() == {"frame_acc": 0.5} and len(calls) == 1  # read back, not recomputed
    _make(up, "train", force=True)
    with pytest.raises(StaleInputError, match="rerun 'eval-ensemble' with --force"):
        run()
    assert run(force=True) == {"frame_acc": 0.5} and len(calls) == 2
