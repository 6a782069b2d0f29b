import json

import pytest

from asr_kd.errors import AsrKdError, MissingInputError
from asr_kd.stage import is_done, read_marker, require_done, stage_output


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
