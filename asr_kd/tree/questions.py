"""Questions a phonetic decision tree may ask about a context.

A question is a set of values for one key of the context: ``"left"`` or ``"right"``
(phone ids) or ``"state"`` (HMM state indices). A context answers "yes" when its
value for the key is in the set. Phone sets come either from the phonetic classes
of ARPAbet (:data:`ARPABET_CLASSES`) or, as Kaldi's ``cluster-phones`` does, from a
top-down binary clustering of the phones' own statistics (:func:`auto_phone_sets`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

from asr_kd.tree.stats import CENTRE, STATE, TreeStats, gauss_objf

logger = logging.getLogger(__name__)

KEYS = ("left", "right", "state")

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


@dataclass(frozen=True)
class Question:
    """Is the context's ``key`` one of ``values``?

    Attributes:
        key: ``"left"``, ``"right"`` or ``"state"``.
        values: sorted phone ids (left/right) or state indices (state).
        name: a readable label, e.g. ``"vowel"`` or ``"AA"``.
    """

    key: str
    values: tuple[int, ...]
    name: str

    def __post_init__(self) -> None:
        if self.key not in KEYS:
            raise ValueError(f"question key must be one of {KEYS}, got {self.key!r}")


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
    return sets + _singletons(phones)


def _singletons(phones: dict[str, int]) -> list[tuple[str, tuple[int, ...]]]:
    ids = sorted((pid, name) for name, pid in phones.items() if not name.startswith("#"))
    return [(name, (pid,)) for pid, name in ids]


def state_sets(states: list[int]) -> list[tuple[str, tuple[int, ...]]]:
    """Questions on the HMM state: each single state and each prefix ``{0..k}``."""
    states = sorted(states)
    sets = [(f"state={s}", (s,)) for s in states]
    sets += [(f"state<={states[k]}", tuple(states[: k + 1])) for k in range(1, len(states) - 2)]
    return sets


def make_questions(
    phone_sets: list[tuple[str, tuple[int, ...]]],
    state_sets_: list[tuple[str, tuple[int, ...]]],
) -> list[Question]:
    """Left and right questions for every phone set, then the state questions.

    Duplicate sets for the same key are dropped (the first name is kept).
    """
    out: list[Question] = []
    for key, sets in (("left", phone_sets), ("right", phone_sets), ("state", state_sets_)):
        seen: set[tuple[int, ...]] = set()
        for name, values in sets:
            values = tuple(sorted(set(values)))
            if values and values not in seen:
                seen.add(values)
                out.append(Question(key, values, name))
    return out


def auto_phone_sets(
    stats: TreeStats,
    phones: dict[str, int],
    silence_phones: tuple[int, ...],
    floor: np.ndarray,
) -> list[tuple[str, tuple[int, ...]]]:
    """Phone sets from a top-down binary clustering of the phones (``cluster-phones``).

    Each phone is summarised by one Gaussian: the statistics of its middle HMM state
    over all contexts (Kaldi clusters on pdf-class 1). Starting from all non-silence
    phones, each set is split in two by 2-means on the Gaussian log-likelihood until
    single phones remain; every set in that tree becomes a question, as do the
    boundary set and every single phone.
    """
    ids, cnt, tot, sq = _middle_state_stats(stats, silence_phones)
    sets: list[tuple[str, tuple[int, ...]]] = [("boundary", boundary_set(silence_phones))]
    queue = [np.arange(len(ids))] if len(ids) else []
    while queue:
        members = queue.pop(0)
        if len(members) > 1:
            sets.append((f"auto{len(sets)}", tuple(int(ids[i]) for i in members)))
            yes = _two_means(cnt[members], tot[members], sq[members], floor)
            queue += [members[yes], members[~yes]]
    return sets + _singletons(phones)


def _middle_state_stats(stats: TreeStats, silence_phones: tuple[int, ...]):
    centres = np.unique(stats.contexts[:, CENTRE])
    centres = centres[~np.isin(centres, silence_phones)]
    cnt = np.zeros(len(centres))
    tot = np.zeros((len(centres), stats.dim))
    sq = np.zeros_like(tot)
    for i, p in enumerate(centres):
        rows = stats.contexts[:, CENTRE] == p
        states = np.unique(stats.contexts[rows, STATE])
        rows &= stats.contexts[:, STATE] == states[len(states) // 2]
        cnt[i] = stats.count[rows].sum()
        tot[i], sq[i] = stats.total[rows].sum(0), stats.sumsq[rows].sum(0)
    return centres, cnt, tot, sq


def _two_means(cnt: np.ndarray, tot: np.ndarray, sq: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """Split items in two, maximising the summed Gaussian log-likelihood.

    Seeds: the most frequent item and the item most costly to merge with it; every
    item starts with the seed it is cheaper to merge with, then items move one at a
    time to the other cluster while that raises the objective (so it converges).

    Returns:
        ``[k]`` bool, True for the first cluster (both clusters non-empty).
    """
    k = len(cnt)
    if k == 2:
        return np.array([True, False])
    own = gauss_objf(cnt, tot, sq, floor)

    def merge_cost(j: int) -> np.ndarray:
        joined = gauss_objf(cnt + cnt[j], tot + tot[j], sq + sq[j], floor)
        return own + own[j] - joined

    a = int(np.argmax(cnt))
    cost_a = merge_cost(a)
    cost_a[a] = -np.inf
    b = int(np.argmax(cost_a))
    yes = merge_cost(a) <= merge_cost(b)
    yes[a], yes[b] = True, False
    index = np.arange(k)
    for _ in range(50):
        moved = False
        for i in range(k):
            same, other = yes == yes[i], yes != yes[i]
            if same.sum() == 1:
                continue
            stay = _objf(cnt, tot, sq, same, floor) - _objf(
                cnt, tot, sq, same & (index != i), floor
            )
            go = _objf(cnt, tot, sq, other | (index == i), floor) - _objf(
                cnt, tot, sq, other, floor
            )
            if go > stay + 1e-9 * abs(stay):
                yes[i] = not yes[i]
                moved = True
        if not moved:
            break
    return yes


def _objf(cnt, tot, sq, mask, floor) -> float:
    return float(gauss_objf(cnt[mask].sum(), tot[mask].sum(0), sq[mask].sum(0), floor))
