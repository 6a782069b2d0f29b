"""The lexicon transducer L (phones -> words) with optional silence between words.

The structure is that of Kaldi's ``utils/lang/make_lexicon_fst.py``: a start state,
a loop state where every word starts and ends (and which is final), and a silence
state. After a word's last phone the path returns to the loop state with probability
``1 - sil_prob`` or goes to the silence state with probability ``sil_prob``, whose
``SIL`` arc (followed, in L_disambig, by the silence disambiguation symbol) leads back
to the loop state. The start state reaches the loop state directly or through the
silence state with the same probabilities, so an utterance may begin with silence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import kaldifst

from asr_kd.lang.lexicon import Pron


def make_lexicon_fst(
    entries: Sequence[tuple[str, Pron]],
    phones: Mapping[str, int],
    words: Mapping[str, int],
    sil_prob: float = 0.5,
    sil_phone: str = "SIL",
    sil_disambig: str | None = None,
    word_disambig: str | None = None,
) -> kaldifst.StdVectorFst:
    """Build L (or L_disambig) as an olabel-sorted ``StdVectorFst``.

    Args:
        entries: ``(word, pron)`` pairs; for L_disambig the prons end in their ``#N``.
        phones: phone symbol table (phones.txt), including disambiguation symbols.
        words: word symbol table (words.txt).
        sil_prob: probability of optional silence after each word and at the start,
            in ``[0, 1)``; 0 gives a lexicon without optional silence.
        sil_phone: the optional-silence phone.
        sil_disambig: phone-side disambiguation symbol after optional silence
            (L_disambig only; Kaldi's prepare_lang uses the highest ``#N``).
        word_disambig: the ``#0`` symbol, added as a ``#0:#0`` self-loop on the loop
            state so that G's back-off symbol passes through L (L_disambig only).
    """
    if not 0.0 <= sil_prob < 1.0:
        raise ValueError(f"sil_prob must be in [0, 1), got {sil_prob}")
    fst = kaldifst.StdVectorFst()
    if sil_prob == 0.0:
        loop = fst.add_state()
        fst.start = loop
        sil_state = None
        word_end_costs: list[tuple[int, float]] = [(loop, 0.0)]
    else:
        sil_cost, no_sil_cost = -math.log(sil_prob), -math.log(1.0 - sil_prob)
        start, loop, sil_state = fst.add_state(), fst.add_state(), fst.add_state()
        fst.start = start
        _arc(fst, start, loop, 0, 0, no_sil_cost)
        _arc(fst, start, sil_state, 0, 0, sil_cost)
        if sil_disambig is None:
            _arc(fst, sil_state, loop, phones[sil_phone], 0, 0.0)
        else:
            after_sil = fst.add_state()
            _arc(fst, sil_state, after_sil, phones[sil_phone], 0, 0.0)
            _arc(fst, after_sil, loop, phones[sil_disambig], 0, 0.0)
        word_end_costs = [(loop, no_sil_cost), (sil_state, sil_cost)]

    for word, pron in entries:
        if not pron:
            raise ValueError(f"word {word!r} has an empty pronunciation")
        word_id = words[word]
        state = loop
        for i, phone in enumerate(pron[:-1]):
            nxt = fst.add_state()
            _arc(fst, state, nxt, phones[phone], word_id if i == 0 else 0, 0.0)
            state = nxt
        olabel = word_id if len(pron) == 1 else 0
        for dest, cost in word_end_costs:
            _arc(fst, state, dest, phones[pron[-1]], olabel, cost)

    if word_disambig is not None:
        _arc(fst, loop, loop, phones[word_disambig], words[word_disambig], 0.0)
    fst.set_final(loop, 0.0)
    kaldifst.arcsort(fst, sort_type="olabel")
    return fst


def _arc(fst: kaldifst.StdVectorFst, src: int, dest: int, ilabel: int, olabel: int, cost: float):
    fst.add_arc(src, kaldifst.StdArc(ilabel, olabel, cost, dest))
