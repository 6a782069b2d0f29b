"""Speech synthesis with libespeak-ng (from the ``espeakng-loader`` wheel) through ctypes.

The library keeps global synthesis state between calls, so it runs in a helper process
(:mod:`asr_kd.data.espeak_worker`) that forks a freshly initialised child per request:
every call is a pure function of ``(text, params)``, bit-identical across calls,
processes and call orders; the fork costs about 8 ms per call (see ``synthesize``).

Word timing comes from espeak's word events (``sample`` is an exact sample offset).
espeak reads some word pairs as one multi-word dictionary entry ("in the", "for a",
"has been", "there are": one sentence in three of the synth grammar has one), and then
gives the second word no event or one at a bogus text position. Such words are placed
with phoneme events: at the entry's sound where the word's own first sound is, or else
after the stand-alone sound count of the words before it. A vowel-initial word whose
event sits on the linking consonant of the word before ("sunshine_in") starts at its
vowel instead.
"""

from __future__ import annotations

import bisect
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import espeakng_loader
import numpy as np

from asr_kd.data import espeak_worker
from asr_kd.errors import BadInputError

__all__ = [
    "Synthesis",
    "VoiceParams",
    "WordEvent",
    "english_voices",
    "synthesize",
    "variant_gender",
    "voice_variants",
]

# Variants of voices/!v that do not sound like a plausible adult human speaker. Decided by
# synthesising one sentence with every variant (en-us) and measuring the fraction of
# active 40 ms frames with a normalised autocorrelation peak > 0.5 in 50-500 Hz: the
# default voice scores 0.67; whisper 0.05, whisperf 0.03, caleb (voicing 0) 0.36,
# announcer 0.04, Demonic 0.30, Storm 0.31, croak 0.37, david 0.10, grandpa (flutter 20)
# 0.38, klatt 0.35, klatt2 0.33, ian 0.40. By name or file: robots, 10 s echoes
# (RicishayMax*), Tweaky (F3 doubled), a child (zac, 240-390 Hz) and "fast" (a speed
# test identical to the default voice).
_EXCLUDED_VARIANTS = frozenset(
    "whisper whisperf caleb announcer Demonic Storm croak david grandpa klatt klatt2 ian "
    "Tweaky RicishayMax RicishayMax2 RicishayMax3 UniRobot anikaRobot robosoft robosoft2 "
    "robosoft3 robosoft4 robosoft5 robosoft6 robosoft7 robosoft8 zac fast".split()
)

_RATE_RANGE = (80, 450)
# Phoneme events that are not sounds of a word: pauses ("_", "_:", "_!") and the
# palatalisation marker ";". Excluded when splitting merged words.
_NON_PHONEMES = re.compile(r"^(_.*|;|)$")
_VOWEL_INITIALS = frozenset("aeiouAEIOUV03@")


@dataclass(frozen=True)
class VoiceParams:
    """An espeak voice and its prosody settings.

    Attributes:
        voice: espeak voice name with an optional ``+variant``, e.g. ``"en-us+f3"``.
        rate: speaking rate in words per minute, 80..450.
        pitch: base pitch, 0..100 (50 is the voice's default).
        pitch_range: pitch range, 0..100 (50 is the voice's default).
        word_gap: extra pause between words, in units of 10 ms.
    """

    voice: str
    rate: int
    pitch: int
    pitch_range: int
    word_gap: int = 0

    def __post_init__(self) -> None:
        lo, hi = _RATE_RANGE
        if not lo <= self.rate <= hi:
            raise ValueError(f"rate must be {lo}..{hi} words per minute, got {self.rate}")
        for name in ("pitch", "pitch_range"):
            if not 0 <= getattr(self, name) <= 100:
                raise ValueError(f"{name} must be 0..100, got {getattr(self, name)}")
        if self.word_gap < 0:
            raise ValueError(f"word_gap must be >= 0 (units of 10 ms), got {self.word_gap}")
        language, _, variant = self.voice.partition("+")
        if not language:
            raise ValueError(f"voice {self.voice!r} has no language part, e.g. 'en-us+f3'")
        if variant and variant not in _voice_variants():
            raise ValueError(
                f"unknown or excluded espeak variant {variant!r} in voice {self.voice!r}; "
                f"choose one of voice_variants(), e.g. {voice_variants()[:5]}"
            )


@dataclass(frozen=True)
class WordEvent:
    """Where a word starts in the synthesised audio.

    Attributes:
        word: the word as it appears in the input text.
        start: sample offset (at ``Synthesis.sample_rate``) of the word's start.
    """

    word: str
    start: int


@dataclass
class Synthesis:
    """Synthesised audio with word start times.

    Attributes:
        samples: float32 mono audio in [-1, 1], shape (num_samples,).
        sample_rate: samples per second (22050 for espeak-ng).
        words: one event per input word, in text order, starts strictly increasing.
    """

    samples: np.ndarray
    sample_rate: int
    words: list[WordEvent]


def synthesize(text: str, params: VoiceParams) -> Synthesis:
    """Synthesise ``text`` with espeak-ng.

    The text is plain words separated by white space (transcript style, usually upper
    case). It is lower-cased before synthesis because espeak spells some all-capital
    words letter by letter ("US", "IT", "DR"). The result depends only on the arguments:
    repeated calls, calls in other processes and calls in any order give bit-identical
    audio. Speed: about 300x real time on one core (about 1,000x for the library alone;
    the rest is the fork that makes it deterministic).

    Args:
        text: words separated by spaces, e.g. ``"THE CAT SAT ON THE MAT"``.
        params: voice and prosody.

    Returns:
        The audio and one ``WordEvent`` per word of ``text``.

    Raises:
        BadInputError: the text is empty, espeak fails or produces no audio, espeak reads a
            word as several words (numbers, roman numerals such as "IV"), or the word
            events cannot be mapped one-to-one onto the words.
        ValueError: espeak does not know the voice.
    """
    words = text.split()
    if not words:
        raise BadInputError(f"cannot synthesise empty text {text!r}")
    spoken = [w.lower() for w in words]
    header, payload = espeak_worker.synth(
        spoken,
        params.voice,
        rate=params.rate,
        pitch=params.pitch,
        pitch_range=params.pitch_range,
        word_gap=params.word_gap,
    )
    if header.get("voice_error"):
        raise ValueError(f"espeak has no voice {params.voice!r} (error {header['voice_error']})")
    if header["rc"] != 0 or not payload:
        raise BadInputError(
            f"espeak failed on {text!r} with voice {params.voice!r}: "
            f"return code {header['rc']}, {len(payload) // 2} samples"
        )
    for word, phonemes in zip(words, header["word_phonemes"], strict=True):
        if " " in phonemes.strip():
            raise BadInputError(
                f"espeak reads {word!r} in {text!r} as several words ({phonemes!r}); "
                "spell numbers, roman numerals and abbreviations out as words"
            )
    samples = np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0
    starts = _word_starts(
        spoken,
        [tuple(e) for e in header["word_events"]],
        [tuple(p) for p in header["phonemes"]],
        [_sounds(p) for p in header["word_phonemes"]],
        len(samples),
        text,
    )
    events = [WordEvent(word, start) for word, start in zip(words, starts, strict=True)]
    return Synthesis(samples=samples, sample_rate=header["sample_rate"], words=events)


def english_voices() -> list[str]:
    """English espeak voices, as names that ``VoiceParams.voice`` accepts.

    Every voice whose language list has an English code, except ``en-shaw`` (Shavian
    script). Each name is checked to select that voice; the British voice is ``"en"``
    because ``"en-gb"`` is rejected by espeak_SetVoiceByName.

    Returns:
        Sorted names, e.g. ``["en", "en-029", "en-gb-scotland", ..., "en-us-nyc"]``.
    """
    return list(_english_voices())


@functools.cache
def _english_voices() -> tuple[str, ...]:
    return tuple(sorted(espeak_worker.english_voice_names()))


def voice_variants() -> list[str]:
    """Variants (``voices/!v`` in the espeak data) that sound like adult human speakers.

    Novelty variants (robots, whispers, echoes, a child, test files) are left out; see
    ``_EXCLUDED_VARIANTS`` for the list and the measurement behind it. So are names with
    white space ("Mr serious", a near copy of "john"), which would break Kaldi-style files.

    Returns:
        Sorted variant names, e.g. ``["Alex", ..., "f1", ..., "m7", ...]``.
    """
    return list(_voice_variants())


@functools.cache
def _voice_variants() -> tuple[str, ...]:
    names = (p.name for p in _variant_dir().iterdir() if p.is_file())
    return tuple(sorted(n for n in names if n not in _EXCLUDED_VARIANTS and n.split() == [n]))


@functools.cache
def variant_gender(variant: str) -> str:
    """Guess a variant's gender from its voice file.

    The file's ``gender`` line when there is one; otherwise its ``pitch`` line (the
    midpoint of base and top: >= 150 Hz female, <= 125 Hz male, "u" between); a file
    without either keeps espeak's default 82-118 Hz male pitch.

    Args:
        variant: a name from ``voice_variants()``.

    Returns:
        ``"m"``, ``"f"`` or ``"u"``.
    """
    path = _variant_dir() / variant
    if not path.is_file():
        raise ValueError(f"no espeak variant {variant!r} in {_variant_dir()}")
    pitch: tuple[float, float] | None = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].lower() == "gender":
            if fields[1].lower() in ("male", "female"):
                return fields[1][0].lower()
        if len(fields) >= 3 and fields[0].lower() == "pitch" and pitch is None:
            try:
                pitch = (float(fields[1]), float(fields[2]))
            except ValueError:
                pass
    if pitch is None:
        return "m"
    mid = sum(pitch) / 2
    return "f" if mid >= 150 else "m" if mid <= 125 else "u"


def _variant_dir() -> Path:
    return Path(espeakng_loader.get_data_path()) / "voices" / "!v"


def _sounds(phonemes: str) -> list[str]:
    """The sounds of a ``|``-separated espeak phoneme string, stress marks removed."""
    return [_strip(p) for p in re.split(r"[|\s]+", phonemes) if not _NON_PHONEMES.match(p)]


def _strip(name: str) -> str:
    return name.lstrip(",'%=")


def _is_vowel(name: str) -> bool:
    return _strip(name)[:1] in _VOWEL_INITIALS


def _word_starts(
    words: list[str],
    word_events: list[tuple[int, int, int]],
    phonemes: list[tuple[str, int]],
    word_sounds: list[list[str]],
    num_samples: int,
    text: str,
) -> list[int]:
    """Map espeak's word and phoneme events onto the words of the text.

    Args:
        words: the words as synthesised (joined with single spaces).
        word_events: ``(text_position, length, sample)`` per word event; 1-based
            character positions.
        phonemes: ``(name, sample)`` per phoneme event.
        word_sounds: each word's sounds when spoken alone (``_sounds``).
        num_samples: length of the audio.
        text: the caller's text, for error messages.

    Returns:
        The start sample of every word, strictly increasing.
    """
    starts, inner = _match_events(words, word_events, text)
    sounds = sorted(
        ((_strip(n), s) for n, s in phonemes if not _NON_PHONEMES.match(n)), key=lambda x: x[1]
    )
    i = 0
    while i < len(words):
        end = i + 1
        while end < len(words) and starts[end] is None:
            end += 1
        if end - i > 1:
            hi = starts[end] if end < len(words) else num_samples
            group = [(n, s) for n, s in sounds if starts[i] <= s < hi]
            found = inner[i] if len(inner[i]) == end - i - 1 else None
            found = found or _split_merged(group, word_sounds[i:end], words[i:end], text)
            starts[i + 1 : end] = found
        i = end
    result = [int(s) for s in starts if s is not None]
    bounds = result[1:] + [num_samples]
    result = [
        _skip_linking(start, ws[0] if ws else "", sounds, end)
        for start, ws, end in zip(result, word_sounds, bounds, strict=True)
    ]
    if any(b <= a for a, b in zip(result, result[1:], strict=False)) or result[-1] >= num_samples:
        raise BadInputError(f"espeak word starts {result} are not increasing for {text!r}")
    return result


def _match_events(
    words: list[str], word_events: list[tuple[int, int, int]], text: str
) -> tuple[list[int | None], list[list[int]]]:
    """Starts of the words espeak gave an event, and the events inside multi-word entries.

    An entry with an internal word boundary ("here and there") gives an event one
    character after its first word's position; those are returned per first word.
    """
    offsets, pos = [], 1
    for w in words:
        offsets.append(pos)
        pos += len(w) + 1
    index_at = {p: i for i, p in enumerate(offsets)}
    starts: list[int | None] = [None] * len(words)
    inner: list[list[int]] = [[] for _ in words]
    cur = -1
    for position, _, sample in word_events:
        if position in index_at and index_at[position] > cur:
            cur = index_at[position]
            starts[cur] = sample
        elif cur >= 0 and position == offsets[cur] + 1:
            inner[cur].append(sample)
        elif not (cur >= 0 and offsets[cur] < position < offsets[cur] + len(words[cur])):
            raise BadInputError(
                f"espeak word event at character {position} does not start a word of {text!r}"
            )
    if starts[0] is None:
        raise BadInputError(f"espeak gave no word event for the first word of {text!r}")
    return starts, inner


def _split_merged(
    group: list[tuple[str, int]], word_sounds: list[list[str]], words: list[str], text: str
) -> list[int]:
    """Starts of ``words[1:]``, spoken as one dictionary entry whose sounds are ``group``.

    Each boundary goes to the sound at the stand-alone sound count of the words before
    it, or to the nearest sound equal to the word's own first sound when there is one;
    a linking r ("r-") stays with the word before.
    """
    size = len(words)
    if len(group) < size:
        raise BadInputError(
            f"espeak merged {words} of {text!r} into {len(group)} phonemes; "
            "cannot place the word boundaries"
        )
    names = [n for n, _ in group]
    found, boundary, prev = [], 0, 0
    for k in range(1, size):
        boundary += len(word_sounds[k - 1])
        lo, hi = prev + 1, len(group) - (size - k)
        idx = min(max(boundary, lo), hi)
        first = word_sounds[k][0] if word_sounds[k] else None
        same = [j for j in range(lo, hi + 1) if names[j] == first]
        if same:
            idx = min(same, key=lambda j: (abs(j - idx), j))
        elif names[idx] == "r-" and idx < hi:
            idx += 1
        found.append(group[idx][1])
        prev = idx
    return found


def _skip_linking(start: int, first: str, sounds: list[tuple[str, int]], end: int) -> int:
    """Move a vowel-initial word's start past a linking consonant of the word before.

    espeak starts the word event of e.g. "in" in "sunshine in" at the final "n" of
    "sunshine"; the word itself starts at its vowel.
    """
    if not first or not _is_vowel(first):
        return start
    j = bisect.bisect_left(sounds, start, key=lambda item: item[1])
    if (
        j + 1 < len(sounds)
        and sounds[j][1] == start
        and not _is_vowel(sounds[j][0])
        and _is_vowel(sounds[j + 1][0])
        and sounds[j + 1][1] < end
    ):
        return sounds[j + 1][1]
    return start
