"""WER by voice: the test set per voice engine, and voices never trained on.

Added to ``results.json`` by :func:`add_voice_results` as ``voices``::

    {"systems": ["baseline", "ensemble", "student"],
     "splits": {"test": {system: {"wer", "wer_interval", "utterances"}},
                "test_espeak": {...}, "test_piper": {...}, "heldout": {...},
                "heldout_piper": {...}, ...},
     "heldout_over_in_domain": {system: heldout WER / test WER},
     "notes": [...]}

Where each number comes from, per system (the report's roles, and any other system
with a decode of a split besides dev and test):

- a decoded split ``S`` (``<exp>/<system>/decode_S/errs.txt``: ``test``, ``heldout``):
  its per-utterance error counts, when the decode used dev's LM weight and insertion
  penalty (``asr-kd decode --tuned-on <exp>/<system>/decode_dev``);
- a subset ``S_<name>`` of a decoded split (``prepare synth``'s ``test_<engine>`` and
  ``heldout_<engine>`` cut manifests, in the report's ``voice_splits`` directories):
  the counts of its utterances in the decode of ``S``. Each utterance is decoded on its
  own at a fixed LM weight, so this is the WER a decode of the subset would give.

WER is percent with its bootstrap 95% interval over utterances
(:func:`asr_kd.scoring.bootstrap.bootstrap_wer`). The goal the ratio is read against:
WER on unseen voices at most twice the in-domain (test) WER.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from asr_kd.errors import AsrKdError
from asr_kd.report.collect import ROLES, SystemDirs
from asr_kd.scoring.bootstrap import UttCounts, bootstrap_wer, read_utt_counts

IN_DOMAIN = "test"
HELDOUT = "heldout"
OWN_SPLITS = ("dev", IN_DOMAIN)
"""Splits the main table reports; a decode of any other split is a voices split."""


def subset_ids(manifest_dirs: Iterable[Path | str]) -> dict[str, frozenset[str]]:
    """Cut ids of every ``<split>_<name>`` cut manifest in the directories: split -> ids."""
    from asr_kd.data.manifests import find_cut_manifests, load_cuts

    out: dict[str, frozenset[str]] = {}
    for d in manifest_dirs:
        for split, (_, path) in find_cut_manifests(d, "prepare").items():
            if "_" in split:
                out[split] = frozenset(c.id for c in load_cuts(path, "prepare"))
    return out


def _subset(counts: UttCounts, ids: frozenset[str]) -> UttCounts | None:
    keep = [i for i, u in enumerate(counts.ids) if u in ids]
    if not keep:
        return None
    idx = np.array(keep)
    return UttCounts(tuple(counts.ids[i] for i in keep), counts.words[idx], counts.errors[idx])


def _point(decode_dir: Path) -> tuple[Any, Any, Any] | None:
    """A decode's (lm_weight, word_ins_penalty, selected_by), None without wer.json."""
    path = decode_dir / "wer.json"
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    return doc.get("lm_weight"), doc.get("word_ins_penalty"), doc.get("selected_by")


def decoded_at_dev_point(system_dir: Path, split: str, notes: list[str]) -> UttCounts | None:
    """Per-utterance counts of ``decode_<split>`` when it used dev's point, else None (noted)."""
    d = system_dir / f"decode_{split}"
    got, dev = _point(d), _point(system_dir / "decode_dev")
    if got is None or not (d / "errs.txt").is_file():
        return None
    at_dev = got[:2] == dev[:2] if dev is not None else got[2] == "given"
    if not at_dev:
        notes.append(
            f"{system_dir.name}: {split} left out: decoded at lm_weight={got[0]}, wip={got[1]}, "
            f"not at dev's point (decode it with --tuned-on {system_dir / 'decode_dev'})"
        )
        return None
    try:
        return read_utt_counts(d)
    except AsrKdError as e:
        notes.append(f"{system_dir.name}: {split} left out: {e}")
        return None


def _entry(counts: UttCounts) -> dict[str, Any]:
    return {
        "wer": round(counts.wer, 4),
        "wer_interval": bootstrap_wer(counts).to_dict()["interval"],
        "utterances": len(counts.ids),
    }


def _system_splits(
    s: SystemDirs, subsets: Mapping[str, frozenset[str]], notes: list[str]
) -> dict[str, UttCounts]:
    """One system's voices splits, their per-utterance counts: decoded splits and subsets."""
    decoded = sorted(p.parent.name[len("decode_") :] for p in s.dir.glob("decode_*/wer.json"))
    out = {}
    for split in (d for d in decoded if d != "dev"):
        counts = decoded_at_dev_point(s.dir, split, notes)
        if counts is None:
            continue
        out[split] = counts
        for name, ids in sorted(subsets.items()):
            part = _subset(counts, ids) if name.startswith(f"{split}_") else None
            if part is not None and name not in decoded:
                out[name] = part
    return out


def voice_results(
    dirs: Mapping[str, SystemDirs],
    roles: Mapping[str, str],
    manifest_dirs: Iterable[Path | str] = (),
) -> dict[str, Any] | None:
    """The ``voices`` document (module doc), or None when no system has a voices split."""
    subsets = subset_ids(manifest_dirs)
    notes: list[str] = []
    wanted = [roles.get(r, r) for r in ROLES]
    others = [n for n, s in dirs.items() if n not in wanted and _decodes_other_splits(s)]
    per_system = {
        n: _system_splits(dirs[n], subsets, notes) for n in [*wanted, *others] if n in dirs
    }
    splits: dict[str, dict[str, Any]] = {}
    for name, rows in per_system.items():
        for split, counts in rows.items():
            splits.setdefault(split, {})[name] = _entry(counts)
    if not set(splits) - {IN_DOMAIN}:
        return None
    systems = [n for n in per_system if per_system[n]]
    order = sorted(splits, key=lambda x: (x != IN_DOMAIN, x.split("_")[0] != IN_DOMAIN, x))
    ratio = {}
    for n in systems:
        test, held = per_system[n].get(IN_DOMAIN), per_system[n].get(HELDOUT)
        if test is not None and held is not None and test.wer > 0:
            ratio[n] = round(held.wer / test.wer, 4)
    return {
        "systems": systems,
        "splits": {k: splits[k] for k in order},
        "heldout_over_in_domain": ratio,
        "notes": notes,
    }


def _decodes_other_splits(s: SystemDirs) -> bool:
    names = (p.parent.name[len("decode_") :] for p in s.dir.glob("decode_*/wer.json"))
    return any(n not in OWN_SPLITS for n in names)


def add_voice_results(
    doc: dict[str, Any],
    dirs: Mapping[str, SystemDirs],
    roles: Mapping[str, str],
    manifest_dirs: Iterable[Path | str] = (),
) -> dict[str, Any]:
    """Add ``voices`` to a ``results.json`` document when there is a voices split."""
    voices = voice_results(dirs, roles, manifest_dirs)
    if voices is not None:
        doc["voices"] = voices
    return doc


def voices_markdown(doc: Mapping[str, Any]) -> list[str]:
    """RESULTS.md lines: WER per voice split and system, and the held-out ratio."""
    voices = doc.get("voices")
    if not voices:
        return []
    systems = voices["systems"]
    lines = [
        "",
        "WER by voice (%, at dev's LM weight; 95% bootstrap interval over utterances). "
        "`test_<engine>`: the test utterances of one voice engine; `heldout`: the test "
        "sentences read by voices never trained on (goal: at most 2× the test WER):",
        "",
        "| split | utterances | " + " | ".join(systems) + " |",
        "|:--|--:|" + "--:|" * len(systems),
    ]
    for split, row in voices["splits"].items():
        utts = next(iter(row.values()))["utterances"]
        cells = [_cell(row.get(n)) for n in systems]
        lines.append(f"| {split} | {utts} | " + " | ".join(cells) + " |")
    ratio = voices["heldout_over_in_domain"]
    if ratio:
        cells = [f"{ratio[n]:.2f}×" if n in ratio else "–" for n in systems]
        lines.append("| heldout / test | | " + " | ".join(cells) + " |")
    lines += [f"- {note}" for note in voices.get("notes", [])]
    return lines


def _cell(entry: Mapping[str, Any] | None) -> str:
    if not entry:
        return "–"
    low, high = entry["wer_interval"]
    return f"{entry['wer']:.2f} [{low:.1f}, {high:.1f}]"
