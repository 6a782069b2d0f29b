"""Questions a phonetic decision tree may ask about a context.

A question is a set of values for one key of the context: ``"left"`` or ``"right"``
(phone ids) or ``"state"`` (HMM state indices). A context answers "yes" when its
value for the key is in the set. Phone sets come either from the phonetic classes
of ARPAbet (:data:`asr_kd.lang.phone_classes.ARPABET_CLASSES`, shared with the lang
directory's ``phones/sets`` and ``extra_questions``) or, as Kaldi's ``cluster-phones`` does, from a
top-down binary clustering of the phones' own statistics (:func:`auto_phone_sets`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from asr_kd.lang.phone_classes import boundary_set, singleton_sets
from asr_kd.tree.stats import CENTRE, STATE, TreeStats, gauss_objf

logger = logging.getLogger(__name__)

KEYS = ("left", "right", "state")


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
    return sets + singleton_sets(phones)


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
