"""Phonetic classes of ARPAbet and the phone sets built from them.

One source for the phone sets that the lang directory writes (Kaldi's
``phones/sets.txt`` and ``extra_questions.txt``) and that the decision tree asks about
(:mod:`asr_kd.tree.questions`).
"""

from __future__ import annotations

import logging
import re

logger = logging.getLogger(__name__)

_VOWELS = "AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW"
_CONSONANTS = "B CH D DH F G HH JH K L M N NG P R S SH T TH V W Y Z ZH"
_STOPS = "B D G K P T"
_FRICATIVES = "DH F HH S SH TH V Z ZH"
_NASALS = "M N NG"
_APPROXIMANTS = "L R W Y"
_VOICED_OBSTRUENTS = "B D G V DH Z ZH JH"

#: Phonetic classes of the 39 ARPAbet phones (CMUdict, stress removed). The same
#: sets are asked about the left and the right context.
ARPABET_CLASSES: dict[str, str] = {
    "vowel": _VOWELS,
    "consonant": _CONSONANTS,
    "stop": _STOPS,
    "voiced_stop": "B D G",
    "unvoiced_stop": "P T K",
    "fricative": _FRICATIVES,
    "voiced_fricative": "DH V Z ZH",
    "unvoiced_fricative": "F HH S SH TH",
    "affricate": "CH JH",
    "sibilant": "S Z SH ZH CH JH",
    "obstruent": f"{_STOPS} {_FRICATIVES} CH JH",
    "nasal": _NASALS,
    "liquid": "L R",
    "glide": "W Y",
    "approximant": _APPROXIMANTS,
    "rhotic": "R ER",
    "sonorant": f"{_VOWELS} {_NASALS} {_APPROXIMANTS}",
    "sonorant_consonant": f"{_NASALS} {_APPROXIMANTS}",
    "voiced": f"{_VOWELS} {_NASALS} {_APPROXIMANTS} {_VOICED_OBSTRUENTS}",
    "unvoiced": "P T K F TH S SH CH HH",
    "front_vowel": "IY IH EH AE EY",
    "central_vowel": "AH ER",
    "back_vowel": "UW UH OW AO AA",
    "high_vowel": "IY IH UW UH",
    "mid_vowel": "EH EY AH ER OW",
    "low_vowel": "AE AA AO AW AY",
    "diphthong": "AW AY EY OW OY",
    "rounded": "UW UH OW AO OY W",
    "labial": "P B M F V W",
    "bilabial": "P B M",
    "labiodental": "F V",
    "dental": "TH DH",
    "alveolar": "T D N S Z L",
    "post_alveolar": "SH ZH CH JH R",
    "palatal": "Y JH CH SH ZH",
    "velar": "K G NG",
    "glottal": "HH",
    "coronal": "T D N S Z L TH DH SH ZH CH JH R",
}


def base_phone(name: str) -> str:
    """The ARPAbet base of a phone symbol: ``"aa1_B"`` -> ``"AA"``."""
    return re.sub(r"\d+$", "", re.sub(r"_[BEIS]$", "", name)).upper()


def is_real_phone(name: str) -> bool:
    """False for ``<eps>`` and disambiguation symbols (``#0``...)."""
    return not (name.startswith("#") or name.startswith("<"))


def boundary_set(silence_phones: tuple[int, ...]) -> tuple[int, ...]:
    """The utterance edge (phone 0) and the silence phones."""
    return tuple(sorted({0, *silence_phones}))


def arpabet_phone_sets(
    phones: dict[str, int], silence_phones: tuple[int, ...]
) -> list[tuple[str, tuple[int, ...]]]:
    """Phone sets from the ARPAbet classes, the boundary set and every single phone.

    Args:
        phones: phone symbol -> id (phones.txt); stress digits and word-position
            suffixes are ignored when matching class members.
        silence_phones: ids of the silence phones.

    Returns:
        ``(name, sorted ids)`` per set, empty sets dropped.
    """
    by_base: dict[str, list[int]] = {}
    for name, pid in phones.items():
        if is_real_phone(name) and pid not in silence_phones:
            by_base.setdefault(base_phone(name), []).append(pid)
    known = {p for members in ARPABET_CLASSES.values() for p in members.split()}
    unknown = sorted(set(by_base) - known)
    if unknown:
        logger.warning("phones outside ARPAbet get only single-phone questions: %s", unknown)
    sets = [("boundary", boundary_set(silence_phones))]
    for cls, members in ARPABET_CLASSES.items():
        ids = sorted(i for p in members.split() for i in by_base.get(p, []))
        if ids:
            sets.append((cls, tuple(ids)))
    return sets + singleton_sets(phones)


def singleton_sets(phones: dict[str, int]) -> list[tuple[str, tuple[int, ...]]]:
    ids = sorted((pid, name) for name, pid in phones.items() if not name.startswith("#"))
    return [(name, (pid,)) for pid, name in ids]
