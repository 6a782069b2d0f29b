"""The report's documents: ``results.json`` (with the gain the student keeps and the
seed spread) and ``RESULTS.md`` (see :mod:`asr_kd.report.report`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asr_kd.report.collect import ROLES, SPLITS, TEACHER_N, SystemResult
from asr_kd.report.paper import protocol_markdown
from asr_kd.report.transfer import transfer_markdown
from asr_kd.report.voices import voices_markdown


def gain_kept(
    baseline: float | None, ensemble: float | None, student: float | None, lower_is_better: bool
) -> float | None:
    """Percent of the ensemble's gain over the baseline the student keeps.

    ``None`` when a number is missing or the ensemble does not improve on the baseline:
    then there is no gain to keep, and a ratio of two losses would read as success.
    """
    if baseline is None or ensemble is None or student is None:
        return None
    gain = (baseline - ensemble) if lower_is_better else (ensemble - baseline)
    kept = (baseline - student) if lower_is_better else (student - baseline)
    if gain <= 1e-12:
        return None
    return round(100.0 * kept / gain, 4)


def _pct(x: float | None) -> float | None:
    return None if x is None else round(100.0 * x, 4)


def results_document(
    results: Mapping[str, SystemResult], roles: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str | None]]:
    """The ``results.json`` document and the split each gain_kept was computed on."""
    systems = {
        name: {
            "params": r.params,
            **{
                split: {
                    "frame_acc": _pct(r.frame_acc[split]),
                    "wer": r.wer[split],
                    **(
                        {"frame_acc_in_clusters": _pct(r.in_clusters[split])}
                        if split in r.in_clusters
                        else {}
                    ),
                }
                for split in SPLITS
            },
        }
        for name, r in results.items()
    }
    gains: dict[str, float | None] = {}
    on: dict[str, str | None] = {}
    for metric, lower in (("frame_acc", False), ("wer", True)):
        gains[metric], on[metric] = None, None
        rows = [systems.get(roles.get(role, role)) for role in ROLES]
        for split in ("test", "dev"):
            values = [row[split][metric] if row else None for row in rows]
            if None not in values:
                gains[metric], on[metric] = gain_kept(*values, lower_is_better=lower), split
                break
    return {"systems": systems, "gain_kept": gains, "seed_spread": seed_spread(systems)}, on


def seed_spread(systems: Mapping[str, Any]) -> dict[str, Any] | None:
    """Mean and sample standard deviation of the single models that differ only in their
    seed (``baseline`` and ``teacher<N>``): how large a difference is noise."""
    import statistics

    names = [n for n in systems if n == "baseline" or TEACHER_N.match(n)]
    if len(names) < 2:
        return None
    out: dict[str, Any] = {"systems": names}
    for split in SPLITS:
        out[split] = {}
        for metric in ("frame_acc", "wer"):
            values = [systems[n][split][metric] for n in names]
            values = [v for v in values if v is not None]
            out[split][metric] = (
                {"mean": round(statistics.fmean(values), 4),
                 "std": round(statistics.stdev(values), 4), "n": len(values)}
                if len(values) >= 2 else None
            )  # fmt: skip
    return out


def _fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _fmt_params(n: int | None) -> str:
    if n is None:
        return "–"
    if n < 10_000:
        return str(n)
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def results_markdown(
    doc: dict[str, Any],
    results: Mapping[str, SystemResult],
    roles: Mapping[str, str],
    on: Mapping[str, str | None],
    plots: list[str],
    dropped: Mapping[str, int] | None = None,
) -> str:
    """RESULTS.md: the table, the gain the student keeps, the sources and the plots
    (and the cuts an upstream stage was allowed to drop: directory -> count)."""
    lines = [
        "# Results",
        "",
        "| system | params | dev frame acc (%) | test frame acc (%) | dev WER (%) "
        "| test WER (%) | RTF |",
        "|:--|--:|--:|--:|--:|--:|--:|",
    ]
    for name, row in doc["systems"].items():
        rtf = results[name].rtf
        lines.append(
            f"| {name} | {_fmt_params(row['params'])} | {_fmt(row['dev']['frame_acc'])} "
            f"| {_fmt(row['test']['frame_acc'])} | {_fmt(row['dev']['wer'])} "
            f"| {_fmt(row['test']['wer'])} | {_fmt(rtf, 3)} |"
        )
    b, e, s = (roles[r] for r in ROLES)
    gains = doc["gain_kept"]
    reference = gains.get("reference") or f"the baseline ({b})"
    lines += ["", f"Share of the ensemble's ({e}) gain over {reference} kept by {s}:"]
    for metric, label in (("frame_acc", "frame accuracy"), ("wer", "WER")):
        value = gains[metric]
        where = f" (on {on[metric]})" if on[metric] else ""
        none = f"- {label}: – (missing, or the ensemble is not better than the baseline{where})"
        lines.append(f"- {label}: {_fmt(value, 1)}%{where}" if value is not None else none)
    spread = doc.get("seed_spread")
    if spread:
        cells = []
        for split in SPLITS:
            for metric, label in (("frame_acc", "frame acc"), ("wer", "WER")):
                v = spread[split][metric]
                if v:
                    cells.append(f"{split} {label} {v['mean']:.2f} ± {v['std']:.2f}")
        lines += ["", f"Seed spread of the single models ({', '.join(spread['systems'])}; mean "
                  f"± sample sd, %): {'; '.join(cells)}."]  # fmt: skip
    lines += protocol_markdown(doc)
    lines += voices_markdown(doc)
    lines += transfer_markdown(doc)
    scored = [n for n, r in results.items() if r.in_clusters]
    if scored:
        lines += [
            "",
            "Frames whose reference senone lies in a specialist's cluster (frame accuracy, %):",
            "",
            "| system | dev all | dev in clusters | test all | test in clusters |",
            "|:--|--:|--:|--:|--:|",
        ]
        for name in scored:
            row = doc["systems"][name]
            lines.append(
                f"| {name} | {_fmt(row['dev']['frame_acc'])} "
                f"| {_fmt(row['dev'].get('frame_acc_in_clusters'))} "
                f"| {_fmt(row['test']['frame_acc'])} "
                f"| {_fmt(row['test'].get('frame_acc_in_clusters'))} |"
            )
    lines += [
        "",
        "Dev WER: the best LM weight and insertion penalty on dev; test WER: at dev's point. "
        "RTF: decoding time (scoring + search) per second of test audio (dev without a test "
        "decode). Senone priors divided out: the training alignments' counts, unless a "
        "system's note says its model's averaged posteriors (decode.priors). Frame accuracy: "
        "eval.json, eval_<split>.json or the model's own dev evaluation.",
    ]
    notes = [f"- {n}: {note}" for n, r in results.items() for note in r.notes]
    notes += [f"- data: {n} cuts dropped by the stage that wrote {d} (max_dropped; ids in "
              "its dropped.txt)" for d, n in (dropped or {}).items()]  # fmt: skip
    if notes:
        lines += ["", "Notes:", *notes]
    if plots:
        lines += ["", *[f"![{p[:-4]}]({p})" for p in plots]]
    return "\n".join(lines) + "\n"
