"""GMM features: MFCC, per-speaker cepstral mean (and variance) normalisation, deltas
(or frame splicing and a linear transform, the LDA+MLLT features of
:mod:`asr_kd.align.lda_mllt`).

The equivalent of Kaldi's ``apply-cmvn --utt2spk=... scp:cmvn.scp scp:feats.scp ark:- |
add-deltas ark:- ark:-`` pipeline used by ``steps/train_mono.sh`` and ``align_si.sh``:
13 cepstra, the speaker's mean subtracted (optionally divided by its standard
deviation), then first and second differences over a +/-2 frame window, giving
39 dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lhotse.cut import Cut

from asr_kd.checked import load_features
from asr_kd.data.features import FeatureStats
from asr_kd.errors import BadInputError
from asr_kd.stage import require_done, require_file

LDA_STAGE = "estimate-lda"


def speaker_of(cut: Cut) -> str:
    """The key of a cut's statistics in ``stats/speakers.json`` (see ``feature_stats``)."""
    speaker = cut.supervisions[0].speaker if cut.supervisions else None
    return speaker or cut.recording_id


def _delta_scales(order: int, window: int) -> list[np.ndarray]:
    """Kaldi's ``DeltaFeatures`` filters: one per order, each of odd length."""
    scales = [np.ones(1)]
    base = np.arange(-window, window + 1, dtype=np.float64)
    base /= (base * base).sum()
    for _ in range(order):
        scales.append(np.convolve(scales[-1], base))
    return scales


def add_deltas(feats: np.ndarray, order: int = 2, window: int = 2) -> np.ndarray:
    """Append delta coefficients exactly as Kaldi's ``add-deltas`` does.

    Each order is a filter applied to the input with its frame index clamped to the
    utterance (edge frames repeated), not a delta of the previous order's output.

    Args:
        feats: ``[T, D]`` features.
        order: highest order (2: deltas and delta-deltas).
        window: half-width of the difference window.

    Returns:
        ``[T, D * (order + 1)]`` float32.
    """
    num_frames = len(feats)
    x = feats.astype(np.float64)
    out = []
    for scale in _delta_scales(order, window):
        half = len(scale) // 2
        index = np.clip(np.arange(num_frames)[:, None] + np.arange(-half, half + 1), 0, None)
        index = np.minimum(index, num_frames - 1)
        out.append(np.einsum("tjd,j->td", x[index], scale))
    return np.concatenate(out, axis=1).astype(np.float32)


def apply_cmvn(feats: np.ndarray, stats: FeatureStats, norm_vars: bool = False) -> np.ndarray:
    """Subtract the statistics' mean (and divide by their standard deviation)."""
    out = feats.astype(np.float64) - stats.mean
    if norm_vars:
        out /= np.sqrt(stats.var)
    return out


def splice_frames(feats: np.ndarray, context: int) -> np.ndarray:
    """Each frame with ``context`` frames either side, edges repeated (``splice-feats``).

    Returns:
        ``[T, D * (2 * context + 1)]`` float64, the left-most frame first.
    """
    num_frames = len(feats)
    index = np.clip(np.arange(num_frames)[:, None] + np.arange(-context, context + 1), 0,
                    max(num_frames - 1, 0))  # fmt: skip
    return np.asarray(feats, np.float64)[index].reshape(num_frames, -1)


def normalised_mfcc(
    cut: Cut, speaker_stats: dict[str, FeatureStats] | None, norm_vars: bool = False
) -> np.ndarray:
    """A cut's MFCCs with the speaker's (or, without statistics, its own) mean removed.

    Args:
        cut: a cut with MFCC features (``compute-features`` with ``kind: mfcc``).
        speaker_stats: per-speaker statistics from
            :func:`asr_kd.data.features.load_stats`; ``None`` normalises each
            utterance by its own mean (and variance).
        norm_vars: also normalise the variance (Kaldi's ``--norm-vars``).

    Returns:
        ``[T, num_ceps]`` float64.
    """
    feats = load_features(cut)
    if speaker_stats is None:
        f = feats.astype(np.float64)
        stats = FeatureStats(len(f), f.mean(axis=0), np.maximum(f.var(axis=0), 1e-10))
    else:
        speaker = speaker_of(cut)
        if speaker not in speaker_stats:
            raise BadInputError(
                f"cut {cut.id}: speaker {speaker!r} has no statistics in the feature "
                "directory's stats/speakers.json (rerun 'compute-features')"
            )
        stats = speaker_stats[speaker]
    if len(stats.mean) != feats.shape[1]:
        raise BadInputError(
            f"cut {cut.id}: features have {feats.shape[1]} dimensions but the speaker "
            f"statistics {len(stats.mean)}; were they computed by the same 'compute-features'?"
        )
    return apply_cmvn(feats, stats, norm_vars)


def gmm_features(
    cut: Cut,
    speaker_stats: dict[str, FeatureStats] | None,
    norm_vars: bool = False,
    delta_order: int = 2,
) -> np.ndarray:
    """A cut's MFCCs, normalised per speaker, with deltas: ``[T, 13 * 3]`` float32.

    Args:
        cut, speaker_stats, norm_vars: as :func:`normalised_mfcc`.
        delta_order: 2 appends deltas and delta-deltas, 0 none.
    """
    return add_deltas(normalised_mfcc(cut, speaker_stats, norm_vars), order=delta_order)


@dataclass(frozen=True)
class FeatureTransform:
    """Normalised MFCCs, spliced, times ``matrix`` (LDA, then any MLLT).

    Attributes:
        matrix: ``[dim, num_ceps * (2 * splice + 1)]``.
        splice: frames of context on each side.
        cmvn: ``"speaker"`` or ``"utterance"`` mean normalisation before splicing.
        norm_vars: also normalise the variance.
    """

    matrix: np.ndarray
    splice: int
    cmvn: str
    norm_vars: bool = False

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[0])

    def features(self, cut: Cut, speaker_stats: dict[str, FeatureStats] | None) -> np.ndarray:
        """``[T, dim]`` float32 features of a cut (speaker statistics for ``cmvn: speaker``)."""
        stats = speaker_stats if self.cmvn == "speaker" else None
        spliced = splice_frames(normalised_mfcc(cut, stats, self.norm_vars), self.splice)
        return (spliced @ self.matrix.T).astype(np.float32)

    def then(self, a: np.ndarray) -> FeatureTransform:
        """This transform followed by the square matrix ``a`` (``compose-transforms``)."""
        return FeatureTransform(a @ self.matrix, self.splice, self.cmvn, self.norm_vars)

    def to_npz(self) -> dict[str, np.ndarray]:
        return {"matrix": self.matrix, "splice": np.array(self.splice),
                "cmvn": np.array(self.cmvn), "norm_vars": np.array(self.norm_vars)}  # fmt: skip

    @classmethod
    def from_npz(cls, data) -> FeatureTransform:
        return cls(np.asarray(data["matrix"], np.float64), int(data["splice"]),
                   str(data["cmvn"]), bool(data["norm_vars"]))  # fmt: skip


def load_transform(transform_dir: Path | str) -> tuple[Path, FeatureTransform]:
    """A finished ``estimate-lda`` output (:mod:`asr_kd.align.lda_stage`) and its transform."""
    transform_dir = require_done(Path(transform_dir).resolve(), LDA_STAGE)
    with np.load(require_file(transform_dir / "transform.npz", LDA_STAGE)) as data:
        return transform_dir, FeatureTransform.from_npz(data)
