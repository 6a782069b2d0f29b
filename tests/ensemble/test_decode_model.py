"""``asr-kd decode --model SPEC``: an ensemble of precomputed-posterior teachers decodes."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import kaldifst
import numpy as np
import yaml
from click.testing import CliRunner
from lhotse import CutSet, MonoCut, NumpyHdf5Writer, SupervisionSegment

import asr_kd.decode.stage as decode_stage
from asr_kd.cli.decode import decode
from asr_kd.tree.priors import write_priors

TREE = "tree0123456789ab"
WORDS = {0: "<eps>", 1: "A", 2: "B"}
PRONS = {1: [1, 2], 2: [3, 4]}  # graph labels; label k reads senone k - 1
NUM_SENONES = 4


@dataclass
class TinyGraph:
    """What ``asr_kd.graph.load_graph`` returns: a word loop over A and B."""

    fst: kaldifst.StdVectorFst
    label_to_senone: np.ndarray
    words: dict[int, str]
    num_senones: int = NUM_SENONES
    tree_id: str = TREE
    words_sha: str = "words0123456789a"


def _graph() -> TinyGraph:
    lines, state = [], 1
    for word, labels in PRONS.items():
        prev = 0
        for i, label in enumerate(labels):
            olabel, cost = (word, math.log(2)) if i == 0 else (0, 0.0)
            lines += [f"{prev} {state} {label} {olabel} {cost}", f"{state} {state} {label} 0 0.1"]
            prev, state = state, state + 1
        lines.append(f"{prev} 0 0 0 0.0")
    fst = kaldifst.compile("\n".join([*lines, "0 0.0"]) + "\n")
    return TinyGraph(fst, np.array([0, 1, 2, 3]), dict(WORDS))


def _inputs(tmp_path, texts):
    """Cuts with senone targets and transcripts, a senone-targets dir, a graph dir."""
    senone_dir = tmp_path / "senones"
    senone_dir.mkdir()
    cuts, targets = [], {}
    with NumpyHdf5Writer(senone_dir / "senones.h5") as writer:
        for i, words in enumerate(texts):
            seq = np.array([k - 1 for w in words for k in PRONS[w] for _ in range(4)], np.int32)
            cid = f"utt{i}"
            targets[cid] = seq
            sup = SupervisionSegment(cid, cid, 0.0, len(seq) / 100,
                                     text=" ".join(WORDS[w] for w in words))  # fmt: skip
            array = writer.store_array(cid, seq, frame_shift=0.01, temporal_dim=0)
            cuts.append(MonoCut(cid, 0.0, len(seq) / 100, 0, supervisions=[sup],
                                custom={"senones": array}))  # fmt: skip
    CutSet.from_cuts(cuts).to_file(senone_dir / "cuts_dev.jsonl.gz")
    (senone_dir / "info.json").write_text(json.dumps({"num_senones": NUM_SENONES, "tree_id": TREE}))
    write_priors(senone_dir / "priors.json", np.array([10.0, 20.0, 10.0, 5.0]))
    (senone_dir / ".done.json").write_text(json.dumps({"stage": "senone-targets", "config": {}}))
    graph_dir = tmp_path / "graph"
    graph_dir.mkdir()
    return senone_dir, graph_dir, targets


def _noisy_teacher(tmp_path, name, targets, seed) -> str:
    """A posterior teacher that is right on most frames and confidently wrong on some."""
    rng = np.random.default_rng(seed)
    folder = tmp_path / name
    folder.mkdir()
    for cid, seq in targets.items():
        p = np.full((len(seq), NUM_SENONES), 0.05)
        p[np.arange(len(seq)), seq] = 0.85
        wrong = rng.random(len(seq)) < 0.1
        p[wrong] = 0.05
        p[wrong, rng.integers(NUM_SENONES, size=int(wrong.sum()))] = 0.85
        np.save(folder / f"{cid}.npy", p.astype(np.float32))
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(yaml.safe_dump({"posteriors": name, "domain": "prob", "tree_id": TREE,
                                    "num_senones": NUM_SENONES}))  # fmt: skip
    return str(spec)


def test_decode_an_ensemble_spec(tmp_path, monkeypatch):
    monkeypatch.setattr(decode_stage, "_load_graph", lambda _: _graph())
    senone_dir, graph_dir, targets = _inputs(tmp_path, [[1, 2], [2, 1, 2], [2], [1, 2, 1]])
    members = [_noisy_teacher(tmp_path, f"t{k}", targets, seed=k) for k in range(3)]
    cuts = str(senone_dir / "cuts_dev.jsonl.gz")
    out = tmp_path / "decode_dev"
    args = [cuts, str(graph_dir), str(out), "--model", f"ensemble:{','.join(members)}:geometric",
            "--priors", str(senone_dir), "--lm-weight", "1.0"]  # fmt: skip
    result = CliRunner().invoke(decode, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "wer.json").read_text())
    assert report["wer"] == 0.0 and report["num_utts"] == 4
    assert (
        "ensemble[geometric" in json.loads((out / ".done.json").read_text())["config"]["scores_id"]
    )

    result = CliRunner().invoke(decode, [cuts, str(graph_dir), str(tmp_path / "x"), "--model",
                                         members[0]])  # fmt: skip
    assert "--model needs --priors" in str(result.exception)
    (tmp_path / "other.yaml").write_text(
        (tmp_path / "t0.yaml").read_text().replace(TREE, "othertree00000")
    )
    args = [cuts, str(graph_dir), str(tmp_path / "y"), "--model", str(tmp_path / "other.yaml"),
            "--priors", str(senone_dir)]  # fmt: skip
    result = CliRunner().invoke(decode, args)
    assert "tree othertree00000 but" in str(result.exception)
