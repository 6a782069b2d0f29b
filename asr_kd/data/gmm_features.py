"""GMM features: MFCC, per-speaker cepstral mean (and variance) normalisation, deltas.

The equivalent of Kaldi's ``apply-cmvn --utt2spk=... scp:cmvn.scp scp:feats.scp ark:- |
add-deltas ark:- ark:-`` pipeline used by ``steps/train_mono.sh`` and ``align_si.sh``:
13 cepstra, the speaker's mean subtracted (optionally divided by its standard
deviation), then first and second differences over a +/-2 frame window, giving
39 dimensions.
"""

from __future__ import annotations

import numpy as np
from lhotse.cut import Cut

from asr_kd.data.features import FeatureStats
from asr_kd.errors import BadInputError


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


def gmm_features(
    cut: Cut,
    speaker_stats: dict[str, FeatureStats] | None,
    norm_vars: bool = False,
    delta_order: int = 2,
) -> np.ndarray:
    """A cut's MFCCs, normalised per speaker, with deltas: ``[T, 13 * 3]`` float32.

    Args:
        cut: a cut with MFCC features (``compute-features`` with ``kind: mfcc``).
        speaker_stats: per-speaker statistics from
            :func:`asr_kd.data.features.load_stats`; ``None`` normalises each
            utterance by its own mean (and variance).
        norm_vars: also normalise the variance (Kaldi's ``--norm-vars``).
        delta_order: 2 appends deltas and delta-deltas, 0 none.
    """
    feats = cut.load_features()
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
    return add_deltas(apply_cmvn(feats, stats, norm_vars), order=delta_order)
