"""Acoustic conditions: resampling, noise at a set SNR, synthetic rooms."""

import numpy as np
import pytest
from scipy import signal

from asr_kd.data.augment import (
    NOISE_KINDS,
    active_speech_power,
    add_noise,
    make_noise,
    normalize_peak,
    resample,
    reverberate,
    shift_voice,
    speed_perturb,
    synth_rir,
)

SR = 16000


def _bursts(amplitude: float = 0.5, sr: int = SR) -> np.ndarray:
    """Two 0.5 s tones (one of 300 Hz, one of 700 Hz) between stretches of silence."""
    t = np.arange(int(0.5 * sr)) / sr
    silence = np.zeros(int(0.3 * sr))
    parts = [silence, np.sin(2 * np.pi * 300 * t), silence, np.sin(2 * np.pi * 700 * t), silence]
    return (amplitude * np.concatenate(parts)).astype(np.float32)


def _schroeder_rt60(rir: np.ndarray, sr: int) -> float:
    """RT60 from the energy decay curve's -5..-25 dB slope (T20 x 3)."""
    edc = np.cumsum(rir[::-1].astype(np.float64) ** 2)[::-1]
    edc_db = 10 * np.log10(edc / edc[0])
    idx = np.nonzero((edc_db <= -5) & (edc_db >= -25))[0]
    slope, _ = np.polyfit(idx / sr, edc_db[idx], 1)
    return -60.0 / slope


def test_resample_gives_the_right_length_and_keeps_a_tone():
    x = np.sin(2 * np.pi * 440 * np.arange(22050 * 2 + 7) / 22050).astype(np.float32)
    y = resample(x, 22050, 16000)
    assert y.dtype == np.float32
    assert len(y) == int(np.ceil(len(x) * 16000 / 22050))
    freqs, power = signal.periodogram(y, fs=16000)
    assert abs(freqs[np.argmax(power)] - 440) < 2
    assert np.array_equal(resample(x, 8000, 8000), x)


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_noise_has_unit_rms_and_the_requested_length(kind):
    n = make_noise(SR * 2 + 3, kind, np.random.default_rng(0), SR)
    assert n.dtype == np.float32 and n.shape == (SR * 2 + 3,)
    assert np.sqrt(np.mean(n.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
    assert np.array_equal(n, make_noise(SR * 2 + 3, kind, np.random.default_rng(0), SR))


@pytest.mark.parametrize("kind,db_per_octave", [("white", 0), ("pink", -3), ("brown", -6)])
def test_coloured_noise_spectral_slopes(kind, db_per_octave):
    n = make_noise(SR * 8, kind, np.random.default_rng(1), SR)
    freqs, psd = signal.welch(n, fs=SR, nperseg=4096)
    band = (freqs >= 100) & (freqs <= 5000)
    slope, _ = np.polyfit(np.log2(freqs[band]), 10 * np.log10(psd[band]), 1)
    assert slope == pytest.approx(db_per_octave, abs=0.7)


def test_babble_is_in_the_speech_band_and_modulated():
    babble = make_noise(SR * 6, "babble-like", np.random.default_rng(2), SR)
    freqs, psd = signal.welch(babble, fs=SR, nperseg=2048)
    speech_band = psd[(freqs >= 150) & (freqs <= 4000)].sum() / psd.sum()
    assert speech_band > 0.9

    def modulation(x):  # spread of 50 ms frame levels
        frames = x[: len(x) // 800 * 800].reshape(-1, 800)
        rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
        return rms.std() / rms.mean()

    white = make_noise(SR * 6, "white", np.random.default_rng(2), SR)
    assert modulation(babble) > 3 * modulation(white)


def test_unknown_noise_kind_is_rejected():
    with pytest.raises(ValueError, match="noise kind"):
        make_noise(100, "purple", np.random.default_rng(0), SR)


def test_active_speech_power_ignores_silence():
    x = _bursts(amplitude=0.5)
    # Tone power is 0.125; the whole signal, 40 % silence, averages 0.075.
    assert active_speech_power(x) == pytest.approx(0.5**2 / 2, rel=0.05)
    assert active_speech_power(np.zeros(1000, np.float32)) == 0.0


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 20.0, 35.0])
@pytest.mark.parametrize("kind", ["white", "pink", "babble-like"])
def test_add_noise_hits_the_requested_snr(snr_db, kind):
    x = _bursts(amplitude=0.5)
    noise = make_noise(len(x) + 500, kind, np.random.default_rng(3), SR)
    y = add_noise(x, noise, snr_db)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.abs(y).max() <= 1.0
    # y = a * x + b * noise (a < 1 when the mix was scaled down to avoid clipping).
    (a, b), *_ = np.linalg.lstsq(
        np.stack([x, noise[: len(x)]], axis=1).astype(np.float64), y.astype(np.float64), rcond=None
    )
    tone_power = (a * 0.5) ** 2 / 2  # power of the tones, the active speech
    noise_power = np.mean((b * noise[: len(x)].astype(np.float64)) ** 2)
    assert 10 * np.log10(tone_power / noise_power) == pytest.approx(snr_db, abs=0.5)


def test_add_noise_never_clips_and_needs_enough_noise():
    x = _bursts(amplitude=0.99)
    y = add_noise(x, make_noise(len(x), "white", np.random.default_rng(4), SR), -10.0)
    assert np.abs(y).max() <= 1.0
    with pytest.raises(ValueError, match="shorter"):
        add_noise(x, np.ones(10, np.float32), 10.0)


@pytest.mark.parametrize("rt60", [0.2, 0.5, 1.0])
def test_rir_decays_at_the_requested_rt60(rt60):
    rir = synth_rir(SR, rt60, np.random.default_rng(5))
    assert rir.dtype == np.float32
    assert len(rir) >= 1.2 * rt60 * SR
    assert rir[0] == 1.0 and np.argmax(np.abs(rir)) == 0
    assert _schroeder_rt60(rir, SR) == pytest.approx(rt60, rel=0.3)


@pytest.mark.parametrize("drr_db", [-5.0, 3.0, 12.0])
def test_rir_direct_to_reverberant_ratio(drr_db):
    rir = synth_rir(SR, 0.4, np.random.default_rng(6), direct_to_reverb_db=drr_db).astype(float)
    assert 10 * np.log10(rir[0] ** 2 / np.sum(rir[1:] ** 2)) == pytest.approx(drr_db, abs=0.1)


def test_reverberate_keeps_length_and_onset():
    x = _bursts(amplitude=0.5)
    onset = int(np.nonzero(np.abs(x) > 1e-3)[0][0])
    rir = synth_rir(SR, 0.6, np.random.default_rng(7))
    y = reverberate(x, rir)
    assert y.shape == x.shape and y.dtype == np.float32
    assert int(np.nonzero(np.abs(y) > 1e-3)[0][0]) == pytest.approx(onset, abs=2)
    assert np.abs(y[: onset - 2]).max() < 1e-3
    # The silence after the first tone now holds the reverberant tail.
    gap = slice(int(0.85 * SR), int(0.95 * SR))
    assert np.sqrt(np.mean(y[gap] ** 2)) > 10 * np.sqrt(np.mean(x[gap] ** 2)) + 1e-4
    # An impulse response with a 10 ms pre-delay is aligned to its direct path too.
    delayed = np.concatenate([np.zeros(160, np.float32), rir])
    z = reverberate(x, delayed)
    assert int(np.nonzero(np.abs(z) > 1e-3)[0][0]) == pytest.approx(onset, abs=2)


def test_reverberate_never_clips():
    x = _bursts(amplitude=1.0)
    rir = synth_rir(SR, 1.5, np.random.default_rng(8), direct_to_reverb_db=-8.0)
    assert np.abs(reverberate(x, rir)).max() <= 1.0


def test_normalize_peak():
    x = _bursts(amplitude=0.2)
    assert np.abs(normalize_peak(x)).max() == pytest.approx(0.9, rel=1e-6)
    assert np.abs(normalize_peak(x, peak=0.5)).max() == pytest.approx(0.5, rel=1e-6)
    assert not normalize_peak(np.zeros(10, np.float32)).any()
    with pytest.raises(ValueError):
        normalize_peak(x, peak=1.5)


def _voiced(f0: float, formant: float, sr: int = SR, seconds: float = 1.0) -> np.ndarray:
    """A pulse train at ``f0`` through a resonance at ``formant`` Hz: a crude vowel."""
    x = np.zeros(int(seconds * sr))
    x[:: int(round(sr / f0))] = 1.0
    b, a = signal.iirpeak(formant, 5.0, fs=sr)
    y = signal.lfilter(b, a, x)
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def _f0(x: np.ndarray, sr: int = SR) -> float:
    seg = x[len(x) // 4 : 3 * len(x) // 4].astype(np.float64)
    ac = np.correlate(seg, seg, "full")[len(seg) - 1 :]
    lo, hi = sr // 400, sr // 90  # 90-400 Hz: no octave errors for these tests
    return sr / (lo + int(np.argmax(ac[lo:hi])))


def _centroid(x: np.ndarray, sr: int = SR) -> float:
    """Power-weighted mean frequency in 200-4000 Hz (moves with the formant)."""
    f, p = signal.welch(x, fs=sr, nperseg=1024)
    band = (f > 200) & (f < 4000)
    return float((f[band] * p[band]).sum() / p[band].sum())


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturb_changes_duration_and_pitch_together(factor):
    x = _voiced(120.0, 800.0)
    y = speed_perturb(x, factor)
    assert abs(len(y) - len(x) / factor) <= 2
    assert _f0(y) == pytest.approx(120.0 * factor, rel=0.04)
    assert np.array_equal(speed_perturb(x, 1.0), x)
    with pytest.raises(ValueError, match="speed factor"):
        speed_perturb(x, 3.0)


def test_shift_voice_moves_pitch_and_formants_independently():
    x = _voiced(120.0, 1000.0)
    assert _f0(x) == pytest.approx(120.0, rel=0.03)
    up = shift_voice(x, SR, pitch=1.25)
    assert len(up) == len(x) and np.abs(up).max() <= 1.0
    assert _f0(up) == pytest.approx(150.0, rel=0.05)
    assert _centroid(up) == pytest.approx(_centroid(x), rel=0.05)  # formant stays
    for factor in (0.9, 1.2):
        warped = shift_voice(x, SR, formants=factor)
        assert _f0(warped) == pytest.approx(120.0, rel=0.05)  # pitch stays
        assert _centroid(warped) / _centroid(x) == pytest.approx(factor, rel=0.04)
    with pytest.raises(ValueError, match="formant factor"):
        shift_voice(x, SR, formants=2.0)
