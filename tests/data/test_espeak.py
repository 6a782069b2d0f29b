"""espeak-ng synthesis: durations, word events, determinism, voices and variants."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from asr_kd.data.espeak import (
    VoiceParams,
    english_voices,
    synthesize,
    variant_gender,
    voice_variants,
)
from asr_kd.errors import BadInputError

SENTENCE = "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG"
VOICE = VoiceParams("en-us+f3", rate=175, pitch=50, pitch_range=50)


def _digest(x: np.ndarray) -> str:
    return hashlib.sha1(x.tobytes()).hexdigest()


def _check_words(syn, text: str) -> None:
    words = text.split()
    assert [w.word for w in syn.words] == words
    starts = [w.start for w in syn.words]
    assert starts[0] >= 0 and starts[-1] < len(syn.samples)
    assert all(b > a for a, b in zip(starts, starts[1:], strict=False)), starts


def test_sentence_has_plausible_duration_and_one_event_per_word():
    syn = synthesize(SENTENCE, VOICE)
    assert syn.sample_rate == 22050
    assert syn.samples.dtype == np.float32 and syn.samples.ndim == 1
    assert np.abs(syn.samples).max() <= 1.0 and np.abs(syn.samples).max() > 0.05
    seconds_per_word = len(syn.samples) / syn.sample_rate / len(SENTENCE.split())
    assert 0.2 <= seconds_per_word <= 1.0
    _check_words(syn, SENTENCE)
    # Words take time: no two starts closer than 30 ms.
    starts = np.array([w.start for w in syn.words])
    assert np.diff(starts).min() > 0.03 * syn.sample_rate


@pytest.mark.parametrize(
    "text",
    [
        "THE CAT SAT ON THE MAT",  # "on the": one dictionary entry, no event for "the"
        "I HAD TO GO",  # "had to"
        "WE SAID HERE AND THERE AGAIN",  # "here and there": events at a bogus position
        "THEY MUST HAVE BEEN IN THE HOUSE",
        "A LOT OF THE TIME WE DO NOT KNOW",
    ],
)
def test_words_espeak_merges_still_get_their_own_start(text):
    syn = synthesize(text, VOICE)
    _check_words(syn, text)
    starts = np.array([w.start for w in syn.words])
    assert np.diff(starts).min() > 0.02 * syn.sample_rate


def test_capitals_are_read_as_words_not_spelled():
    spelled = synthesize("I T", VOICE)  # what espeak would say for an all-caps "IT"
    word = synthesize("IT", VOICE)
    assert len(word.samples) < 0.8 * len(spelled.samples)
    assert _digest(word.samples) == _digest(synthesize("it", VOICE).samples)


def test_faster_rate_gives_shorter_audio():
    slow = synthesize(SENTENCE, VoiceParams("en-us+m3", rate=120, pitch=50, pitch_range=50))
    fast = synthesize(SENTENCE, VoiceParams("en-us+m3", rate=300, pitch=50, pitch_range=50))
    assert len(fast.samples) < 0.7 * len(slow.samples)
    _check_words(fast, SENTENCE)


def test_word_gap_lengthens_audio():
    plain = synthesize(SENTENCE, VOICE)
    gapped = synthesize(SENTENCE, VoiceParams("en-us+f3", 175, 50, 50, word_gap=5))
    extra = (len(gapped.samples) - len(plain.samples)) / plain.sample_rate
    assert extra > 0.05 * (len(SENTENCE.split()) - 1)


def test_repeated_calls_are_bit_identical_whatever_came_before():
    first = synthesize(SENTENCE, VOICE)
    synthesize("SOMETHING ELSE ENTIRELY", VoiceParams("en+klatt3", 200, 30, 70))
    again = synthesize(SENTENCE, VOICE)
    assert _digest(first.samples) == _digest(again.samples)
    assert first.words == again.words


def test_a_fresh_process_gives_the_same_audio():
    code = (
        "import hashlib\n"
        "from asr_kd.data.espeak import VoiceParams, synthesize\n"
        f"s = synthesize({SENTENCE!r}, VoiceParams('en-us+f3', 175, 50, 50))\n"
        "print(hashlib.sha1(s.samples.tobytes()).hexdigest())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == _digest(synthesize(SENTENCE, VOICE).samples)


@pytest.mark.parametrize("voice", ["en-us+robotx", "en-us+whisper", "en-us+f3+m3"])
def test_unknown_or_novelty_variant_is_rejected(voice):
    with pytest.raises(ValueError, match="variant"):
        VoiceParams(voice, 175, 50, 50)


def test_bad_parameters_and_unknown_voice_are_rejected():
    with pytest.raises(ValueError, match="rate"):
        VoiceParams("en-us", 50, 50, 50)
    with pytest.raises(ValueError, match="pitch"):
        VoiceParams("en-us", 175, 101, 50)
    with pytest.raises(ValueError, match="no voice"):
        synthesize("HELLO", VoiceParams("xx-nowhere", 175, 50, 50))


@pytest.mark.parametrize("text", ["CHAPTER IV BEGINS", "IN 1990 WE MET", "   "])
def test_text_espeak_cannot_map_onto_words_is_a_bad_input(text):
    with pytest.raises(BadInputError):
        synthesize(text, VOICE)


def test_english_voices_are_the_accents_and_all_speak():
    voices = english_voices()
    assert {"en-us", "en", "en-gb-scotland", "en-029", "en-us-nyc"} <= set(voices)
    assert "en-shaw" not in voices and "en-gb" not in voices
    durations = []
    for voice in voices:
        syn = synthesize("GOOD MORNING", VoiceParams(f"{voice}+m1", 175, 50, 50))
        _check_words(syn, "GOOD MORNING")
        durations.append(len(syn.samples))
    assert len(set(durations)) > 1, "accents should not all sound the same"


def test_variants_are_human_sounding_and_have_genders():
    variants = voice_variants()
    assert {f"f{i}" for i in range(1, 6)} | {f"m{i}" for i in range(1, 8)} <= set(variants)
    for novelty in ("whisper", "robosoft", "UniRobot", "Demonic", "zac"):
        assert novelty not in variants
    assert all(v.split() == [v] for v in variants)
    assert variant_gender("f3") == "f" and variant_gender("m3") == "m"
    genders = [variant_gender(v) for v in variants]
    assert genders.count("f") >= 10 and genders.count("m") >= 30
