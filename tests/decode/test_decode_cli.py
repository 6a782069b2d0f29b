"""``asr-kd decode`` on the tiny hand-built graph: dev and test in one command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from lhotse import CutSet
from test_decode import (
    NUM_SENONES,
    PRONS,
    WORD_COST,
    TinyGraph,
    make_cuts,
    word_loop_fst,
    write_words,
)

import asr_kd.decode.stage as decode_stage
from asr_kd.cli.main import cli
from asr_kd.stage import read_marker, stage_output
from asr_kd.tree.priors import write_priors

TIMING = {"rtf", "rtf_search", "score_seconds", "search_seconds", "frames_per_second"}


@pytest.fixture()
def decode_inputs(tmp_path: Path, monkeypatch) -> dict[str, str]:
    """A finished senone-targets dir, dev and test cut manifests, a graph dir, a lang dir."""
    graph = TinyGraph(word_loop_fst(PRONS, WORD_COST))
    graph_dir = tmp_path / "graph"
    graph_dir.mkdir()
    graph.fst.write(str(graph_dir / "HCLG.fst"))
    monkeypatch.setattr(decode_stage, "_load_graph", lambda _: graph)
    senones = tmp_path / "senones"
    with stage_output(senones, "senone-targets", {}) as tmp:
        write_priors(tmp / "priors.json", np.array([10.0, 20.0, 10.0, 5.0]))
        info = {"num_senones": NUM_SENONES, "tree_id": graph.tree_id}
        (tmp / "info.json").write_text(json.dumps(info))
    (tmp_path / "dev").mkdir()
    (tmp_path / "test").mkdir()
    dev = CutSet.from_cuts(make_cuts(tmp_path / "dev", [[1, 2], [3, 1, 2]]))
    test = CutSet.from_cuts(make_cuts(tmp_path / "test", [[2], [2, 3], [1]]))
    test = test.modify_ids(lambda i: f"t{i}")
    paths = {"dev": tmp_path / "dev.jsonl.gz", "test": tmp_path / "test.jsonl.gz"}
    dev.to_file(paths["dev"])
    test.to_file(paths["test"])
    lang = write_words(tmp_path / "lang", graph.words)
    return {
        "senones": str(senones), "graph": str(graph_dir), "lang": str(lang),
        "dev": str(paths["dev"]), "test": str(paths["test"]),
    }  # fmt: skip


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def fails(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code != 0
    return result.output


def contents(decode_dir: Path) -> dict:
    """What a user reads in a decode dir: the files, wer.json without timings, the config."""
    wer = {k: v for k, v in json.loads((decode_dir / "wer.json").read_text()).items()
           if k not in TIMING}  # fmt: skip
    files = {n: (decode_dir / n).read_text() for n in ("hyp.txt", "errs.txt", "wer_summary.txt")}
    return {"wer": wer, "files": files, "config": read_marker(decode_dir)["config"]}


def test_dev_and_test_in_one_command_equal_the_two_calls(decode_inputs, tmp_path):
    d = decode_inputs
    common = ["--oracle", d["senones"], "--lang", d["lang"], "--set", "lm_weights=[7, 9]"]
    run("decode", *common, "--dev", d["dev"], "--test", d["test"], d["graph"],
        str(tmp_path / "one"))  # fmt: skip
    run("decode", *common, d["dev"], d["graph"], str(tmp_path / "two" / "decode_dev"))
    run("decode", *common, "--tuned-on", str(tmp_path / "two" / "decode_dev"), d["test"],
        d["graph"], str(tmp_path / "two" / "decode_test"))  # fmt: skip
    for split in ("dev", "test"):
        one = contents(tmp_path / "one" / f"decode_{split}")
        two = contents(tmp_path / "two" / f"decode_{split}")
        assert one["wer"] == two["wer"] and one["files"] == two["files"]
        assert {k: v for k, v in one["config"].items() if k != "cut_ids_sha"} == {
            k: v for k, v in two["config"].items() if k != "cut_ids_sha"}  # fmt: skip
    test = json.loads((tmp_path / "one" / "decode_test" / "wer.json").read_text())
    assert test["selected_by"] == "given" and test["lm_weight"] == 7.0
    assert test["num_utts"] == 3 and test["wer"] == 0.0
    test_marker = read_marker(tmp_path / "one" / "decode_test")
    assert {str(tmp_path / "one" / "decode_dev"), d["senones"]} <= set(test_marker["inputs"])
    # a rerun skips both splits: the markers are untouched
    before = [read_marker(tmp_path / "one" / f"decode_{s}")["run_id"] for s in ("dev", "test")]
    run("decode", *common, "--dev", d["dev"], "--test", d["test"], d["graph"],
        str(tmp_path / "one"))  # fmt: skip
    after = [read_marker(tmp_path / "one" / f"decode_{s}")["run_id"] for s in ("dev", "test")]
    assert before == after


def test_dev_test_form_refuses_mixed_arguments(decode_inputs, tmp_path):
    d = decode_inputs
    out = str(tmp_path / "out")
    oracle = ["--oracle", d["senones"]]
    assert "--dev and --test go together" in fails(
        "decode", *oracle, "--dev", d["dev"], d["graph"], out
    )
    assert "with --dev/--test, decode takes GRAPH_DIR OUT_DIR, got 3" in fails(
        "decode", *oracle, "--dev", d["dev"], "--test", d["test"], d["dev"], d["graph"], out
    )
    assert "no --lm-weight or --tuned-on" in fails(
        "decode", *oracle, "--dev", d["dev"], "--test", d["test"], "--lm-weight", "9",
        d["graph"], out,
    )  # fmt: skip
    assert "decode takes CUTS GRAPH_DIR OUT_DIR" in fails("decode", *oracle, d["graph"], out)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------
# Priors: alignment counts or the model's averaged posteriors


def posterior_teacher(tmp_path: Path, cut_paths: list[str], tree_id: str) -> str:
    """A teacher file over stored posteriors: 0.97 on each frame's reference senone."""
    from asr_kd.data.manifests import load_cuts

    arrays = {}
    for path in cut_paths:
        for cut in load_cuts(path, "test"):
            ref = np.rint(cut.load_custom("senones")).astype(int)
            post = np.full((len(ref), NUM_SENONES), 0.01)
            post[np.arange(len(ref)), ref] = 0.97
            arrays[cut.id] = np.log(post)
    with stage_output(tmp_path / "model", "train", {}) as tmp:  # as a trained model's dir
        np.savez(tmp / "post.npz", **arrays)
        (tmp / "teacher.yaml").write_text(
            f"posteriors: post.npz\ndomain: log\ntree_id: {tree_id}\nnum_senones: {NUM_SENONES}\n"
        )
    return str(tmp_path / "model" / "teacher.yaml")


def test_posterior_priors_are_averaged_selected_and_recorded(decode_inputs, tmp_path):
    d = decode_inputs
    teacher = posterior_teacher(tmp_path, [d["dev"], d["test"]], "tree0123456789ab")
    model = ["--model", teacher, "--priors", d["senones"]]
    run("adjust-priors", *model, d["dev"], str(tmp_path / "priors_posterior"))
    doc = json.loads((tmp_path / "priors_posterior" / "priors.json").read_text())
    # dev: 'A B', 'C A B' at 3 frames a label: senones 0 1 2 1 / 3 0 1 2 1 -> 27 frames
    refs = np.bincount([0, 1, 2, 1, 3, 0, 1, 2, 1], minlength=NUM_SENONES) * 3
    assert doc["source"] == "posteriors" and doc["num_frames"] == pytest.approx(27)
    np.testing.assert_allclose(doc["counts"], 0.01 * 27 + 0.96 * refs, rtol=1e-5)
    common = [
        *model,
        "--lang",
        d["lang"],
        "--set",
        "lm_weights=[9]",
        "--set",
        "word_ins_penalties=[0]",
    ]
    both = ["--dev", d["dev"], "--test", d["test"], d["graph"]]
    run("decode", *common, *both, str(tmp_path / "counts"))
    run("decode", *common, "--set", "priors=posteriors", "--posterior-priors",
        str(tmp_path / "priors_posterior"), *both, str(tmp_path / "post"))  # fmt: skip
    for split in ("dev", "test"):
        counts = json.loads((tmp_path / "counts" / f"decode_{split}" / "wer.json").read_text())
        post = json.loads((tmp_path / "post" / f"decode_{split}" / "wer.json").read_text())
        assert counts["priors"] == "counts" and counts["priors_file"].endswith(
            "senones/priors.json"
        )
        assert post["priors"] == "posteriors"
        assert post["priors_file"] == str(tmp_path / "priors_posterior" / "priors.json")
        assert post["wer"] == counts["wer"] == 0.0
        # the model is an input of every decode (retraining it makes them out of date)
        for out in ("counts", "post"):
            assert (
                str(tmp_path / "model") in read_marker(tmp_path / out / f"decode_{split}")["inputs"]
            )
    assert str(tmp_path / "model") in read_marker(tmp_path / "priors_posterior")["inputs"]
    assert "decode.priors=posteriors needs --posterior-priors DIR" in fails(
        "decode", *common, "--set", "priors=posteriors", *both, str(tmp_path / "x")
    )
    assert "priors must be one of counts, posteriors, got 'both'" in fails(
        "decode", *common, "--set", "priors=both", *both, str(tmp_path / "x")
    )
    assert not (tmp_path / "x").exists()
    # the oracle's scores are made for the alignment counts: it ignores decode.priors
    oracle = ["--oracle", d["senones"], "--set", "priors=posteriors", "--set", "lm_weights=[9]"]
    run("decode", *oracle, *both, str(tmp_path / "oracle"))
    wer = json.loads((tmp_path / "oracle" / "decode_test" / "wer.json").read_text())
    assert wer["priors"] == "counts" and wer["wer"] == 0.0


def test_prior_subset_spreads_over_the_set_and_holds_about_the_frames():
    from lhotse import MonoCut

    from asr_kd.decode.priors import prior_subset

    cuts = [MonoCut(f"c{i:03d}", 0.0, 1.0, 0) for i in range(300)]  # 100 frames each
    subset = prior_subset(cuts, 20_000)
    assert len(subset) == 200 and subset[0].id == "c000" and subset[-1].id == "c299"
    assert len({c.id for c in subset}) == 200
    assert prior_subset(cuts, 40_000) == cuts
    assert [c.id for c in prior_subset(cuts, 300)] == ["c000", "c150", "c299"]
