"""The report stage (``asr-kd report``): every system's numbers in one table, JSON and plots.

Inputs, per system, by convention under ``<exp>/<name>/`` (any of them may be missing)::

    model.pt                 parameters (with train.json) and the best epoch's dev
                             frame accuracy
    train.json               learning curve (per epoch) and parameter count
    eval.json                {"dev": {"frame_acc": 0.61}, "test": {"frame_acc": 0.60}}
                             (fractions; an ensemble's may list its members: "members":
                             [names or dirs]); or 'asr-kd eval-ensemble --out' output,
                             whose entry named like the system (else its only ensemble
                             combination) is read, members included
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
                    "seed_spread": {"systems", split: {metric: {"mean", "std", "n"}}}}
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
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asr_kd.errors import BadInputError, ConfigError
from asr_kd.stage import is_done, read_marker, stage_output

logger = logging.getLogger(__name__)

STAGE = "report"
SPLITS = ("dev", "test")
ROLES = ("baseline", "ensemble", "student")
_ENSEMBLE_N = re.compile(r"^ensemble_?(\d+)$")
_TEACHER_N = re.compile(r"^teacher_?(\d+)$")


@dataclass(frozen=True)
class SystemDirs:
    """Where one system's results live.

    Attributes:
        name: the system's name in the table.
        dir: its experiment directory.
        members: for an ensemble, the names of its member systems.
    """

    name: str
    dir: Path
    members: tuple[str, ...] = ()


@dataclass
class SystemResult:
    """One system's numbers (frame accuracy as a fraction, WER in percent)."""

    name: str
    params: int | None = None
    frame_acc: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(SPLITS))
    wer: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(SPLITS))
    rtf: float | None = None
    in_clusters: dict[str, float | None] = field(default_factory=dict)
    """Frame accuracy on frames of the specialists' clusters, per split (when scored)."""
    curve: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _has_results(d: Path) -> bool:
    names = ("model.pt", "train.json", "eval.json")
    return (
        any((d / n).is_file() for n in names)
        or any(d.glob("eval_*.json"))
        or any(d.glob("decode_*/wer.json"))
    )


def discover_systems(exp_dir: Path | str, exclude: Path | None = None) -> dict[str, SystemDirs]:
    """Every finished-looking experiment directory under ``exp_dir`` (see the module doc)."""
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise BadInputError(f"{exp_dir} does not exist: run the training stages first")
    found = {}
    for d in sorted(exp_dir.iterdir()):
        skip = d.name.startswith(".") or any(s in d.name for s in (".work", ".tmp-", ".old-"))
        if d.is_dir() and not skip and d.resolve() != exclude and _has_results(d):
            found[d.name] = SystemDirs(d.name, d)
    return found


SPECIALISTS = "specialists"


def _specialist_eval(systems: Mapping[str, SystemDirs]) -> dict[str, Any]:
    """The ``eval-specialists`` document of the ``specialists`` system, if any."""
    s = systems.get(SPECIALISTS)
    doc = _read_json(s.dir / "eval.json") if s is not None else None
    return doc if doc and isinstance(doc.get("systems"), Mapping) else {}


def add_specialist_systems(systems: dict[str, SystemDirs]) -> dict[str, SystemDirs]:
    """Add the ``generalist`` the specialists started from (its directory, under that name)
    and any other system scored by ``eval-specialists`` that is not listed yet."""
    doc = _specialist_eval(systems)
    for name, entry in (doc.get("systems") or {}).items():
        d = Path(str(entry.get("dir", "")))
        if name not in systems and d.is_dir():
            systems[name] = SystemDirs(name, d)
    return systems


def read_systems_file(path: Path | str, exp_dir: Path | str) -> tuple[dict, dict[str, str]]:
    """A ``--systems`` manifest (YAML or JSON): the systems and the role names."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"systems file {path} does not exist")
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict) or not isinstance(doc.get("systems"), dict):
        raise ConfigError(f"{path}: expected a mapping with 'systems: {{name: dir, ...}}'")
    unknown = sorted(set(doc) - {"systems", *ROLES})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}")
    roles = {r: str(doc[r]) for r in ROLES if r in doc}
    return systems_from_mapping(doc["systems"], exp_dir), roles


def systems_from_mapping(systems: Mapping[str, Any], exp_dir: Path | str) -> dict:
    """``{name: dir | {"dir": dir, "members": [...]}}`` -> :class:`SystemDirs` by name."""
    out = {}
    for name, value in systems.items():
        if isinstance(value, SystemDirs):
            out[str(name)] = value
            continue
        value = value if isinstance(value, Mapping) else {"dir": value}
        if "dir" not in value:
            raise ConfigError(f"system {name}: give its directory ('dir')")
        d = Path(value["dir"])
        d = d if d.is_absolute() else Path(exp_dir) / d
        out[str(name)] = SystemDirs(str(name), d, tuple(str(m) for m in value.get("members", ())))
    return out


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BadInputError(
            f"{path} is not valid JSON ({e}); rerun the stage that wrote it"
        ) from None


def _members(s: SystemDirs, names: list[str]) -> list[str]:
    """An ensemble's member systems (see the module doc)."""
    if s.members:
        return list(s.members)
    doc = _read_json(s.dir / "eval.json") or {}
    listed = doc.get("members") or doc.get("teachers")
    label = _ensemble_label(doc, s.name) if "splits" in doc else None
    if label is not None and label in (doc.get("combos") or {}):
        listed = doc["combos"][label].get("members")
    if listed:
        return [Path(str(m)).name if Path(str(m)).name in names else str(m) for m in listed]
    teachers = sorted((n for n in names if _TEACHER_N.match(n)), key=_sort_key)
    m = _ENSEMBLE_N.match(s.name)
    if m:
        return [t for t in teachers if int(_TEACHER_N.match(t)[1]) <= int(m[1])]
    return teachers if s.name == "ensemble" else []


def _model_facts(d: Path) -> tuple[int | None, float | None]:
    """Parameters (train.json, else the rebuilt model) and model.pt's dev frame accuracy."""
    from asr_kd.train.checkpoint import load_file

    train = _read_json(d / "train.json") or {}
    params = train.get("params")
    if not (d / "model.pt").is_file():
        return params, None
    doc = load_file(d / "model.pt")
    if params is None:
        params = _count_params(d, doc)
    acc = doc.get("dev_frame_acc")
    return params, (float(acc) if acc is not None and acc == acc else None)


def _count_params(d: Path, doc: dict[str, Any]) -> int:
    from asr_kd.distill.train import student_builder
    from asr_kd.train.checkpoint import load_model

    try:
        model, _ = load_model(d / "model.pt", "cpu", student_builder)
        return sum(p.numel() for p in model.parameters())
    except Exception:  # an unknown architecture: count the stored tensors
        return sum(t.numel() for k, t in doc["state_dict"].items() if "running_" not in k)


def _ensemble_label(doc: Mapping[str, Any], name: str) -> str | None:
    """The entry for system ``name`` in an 'eval-ensemble' document: its name, else its
    only combination, else its arithmetic-mean combination (the paper's ensemble)."""
    combos = doc.get("combos") or {}
    systems = {n for v in (doc.get("splits") or {}).values() for n in v.get("systems", {})}
    if name in systems:
        return name
    if len(combos) == 1:
        return next(iter(combos))
    arithmetic = [c for c, v in combos.items() if v.get("method") == "arithmetic"]
    return arithmetic[0] if len(arithmetic) == 1 else None


def _frame_acc(s: SystemDirs, split: str, model_dev: float | None, data_dir, device, notes):
    doc = _read_json(s.dir / "eval.json") or {}
    if isinstance(doc.get(split), Mapping) and doc[split].get("frame_acc") is not None:
        return float(doc[split]["frame_acc"])
    label = _ensemble_label(doc, s.name) if "splits" in doc else None
    entry = ((doc.get("splits") or {}).get(split) or {}).get("systems", {}).get(label or "")
    if entry and entry.get("frame_acc") is not None:
        return float(entry["frame_acc"])
    single = _read_json(s.dir / f"eval_{split}.json") or {}
    if single.get("frame_acc") is not None:
        return float(single["frame_acc"])
    if split == "dev" and model_dev is not None:
        return model_dev
    if data_dir is not None and (s.dir / "model.pt").is_file():
        return _evaluate(s, split, data_dir, device, notes)
    return None


def _evaluate(s: SystemDirs, split: str, data_dir: Path, device: str, notes) -> float | None:
    from asr_kd.data.manifests import find_cut_manifests
    from asr_kd.distill.train import student_builder
    from asr_kd.train import evaluate_frame_accuracy

    if split not in find_cut_manifests(data_dir, "senone-targets"):
        return None
    result = evaluate_frame_accuracy(
        s.dir / "model.pt", data_dir, split, device, builder=student_builder
    )
    notes.append(f"{split} frame accuracy evaluated by the report on {data_dir}")
    return float(result["frame_acc"])


def _wer(s: SystemDirs, notes: list[str]) -> tuple[dict[str, float | None], float | None]:
    dev = _read_json(s.dir / "decode_dev" / "wer.json")
    test = _read_json(s.dir / "decode_test" / "wer.json")
    out: dict[str, float | None] = {"dev": dev.get("wer") if dev else None, "test": None}
    if test is not None:
        if dev is None:
            if test.get("selected_by") == "given":
                out["test"] = test.get("wer")
            else:
                notes.append("test WER left out: its LM weight was tuned on test (no dev decode)")
        else:
            point = (dev["lm_weight"], dev["word_ins_penalty"])
            if (test.get("lm_weight"), test.get("word_ins_penalty")) == point:
                out["test"] = test.get("wer")
            else:
                hit = [e for e in test.get("sweep", []) if
                       (e.get("lm_weight"), e.get("word_ins_penalty")) == point]  # fmt: skip
                out["test"] = hit[0]["wer"] if hit else None
                notes.append(
                    f"test WER {'from the test sweep' if hit else 'missing'} at dev's point "
                    f"lm_weight={point[0]:g}, wip={point[1]:g} (decode test with --tuned-on)"
                )
    rtf = (test or {}).get("rtf")
    return out, rtf if rtf is not None else (dev or {}).get("rtf")


def collect(
    systems: Mapping[str, SystemDirs], data_dir: Path | None = None, device: str = "auto"
) -> dict[str, SystemResult]:
    """Every system's numbers, in the report's order (see the module doc)."""
    names = list(systems)
    results: dict[str, SystemResult] = {}
    in_clusters = _specialist_eval(systems).get("systems") or {}
    for name in order_systems(names):
        s = systems[name]
        r = SystemResult(name)
        params, model_dev = _model_facts(s.dir)
        r.params = params
        for split in SPLITS:
            r.frame_acc[split] = _frame_acc(s, split, model_dev, data_dir, device, r.notes)
        r.wer, r.rtf = _wer(s, r.notes)
        entry = in_clusters.get(name) or {}
        for split in SPLITS:
            scored = entry.get(split) or {}
            if scored.get("frame_acc_in_clusters") is not None:
                r.in_clusters[split] = float(scored["frame_acc_in_clusters"])
            if r.frame_acc[split] is None and scored.get("frame_acc") is not None:
                r.frame_acc[split] = float(scored["frame_acc"])
        r.curve = list((_read_json(s.dir / "train.json") or {}).get("epochs") or [])
        results[name] = r
    for name in names:
        members = _members(systems[name], names) if _is_ensemble(name, systems[name]) else []
        if members and results[name].params is None:
            counts = [results[m].params if m in results else None for m in members]
            if None in counts:
                results[name].notes.append(f"params: members without a count in {members}")
            else:
                results[name].params = int(sum(counts))
                results[name].notes.append(f"params: sum of {', '.join(members)}")
    return results


def _is_ensemble(name: str, s: SystemDirs) -> bool:
    return bool(s.members) or name == "ensemble" or bool(_ENSEMBLE_N.match(name))


def _sort_key(name: str) -> tuple:
    fixed = {"baseline": 0, "ensemble": 4, "student": 5, "hard_3pct": 6, "soft_3pct": 7,
             "generalist": 8, "specialists": 9, "specialists_student": 10}  # fmt: skip
    m, e = _TEACHER_N.match(name), _ENSEMBLE_N.match(name)
    if name in fixed:
        return (fixed[name], 0, name)
    if m:
        return (1, int(m[1]), name)
    if e:
        return (3, int(e[1]), name)
    return (11, 0, name)


def order_systems(names: list[str]) -> list[str]:
    """baseline, teacher1..N, ensemble_<n>, ensemble, student, hard_3pct, soft_3pct,
    generalist, specialists, specialists_student, others."""
    return sorted(names, key=_sort_key)


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

    names = [n for n in systems if n == "baseline" or _TEACHER_N.match(n)]
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


def _fingerprint(systems: Mapping[str, SystemDirs]) -> list[list[Any]]:
    files = []
    for s in systems.values():
        for p in sorted(
            [*s.dir.glob("*.json"), *s.dir.glob("model.pt"), *s.dir.glob("decode_*/wer.json")]
        ):
            st = p.stat()
            files.append([str(p), st.st_size, st.st_mtime_ns])
    return files


def report(
    exp_dir: Path | str,
    out_dir: Path | str,
    *,
    data_dir: Path | str | None = None,
    systems: Mapping[str, Any] | None = None,
    roles: Mapping[str, str] | None = None,
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
        device: for the frame-accuracy evaluations.
        force: redo even if no input changed.

    Returns:
        The ``results.json`` document.
    """
    from asr_kd.report.plots import plot_ensemble_size, plot_learning_curves, plot_systems

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
    config = {
        "exp_dir": str(exp_dir),
        "data_dir": str(data_dir) if data_dir else None,
        "systems": {n: [str(s.dir), list(s.members)] for n, s in found.items()},
        "roles": roles,
        "inputs": _fingerprint(found),
    }
    changed = is_done(out_dir) and read_marker(out_dir).get("config") != json.loads(
        json.dumps(config)
    )
    with stage_output(out_dir, STAGE, config, force or changed) as tmp:
        if tmp is None:
            return json.loads((out_dir / "results.json").read_text())
        results = collect(found, Path(data_dir).resolve() if data_dir else None, device)
        doc, on = results_document(results, roles)
        (tmp / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
        curves = {n: r.curve for n, r in results.items()}
        plots = [
            plot_systems(doc["systems"], tmp / "systems.png"),
            plot_learning_curves(curves, tmp / "learning_curves.png"),
            plot_ensemble_size(ensemble_size_points(results, found), tmp / "ensemble_size.png"),
        ]
        markdown = results_markdown(doc, results, roles, on, [p.name for p in plots if p])
        (tmp / "RESULTS.md").write_text(markdown)
        logger.info(
            "%s: %d systems, gain kept %s; wrote %s",
            STAGE, len(results), json.dumps(doc["gain_kept"]), out_dir,
        )  # fmt: skip
    return doc


def ensemble_size_points(
    results: Mapping[str, SystemResult], systems: Mapping[str, SystemDirs]
) -> dict[int, SystemResult]:
    """Number of teachers -> the system combining that many (teacher1 alone for 1)."""
    names = list(systems)
    points: dict[int, SystemResult] = {}
    for name, r in results.items():
        m = _ENSEMBLE_N.match(name)
        if m:
            points[int(m[1])] = r
        elif name == "ensemble":
            members = _members(systems[name], names)
            if members:
                points.setdefault(len(members), r)
    if points and 1 not in points and "teacher1" in results:
        points[1] = results["teacher1"]
    return dict(sorted(points.items()))


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
) -> str:
    """RESULTS.md: the table, the gain the student keeps, the sources and the plots."""
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
    lines += ["", f"Share of the ensemble's ({e}) gain over the baseline ({b}) kept by {s}:"]
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
        "decode). Frame accuracy: "
        "eval.json, eval_<split>.json or the model's own dev evaluation.",
    ]
    notes = [f"- {n}: {note}" for n, r in results.items() for note in r.notes]
    if notes:
        lines += ["", "Notes:", *notes]
    if plots:
        lines += ["", *[f"![{p[:-4]}]({p})" for p in plots]]
    return "\n".join(lines) + "\n"
