"""Monophone GMM-HMM training and forced alignment (Kaldi's train_mono.sh, align_si.sh).

The stages are :func:`asr_kd.align.mono.train_mono` (``asr-kd train-mono``) and
:func:`asr_kd.align.align.align` (``asr-kd align``); :func:`gmm_features` gives the
39-dimensional features both use. (The ``align`` function is not re-exported here,
so that ``asr_kd.align.align`` stays the module.)
"""

from asr_kd.align.align import ALI_KEY, AlignConfig
from asr_kd.align.mono import MonoConfig, MonoModel, train_mono
from asr_kd.data.gmm_features import add_deltas, gmm_features

__all__ = [
    "ALI_KEY",
    "AlignConfig",
    "MonoConfig",
    "MonoModel",
    "add_deltas",
    "gmm_features",
    "train_mono",
]
