"""Fault injection generated from what the stages record of their inputs.

A short chain of stages runs once through the CLI: ``compute-features`` on the tiny
synthesised corpus's manifests; on the toy task ``train``, ``eval-ensemble`` on the
trained model, ``cache-soft-targets`` of it and ``distill`` from that cache. Every
finished output's marker lists the files the stage read through :mod:`asr_kd.checked`
and the command line that wrote it. For each of those files and each damage, the file
is damaged in place and the recorded command is rerun with ``--force``: it must exit 1
with one line that names the command and the file, and leave the finished output as it
was (no temporary directories). A new stage gets its rows by reading its inputs through
``asr_kd.checked``; nothing here names a file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from asr_kd.cli.main import cli
from asr_kd.stage import read_marker

DAMAGES = ("missing", "empty", "truncated")


def _damage(path: Path, how: str) -> None:
    if how == "missing":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    else:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])


@pytest.fixture(scope="module")
def chain(tmp_path_factory, tiny_manifests):
    """MFCCs of the tiny corpus, a model trained on the toy data and its evaluation, each
    written by an asr-kd command."""
    import train_toy

    root = tmp_path_factory.mktemp("faults")
    data, feats = train_toy.make_toy_data(root / "toy", num_train=6, num_dev=3)
    shutil.copy(data / "toy_cuts_dev.jsonl.gz", data / "toy_cuts_test.jsonl.gz")
    conf = root / "conf.yaml"
    conf.write_text(
        "teacher:\n  model: {arch: dnn, options: {num_layers: 1, hidden_dim: 8}}\n"
        "  max_epochs: 1\n  max_duration: 3.0\n  num_workers: 0\n"
        "student:\n  model: {arch: dnn, options: {num_layers: 1, hidden_dim: 8}}\n"
        "  max_epochs: 1\n  max_duration: 3.0\n  num_workers: 0\n"
        "distill:\n  temperature: 2.0\n  k: 4\n"
    )
    model, cache = root / "exp" / "teacher1", root / "soft"
    commands = [
        ["compute-features", "--section", "mfcc", "--set", "kind=mfcc", "--set", "device=cpu",
         str(tiny_manifests), str(root / "mfcc")],
        ["train", "--config", str(conf), "--section", "teacher", "--device", "cpu",
         str(data), str(feats), str(model)],
        ["eval-ensemble", str(data), str(model), "--device", "cpu", "--split", "dev",
         "--out-dir", str(root / "exp" / "eval" / "teacher1")],
        ["cache-soft-targets", "--config", str(conf), "--teacher", str(model), "--device", "cpu",
         "--max-duration", "3", "--num-workers", "0", str(data), str(feats), str(cache)],
        ["distill", "--config", str(conf), "--teacher", str(model), "--cache-dir", str(cache),
         "--device", "cpu", str(data), str(feats), str(root / "exp" / "student")],
    ]  # fmt: skip
    for args in commands:
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
    return [root / "mfcc", model, root / "exp" / "eval" / "teacher1", cache,
            root / "exp" / "student"]  # fmt: skip


def _rows(outputs: list[Path]) -> list[tuple[Path, Path, str]]:
    return [
        (out, Path(path), how)
        for out in outputs
        for path in read_marker(out)["files"]
        for how in DAMAGES
    ]


def test_every_file_a_stage_read_is_named_when_damaged(chain):
    rows = _rows(chain)
    stages = {read_marker(out)["stage"] for out, _, _ in rows}
    assert stages == {"compute-features", "train", "eval-ensemble", "cache-soft-targets",
                      "distill"}  # each recorded what it read  # fmt: skip
    assert any(p.name == "model.pt" for _, p, _ in rows)  # eval-ensemble read the model
    failures = []
    for out, path, how in rows:
        marker = read_marker(out)
        saved = path.read_bytes()
        _damage(path, how)
        try:
            result = CliRunner().invoke(cli, [*marker["command"][1:], "--force"])
        finally:
            path.write_bytes(saved)
        lines = result.output.strip().splitlines()
        command = marker["command"][1]
        ok = (
            result.exit_code == 1
            and "Traceback" not in result.output
            and lines[-1].startswith(f"asr-kd {command}: error: ")
            and (str(path) in result.output or (how == "missing" and str(path.parent) in lines[-1]))
            and read_marker(out)["run_id"] == marker["run_id"]  # the finished output is intact
            and not list(out.parent.glob(f"{out.name}.tmp-*"))
        )
        if not ok:
            failures.append(f"{command} {how} {path}: exit {result.exit_code}: {lines[-1:]}")
    assert not failures, "\n".join(failures)
