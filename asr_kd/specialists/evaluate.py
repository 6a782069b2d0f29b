"""Frame accuracy overall and inside the specialists' clusters (``asr-kd eval-specialists``).

For the generalist, the generalist + specialists system and any other systems (the
student distilled from it, the ensemble), per split: the frame accuracy on all frames,
on the frames whose reference senone lies in a specialist's cluster
(``frame_acc_in_clusters``), and for the specialist system the share of frames on
which a specialist was active.

Output (``--out``, by convention ``<exp>/specialists/eval.json``)::

    {"dev": {"frame_acc": 0.47, "frame_acc_in_clusters": 0.41},   # the specialists system
     "test": {...},
     "clusters": 8, "covered_senones": 212,
     "systems": {"generalist": {"dir": "exp/baseline", "dev": {...}, "test": {...}},
                 "specialists": {...}, "specialists_student": {...}}}

fractions, as the other eval JSONs. ``asr-kd report`` reads it: the systems
``generalist`` (the directory named) and ``specialists_student`` gain their numbers,
and every system listed gets ``frame_acc_in_clusters``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lhotse.dataset import SimpleCutSampler

from asr_kd.checked import load_features
from asr_kd.stage import atomic_write_text, require_done
from asr_kd.teachers import SPECIALISTS_FILE
from asr_kd.train.dataset import PAD_TARGET, TARGETS_STAGE, load_split, read_targets_info

__all__ = ["evaluate_in_clusters"]

logger = logging.getLogger(__name__)

SYSTEM_NAME = "specialists"


def _split_counts(teacher, cuts, in_cluster: torch.Tensor, num_senones: int,
                  max_duration: float) -> dict[str, float]:  # fmt: skip
    from asr_kd.ensemble.evaluate import batch_targets

    sums = np.zeros(5)
    for batch in SimpleCutSampler(cuts.sort_by_duration(), max_duration=max_duration):
        cuts_b = list(batch)
        feats = [load_features(c) for c in cuts_b]
        if hasattr(teacher, "posteriors_batch"):
            probs, _, active, lengths = teacher.posteriors_batch(cuts_b, feats)
            pred = probs.argmax(-1)
        else:
            log_probs, lengths = teacher.log_probs_batch(cuts_b, 1.0, feats)
            pred, active = log_probs.argmax(-1), None
        targets = batch_targets(cuts_b, lengths, num_senones)
        pred = pred.cpu()
        valid = targets != PAD_TARGET
        inside = valid & in_cluster[targets.clamp(min=0)]
        hit = pred == targets
        any_active = 0 if active is None else int(active.any(-1).cpu()[valid].sum())
        sums += [int((hit & valid).sum()), int(valid.sum()), int((hit & inside).sum()),
                 int(inside.sum()), any_active]  # fmt: skip
    out = {
        "frame_acc": sums[0] / max(sums[1], 1),
        "frame_acc_in_clusters": sums[2] / max(sums[3], 1),
        "frames": int(sums[1]),
        "frames_in_clusters": int(sums[3]),
    }
    if hasattr(teacher, "posteriors_batch"):
        out["active_share"] = sums[4] / max(sums[1], 1)
    return out


def evaluate_in_clusters(
    specialists_dir: Path | str,
    data_dir: Path | str,
    systems: Mapping[str, str] | None = None,
    splits: Sequence[str] = ("dev", "test"),
    out_file: Path | str | None = None,
    device: str = "auto",
    max_duration: float = 200.0,
) -> dict[str, Any]:
    """Score the generalist, the specialists system and ``systems`` (name -> spec).

    Raises:
        MissingInputError: the specialists or senone targets are not finished.
        BadInputError: a system for another tree (from the teacher loader).
    """
    from asr_kd.teachers import SpecialistSystem, load
    from asr_kd.train.distributed import resolve_device

    start = time.time()
    specialists_dir = require_done(Path(specialists_dir), "train-specialists")
    data_dir = require_done(Path(data_dir), TARGETS_STAGE)
    info = read_targets_info(data_dir)
    tree_id, num_senones = str(info["tree_id"]), int(info["num_senones"])
    dev = resolve_device(device)
    system = load(specialists_dir, tree_id, num_senones, device=dev)
    assert isinstance(system, SpecialistSystem)  # a finished train-specialists output
    in_cluster = torch.zeros(num_senones, dtype=torch.bool)
    for c in system.clusters:
        in_cluster[c] = True
    gen_doc = json.loads((specialists_dir / SPECIALISTS_FILE).read_text())["generalist"]
    gen_dir = Path(gen_doc).parent if Path(gen_doc).suffix == ".pt" else Path(gen_doc)
    teachers = {"generalist": system.generalist, SYSTEM_NAME: system}
    dirs = {"generalist": str(gen_dir), SYSTEM_NAME: str(specialists_dir.resolve())}
    for name, spec in (systems or {}).items():
        teachers[name] = load(spec, tree_id, num_senones, device=dev)
        dirs[name] = str(Path(spec).resolve()) if Path(spec).exists() else str(spec)
    doc: dict[str, Any] = {
        "clusters": len(system.clusters),
        "covered_senones": int(in_cluster.sum()),
        "data_dir": str(data_dir),
        "systems": {name: {"dir": dirs[name]} for name in teachers},
    }
    for split in splits:
        cuts = load_split(data_dir, split)
        for name, teacher in teachers.items():
            result = _split_counts(teacher, cuts, in_cluster, num_senones, max_duration)
            doc["systems"][name][split] = result
            logger.info(
                "eval-specialists: %s %s: frame acc %.2f%%, in clusters %.2f%% (%d frames)",
                name, split, 100 * result["frame_acc"], 100 * result["frame_acc_in_clusters"],
                result["frames_in_clusters"],
            )  # fmt: skip
        doc[split] = {k: doc["systems"][SYSTEM_NAME][split][k]
                      for k in ("frame_acc", "frame_acc_in_clusters")}  # fmt: skip
    doc["seconds"] = round(time.time() - start, 2)
    if out_file is not None:
        atomic_write_text(Path(out_file), json.dumps(doc, indent=2) + "\n")
    return doc
