"""Acoustic conditions for synthetic speech: resampling, noise, reverberation.

All functions take and return float32 mono audio, shape (num_samples,), in [-1, 1].
Mixing functions never clip: when a result would exceed full scale it is scaled down as
a whole, which keeps the signal-to-noise ratio.
"""

from __future__ import annotations

from fractions import Fraction
from functools import partial
from math import gcd

import numpy as np
from scipy import fft as sp_fft
from scipy import signal

__all__ = [
    "NOISE_KINDS",
    "active_speech_power",
    "add_noise",
    "make_noise",
    "normalize_peak",
    "resample",
    "reverberate",
    "shift_voice",
    "speed_perturb",
    "synth_rir",
]

NOISE_KINDS = ("white", "pink", "brown", "babble-like")
ACTIVE_FRAME = 256  # samples per frame for active_speech_power (11.6 ms at 22.05 kHz)
ACTIVE_THRESHOLD_DB = -30.0  # active frames: power above this, relative to the 95th percentile


def resample(x: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Change the sample rate with a polyphase filter (``scipy.signal.resample_poly``).

    Args:
        x: audio, shape (num_samples,).
        orig_sr: its sample rate.
        new_sr: wanted sample rate.

    Returns:
        float32 audio of length ``ceil(num_samples * new_sr / orig_sr)``.
    """
    x = _mono(x)
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} and {new_sr}")
    if orig_sr == new_sr:
        return x.copy()
    g = gcd(orig_sr, new_sr)
    return signal.resample_poly(x, new_sr // g, orig_sr // g).astype(np.float32)


def make_noise(
    num_samples: int, kind: str, rng: np.random.Generator, sample_rate: int
) -> np.ndarray:
    """Stationary noise of one of ``NOISE_KINDS``, with unit RMS.

    * ``white``: flat spectrum.
    * ``pink``: power falls 3 dB per octave (1/f) above 20 Hz.
    * ``brown``: power falls 6 dB per octave (1/f^2) above 20 Hz.
    * ``babble-like``: 4-8 "talkers", each band-limited noise in a random speech band
      (centre 250-2500 Hz, about one octave wide) whose amplitude follows a random
      syllable-rate (2-6 Hz) envelope with pauses. Not intelligible speech, but it has
      speech's spectral range and modulation.

    Args:
        num_samples: length.
        kind: one of ``NOISE_KINDS``.
        rng: numpy random generator.
        sample_rate: sample rate of the audio it will be mixed with.

    Returns:
        float32 noise, shape (num_samples,), RMS 1 (a peak above 1 is possible).
    """
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    if kind in ("white", "pink", "brown"):
        exponent = {"white": 0.0, "pink": 0.5, "brown": 1.0}[kind]
        noise = _coloured(num_samples, exponent, rng, sample_rate)
    elif kind == "babble-like":
        noise = sum(_talker(num_samples, rng, sample_rate) for _ in range(int(rng.integers(4, 9))))
    else:
        raise ValueError(f"unknown noise kind {kind!r}; choose one of {NOISE_KINDS}")
    rms = float(np.sqrt(np.mean(noise.astype(np.float64) ** 2)))
    return (noise / max(rms, 1e-12)).astype(np.float32)


def active_speech_power(x: np.ndarray) -> float:
    """Mean power of the active frames of ``x``.

    Frames of ``ACTIVE_FRAME`` samples whose power is at least ``ACTIVE_THRESHOLD_DB``
    (30 dB) below the 95th-percentile frame power count as active; pauses and leading or
    trailing silence do not. This is a simple stand-in for ITU-T P.56 active speech level.

    Args:
        x: audio, shape (num_samples,).

    Returns:
        Mean squared amplitude over the active frames (0.0 for silence).
    """
    x = _mono(x).astype(np.float64)
    n = len(x) // ACTIVE_FRAME
    if n == 0:
        return float(np.mean(x**2)) if len(x) else 0.0
    power = np.mean(x[: n * ACTIVE_FRAME].reshape(n, ACTIVE_FRAME) ** 2, axis=1)
    ref = np.percentile(power, 95)
    if ref <= 0.0:
        return 0.0
    active = power >= ref * 10.0 ** (ACTIVE_THRESHOLD_DB / 10.0)
    return float(np.mean(power[active]))


def add_noise(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix noise into speech at a given signal-to-noise ratio.

    The noise is scaled so that ``10 * log10(P_signal / P_noise) == snr_db``, where
    ``P_signal`` is ``active_speech_power(x)`` (speech frames only, so leading and
    trailing silence do not lower the SNR) and ``P_noise`` is the mean power of the noise
    over the length of ``x``. If the mixture would clip, it is scaled down as a whole.

    Args:
        x: speech, shape (num_samples,).
        noise: noise at least as long as ``x``; its first ``num_samples`` are used.
        snr_db: wanted SNR in dB.

    Returns:
        float32 mixture, shape (num_samples,), peak <= 1.
    """
    x = _mono(x)
    noise = _mono(noise)
    if len(noise) < len(x):
        raise ValueError(f"noise has {len(noise)} samples, shorter than the {len(x)} of speech")
    noise = noise[: len(x)].astype(np.float64)
    p_signal = active_speech_power(x)
    p_noise = float(np.mean(noise**2))
    if p_signal <= 0.0 or p_noise <= 0.0:
        raise ValueError("add_noise needs non-silent speech and noise")
    gain = np.sqrt(p_signal / (p_noise * 10.0 ** (snr_db / 10.0)))
    return _no_clip(x + gain * noise)


def synth_rir(
    sample_rate: int,
    rt60: float,
    rng: np.random.Generator,
    direct_to_reverb_db: float = 3.0,
) -> np.ndarray:
    """A synthetic room impulse response.

    The direct path is sample 0 with amplitude 1. Early reflections (6-12 impulses of
    random sign, 1-40 ms after it) and a Gaussian-noise tail that starts 1 ms after it
    decay together by 60 dB in ``rt60`` seconds; they are scaled so that the energy of
    the direct path over that of everything after it is ``direct_to_reverb_db``.

    Args:
        sample_rate: sample rate of the audio it will be applied to.
        rt60: reverberation time in seconds (0.05..3).
        rng: numpy random generator.
        direct_to_reverb_db: direct-to-reverberant energy ratio in dB, -10..30.

    Returns:
        float32 impulse response of 1.2 * rt60 seconds (at least 50 ms) plus one sample.
    """
    if not 0.05 <= rt60 <= 3.0:
        raise ValueError(f"rt60 must be 0.05..3 s, got {rt60}")
    if not -10.0 <= direct_to_reverb_db <= 30.0:
        raise ValueError(f"direct_to_reverb_db must be -10..30 dB, got {direct_to_reverb_db}")
    length = max(int(round(1.2 * rt60 * sample_rate)), int(0.05 * sample_rate)) + 1
    t = np.arange(length) / sample_rate
    decay = np.exp(-3.0 * np.log(10.0) * t / rt60)  # amplitude: -60 dB at t = rt60
    reverb = rng.standard_normal(length) * decay
    reverb[: int(0.001 * sample_rate) + 1] = 0.0
    for _ in range(int(rng.integers(6, 13))):
        k = int(rng.uniform(0.001, 0.040) * sample_rate)
        reverb[k] += rng.choice([-1.0, 1.0]) * rng.uniform(3.0, 8.0) * decay[k]
    energy = float(np.sum(reverb**2))
    reverb *= np.sqrt(10.0 ** (-direct_to_reverb_db / 10.0) / energy)
    reverb[0] = 1.0
    return reverb.astype(np.float32)


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve speech with a room impulse response.

    The output is aligned to the RIR's direct path (its largest-magnitude sample), so
    the speech does not move in time, and has the input's length: the reverberant tail
    past the end is cut. If the result would clip, it is scaled down as a whole.

    Args:
        x: speech, shape (num_samples,).
        rir: impulse response, e.g. from ``synth_rir``.

    Returns:
        float32 reverberant speech, shape (num_samples,), peak <= 1.
    """
    x = _mono(x)
    rir = _mono(rir)
    if not len(rir) or not np.any(rir):
        raise ValueError("the impulse response is empty or all zeros")
    direct = int(np.argmax(np.abs(rir)))
    y = signal.fftconvolve(x.astype(np.float64), rir.astype(np.float64))
    return _no_clip(y[direct : direct + len(x)])


def normalize_peak(x: np.ndarray, peak: float = 0.9) -> np.ndarray:
    """Scale audio so its largest magnitude is ``peak`` (silence stays silent).

    Args:
        x: audio, shape (num_samples,).
        peak: wanted peak, 0 < peak <= 1.

    Returns:
        float32 audio, shape (num_samples,).
    """
    if not 0.0 < peak <= 1.0:
        raise ValueError(f"peak must be in (0, 1], got {peak}")
    x = _mono(x)
    top = float(np.max(np.abs(x))) if len(x) else 0.0
    if top == 0.0:
        return x.astype(np.float32)
    return (x * (peak / top)).astype(np.float32)


def _mono(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio of shape (num_samples,), got shape {x.shape}")
    return x


def _no_clip(y: np.ndarray) -> np.ndarray:
    top = float(np.max(np.abs(y))) if len(y) else 0.0
    if top > 1.0:
        y = y / top
    return y.astype(np.float32)


def _coloured(num: int, exponent: float, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Gaussian noise whose amplitude spectrum falls as f**-exponent above 20 Hz."""
    spectrum = np.fft.rfft(rng.standard_normal(num))
    freqs = np.fft.rfftfreq(num, d=1.0 / sr)
    spectrum *= np.maximum(freqs, 20.0) ** -exponent
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, n=num)


def _talker(num: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Band-limited noise with a syllable-rate on/off envelope: one babble voice."""
    centre = rng.uniform(250.0, 2500.0)
    band = [centre / np.sqrt(2.0), min(centre * np.sqrt(2.0), 0.45 * sr)]
    sos = signal.butter(4, band, btype="bandpass", fs=sr, output="sos")
    carrier = signal.sosfilt(sos, rng.standard_normal(num))
    # Envelope: low-passed noise at 100 Hz, 2-6 Hz wide, interpolated to the audio rate.
    env_rate = 100.0
    n_env = int(num / sr * env_rate) + 8
    env_sos = signal.butter(2, rng.uniform(2.0, 6.0), btype="lowpass", fs=env_rate, output="sos")
    envelope = signal.sosfiltfilt(env_sos, rng.standard_normal(n_env))
    envelope = np.maximum(envelope - 0.3 * np.std(envelope), 0.0)  # pauses between syllables
    out = carrier * np.interp(np.arange(num) * env_rate / sr, np.arange(n_env), envelope)
    return out / max(float(np.sqrt(np.mean(out**2))), 1e-12)


def speed_perturb(x: np.ndarray, factor: float) -> np.ndarray:
    """Kaldi's speed perturbation: play ``factor`` times faster (tempo and pitch together).

    As sox's ``speed`` effect in Kaldi's ``perturb_data_dir_speed.sh``: the audio is
    resampled so that it lasts ``1 / factor`` as long at the same sample rate, which also
    scales pitch and formants by ``factor``.

    Args:
        x: audio, shape (num_samples,).
        factor: speed factor, 0.5..2 (Kaldi uses 0.9, 1.0 and 1.1).

    Returns:
        float32 audio of about ``num_samples / factor`` samples.
    """
    if not 0.5 <= factor <= 2.0:
        raise ValueError(f"speed factor must be 0.5..2, got {factor}")
    up, down = _ratio(1.0 / factor)
    if up == down:
        return _mono(x).astype(np.float32)
    return signal.resample_poly(_mono(x), up, down).astype(np.float32)


def shift_voice(
    x: np.ndarray, sample_rate: int, pitch: float = 1.0, formants: float = 1.0
) -> np.ndarray:
    """Move a voice's pitch and its formants (vocal-tract length) independently.

    Pitch moves by a phase-vocoder pitch shift (time stretch by ``pitch``, then resample
    back to the same length), which shifts the whole spectrum; the spectral envelope of
    each frame (cepstrum liftered to 1.5 ms) is then replaced by the original envelope
    warped by ``formants`` (VTLP as a linear frequency warp, ``formants > 1`` is a shorter
    vocal tract). The duration does not change.

    Args:
        x: speech, shape (num_samples,).
        sample_rate: its sample rate.
        pitch: F0 factor, 0.5..2 (1 leaves it).
        formants: formant frequency factor, 0.7..1.4 (1 leaves them).

    Returns:
        float32 audio, shape (num_samples,), peak <= 1.
    """
    if not 0.5 <= pitch <= 2.0:
        raise ValueError(f"pitch factor must be 0.5..2, got {pitch}")
    if not 0.7 <= formants <= 1.4:
        raise ValueError(f"formant factor must be 0.7..1.4, got {formants}")
    x = _mono(x).astype(np.float64)
    if pitch == 1.0 and formants == 1.0 or len(x) < _VOC_FFT:
        return _no_clip(x)
    nper, hop = _VOC_FFT, _VOC_FFT // 4
    stft = partial(signal.stft, fs=sample_rate, nperseg=nper, noverlap=nper - hop)
    _, _, spec = stft(x)
    shifted = x
    if pitch != 1.0:
        stretched = _phase_vocoder(spec, 1.0 / pitch, hop)
        _, y = signal.istft(stretched, fs=sample_rate, nperseg=nper, noverlap=nper - hop)
        up, down = _ratio(1.0 / pitch)
        shifted = signal.resample_poly(y, up, down)
        shifted = np.pad(shifted, (0, max(0, len(x) - len(shifted))))[: len(x)]
    _, _, out = stft(shifted)
    frames = min(out.shape[1], spec.shape[1])
    target = _warp_bins(_log_envelope(spec[:, :frames], sample_rate), formants)
    out = out[:, :frames] * np.exp(target - _log_envelope(out[:, :frames], sample_rate))
    _, y = signal.istft(out, fs=sample_rate, nperseg=nper, noverlap=nper - hop)
    y = np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]
    return _no_clip(y)


_VOC_FFT = 512  # 32 ms at 16 kHz
_TRUE_ENVELOPE_ITERS = 6
_LIFTER_S = 0.0015  # envelope: quefrencies below 1.5 ms (F0 < 660 Hz stays in the fine part)


def _ratio(value: float) -> tuple[int, int]:
    frac = Fraction(value).limit_denominator(100)
    return frac.numerator, frac.denominator


def _phase_vocoder(spec: np.ndarray, rate: float, hop: int) -> np.ndarray:
    """Time-stretch an STFT (freq x frames) by ``rate`` (< 1 longer), keeping phase coherent.

    Output frame ``i`` reads input position ``i * rate``: magnitudes interpolated between
    the two frames around it, phase accumulated from each step's measured phase advance.
    """
    n_bins, n_frames = spec.shape
    steps = np.arange(0.0, n_frames - 1, rate)
    k = steps.astype(int)
    frac = steps - k
    advance = (np.pi * hop * np.arange(n_bins) / (n_bins - 1))[:, None]  # expected, per hop
    a, b = spec[:, k], spec[:, k + 1]
    mag = (1.0 - frac) * np.abs(a) + frac * np.abs(b)
    dphi = np.angle(b) - np.angle(a) - advance
    step_phase = advance + dphi - 2.0 * np.pi * np.round(dphi / (2.0 * np.pi))
    phase = np.cumsum(np.concatenate([np.angle(spec[:, :1]), step_phase[:, :-1]], axis=1), axis=1)
    return mag * np.exp(1j * phase)


def _log_envelope(spec: np.ndarray, sample_rate: int) -> np.ndarray:
    """Log spectral envelope of each STFT frame (freq x frames): Röbel's true envelope.

    Cepstral liftering alone passes below the harmonic peaks; iterating it on the
    maximum of the log spectrum and the last envelope makes it ride on the peaks.
    """
    log_mag = np.log(np.abs(spec.T) + 1e-9)  # frames x freq: FFTs along contiguous rows
    keep = max(int(_LIFTER_S * sample_rate), 1)
    env = log_mag
    for _ in range(_TRUE_ENVELOPE_ITERS):
        cep = sp_fft.irfft(np.maximum(log_mag, env), axis=1)
        cep[:, keep : cep.shape[1] - keep + 1] = 0.0
        env = sp_fft.rfft(cep, axis=1).real[:, : spec.shape[0]]
    return env.T


def _warp_bins(env: np.ndarray, factor: float) -> np.ndarray:
    """``env`` (freq x frames) with its frequency axis scaled by ``factor``: out(f) = env(f/a)."""
    src = np.clip(np.arange(env.shape[0]) / factor, 0.0, env.shape[0] - 1.0)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, env.shape[0] - 1)
    w = (src - lo)[:, None]
    return (1.0 - w) * env[lo] + w * env[hi]
