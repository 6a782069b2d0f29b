"""The report stage (``asr-kd report``): every system's numbers in one table, JSON and plots.

Inputs, per system, by convention under ``<exp>/<name>/`` (any of them may be missing)::

    model.pt                 parameters (with train.json) and the best epoch's dev
                             frame accuracy
    train.json               learning curve (per epoch) and parameter count
    eval.json                {"dev": {"frame_acc": 0.61}, "test": {"frame_acc": 0.60}}
                             (fractions; an ensemble's may list its members: "members":
                             [names or dirs]); or 'asr-kd eval-ensemble' output,
                             whose entry named like the system (else its only ensemble
                             combination) is read, members included. The evaluation
                             stages write it to <exp>/eval/<name>/eval.json (read first;
                             a system evaluated there but not trained or decoded under
                             <exp>/<name> is listed too)
    eval_<split>.json        'asr-kd eval-frame-acc --out' output: {"frame_acc": 0.61, ...}
    decode_<split>/wer.json  'asr-kd decode' output (WER in percent, LM weight, sweep, RTF)

The ``specialists`` system's ``eval.json`` ('asr-kd eval-specialists') adds systems it
scored that are not directories of ``<exp>`` (the ``generalist``, under its own
directory) and gives every system it scored ``frame_acc_in_clusters`` per split.

A system is every sub-directory of ``<exp>`` holding one of these, or the mapping given
(``--systems`` file: ``systems: {name: dir | {dir: ..., members: [...]}}`` with dirs
relative to ``<exp>``, and optionally ``baseline:``, ``ensemble:``, ``student:`` naming
those roles; by default the systems called so). An ensemble has no ``model.pt``: its
parameters are the sum of its members' (``members``, else its eval.json's list, else
every ``teacher<N>``; for ``ensemble_<n>``, teachers 1..n).

Frame accuracy per split comes from eval.json, else eval_<split>.json, else (dev) the
model.pt's, else a frame-accuracy evaluation run here when ``data_dir`` is given. Dev
WER is the best point of the dev sweep; test WER is taken at dev's LM weight and
insertion penalty (from the test sweep when the test decode chose its own point).

Output ``<out>/`` (atomic; redone whenever an input file changed)::

    results.json   {"systems": {name: {"params", "dev": {"frame_acc", "wer"},
                    "test": {"frame_acc", "wer"}}}, "gain_kept": {"frame_acc", "wer"},
                    "seed_spread": {"systems", split: {metric: {"mean", "std", "n"}}},
                    "alignments": {"<name>_ali": share of dev word starts within 20 ms}}
                   (percent; missing values null; the spread is over the baseline and
                   the teachers, single models that differ only in their seed)
    RESULTS.md     the table (with decoding RTF), the gain kept, where each number came from
    *.png          systems.png; learning_curves.png and ensemble_size.png when the data exist

``gain_kept`` is the share of the ensemble's gain over the baseline that the student
keeps, in percent: ``100 (student - baseline) / (ensemble - baseline)`` for frame
accuracy and ``100 (baseline - student) / (baseline - ensemble)`` for WER (lower is
better), on test when all three have test numbers, else on dev.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from asr_kd.align.align import alignment_accuracy
from asr_kd.errors import BadInputError
from asr_kd.report.collect import (
    ROLES,
    SPLITS,
    SystemDirs,
    add_specialist_systems,
    collect,
    discover_systems,
    ensemble_size_points,
    systems_from_mapping,
)
from asr_kd.report.document import results_document, results_markdown
from asr_kd.report.paper import add_protocol_results
from asr_kd.report.transfer import add_transfer_results, plot_transfer, transfer_inputs
from asr_kd.report.voices import add_voice_results
from asr_kd.stage import is_done, read_marker, stage_output, stale_inputs, upstream

logger = logging.getLogger(__name__)

STAGE = "report"


def _fingerprint(systems: Mapping[str, SystemDirs]) -> list[list[Any]]:
    files = []
    for s in systems.values():
        evaluated = [s.eval_dir / "eval.json"] if s.eval_dir is not None else []
        for p in sorted(
            [*s.dir.glob("*.json"), *s.dir.glob("model.pt"), *s.dir.glob("decode_*/wer.json"),
             *evaluated]
        ):  # fmt: skip
            st = p.stat()
            files.append([str(p), st.st_size, st.st_mtime_ns])
    return files


def dropped_upstream(data_dir: Path) -> dict[str, int]:
    """Cuts dropped by a stage the data was made from (allowed by ``max_dropped``): the
    stage's directory -> how many (its ``summary.json``; the ids in its dropped.txt)."""
    out = {}
    for d in [data_dir, *upstream(data_dir)]:
        summary = d / "summary.json"
        doc = json.loads(summary.read_text()) if summary.is_file() else {}
        if isinstance(doc, dict) and isinstance(doc.get("dropped"), int) and doc["dropped"] > 0:
            out[str(d)] = doc["dropped"]
    return out


def report(
    exp_dir: Path | str,
    out_dir: Path | str,
    *,
    data_dir: Path | str | None = None,
    systems: Mapping[str, Any] | None = None,
    roles: Mapping[str, str] | None = None,
    split_names: Mapping[str, str] | None = None,
    voice_splits: Sequence[Path | str] = (),
    device: str = "auto",
    force: bool = False,
) -> dict[str, Any]:
    """Write ``results.json``, ``RESULTS.md`` and the plots (``asr-kd report``).

    Args:
        exp_dir: the experiments directory (``exp/``).
        out_dir: the report directory (``exp/report``; left out of the systems).
        data_dir: a ``senone-targets`` output: evaluate the frame accuracy of models
            that have no eval JSON for a split (``None``: leave it missing).
        systems: ``{name: dir | {"dir": dir, "members": [...]}}`` (dirs relative to
            ``exp_dir``), or ``None`` for every system directory under ``exp_dir``.
        roles: which systems are the ``baseline``, ``ensemble`` and ``student`` (by
            default the systems of those names).
        split_names: the data's names of the report's dev and test splits (e.g.
            ``{"dev": "dev-clean", "test": "test-clean"}``; default ``dev``, ``test``).
        voice_splits: manifest directories whose ``<split>_<engine>`` cut manifests divide
            a decoded split by voice (``prepare synth``'s ``test_<engine>``,
            ``heldout_<engine>``): ``results.json``'s ``voices`` (:mod:`asr_kd.report.voices`).
        device: for the frame-accuracy evaluations.
        force: redo even if no input changed.

    Returns:
        The ``results.json`` document.
    """
    from asr_kd.report.plots import (
        plot_data_fraction,
        plot_ensemble_size,
        plot_learning_curves,
        plot_systems,
    )

    exp_dir, out_dir = Path(exp_dir).resolve(), Path(out_dir).resolve()
    found = (
        discover_systems(exp_dir, exclude=out_dir)
        if systems is None
        else systems_from_mapping(systems, exp_dir)
    )
    found = add_specialist_systems(dict(found))
    if not found:
        raise BadInputError(f"{exp_dir} holds no experiment results (model.pt, decode_*/wer.json)")
    roles = {r: (roles or {}).get(r, r) for r in ROLES}
    split_names = {s: (split_names or {}).get(s, s) for s in SPLITS}
    config = {
        "exp_dir": str(exp_dir),
        "data_dir": str(data_dir) if data_dir else None,
        "systems": {n: [str(s.dir), list(s.members)] for n, s in found.items()},
        "roles": roles,
        "split_names": split_names,
        "voice_splits": [str(Path(d).resolve()) for d in voice_splits],
        "inputs": _fingerprint(found) + transfer_inputs(exp_dir),
    }
    marker = read_marker(out_dir) if is_done(out_dir) else None
    # a report is redone (not refused) when a system's files or an input stage changed
    changed = marker is not None and (
        marker.get("config") != json.loads(json.dumps(config)) or bool(stale_inputs(marker))
    )
    with stage_output(out_dir, STAGE, config, force or changed) as tmp:
        if tmp is None:
            return json.loads((out_dir / "results.json").read_text())
        data = Path(data_dir).resolve() if data_dir else None
        results = collect(found, data, device, split_names)
        doc, on = results_document(results, roles)
        add_protocol_results(doc, found)
        add_voice_results(doc, found, roles, voice_splits)
        add_transfer_results(doc, exp_dir, roles)
        # exp/*_ali: the share of dev word starts within 20 ms
        if alignments := alignment_accuracy(exp_dir, split_names["dev"]):
            doc["alignments"] = alignments
        (tmp / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
        curves = {n: r.curve for n, r in results.items()}
        plots = [
            plot_systems(doc["systems"], tmp / "systems.png"),
            plot_learning_curves(curves, tmp / "learning_curves.png"),
            plot_ensemble_size(ensemble_size_points(results, found), tmp / "ensemble_size.png"),
            plot_data_fraction(doc["data_fraction"], tmp / "data_fraction.png"),
            plot_transfer(doc, tmp / "transfer.png"),
        ]
        dropped = dropped_upstream(Path(data_dir)) if data_dir else {}
        markdown = results_markdown(doc, results, roles, on, [p.name for p in plots if p], dropped)
        (tmp / "RESULTS.md").write_text(markdown)
        logger.info(
            "%s: %d systems, gain kept %s; wrote %s",
            STAGE, len(results), json.dumps(doc["gain_kept"]), out_dir,
        )  # fmt: skip
    return doc
