"""Bootstrap confidence intervals for WER and paired comparisons of two systems.

Kaldi's ``compute-wer-bootci`` (Bisani & Ney, 2004): the utterances of a test set are
resampled with replacement; each replication's WER is the sum of its utterances'
errors over the sum of their reference words. Kaldi reports the replications' mean
± 1.96 standard deviations; we report that (``normal``) and, by default, the 2.5th
and 97.5th percentiles of the replications (``percentile``), which need no symmetry
and stay inside [0, ∞) for small error counts. A paired comparison draws the *same*
utterances for both systems in each replication, so the per-utterance differences
carry the test: ``p_improve`` is the share of replications in which system B makes
fewer errors than system A (Kaldi's "probability of Set2 improving Set1"), and the
interval of the WER difference B − A excludes 0 when the improvement is significant.

The per-utterance counts come from a decode directory's ``errs.txt`` (its ``#csid``
lines: correct, substitutions, insertions, deletions per utterance).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr_kd.errors import BadInputError

__all__ = [
    "UttCounts",
    "WerInterval",
    "PairedComparison",
    "bootstrap_wer",
    "paired_bootstrap",
    "read_utt_counts",
]

REPLICATIONS = 10_000
METHODS = ("percentile", "normal")


@dataclass(frozen=True)
class UttCounts:
    """Per-utterance reference words and errors, in utterance-id order."""

    ids: tuple[str, ...]
    words: np.ndarray  # int64 [U]
    errors: np.ndarray  # int64 [U]

    @property
    def wer(self) -> float:
        """Percent WER of the whole set."""
        return 100.0 * float(self.errors.sum()) / max(int(self.words.sum()), 1)


@dataclass(frozen=True)
class WerInterval:
    """A WER (percent) and its bootstrap 95% interval."""

    wer: float
    low: float
    high: float
    replications: int
    method: str

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "wer": round(self.wer, 4),
            "interval": [round(self.low, 4), round(self.high, 4)],
            "replications": self.replications,
            "method": self.method,
        }


@dataclass(frozen=True)
class PairedComparison:
    """System B against system A on the same utterances (percent WER points)."""

    wer_a: float
    wer_b: float
    delta: float  # wer_b - wer_a
    low: float
    high: float
    p_improve: float  # share of replications where B has fewer errors than A
    replications: int

    @property
    def significant(self) -> bool:
        """The 95% interval of the difference excludes 0."""
        return self.high < 0 or self.low > 0

    def to_dict(self) -> dict[str, float | int | bool]:
        return {
            "wer_a": round(self.wer_a, 4),
            "wer_b": round(self.wer_b, 4),
            "delta": round(self.delta, 4),
            "delta_interval": [round(self.low, 4), round(self.high, 4)],
            "p_improve": round(self.p_improve, 4),
            "significant": self.significant,
            "replications": self.replications,
        }


def _draws(num_utts: int, replications: int, seed: int) -> np.ndarray:
    if num_utts == 0:
        raise ValueError("cannot bootstrap an empty set of utterances")
    if replications < 1:
        raise ValueError(f"replications must be at least 1, got {replications}")
    rng = np.random.default_rng(seed)
    return rng.integers(0, num_utts, size=(replications, num_utts))


def _interval(samples: np.ndarray, method: str) -> tuple[float, float]:
    if method == "percentile":
        low, high = np.percentile(samples, [2.5, 97.5])
        return float(low), float(high)
    if method == "normal":
        mean, sd = float(samples.mean()), float(samples.std())
        return mean - 1.96 * sd, mean + 1.96 * sd
    raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


def bootstrap_wer(
    counts: UttCounts,
    replications: int = REPLICATIONS,
    seed: int = 0,
    method: str = "percentile",
) -> WerInterval:
    """The set's WER with a bootstrap 95% interval over utterances.

    Args:
        counts: per-utterance words and errors.
        replications: bootstrap resamples.
        seed: seeds the resampling (the same seed gives the same interval).
        method: ``percentile`` (2.5th/97.5th) or ``normal`` (Kaldi: mean ± 1.96 sd).
    """
    idx = _draws(len(counts.ids), replications, seed)
    words = counts.words[idx].sum(axis=1)
    samples = 100.0 * counts.errors[idx].sum(axis=1) / np.maximum(words, 1)
    low, high = _interval(samples, method)
    return WerInterval(counts.wer, low, high, replications, method)


def paired_bootstrap(
    a: UttCounts,
    b: UttCounts,
    replications: int = REPLICATIONS,
    seed: int = 0,
    method: str = "percentile",
) -> PairedComparison:
    """System B against system A, resampling the same utterances for both.

    Raises:
        BadInputError: the two systems were scored on different utterances or
            references (different word counts).
    """
    if a.ids != b.ids:
        only = sorted(set(a.ids) ^ set(b.ids))
        raise BadInputError(
            f"the two systems were scored on different utterances ({len(a.ids)} vs "
            f"{len(b.ids)}; e.g. {', '.join(only[:3])}); decode the same set with both"
        )
    if not np.array_equal(a.words, b.words):
        bad = [u for u, x, y in zip(a.ids, a.words, b.words, strict=True) if x != y]
        raise BadInputError(
            f"the two systems' references differ in length for {len(bad)} utterances "
            f"(e.g. {', '.join(bad[:3])}); they must be scored against the same text"
        )
    idx = _draws(len(a.ids), replications, seed)
    words = np.maximum(a.words[idx].sum(axis=1), 1)
    diff = (b.errors - a.errors)[idx].sum(axis=1)
    samples = 100.0 * diff / words
    low, high = _interval(samples, method)
    return PairedComparison(
        wer_a=a.wer,
        wer_b=b.wer,
        delta=b.wer - a.wer,
        low=low,
        high=high,
        p_improve=float((diff < 0).mean()),
        replications=replications,
    )


def counts_from_csid(csid: Mapping[str, tuple[int, int, int, int]]) -> UttCounts:
    """Counts from ``{utt: (correct, sub, ins, del)}``."""
    ids = tuple(sorted(csid))
    c, s, i, d = (np.array([csid[u][k] for u in ids], dtype=np.int64) for k in range(4))
    return UttCounts(ids, c + s + d, s + i + d)


def read_utt_counts(path: Path | str) -> UttCounts:
    """Per-utterance counts from a decode directory (or its ``errs.txt``).

    Raises:
        BadInputError: the file is missing, or a ``#csid`` line is malformed.
    """
    path = Path(path)
    errs = path / "errs.txt" if path.is_dir() else path
    if not errs.is_file():
        raise BadInputError(f"{errs} is missing: 'asr-kd decode' writes it into its output")
    csid: dict[str, tuple[int, int, int, int]] = {}
    for n, line in enumerate(errs.read_text().splitlines(), start=1):
        fields = line.split()
        if len(fields) < 2 or fields[1] != "#csid":
            continue
        try:
            if len(fields) != 6:
                raise ValueError
            values = tuple(int(x) for x in fields[2:])
        except ValueError:
            raise BadInputError(
                f"{errs}:{n}: expected '<utt> #csid C S I D', got {line!r}"
            ) from None
        csid[fields[0]] = values  # type: ignore[assignment]
    if not csid:
        raise BadInputError(f"{errs} has no '#csid' lines: not an 'asr-kd decode' errs.txt")
    return counts_from_csid(csid)
