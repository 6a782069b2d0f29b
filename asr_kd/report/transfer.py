"""The transfer-set experiments in the report: an omitted phone, untranscribed audio.

Added to ``results.json`` by :func:`add_transfer_results` (each only when its outputs
exist; percent, missing values null)::

    "omitted_phone": {"phone", "senones", "utterances": {split: count with the phone},
        "student" | "control" | "full": {"bias", split: {"frame_acc_phone",
            "frame_acc_phone_bias_corrected", "frame_acc_rest",
            "frame_acc_rest_bias_corrected", "wer_phone", "wer_rest",
            "wer_phone_bias_corrected", "wer_rest_bias_corrected"}}}
    "unlabelled": {"hours", "labelled_hours", "student": {split: {"frame_acc", "wer"}},
        "labelled_only": {...}, "ensemble": {...}}

Where they come from:

- ``<exp>/eval/omitted_phone/omitted_phone.json`` (``asr-kd eval-omitted-phone``): the
  frame accuracies, the dev-chosen bias and which utterances hold the phone; WER on
  those utterances and on the others from each system's decodes
  (``<model dir>/decode_<split>/errs.txt``, per-utterance counts; the bias-corrected
  copies' under ``<exp>/eval/omitted_phone/<name>_bias_corrected/``);
- ``<exp>/student_unlab`` (``distill`` on an ``unlabelled-set``): its row of the systems
  table, the hours from its training data's ``info.json``; beside it the labelled-only
  student's and the ensemble's rows (the report's roles).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from asr_kd.errors import AsrKdError
from asr_kd.scoring.bootstrap import read_utt_counts
from asr_kd.stage import is_done, read_marker

logger = logging.getLogger(__name__)

OMIT_DIR = Path("eval") / "omitted_phone"
UNLABELLED_SYSTEM = "student_unlab"
SPLITS = ("dev", "test")
ROLES = ("student", "control", "full")


def group_wer(decode_dir: Path, with_phone: Sequence[str]) -> tuple[float | None, float | None]:
    """``(WER on the utterances in with_phone, WER on the others)`` of a decode, percent.

    ``(None, None)`` when the decode (its ``errs.txt``) is missing or unreadable.
    """
    try:
        counts = read_utt_counts(decode_dir)
    except AsrKdError:
        return None, None
    inside = np.isin(np.array(counts.ids), list(with_phone))
    out = []
    for mask in (inside, ~inside):
        words = int(counts.words[mask].sum())
        out.append(round(100.0 * float(counts.errors[mask].sum()) / words, 4) if words else None)
    return out[0], out[1]


def _model_dir(model: str) -> Path:
    path = Path(model)
    return path if path.is_dir() or path.suffix != ".pt" else path.parent


def omitted_phone_results(exp_dir: Path) -> dict[str, Any] | None:
    """The ``omitted_phone`` document (module doc), or None without an evaluation."""
    eval_dir = exp_dir / OMIT_DIR
    if not is_done(eval_dir):
        return None
    doc = json.loads((eval_dir / "omitted_phone.json").read_text())
    out: dict[str, Any] = {
        "phone": doc["phone"],
        "senones": len(doc["senones"]),
        "utterances": {s: len(v) for s, v in doc["utterances"].items()},
    }
    for name, entry in doc["systems"].items():
        row: dict[str, Any] = {"bias": entry["bias"], "omitted": entry["omitted"]}
        for split in SPLITS:
            if split not in entry:
                continue
            ids = doc["utterances"][split]
            scores = dict(entry[split])
            decodes = {"": _model_dir(entry["model"]) / f"decode_{split}"}
            if entry["omitted"]:
                decodes["_bias_corrected"] = eval_dir / f"{name}_bias_corrected" / f"decode_{split}"
            for tag, d in decodes.items():
                scores[f"wer_phone{tag}"], scores[f"wer_rest{tag}"] = group_wer(d, ids)
            row[split] = scores
        out[name] = row
    return out


def _scores(systems: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    row = systems.get(name)
    if row is None:
        return None
    return {s: {m: (row.get(s) or {}).get(m) for m in ("frame_acc", "wer")} for s in SPLITS}


def unlabelled_results(
    doc: Mapping[str, Any], exp_dir: Path, roles: Mapping[str, str]
) -> dict[str, Any] | None:
    """The ``unlabelled`` document (module doc), or None without that student."""
    systems = doc.get("systems") or {}
    student = exp_dir / UNLABELLED_SYSTEM
    if UNLABELLED_SYSTEM not in systems or not is_done(student):
        return None
    data_dir = (read_marker(student).get("config") or {}).get("data_dir")
    info_path = Path(data_dir or "") / "info.json"
    info = json.loads(info_path.read_text()).get("unlabelled", {}) if info_path.is_file() else {}
    return {
        "hours": info.get("hours"),
        "labelled_hours": info.get("labelled_hours"),
        "student": _scores(systems, UNLABELLED_SYSTEM),
        "labelled_only": _scores(systems, roles.get("student", "student")),
        "ensemble": _scores(systems, roles.get("ensemble", "ensemble")),
    }


def add_transfer_results(
    doc: dict[str, Any], exp_dir: Path | str, roles: Mapping[str, str] | None = None
) -> None:
    """Add ``omitted_phone`` and ``unlabelled`` to a ``results.json`` document (in place)."""
    exp_dir = Path(exp_dir)
    roles = roles or {}
    if (omitted := omitted_phone_results(exp_dir)) is not None:
        doc["omitted_phone"] = omitted
    if (unlabelled := unlabelled_results(doc, exp_dir, roles)) is not None:
        doc["unlabelled"] = unlabelled


def system_names(omitted: Mapping[str, Any]) -> list[str]:
    """The systems of an ``omitted_phone`` document: student, control, full, then others."""
    names = [n for n, v in omitted.items() if isinstance(v, dict) and "bias" in v]
    return sorted(names, key=lambda n: (ROLES.index(n) if n in ROLES else len(ROLES), n))


def _f(value: Any) -> str:
    return "–" if value is None else f"{value:.2f}"


def transfer_markdown(doc: Mapping[str, Any]) -> list[str]:
    """RESULTS.md lines for the two experiments (none when neither ran)."""
    lines: list[str] = []
    omitted = doc.get("omitted_phone")
    if omitted:
        phone = omitted["phone"]
        lines += [
            "",
            f"Omitted phone {phone}: its frames left out of the transfer set of the student "
            "and of a hard-target control (the teachers keep them). Frame accuracy (%) on "
            f"{phone}'s frames and on the rest, and with the bias of {phone}'s "
            f"{omitted['senones']} senones raised by a constant chosen on dev; WER (%) on "
            f"the utterances with {phone} and on the others:",
            "",
            f"| system | split | {phone} | {phone} + bias | bias | rest | rest + bias "
            f"| WER {phone} utts | WER others | WER {phone} utts + bias |",
            "|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for name in system_names(omitted):
            row = omitted[name]
            for split in SPLITS:
                e = row.get(split)
                if not e:
                    continue
                lines.append(
                    f"| {name} | {split} | {_f(e['frame_acc_phone'])} "
                    f"| {_f(e['frame_acc_phone_bias_corrected'])} | {row['bias']:+g} "
                    f"| {_f(e['frame_acc_rest'])} | {_f(e['frame_acc_rest_bias_corrected'])} "
                    f"| {_f(e.get('wer_phone'))} | {_f(e.get('wer_rest'))} "
                    f"| {_f(e.get('wer_phone_bias_corrected'))} |"
                )
    unlabelled = doc.get("unlabelled")
    if unlabelled:
        hours = unlabelled.get("hours")
        lines += [
            "",
            f"Untranscribed audio as transfer set: {_f(hours)} h without transcripts beside "
            f"{_f(unlabelled.get('labelled_hours'))} h transcribed; the student learns the "
            "ensemble's soft targets on both and the hard targets on the transcribed part only:",
            "",
            "| system | dev frame acc | dev WER | test frame acc | test WER |",
            "|:--|--:|--:|--:|--:|",
        ]
        for key, label in (("student", "student (+ untranscribed)"),
                           ("labelled_only", "student (transcribed only)"),
                           ("ensemble", "ensemble")):  # fmt: skip
            s = unlabelled.get(key)
            if s:
                lines.append(
                    f"| {label} | {_f(s['dev']['frame_acc'])} | {_f(s['dev']['wer'])} "
                    f"| {_f(s['test']['frame_acc'])} | {_f(s['test']['wer'])} |"
                )
    return lines


def plot_transfer(doc: Mapping[str, Any], path: Path) -> Path | None:
    """Test (else dev) frame accuracy on the omitted phone's frames, without and with the
    bias correction, per system; None without an omitted-phone evaluation."""
    omitted = doc.get("omitted_phone")
    if not omitted:
        return None
    names = system_names(omitted)
    split = "test" if all("test" in omitted[n] for n in names) else "dev"
    from asr_kd.report.plots import _pyplot, save_figure

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.arange(len(names))
    bars = ((-0.2, "frame_acc_phone", "as trained"),
            (0.2, "frame_acc_phone_bias_corrected", "bias corrected"))  # fmt: skip
    for offset, key, label in bars:
        values = [(omitted[n].get(split) or {}).get(key) or 0.0 for n in names]
        ax.bar(x + offset, values, width=0.4, label=label)
    ax.set_xticks(list(x), names)
    ax.set_ylabel(f"{split} frame accuracy on {omitted['phone']} (%)")
    ax.set_ylim(0, 100)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def transfer_inputs(exp_dir: Path | str) -> list[list[Any]]:
    """``[path, size, mtime]`` of the files read here beyond the systems' own (the
    omitted-phone evaluation and its bias-corrected decodes): the report is redone when
    one changes."""
    eval_dir = Path(exp_dir) / OMIT_DIR
    files = sorted([*eval_dir.glob("omitted_phone.json"), *eval_dir.glob("*/decode_*/errs.txt")])
    return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
