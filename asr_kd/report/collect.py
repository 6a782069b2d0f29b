"""Every system's numbers, read from the files its stages wrote (``asr-kd report``).

See :mod:`asr_kd.report.report` for the inputs each system may have and where each
number comes from. An evaluation stage writes into ``<exp>/eval/<system>/eval.json``
(``eval-ensemble --out-dir``, ``eval-specialists --out-dir``); an ``eval.json`` inside
the system's own directory is read too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asr_kd.errors import BadInputError, ConfigError

SPLITS = ("dev", "test")
ROLES = ("baseline", "ensemble", "student")
ENSEMBLE_N = re.compile(r"^ensemble_?(\d+)$")
TEACHER_N = re.compile(r"^teacher_?(\d+)$")
EVAL_DIR = "eval"
"""``<exp>/eval/<system>/``: the evaluation stages' outputs, one per system."""


@dataclass(frozen=True)
class SystemDirs:
    """Where one system's results live.

    Attributes:
        name: the system's name in the table.
        dir: its experiment directory.
        members: for an ensemble, the names of its member systems.
        eval_dir: its evaluation stage's output (``<exp>/eval/<name>``), if any.
    """

    name: str
    dir: Path
    members: tuple[str, ...] = ()
    eval_dir: Path | None = None

    def eval_doc(self) -> dict[str, Any] | None:
        """Its evaluation document: the eval stage's, else an ``eval.json`` of its own."""
        for d in (self.eval_dir, self.dir):
            doc = _read_json(d / "eval.json") if d is not None else None
            if doc is not None:
                return doc
        return None


def _eval_dir(exp_dir: Path, name: str) -> Path | None:
    d = exp_dir / EVAL_DIR / name
    return d if (d / "eval.json").is_file() else None


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
    evaluated = sorted((exp_dir / EVAL_DIR).glob("*/eval.json"))
    names = [d.name for d in sorted(exp_dir.iterdir()) if d.name != EVAL_DIR]
    for name in sorted({*names, *(p.parent.name for p in evaluated)}):
        d = exp_dir / name
        skip = name.startswith(".") or any(s in name for s in (".work", ".tmp-", ".old-"))
        eval_dir = _eval_dir(exp_dir, name)
        if skip or d.resolve() == exclude or d.is_file():
            continue
        if eval_dir is not None or (d.is_dir() and _has_results(d)):
            found[name] = SystemDirs(name, d, eval_dir=eval_dir)
    return found


SPECIALISTS = "specialists"


def _specialist_eval(systems: Mapping[str, SystemDirs]) -> dict[str, Any]:
    """The ``eval-specialists`` document of the ``specialists`` system, if any."""
    s = systems.get(SPECIALISTS)
    doc = s.eval_doc() if s is not None else None
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
        members = tuple(str(m) for m in value.get("members", ()))
        out[str(name)] = SystemDirs(str(name), d, members, _eval_dir(Path(exp_dir), str(name)))
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
    doc = s.eval_doc() or {}
    listed = doc.get("members") or doc.get("teachers")
    label = _ensemble_label(doc, s.name) if "splits" in doc else None
    if label is not None and label in (doc.get("combos") or {}):
        listed = doc["combos"][label].get("members")
    if listed:
        return [Path(str(m)).name if Path(str(m)).name in names else str(m) for m in listed]
    teachers = sorted((n for n in names if TEACHER_N.match(n)), key=_sort_key)
    m = ENSEMBLE_N.match(s.name)
    if m:
        return [t for t in teachers if int(TEACHER_N.match(t)[1]) <= int(m[1])]
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


def _frame_acc(s: SystemDirs, role: str, split: str, model_dev: float | None, data_dir, device,
               notes):  # fmt: skip
    """``role`` (dev or test) is the report's key, ``split`` the data's name for it."""
    doc = s.eval_doc() or {}
    if isinstance(doc.get(split), Mapping) and doc[split].get("frame_acc") is not None:
        return float(doc[split]["frame_acc"])
    label = _ensemble_label(doc, s.name) if "splits" in doc else None
    entry = ((doc.get("splits") or {}).get(split) or {}).get("systems", {}).get(label or "")
    if entry and entry.get("frame_acc") is not None:
        return float(entry["frame_acc"])
    single = _read_json(s.dir / f"eval_{split}.json") or {}
    if single.get("frame_acc") is not None:
        return float(single["frame_acc"])
    if role == "dev" and model_dev is not None:
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
    priors = sorted({w.get("priors", "counts") for w in (dev, test) if w})
    if priors != ["counts"] and priors:
        notes.append(f"decoded with senone priors from {' and '.join(priors)} (decode.priors; "
                     "posteriors: the model's averaged posteriors, adjust-priors)")  # fmt: skip
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
    systems: Mapping[str, SystemDirs],
    data_dir: Path | None = None,
    device: str = "auto",
    split_names: Mapping[str, str] | None = None,
) -> dict[str, SystemResult]:
    """Every system's numbers, in the report's order (see the module doc).

    ``split_names`` names the data split each of the report's splits (dev, test) is, as
    the eval JSONs and manifests call it (default: the same name; LibriSpeech's
    ``{"dev": "dev-clean", "test": "test-clean"}``); decode dirs are ``decode_dev`` and
    ``decode_test`` whatever the data.
    """
    named = {role: (split_names or {}).get(role, role) for role in SPLITS}
    names = list(systems)
    results: dict[str, SystemResult] = {}
    in_clusters = _specialist_eval(systems).get("systems") or {}
    for name in order_systems(names):
        s = systems[name]
        r = SystemResult(name)
        params, model_dev = _model_facts(s.dir)
        r.params = params
        for split in SPLITS:
            r.frame_acc[split] = _frame_acc(s, split, named[split], model_dev, data_dir, device,
                                            r.notes)  # fmt: skip
        r.wer, r.rtf = _wer(s, r.notes)
        entry = in_clusters.get(name) or {}
        for split in SPLITS:
            scored = entry.get(named[split]) or {}
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
    return bool(s.members) or name == "ensemble" or bool(ENSEMBLE_N.match(name))


def _sort_key(name: str) -> tuple:
    fixed = {"baseline": 0, "ensemble": 4, "student": 5, "hard_3pct": 6, "soft_3pct": 7,
             "generalist": 8, "specialists": 9, "specialists_student": 10}  # fmt: skip
    m, e = TEACHER_N.match(name), ENSEMBLE_N.match(name)
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


def ensemble_size_points(
    results: Mapping[str, SystemResult], systems: Mapping[str, SystemDirs]
) -> dict[int, SystemResult]:
    """Number of teachers -> the system combining that many (teacher1 alone for 1)."""
    names = list(systems)
    points: dict[int, SystemResult] = {}
    for name, r in results.items():
        m = ENSEMBLE_N.match(name)
        if m:
            points[int(m[1])] = r
        elif name == "ensemble":
            members = _members(systems[name], names)
            if members:
                points.setdefault(len(members), r)
    if points and 1 not in points and "teacher1" in results:
        points[1] = results["teacher1"]
    return dict(sorted(points.items()))
