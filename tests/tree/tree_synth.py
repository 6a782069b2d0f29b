"""Synthetic alignments and features with a planted context effect.

Features are Gaussian around a mean per (centre phone, state); vowels share an
offset (so phone clustering can find them), and the phone ``T`` moves by
``PLANTED_SHIFT`` when its left neighbour is a vowel: the tree must find that split.
"""

from __future__ import annotations

import functools

import numpy as np

from asr_kd.tree import ARPABET_CLASSES

ARPABET = sorted({p for members in ARPABET_CLASSES.values() for p in members.split()})
PHONES = {"<eps>": 0, "SIL": 1, "SPN": 2} | {p: 3 + i for i, p in enumerate(ARPABET)}
PHONES["#0"] = len(PHONES)
VOWELS = {PHONES[p] for p in ARPABET_CLASSES["vowel"].split()}
T = PHONES["T"]
ABSENT = PHONES["ZH"]  # never in the synthetic data
DIM = 13
PLANTED_SHIFT = 3.0


def phone_states(phone: int) -> int:
    return 5 if phone == PHONES["SIL"] else 3


@functools.cache
def _means(dim: int) -> np.ndarray:
    rng = np.random.default_rng(1234)
    means = rng.normal(0.0, 1.0, size=(max(PHONES.values()) + 1, 5, dim))
    means[sorted(VOWELS)] += 4.0
    return means


def make_utterance(phones: list[int], rng: np.random.Generator, dim: int = DIM):
    """(ali [T, 2], feats [T, dim]) for a phone sequence, 1-4 frames per state."""
    means = _means(dim)
    ali, feats = [], []
    for i, p in enumerate(phones):
        left = phones[i - 1] if i else 0
        for s in range(phone_states(p)):
            n = int(rng.integers(1, 5))
            mean = means[p, s] + (PLANTED_SHIFT if p == T and left in VOWELS else 0.0)
            ali += [(p, s)] * n
            feats.append(mean + rng.normal(0.0, 1.0, size=(n, dim)))
    return np.array(ali, dtype=np.int32), np.concatenate(feats).astype(np.float32)


def make_corpus(num_utts: int, seed: int = 0, dim: int = DIM):
    """Utterances SIL, 6-14 phones (T five times as likely, ZH never), SIL."""
    rng = np.random.default_rng(seed)
    choices = [PHONES[p] for p in ARPABET if PHONES[p] != ABSENT] + [PHONES["SPN"]]
    weights = np.array([5.0 if p == T else 1.0 for p in choices])
    weights /= weights.sum()
    out = []
    for _ in range(num_utts):
        seq = list(rng.choice(choices, size=int(rng.integers(6, 15)), p=weights))
        if rng.random() < 0.3:  # a repeated phone, "AA AA"
            k = int(rng.integers(len(seq)))
            seq.insert(k, seq[k])
        out.append(make_utterance([PHONES["SIL"], *map(int, seq), PHONES["SIL"]], rng, dim))
    return out
