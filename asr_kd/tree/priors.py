"""Senone priors: how often each senone occurs in the training targets.

A hybrid model's posteriors are turned into scaled likelihoods for the decoder by
subtracting ``log p(senone)``. The priors are counted once, from the senone
alignments of the training set (``senone-targets`` writes ``priors.json``, source
``counts``, as Kaldi nnet1's ``ali_train_pdf.counts``), or estimated per model as its
softmax posteriors summed over training frames (``adjust-priors``, source
``posteriors``, as Kaldi's ``nnet3-am-adjust-priors``). Both are written in one format:
expected frame counts per senone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from asr_kd.errors import BadInputError
from asr_kd.stage import atomic_write_text


def senone_priors(senone_alignments: Iterable[np.ndarray], num_senones: int) -> np.ndarray:
    """Count frames per senone.

    Args:
        senone_alignments: ``[T]`` integer senone targets per utterance.
        num_senones: the tree's ``num_senones``.

    Returns:
        ``[num_senones]`` float64 frame counts (their sum is the number of frames).

    Raises:
        BadInputError: a senone id outside ``0..num_senones-1``.
    """
    counts = np.zeros(num_senones, dtype=np.float64)
    for index, ali in enumerate(senone_alignments):
        ali = np.asarray(ali).reshape(-1)
        if len(ali) == 0:
            continue
        if not np.issubdtype(ali.dtype, np.integer) or ali.min() < 0 or ali.max() >= num_senones:
            raise BadInputError(
                f"senone alignment #{index} holds ids outside 0..{num_senones - 1} "
                f"(min {ali.min()}, max {ali.max()}): was it made with another tree?"
            )
        counts += np.bincount(ali, minlength=num_senones)
    return counts


def log_priors(counts: np.ndarray, floor: float = 1e-10) -> np.ndarray:
    """``log p(senone)`` from counts, probabilities floored at ``floor`` (unseen senones)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("senone counts are all zero")
    return np.log(np.maximum(counts / total, floor))


PRIOR_SOURCES = ("counts", "posteriors")
"""Where priors come from: alignment counts, or a model's averaged posteriors."""


def write_priors(path: Path | str, counts: np.ndarray, source: str = "counts") -> None:
    """Write counts to ``priors.json`` (atomically): counts, their total, their number.

    ``source``: ``counts`` (alignment counts) or ``posteriors`` (summed posteriors).
    """
    if source not in PRIOR_SOURCES:
        raise ValueError(f"priors source must be one of {PRIOR_SOURCES}, got {source!r}")
    counts = np.asarray(counts, dtype=np.float64)
    doc = {
        "source": source,
        "num_senones": len(counts),
        "num_frames": float(counts.sum()),
        "counts": [float(c) for c in counts],
    }
    atomic_write_text(path, json.dumps(doc) + "\n")


def read_priors(path: Path | str) -> np.ndarray:
    """Read counts written by :func:`write_priors`.

    Raises:
        BadInputError: the file is missing fields or inconsistent.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        counts = np.asarray(doc["counts"], dtype=np.float64)
        if counts.ndim != 1 or len(counts) != doc["num_senones"]:
            raise ValueError(f"{len(counts)} counts for num_senones={doc['num_senones']}")
        bad = np.flatnonzero(~np.isfinite(counts) | (counts < 0))
        if len(bad):
            raise ValueError(
                f"{len(bad)} counts are negative or not finite (senone {bad[0]}: {counts[bad[0]]})"
            )
        if not counts.sum() > 0:
            raise ValueError("the counts sum to 0")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInputError(
            f"{path} is not a priors file ({e}); 'senone-targets' (alignment counts) or "
            "'adjust-priors' (a model's posteriors) writes it"
        ) from None
    return counts


def prior_source(path: Path | str) -> str:
    """What a ``priors.json`` was estimated from: ``counts`` (also files older than the
    field) or ``posteriors``."""
    try:
        return str(json.loads(Path(path).read_text()).get("source", "counts"))
    except (OSError, ValueError, AttributeError) as e:
        raise BadInputError(f"{path} is not a priors file ({e})") from None
