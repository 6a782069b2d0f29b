"""Synthetic speakers: distinct espeak voices and neural-voice settings.

An espeak speaker is an English accent (an espeak language voice such as ``en-us`` or
``en-gb-scotland``), a voice variant (``f3``, ``m2``, ``Alicia`` ...) and a base speaking
rate, pitch and pitch range. Each utterance jitters the prosody a little around the
speaker's base so that one speaker's utterances are not all identical in tempo.

A neural speaker (:class:`NeuralSpeaker`) is one single-speaker neural voice
(:mod:`asr_kd.data.piper`) with its own sampling settings (length, noise and duration
noise scales), pitch and vocal-tract-length (formant) factors and a Kaldi speed factor.

Held-out voices: one espeak variant in five (:func:`is_heldout_variant`) and neural
speakers whose formant factor lies outside ``FORMANTS`` are never used for
train/dev/test; ``make_speakers(..., heldout=True)`` and
``make_neural_speakers(..., heldout=True)`` draw only those.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from asr_kd.data.espeak import VoiceParams, english_voices, variant_gender, voice_variants
from asr_kd.data.piper import NeuralSettings

__all__ = [
    "NeuralSpeaker",
    "SpeakerProfile",
    "is_heldout_variant",
    "make_neural_speakers",
    "make_speakers",
]

BASE_RATE = (130, 210)  # words per minute
BASE_PITCH = (25, 75)  # espeak 0..100
BASE_RANGE = (20, 80)  # espeak 0..100
_MAX_WORD_GAP = 5  # units of 10 ms
# Speakers that share a (voice, variant) pair differ by at least this in rate or pitch.
_MIN_RATE_GAP, _MIN_PITCH_GAP = 12, 8


@dataclass(frozen=True)
class SpeakerProfile:
    """One synthetic speaker.

    Attributes:
        speaker_id: e.g. ``"spk0007"``.
        voice: espeak language voice (the accent), e.g. ``"en-us"``.
        variant: espeak voice variant, e.g. ``"f3"``.
        rate: base speaking rate, words per minute.
        pitch: base pitch, espeak 0..100.
        pitch_range: base pitch range, espeak 0..100.
        gender: ``"m"``, ``"f"`` or ``"u"`` (unknown), from the variant's voice file.
    """

    speaker_id: str
    voice: str
    variant: str
    rate: int
    pitch: int
    pitch_range: int
    gender: str
    engine: str = "espeak"

    def voice_params(self, rng: random.Random, jitter: float) -> VoiceParams:
        """Prosody for one utterance: the speaker's base, jittered.

        The rate moves by up to ``jitter * rate``; pitch and range by up to ``50 * jitter``
        espeak units; with probability ``jitter`` the utterance gets an extra pause of
        10-50 ms between words. Values are clamped to espeak's valid ranges.

        Args:
            rng: source of randomness (seed it per utterance for reproducible corpora).
            jitter: relative amount of variation, 0 (none) to below 1; 0.1 is natural.

        Returns:
            Parameters for ``asr_kd.data.espeak.synthesize``.
        """
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        rate = round(self.rate * (1.0 + rng.uniform(-jitter, jitter)))
        pitch = round(self.pitch + 50.0 * rng.uniform(-jitter, jitter))
        pitch_range = round(self.pitch_range + 50.0 * rng.uniform(-jitter, jitter))
        word_gap = rng.randint(1, _MAX_WORD_GAP) if rng.random() < jitter else 0
        return VoiceParams(
            voice=f"{self.voice}+{self.variant}",
            rate=min(max(rate, 80), 450),
            pitch=min(max(pitch, 0), 100),
            pitch_range=min(max(pitch_range, 0), 100),
            word_gap=word_gap,
        )


def is_heldout_variant(variant: str) -> bool:
    """True for the espeak variants kept out of train/dev/test (every fifth by name)."""
    usable = sorted(voice_variants(), key=str.lower)
    return variant in usable and usable.index(variant) % 5 == 4


def make_speakers(num: int, seed: int, heldout: bool = False) -> list[SpeakerProfile]:
    """Create ``num`` distinct speakers, deterministically for a seed.

    Speakers alternate female and male variants while both remain, and each takes the
    least used accent and then the least used variant of its gender, so that accents,
    variants and genders are spread evenly; every (accent, variant) pair is used once
    before any is reused. A reused pair gets a base rate or pitch that differs from the
    pair's earlier speakers by at least 12 wpm or 8 pitch units.

    Args:
        num: number of speakers, 0 up to several thousand (8 accents x 60 training variants
            = 480 pairs, each reusable with different prosody).
        seed: random seed; the same seed gives the same speakers.
        heldout: draw from the held-out variants (:func:`is_heldout_variant`) instead
            of the others; held-out speakers are ``hld0000`` ...

    Returns:
        Speakers ``spk0000`` .. in creation order.
    """
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    rng = random.Random(seed)
    voices = english_voices()
    by_gender: dict[str, list[str]] = {}
    for variant in voice_variants():
        if is_heldout_variant(variant) != heldout:
            continue
        by_gender.setdefault(variant_gender(variant), []).append(variant)
    voice_use: Counter[str] = Counter()
    variant_use: Counter[str] = Counter()
    pair_use: Counter[tuple[str, str]] = Counter()
    prosody: dict[tuple[str, str], list[tuple[int, int]]] = {}
    speakers = []
    for i in range(num):
        voice, variant = _next_pair(i, rng, voices, by_gender, voice_use, variant_use, pair_use)
        rate, pitch, pitch_range = _distinct_prosody(rng, prosody.setdefault((voice, variant), []))
        voice_use[voice] += 1
        variant_use[variant] += 1
        pair_use[(voice, variant)] += 1
        speakers.append(
            SpeakerProfile(
                speaker_id=f"{'hld' if heldout else 'spk'}{i:04d}",
                voice=voice,
                variant=variant,
                rate=rate,
                pitch=pitch,
                pitch_range=pitch_range,
                gender=variant_gender(variant),
            )
        )
    return speakers


def _next_pair(
    index: int,
    rng: random.Random,
    voices: list[str],
    by_gender: dict[str, list[str]],
    voice_use: Counter[str],
    variant_use: Counter[str],
    pair_use: Counter[tuple[str, str]],
) -> tuple[str, str]:
    """The least used (voice, variant) pair, preferring this speaker's gender turn."""
    reuse = min(pair_use[(v, w)] for v in voices for ws in by_gender.values() for w in ws)
    order = ["f", "m"] if index % 2 == 0 else ["m", "f"]
    for gender in order + ["u"]:
        candidates = [
            (v, w) for v in voices for w in by_gender.get(gender, []) if pair_use[(v, w)] == reuse
        ]
        if candidates:
            # Least used accent first, then least used variant; random among ties.
            return min(candidates, key=lambda p: (voice_use[p[0]], variant_use[p[1]], rng.random()))
    raise AssertionError("no voice variants available")


def _distinct_prosody(rng: random.Random, taken: list[tuple[int, int]]) -> tuple[int, int, int]:
    """A base (rate, pitch, range) whose rate or pitch differs from every one in ``taken``."""
    for _ in range(1000):
        rate = rng.randint(*BASE_RATE)
        pitch = rng.randint(*BASE_PITCH)
        pitch_range = rng.randint(*BASE_RANGE)
        if all(
            abs(rate - r) >= _MIN_RATE_GAP or abs(pitch - p) >= _MIN_PITCH_GAP for r, p in taken
        ):
            taken.append((rate, pitch))
            return rate, pitch, pitch_range
    raise ValueError(
        f"cannot find {len(taken) + 1} distinct prosodies for one voice pair; "
        "ask for fewer speakers"
    )


# Neural speakers: ranges of the per-speaker settings (train/dev/test).
LENGTH_SCALE = (0.85, 1.2)
NOISE_SCALE = (0.4, 0.9)
NOISE_W = (0.5, 1.0)
PITCH = (0.8, 1.25)
FORMANTS = (0.9, 1.1)
SPEED_FACTORS = (0.9, 1.0, 1.1)  # Kaldi's speed perturbation
# Held-out neural speakers: formants beyond FORMANTS on either side, pitch over this range.
HELDOUT_FORMANTS = (0.84, 1.16)
HELDOUT_PITCH = (0.72, 1.4)
# Speakers of one engine differ by at least this in pitch or in formant factor.
_MIN_PITCH_STEP, _MIN_FORMANT_STEP = 0.03, 0.02
_ENGINE_GENDER = {"piper": "m", "hibari": "f"}


@dataclass(frozen=True)
class NeuralSpeaker:
    """One speaker made from a single-speaker neural voice.

    Attributes:
        speaker_id: e.g. ``"pip0003"``.
        engine: ``"piper"`` or ``"hibari"`` (:mod:`asr_kd.data.piper`).
        gender: the voice's own gender (before any pitch or formant shift).
        length_scale, noise_scale, noise_w: the voice's sampling settings.
        pitch: F0 factor (:func:`asr_kd.data.augment.shift_voice`).
        formants: formant (vocal-tract-length) factor.
        speed: Kaldi speed-perturbation factor (:func:`asr_kd.data.augment.speed_perturb`).
    """

    speaker_id: str
    engine: str
    gender: str
    length_scale: float
    noise_scale: float
    noise_w: float
    pitch: float
    formants: float
    speed: float

    def settings(self, rng: random.Random, jitter: float) -> NeuralSettings:
        """One utterance's settings: the length scale moves by up to ``jitter / 2``."""
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        length = self.length_scale * (1.0 + rng.uniform(-jitter, jitter) / 2)
        return NeuralSettings(round(length, 4), self.noise_scale, self.noise_w)


def make_neural_speakers(
    engine: str, num: int, seed: int, heldout: bool = False
) -> list[NeuralSpeaker]:
    """``num`` distinct speakers of one neural voice, deterministic for a seed.

    Settings are drawn uniformly from the ranges above; two speakers differ by at least
    0.03 in pitch factor or 0.02 in formant factor. Held-out speakers take a formant
    factor outside ``FORMANTS`` (so no train/dev/test speaker has it) and a pitch factor
    from the wider ``HELDOUT_PITCH``.

    Args:
        engine: a neural engine name (``"piper"``, ``"hibari"``).
        num: number of speakers.
        seed: random seed.
        heldout: draw held-out speakers (ids ``<eng>h0000`` ...).

    Returns:
        Speakers ``<first 3 letters of engine>0000`` .. in creation order.
    """
    if engine not in _ENGINE_GENDER:
        raise ValueError(f"unknown neural engine {engine!r}; known: {sorted(_ENGINE_GENDER)}")
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    rng = random.Random(f"{engine}-{seed}-{heldout}")
    taken: list[tuple[float, float]] = []
    speakers = []
    prefix = engine[:3] + ("h" if heldout else "")
    for i in range(num):
        pitch, formants = _distinct_shift(rng, taken, heldout)
        speakers.append(
            NeuralSpeaker(
                speaker_id=f"{prefix}{i:04d}",
                engine=engine,
                gender=_ENGINE_GENDER[engine],
                length_scale=round(rng.uniform(*LENGTH_SCALE), 3),
                noise_scale=round(rng.uniform(*NOISE_SCALE), 3),
                noise_w=round(rng.uniform(*NOISE_W), 3),
                pitch=pitch,
                formants=formants,
                speed=rng.choice(SPEED_FACTORS),
            )
        )
    return speakers


def _distinct_shift(
    rng: random.Random, taken: list[tuple[float, float]], heldout: bool
) -> tuple[float, float]:
    """A (pitch, formants) pair at least one step away from every pair in ``taken``."""
    for _ in range(1000):
        if heldout:
            lo, hi = rng.choice(
                [(HELDOUT_FORMANTS[0], FORMANTS[0]), (FORMANTS[1], HELDOUT_FORMANTS[1])]
            )
            formants = round(rng.uniform(lo, hi), 3)
            if formants in FORMANTS:
                continue
            pitch = round(rng.uniform(*HELDOUT_PITCH), 3)
        else:
            formants = round(rng.uniform(*FORMANTS), 3)
            pitch = round(rng.uniform(*PITCH), 3)
        if all(
            abs(pitch - p) >= _MIN_PITCH_STEP or abs(formants - f) >= _MIN_FORMANT_STEP
            for p, f in taken
        ):
            taken.append((pitch, formants))
            return pitch, formants
    raise ValueError(f"cannot find {len(taken) + 1} distinct neural speakers; ask for fewer")
