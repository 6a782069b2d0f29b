"""The synth recipe's stages through the shell script, as a user runs them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from lhotse import CutSet

from asr_kd.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "recipes" / "synth" / "run.sh"


def run_recipe(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(
        ["bash", str(RUN), *args], env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_tiny_recipe_corpus_to_features(tmp_path):
    res = run_recipe("--config", "tiny", "--work-dir", str(tmp_path), "--stop-stage", "3")
    assert res.returncode == 0, res.stderr[-3000:]
    for split, n in (("train", 48), ("dev", 8), ("test", 8)):
        cuts = CutSet.from_file(tmp_path / "data" / "fbank" / f"synth_cuts_{split}.jsonl.gz")
        assert len(cuts) == n
        assert all(c.has_features for c in cuts)
    assert (tmp_path / "data" / "mfcc" / "stats" / "global.json").is_file()
    assert "stage 0 took" in res.stdout and "stage 3 took" in res.stdout
    # A rerun of a finished stage is skipped, not redone.
    again = run_recipe("--config", "tiny", "--work-dir", str(tmp_path), "--stage", "2",
                       "--stop-stage", "2")  # fmt: skip
    assert again.returncode == 0
    assert "is finished; skipping" in again.stderr


def test_stage_without_its_input_fails_with_one_line(tmp_path):
    res = run_recipe("--config", "tiny", "--work-dir", str(tmp_path), "--stage", "1",
                     "--stop-stage", "1")  # fmt: skip
    assert res.returncode != 0
    assert "run the 'synth-corpus' stage first" in res.stderr
    assert "Traceback" not in res.stderr


def test_cli_error_is_one_line_and_exit_1(tmp_path):
    result = CliRunner().invoke(
        cli, ["compute-features", str(tmp_path / "nope"), str(tmp_path / "out")]
    )
    assert result.exit_code == 1
    assert "asr-kd compute-features: error:" in result.output
    assert "run the 'prepare' stage first" in result.output


def test_cli_rejects_unknown_config_option(tmp_path):
    result = CliRunner().invoke(
        cli, ["synth-corpus", "--set", "speakerz=3", str(tmp_path / "corpus")]
    )
    assert result.exit_code == 1
    assert "unknown option(s) speakerz" in result.output
