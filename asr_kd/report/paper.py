"""The paper's three speech claims, measured on a report's systems (``results.json``).

Added to the report by :func:`add_protocol_results` (all percent):

- ``systems.<name>.train.frame_acc``: the selected epoch's training frame accuracy
  (``train.json``; measured during the epoch, dropout on), next to dev and test: how
  far a model fits its training frames;
- ``systems.<name>.<split>.wer_interval``: the bootstrap 95% interval of the WER over
  utterances (:mod:`asr_kd.scoring.bootstrap`, from ``decode_<split>/errs.txt``);
- ``ensemble_gain``: the ensemble minus the mean of the single models that differ only
  in their seed (``baseline``, ``teacher<N>``), with their standard deviation;
- ``gain_kept``: the share of that gain the students keep (``student``,
  ``student_s<K>``: their mean), ``frame_acc_interval`` the range over student seeds,
  and ``reference``: what the gain was measured from;
- ``comparisons``: paired bootstrap comparisons of test WER per utterance (ensemble,
  student vs baseline; soft vs hard targets per data fraction; where the transfer-set
  experiments ran, the student on untranscribed audio too vs the student, and the
  student without the omitted phone vs its hard-target control);
- ``data_fraction``: per fraction (``hard_<P>pct[_s<K>]``, ``soft_<P>pct[_s<K>]``; 100%:
  baseline and students) the mean over subset seeds of dev/test frame accuracy and WER,
  for hard targets also the dev frame accuracy of the final epoch (hard targets are
  early-stopped: ``model.pt`` keeps the best dev epoch; soft targets keep the final).
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from asr_kd.errors import AsrKdError
from asr_kd.report.collect import SPLITS, TEACHER_N, SystemDirs
from asr_kd.report.transfer import UNLABELLED_SYSTEM
from asr_kd.scoring.bootstrap import bootstrap_wer, paired_bootstrap, read_utt_counts

STUDENT_N = re.compile(r"^student(?:_s(\d+))?$")
FRACTION_N = re.compile(r"^(hard|soft)_(\d+(?:\.\d+)?)pct(?:_s(\d+))?$")
METRICS = (("frame_acc", False), ("wer", True))
# The transfer-set experiments' systems (asr_kd.report.transfer), each against the system
# it should be read against.
TRANSFER_PAIRS = (("student", UNLABELLED_SYSTEM), ("omit_control", "omit_student"))


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.fmean(values), 4) if values else None


def train_frame_acc(d: Path) -> float | None:
    """The selected epoch's training frame accuracy (percent) from ``train.json``."""
    doc = _json(d / "train.json") or {}
    epochs = doc.get("epochs") or []
    best = doc.get("best_epoch")
    chosen = [e for e in epochs if e.get("epoch") == best] or epochs[-1:]
    acc = chosen[0].get("train_frame_acc") if chosen else None
    return None if acc is None else round(100.0 * acc, 4)


def final_dev_frame_acc(d: Path) -> float | None:
    """The last epoch's dev frame accuracy (percent) from ``train.json``."""
    epochs = (_json(d / "train.json") or {}).get("epochs") or []
    acc = epochs[-1].get("dev_frame_acc") if epochs else None
    return None if acc is None else round(100.0 * acc, 4)


def _counts(d: Path, split: str):
    errs = d / f"decode_{split}" / "errs.txt"
    if not errs.is_file():
        return None
    try:
        return read_utt_counts(errs)
    except AsrKdError:
        return None


def _singles(systems: Mapping[str, Any]) -> list[str]:
    return [n for n in systems if n == "baseline" or TEACHER_N.match(n)]


def _students(systems: Mapping[str, Any]) -> list[str]:
    return sorted((n for n in systems if STUDENT_N.match(n)), key=lambda n: (len(n), n))


def ensemble_gain(systems: Mapping[str, Any], ensemble: str = "ensemble") -> dict | None:
    """The ensemble against the mean of the single models, per split and metric."""
    singles = _singles(systems)
    if ensemble not in systems or not singles:
        return None
    out: dict[str, Any] = {"singles": singles}
    for split in SPLITS:
        out[split] = {}
        for metric, lower in METRICS:
            values = [systems[n][split][metric] for n in singles]
            values = [v for v in values if v is not None]
            ens = systems[ensemble][split][metric]
            if not values or ens is None:
                out[split][metric] = None
                continue
            mean = statistics.fmean(values)
            out[split][metric] = {
                "ensemble": ens,
                "singles_mean": round(mean, 4),
                "singles_sd": round(statistics.stdev(values), 4) if len(values) > 1 else None,
                "gain": round((mean - ens) if lower else (ens - mean), 4),
            }
    return out


def kept_shares(systems: Mapping[str, Any], gain: Mapping[str, Any]) -> dict[str, Any] | None:
    """Share of the ensemble's gain over the singles' mean each student keeps (test,
    else dev): ``{metric: mean share}``, ``frame_acc_interval`` over student seeds."""
    students = _students(systems)
    if not students:
        return None
    out: dict[str, Any] = {"students": students}
    for metric, lower in METRICS:
        out[metric], out[f"{metric}_per_student"] = None, None
        for split in ("test", "dev"):
            g = gain[split][metric]
            values = [systems[s][split][metric] for s in students]
            if g is None or None in values:
                continue
            singles = [systems[n][split][metric] for n in gain["singles"]]
            mean = statistics.fmean(v for v in singles if v is not None)
            total = (mean - g["ensemble"]) if lower else (g["ensemble"] - mean)
            if total <= 1e-12:  # no gain to keep: a ratio of losses would read as success
                out[f"{metric}_on"] = split
                break
            shares = [100.0 * ((mean - v) if lower else (v - mean)) / total for v in values]
            out[metric] = round(statistics.fmean(shares), 4)
            out[f"{metric}_per_student"] = [round(x, 4) for x in shares]
            out[f"{metric}_on"] = split
            break
    shares = out.get("frame_acc_per_student")
    out["frame_acc_interval"] = [round(min(shares), 4), round(max(shares), 4)] if shares else None
    return out


def data_fraction(systems: Mapping[str, Any], dirs: Mapping[str, SystemDirs]) -> list[dict]:
    """Hard vs soft targets per data fraction (mean over subset seeds); 100%: the
    baseline and the students."""
    groups: dict[float, dict[str, list[str]]] = {}
    for name in systems:
        m = FRACTION_N.match(name)
        if m:
            kind, pct = m.group(1), float(m.group(2))
            groups.setdefault(pct / 100.0, {"hard": [], "soft": []})[kind].append(name)
    if not groups:
        return []
    full = {"hard": [n for n in ("baseline",) if n in systems], "soft": _students(systems)}
    rows = []
    for fraction in sorted(groups) + [1.0]:
        names = groups.get(fraction) or full
        row: dict[str, Any] = {"fraction": fraction}
        for kind in ("hard", "soft"):
            members = names[kind]
            entry: dict[str, Any] = {"systems": members}
            for split in SPLITS:
                entry[split] = {
                    metric: _mean([systems[n][split][metric] for n in members])
                    for metric, _ in METRICS
                }
            entry["dev"]["frame_acc_final"] = _mean(
                [final_dev_frame_acc(dirs[n].dir) for n in members if n in dirs]
            )
            row[kind] = entry
        rows.append(row)
    return rows


def comparisons(systems: Mapping[str, Any], dirs: Mapping[str, SystemDirs]) -> list[dict]:
    """Paired per-utterance bootstrap comparisons of test WER (B against A)."""
    pairs = [("baseline", "ensemble"), *[("baseline", s) for s in _students(systems)]]
    hard = sorted(n for n in systems if FRACTION_N.match(n) and n.startswith("hard_"))
    pairs += [(h, "soft" + h[4:]) for h in hard if "soft" + h[4:] in systems]
    pairs += [p for p in TRANSFER_PAIRS if p[0] in systems and p[1] in systems]
    out = []
    for a, b in pairs:
        if a not in dirs or b not in dirs:
            continue
        ca, cb = _counts(dirs[a].dir, "test"), _counts(dirs[b].dir, "test")
        if ca is None or cb is None or ca.ids != cb.ids:
            continue
        out.append({"a": a, "b": b, "split": "test", **paired_bootstrap(ca, cb).to_dict()})
    return out


def add_protocol_results(doc: dict[str, Any], dirs: Mapping[str, SystemDirs]) -> dict[str, Any]:
    """Add the module doc's fields to a ``results.json`` document (in place; returned)."""
    systems = doc["systems"]
    for name, row in systems.items():
        d = dirs[name].dir if name in dirs else None
        row["train"] = {"frame_acc": train_frame_acc(d) if d is not None else None}
        for split in SPLITS:
            counts = _counts(d, split) if d is not None else None
            row[split]["wer_interval"] = (
                bootstrap_wer(counts).to_dict()["interval"] if counts is not None else None
            )
    gain = ensemble_gain(systems)
    doc["ensemble_gain"] = gain
    kept = kept_shares(systems, gain) if gain else None
    if kept is not None:
        doc["gain_kept"].update(
            {
                "frame_acc": kept["frame_acc"],
                "wer": kept["wer"],
                "frame_acc_interval": kept["frame_acc_interval"],
                "per_student": {m: kept[f"{m}_per_student"] for m, _ in METRICS},
                "students": kept["students"],
                "reference": f"mean of the single models {', '.join(gain['singles'])}",
            }
        )
    else:
        doc["gain_kept"].setdefault("frame_acc_interval", None)
    doc["comparisons"] = comparisons(systems, dirs)
    doc["data_fraction"] = data_fraction(systems, dirs)
    return doc


def protocol_markdown(doc: Mapping[str, Any]) -> list[str]:
    """RESULTS.md lines for the claims: ensemble gain, kept share, data fractions."""
    lines: list[str] = []
    gain = doc.get("ensemble_gain")
    if gain:
        lines += ["", f"Ensemble against the mean of {len(gain['singles'])} single models "
                  "(mean ± sd → ensemble, gain):"]  # fmt: skip
        for split in SPLITS:
            for metric, _ in METRICS:
                g = gain[split][metric]
                if g:
                    sd = f" ± {g['singles_sd']:.2f}" if g["singles_sd"] is not None else ""
                    lines.append(f"- {split} {metric}: {g['singles_mean']:.2f}{sd} → "
                                 f"{g['ensemble']:.2f} ({g['gain']:+.2f})")  # fmt: skip
    kept = doc.get("gain_kept") or {}
    if kept.get("frame_acc_interval"):
        low, high = kept["frame_acc_interval"]
        who = ", ".join(kept.get("students", []))
        lines.append(f"- kept by the students ({who}): frame accuracy "
                     f"{kept['frame_acc']:.1f}% (range {low:.1f}–{high:.1f}%)")  # fmt: skip
    comps = doc.get("comparisons") or []
    if comps:
        lines += ["", "Paired bootstrap on test WER (B − A, 95% interval, P(B better)):", ""]
        lines += ["| A | B | Δ WER | interval | P(B better) |", "|:--|:--|--:|--:|--:|"]
        for c in comps:
            lo, hi = c["delta_interval"]
            lines.append(f"| {c['a']} | {c['b']} | {c['delta']:+.2f} | [{lo:+.2f}, {hi:+.2f}] "
                         f"| {100 * c['p_improve']:.1f}% |")  # fmt: skip
    rows = doc.get("data_fraction") or []
    if rows:
        lines += ["", "Hard vs soft targets by data fraction (frame accuracy %, WER %; hard: "
                  "best dev epoch, final in brackets):", "",
                  "| data | hard dev | hard test | hard test WER | soft dev | soft test "
                  "| soft test WER |", "|--:|--:|--:|--:|--:|--:|--:|"]  # fmt: skip

        def f(x: float | None) -> str:
            return "–" if x is None else f"{x:.2f}"

        for r in rows:
            h, s = r["hard"], r["soft"]
            lines.append(
                f"| {100 * r['fraction']:g}% | {f(h['dev']['frame_acc'])} "
                f"({f(h['dev']['frame_acc_final'])}) | {f(h['test']['frame_acc'])} "
                f"| {f(h['test']['wer'])} | {f(s['dev']['frame_acc'])} "
                f"| {f(s['test']['frame_acc'])} | {f(s['test']['wer'])} |"
            )
    return lines
