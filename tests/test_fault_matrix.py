"""Fault injection generated from what the stages record of their inputs.

A short chain of stages runs once through the CLI: ``prepare`` and ``compute-features``
on the tiny synthesised corpus; ``make-graph`` from a tiny lang directory, LM and tree;
on a toy task whose senones are that tree's, ``train``, ``eval-ensemble`` on the trained
model, ``cache-soft-targets`` of it, ``distill`` from that cache and ``decode`` with the
model and the graph. Every finished output's marker lists the files the stage read
(through :mod:`asr_kd.checked` or :func:`asr_kd.stage.require_file`; of a corpus's audio,
the first file of each manifest) and the command line that wrote it. For each of those
files and each damage, the file is damaged in place and the recorded command is rerun
with ``--force``: it must exit 1 with an error line that names the command (a list of
cuts may follow it) and a message naming the file, and
leave the finished output as it was (no temporary or work directories). A new stage gets
its rows by reading its inputs through ``asr_kd.checked``; nothing here names a file.

The damages: missing, empty, truncated, bytes corrupted in the middle, and replaced by
the same file of another output of the same stage with other shapes (another senone
count, feature dimension, k; another tree).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from asr_kd.cli.main import cli
from asr_kd.stage import read_marker

DAMAGES = ("missing", "empty", "truncated", "corrupted", "other")
STAGES = {"prepare synth", "compute-features", "make-graph", "train", "eval-ensemble",
          "cache-soft-targets", "distill", "decode"}  # fmt: skip


def _damage(path: Path, how: str, other: Path | None) -> bool:
    """Damage ``path`` in place; ``False`` when the damage does not apply to it."""
    if how == "missing":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "corrupted":  # a bad sector: 64 bytes in the middle, length unchanged
        data = bytearray(path.read_bytes())
        middle = len(data) // 2
        data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
        path.write_bytes(bytes(data))
    else:
        if other is None or not other.is_file() or other.read_bytes() == path.read_bytes():
            return False
        shutil.copyfile(other, path)
    return True


def _toy_for_tree(root: Path, tree_dir: Path, lang, sentences: list[str], feat_dim: int,
                  num_senones: int) -> tuple[Path, Path]:  # fmt: skip
    """Toy senone targets of the tree in ``tree_dir`` (its id), with priors and references."""
    import numpy as np
    import train_toy
    from lhotse import CutSet, SupervisionSegment
    from lhotse.utils import fastcopy

    from asr_kd.stage import file_digest, record_outputs
    from asr_kd.tree.priors import write_priors

    data, feats = train_toy.make_toy_data(
        root, num_senones=num_senones, feat_dim=feat_dim, num_train=6, num_dev=3,
        tree_id=file_digest(tree_dir / "tree.json"),
    )  # fmt: skip
    path = data / "toy_cuts_dev.jsonl.gz"
    cuts = CutSet.from_file(path).to_eager()
    cuts = CutSet.from_cuts(
        fastcopy(c, supervisions=[SupervisionSegment(
            id=c.id, recording_id=c.id, start=0.0, duration=c.duration, text=sentences[i])])
        for i, c in enumerate(cuts)
    )  # fmt: skip
    cuts.to_file(path)
    shutil.copy(path, data / "toy_cuts_test.jsonl.gz")
    write_priors(data / "priors.json", np.arange(1.0, num_senones + 1.0))
    for d in (data, feats):  # as the stages that make them record what they wrote
        record_outputs(d)
    return data, feats


def _run_chain(root: Path, corpus: Path, graph, dim: int, senones: int, k: int) -> list[Path]:
    """Run every stage under test into ``root``; their output directories."""
    data, feats = _toy_for_tree(root / "toy", graph.tree, graph.lang, graph.sentences, dim,
                                senones)  # fmt: skip
    conf = root / "conf.yaml"
    conf.write_text(
        "teacher:\n  model: {arch: dnn, options: {num_layers: 1, hidden_dim: 8}}\n"
        "  max_epochs: 1\n  max_duration: 3.0\n  num_workers: 0\n"
        "student:\n  model: {arch: dnn, options: {num_layers: 1, hidden_dim: 8}}\n"
        f"  max_epochs: 1\n  max_duration: 3.0\n  num_workers: 0\n"
        f"distill:\n  temperature: 2.0\n  k: {k}\n"
    )
    model, cache, exp = root / "exp" / "teacher1", root / "soft", root / "exp"
    commands = [
        ["prepare", "synth", str(corpus), str(root / "manifests")],
        ["compute-features", "--section", "mfcc", "--set", "kind=mfcc", "--set", "device=cpu",
         str(root / "manifests"), str(root / "mfcc")],
        ["make-graph", str(graph.lang.dir), str(graph.lm), str(graph.tree), str(root / "graph")],
        ["train", "--config", str(conf), "--section", "teacher", "--device", "cpu",
         str(data), str(feats), str(model)],
        ["eval-ensemble", str(data), str(model), "--device", "cpu", "--split", "dev",
         "--out-dir", str(exp / "eval" / "teacher1")],
        ["cache-soft-targets", "--config", str(conf), "--teacher", str(model), "--device", "cpu",
         "--max-duration", "3", "--num-workers", "0", str(data), str(feats), str(cache)],
        ["distill", "--config", str(conf), "--teacher", str(model), "--cache-dir", str(cache),
         "--device", "cpu", str(data), str(feats), str(exp / "student")],
        ["decode", str(data / "toy_cuts_dev.jsonl.gz"), str(root / "graph"),
         str(exp / "decode_dev"), "--model", str(model / "model.pt"), "--priors", str(data),
         "--device", "cpu", "--lm-weight", "1.0", "--lang", str(graph.lang.dir)],
    ]  # fmt: skip
    for args in commands:
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, (args[0], result.output)
    return [root / "manifests", root / "mfcc", root / "graph", model, exp / "eval" / "teacher1",
            cache, exp / "student", exp / "decode_dev"]  # fmt: skip


@pytest.fixture(scope="module")
def chains(tmp_path_factory, tiny_corpus):
    """The chain of stages, and a second one whose shapes differ (its files are the
    'other' damage): another feature dimension, senone count (another tree) and k."""
    from types import SimpleNamespace

    from graph.test_graph import lm_sentences, synthetic_tree, write_tree_dir

    from asr_kd.lang import Lang, prepare_lang, train_lm

    root = tmp_path_factory.mktemp("faults")
    sentences = lm_sentences(60, seed=0)
    (root / "lm.txt").write_text("\n".join(sentences) + "\n")
    lang_dir = prepare_lang([w for s in sentences for w in s.split()], root / "lang")
    lm = train_lm(root / "lm.txt", lang_dir, root / "lm")
    lang = Lang.load(lang_dir)
    outputs = []
    for name, drop, dim, k in (("main", 0, 6, 4), ("other", 12, 5, 3)):
        tree = synthetic_tree(lang, sentences[drop:])
        tree_dir = write_tree_dir(tree, root / f"tree_{name}")
        graph = SimpleNamespace(lang=lang, lm=lm, tree=tree_dir, sentences=sentences)
        outputs.append(_run_chain(root / name, tiny_corpus, graph, dim, tree.num_senones, k))
    return outputs


def _twin(path: Path, main: Path, other: Path) -> Path | None:
    """The file of the other chain at ``path``'s place in the main one."""
    try:
        return other / path.relative_to(main)
    except ValueError:
        return None


def _siblings(out: Path) -> set[str]:
    return {p.name for p in out.parent.iterdir() if p.name.startswith(out.name)}


def test_every_file_a_stage_read_is_named_when_damaged(chains):
    main, other = chains
    main_root, other_root = main[0].parent, other[0].parent
    rows = [(out, Path(path), how) for out in main for path in read_marker(out)["files"]
            for how in DAMAGES]  # fmt: skip
    stages = {read_marker(out)["stage"] for out, _, _ in rows}
    assert stages == STAGES  # each recorded what it read
    read = {(read_marker(out)["stage"], p.name) for out, p, _ in rows}
    assert {("decode", "model.pt"), ("decode", "HCLG.fst"), ("decode", "priors.json"),
            ("make-graph", "G.fst"), ("make-graph", "tree.json"),
            ("eval-ensemble", "model.pt")} <= read  # fmt: skip
    assert any(s == "prepare synth" and n.endswith(".flac") for s, n in read)  # the audio
    failures, tried = [], 0
    for out, path, how in rows:
        marker = read_marker(out)
        saved, before = path.read_bytes(), _siblings(out)
        try:
            if not _damage(path, how, _twin(path, main_root, other_root)):
                continue
            result = CliRunner().invoke(cli, [*marker["command"][1:], "--force"])
        finally:
            path.write_bytes(saved)
        tried += 1
        lines = result.output.strip().splitlines()
        command = marker["command"][1]
        ok = (
            result.exit_code == 1
            and "Traceback" not in result.output
            and any(line.startswith(f"asr-kd {command}: error: ") for line in lines)
            and (str(path) in result.output or (how == "missing" and str(path.parent) in lines[-1]))
            and read_marker(out)["run_id"] == marker["run_id"]  # the finished output is intact
            and _siblings(out) == before  # no tmp-, work or lock directory left behind
        )
        if not ok:  # (an error listing several cuts goes on below its first line)
            failures.append(f"{command} {how} {path}: exit {result.exit_code}: {lines[-3:]}")
    assert not failures, f"{len(failures)} of {tried} rows:\n" + "\n".join(failures)


def test_a_file_of_another_output_is_named_by_what_differs(chains):
    """Shapes disagree: a whole output of the other chain given where the main one's was
    (so its own record is consistent) is refused by the reader's own checks."""
    main, other = chains
    decode_out, model = main[-1], main[3]
    marker = read_marker(decode_out)
    saved = model.with_name("teacher1.saved")
    model.rename(saved)
    shutil.copytree(other[3], model)
    try:
        result = CliRunner().invoke(cli, [*marker["command"][1:], "--force"])
    finally:
        shutil.rmtree(model)
        saved.rename(model)
    line = result.output.strip().splitlines()[-1]
    assert result.exit_code == 1 and line.startswith("asr-kd decode: error: "), result.output
    assert "senones" in line or "tree" in line, line
    assert json.loads((decode_out / "wer.json").read_text())  # the old decode is intact


def test_truncated_model_given_to_decode(chains):
    """The issue's example: a truncated model.pt given to decode is named, with train."""
    decode_out, model = chains[0][-1], chains[0][3] / "model.pt"
    marker, saved = read_marker(decode_out), model.read_bytes()
    model.write_bytes(saved[: len(saved) // 2])
    try:
        result = CliRunner().invoke(cli, [*marker["command"][1:], "--force"])
    finally:
        model.write_bytes(saved)
    line = result.output.strip().splitlines()[-1]
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert line.startswith(f"asr-kd decode: error: decode: {model} is truncated"), line
    assert "rerun 'train'" in line
    assert read_marker(decode_out)["run_id"] == marker["run_id"]
