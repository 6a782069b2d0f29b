"""Synthetic speakers: distinct, deterministic, spread over accents, variants and genders."""

import random
from collections import Counter

import pytest

from asr_kd.data.espeak import english_voices, synthesize
from asr_kd.data.speakers import BASE_PITCH, BASE_RANGE, BASE_RATE, make_speakers


def _key(p):
    return (p.voice, p.variant, p.rate, p.pitch, p.pitch_range)


def test_speakers_are_deterministic_for_a_seed():
    assert make_speakers(40, seed=1) == make_speakers(40, seed=1)
    assert make_speakers(40, seed=1) != make_speakers(40, seed=2)
    assert make_speakers(0, seed=1) == []


def test_forty_speakers_cover_accents_and_both_genders():
    speakers = make_speakers(40, seed=3)
    assert [s.speaker_id for s in speakers] == [f"spk{i:04d}" for i in range(40)]
    assert len({(s.voice, s.variant) for s in speakers}) == 40
    accents = Counter(s.voice for s in speakers)
    assert len(accents) >= 5 and max(accents.values()) - min(accents.values()) <= 1
    genders = Counter(s.gender for s in speakers)
    assert abs(genders["f"] - genders["m"]) <= 2
    for s in speakers:
        assert BASE_RATE[0] <= s.rate <= BASE_RATE[1]
        assert BASE_PITCH[0] <= s.pitch <= BASE_PITCH[1]
        assert BASE_RANGE[0] <= s.pitch_range <= BASE_RANGE[1]


def test_four_hundred_speakers_use_distinct_voice_pairs():
    speakers = make_speakers(400, seed=5)
    assert len({(s.voice, s.variant) for s in speakers}) == 400
    assert len(set(english_voices()) - {s.voice for s in speakers}) == 0


def test_reused_voice_pairs_differ_in_rate_or_pitch():
    speakers = make_speakers(700, seed=7)
    assert len({_key(s) for s in speakers}) == 700
    by_pair: dict[tuple[str, str], list] = {}
    for s in speakers:
        by_pair.setdefault((s.voice, s.variant), []).append(s)
    shared = [group for group in by_pair.values() if len(group) > 1]
    assert shared, "700 speakers must reuse some of the 600 voice pairs"
    for a, b in (g[:2] for g in shared):
        assert abs(a.rate - b.rate) >= 12 or abs(a.pitch - b.pitch) >= 8


def test_voice_params_jitter_stays_near_the_speaker_and_in_range():
    spk = make_speakers(1, seed=0)[0]
    exact = spk.voice_params(random.Random(0), jitter=0.0)
    assert (exact.rate, exact.pitch, exact.pitch_range, exact.word_gap) == (
        spk.rate,
        spk.pitch,
        spk.pitch_range,
        0,
    )
    assert exact.voice == f"{spk.voice}+{spk.variant}"
    rng = random.Random(1)
    draws = [spk.voice_params(rng, jitter=0.1) for _ in range(300)]
    assert all(abs(p.rate - spk.rate) <= 0.1 * spk.rate + 1 for p in draws)
    assert all(abs(p.pitch - spk.pitch) <= 5 and 0 <= p.pitch <= 100 for p in draws)
    assert len({p.rate for p in draws}) > 5
    gaps = sum(p.word_gap > 0 for p in draws)
    assert 10 <= gaps <= 60  # about 10 % of utterances
    assert spk.voice_params(random.Random(9), 0.1) == spk.voice_params(random.Random(9), 0.1)
    with pytest.raises(ValueError):
        spk.voice_params(rng, jitter=1.5)


def test_every_accent_of_a_speaker_set_synthesises():
    speakers = make_speakers(16, seed=11)
    seen = set()
    rng = random.Random(0)
    for spk in speakers:
        if spk.voice in seen:
            continue
        seen.add(spk.voice)
        syn = synthesize("HELLO THERE", spk.voice_params(rng, jitter=0.1))
        assert [w.word for w in syn.words] == ["HELLO", "THERE"]
    assert len(seen) == len(english_voices())


def test_neural_speakers_are_deterministic_and_distinct():
    from asr_kd.data.speakers import FORMANTS, PITCH, SPEED_FACTORS, make_neural_speakers

    speakers = make_neural_speakers("piper", 60, seed=1)
    assert speakers == make_neural_speakers("piper", 60, seed=1)
    assert speakers != make_neural_speakers("piper", 60, seed=2)
    assert [s.speaker_id for s in speakers[:2]] == ["pip0000", "pip0001"]
    shifts = [(s.pitch, s.formants) for s in speakers]
    for i, (p, f) in enumerate(shifts):
        assert PITCH[0] <= p <= PITCH[1] and FORMANTS[0] <= f <= FORMANTS[1]
        assert all(abs(p - q) >= 0.03 or abs(f - g) >= 0.02 for q, g in shifts[:i])
    assert {s.speed for s in speakers} == set(SPEED_FACTORS)
    assert {s.gender for s in speakers} == {"m"}


def test_heldout_voices_are_never_training_voices():
    from asr_kd.data.speakers import FORMANTS, is_heldout_variant, make_neural_speakers

    train = make_speakers(400, seed=5)
    assert not any(is_heldout_variant(s.variant) for s in train)
    held = make_speakers(30, seed=5, heldout=True)
    assert held and all(is_heldout_variant(s.variant) for s in held)
    assert {s.speaker_id for s in held}.isdisjoint(s.speaker_id for s in train)
    for engine in ("piper", "hibari"):
        neural = make_neural_speakers(engine, 20, seed=5, heldout=True)
        assert all(not FORMANTS[0] <= s.formants <= FORMANTS[1] for s in neural)
        assert {s.formants < 1 for s in neural} == {True, False}  # both sides
