"""The LibriSpeech recipe on a synthesised LibriSpeech-layout corpus, through every stage.

The corpus's split names (train-clean-5, dev-clean-2, test-clean and test-other) run the
stages every recipe shares (recipes/common/stages.sh) to the report, in the synth recipe's schema.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lhotse import CutSet

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "recipes" / "librispeech" / "run.sh"
PARTS = {"train": "train-clean-5", "dev": "dev-clean-2", "test": "test-clean"}


@pytest.fixture(scope="module")
def tiny_librispeech(tmp_path_factory):
    """recipes/librispeech/run.sh --config tiny --fake-corpus, stages 0-24."""
    tmp = tmp_path_factory.mktemp("librispeech")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    cmd = ["bash", str(RUN), "--config", "tiny", "--fake-corpus", "--corpus-dir",
           str(tmp / "download" / "LibriSpeech"), "--work-dir", str(tmp / "w")]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return tmp / "w", res


@pytest.mark.slow
def test_fake_librispeech_reaches_the_report_in_synth_schema(tiny_librispeech):
    work, res = tiny_librispeech
    exp = work / "exp"
    results = json.loads((exp / "report" / "results.json").read_text())
    assert {"systems", "gain_kept", "seed_spread", "ensemble_gain", "comparisons",
            "data_fraction"} <= set(results)  # fmt: skip
    systems = results["systems"]
    decoded = {"baseline", "teacher1", "teacher2", "ensemble", "student"}
    assert decoded | {"hard_10pct", "soft_10pct"} <= set(systems)
    for name in decoded | {"hard_10pct", "soft_10pct"}:
        assert {"params", "dev", "test", "train"} <= set(systems[name]), name
        for split in ("dev", "test"):
            entry = systems[name][split]
            assert {"frame_acc", "wer", "wer_interval"} <= set(entry), (name, split)
            # dev-clean-2 and test-clean are the report's dev and test: their frame
            # accuracy (eval JSONs keyed by the part's name) and WER are found.
            assert 1.0 < entry["frame_acc"] < 100.0, (name, split, entry)
            if name in decoded:  # tiny decodes no data-fraction model
                assert math.isfinite(entry["wer"]) and 0 <= entry["wer"] <= 150, (name, split)
    assert results["ensemble_gain"]["singles"] == ["baseline", "teacher1", "teacher2"]
    assert [r["fraction"] for r in results["data_fraction"]] == [0.1, 1.0]
    # Every stage ran, on the corpus's own split names.
    assert all(f"stage {i} took" in res.stdout for i in (*range(19), 24))
    for role, part in PARTS.items():
        cuts = CutSet.from_file(work / "data" / "senones" / f"librispeech_cuts_{part}.jsonl.gz")
        assert len(cuts) >= {"train": 90}.get(role, 9), role
    # The config's second test part (tiny: test-other, the fake corpus's other test
    # speakers) is decoded by baseline, ensemble and student at dev's LM weight and
    # reported beside test-clean.
    other = CutSet.from_file(work / "data" / "senones" / "librispeech_cuts_test-other.jsonl.gz")
    clean = CutSet.from_file(work / "data" / "senones" / "librispeech_cuts_test-clean.jsonl.gz")
    assert len(other) >= 9 and not {c.supervisions[0].speaker for c in other} & {
        c.supervisions[0].speaker for c in clean
    }
    for name in ("baseline", "ensemble", "student"):
        doc = json.loads((exp / name / "decode_test-other" / "wer.json").read_text())
        assert doc["selected_by"] != "best_on_this_set", doc  # dev's point, not tuned on it
        got = results["voices"]["splits"]["test-other"][name]
        assert got["wer"] == doc["wer"] and got["utterances"] == len(other)
    wer = json.loads((exp / "student" / "decode_test" / "wer.json").read_text())
    assert wer["wer"] == systems["student"]["test"]["wer"]
    assert "| student |" in res.stdout  # the run ends by printing the report table
