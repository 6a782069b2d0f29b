"""Synthetic speakers: distinct espeak voice, variant and prosody combinations.

A speaker is an English accent (an espeak language voice such as ``en-us`` or
``en-gb-scotland``), a voice variant (``f3``, ``m2``, ``Alicia`` ...) and a base speaking
rate, pitch and pitch range. Each utterance jitters the prosody a little around the
speaker's base so that one speaker's utterances are not all identical in tempo.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from asr_kd.data.espeak import VoiceParams, english_voices, variant_gender, voice_variants

__all__ = ["SpeakerProfile", "make_speakers"]

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


def make_speakers(num: int, seed: int) -> list[SpeakerProfile]:
    """Create ``num`` distinct speakers, deterministically for a seed.

    Speakers alternate female and male variants while both remain, and each takes the
    least used accent and then the least used variant of its gender, so that accents,
    variants and genders are spread evenly; every (accent, variant) pair is used once
    before any is reused. A reused pair gets a base rate or pitch that differs from the
    pair's earlier speakers by at least 12 wpm or 8 pitch units.

    Args:
        num: number of speakers, 0 up to several thousand (8 accents x 75 variants = 600
            pairs, each reusable with different prosody).
        seed: random seed; the same seed gives the same speakers.

    Returns:
        Speakers ``spk0000`` .. in creation order.
    """
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    rng = random.Random(seed)
    voices = english_voices()
    by_gender: dict[str, list[str]] = {}
    for variant in voice_variants():
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
                speaker_id=f"spk{i:04d}",
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
