"""Kaldi's ``data/lang/phones/`` files: phone sets, tree roots and questions.

Kaldi's ``utils/validate_lang.pl`` and its tools read these (``prepare_lang.sh`` writes
them); the toolkit writes the same, so a lang directory made here works with Kaldi::

    phones/{silence,nonsilence,optional_silence,disambig,context_indep}.{txt,int,csl}
    phones/sets.{txt,int}             one line per phone (no stress or position variants)
    phones/roots.{txt,int}            the decision tree's roots
    phones/extra_questions.{txt,int}  phone sets the tree may ask about, beyond sets.txt
    phones/wdisambig.txt, wdisambig_phones.int, wdisambig_words.int   #0 (G's back-off)

They describe the tree that ``asr-kd build-tree`` builds by default
(:class:`asr_kd.tree.TreeConfig`): one root per HMM state of every phone
(``not-shared``), split by questions for nonsilence phones and never for silence
(``not-split``); the questions are the ARPAbet classes of
:data:`asr_kd.lang.phone_classes.ARPABET_CLASSES` with the silence phones as one set
(``extra_questions``), and every single phone (``sets``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from asr_kd.lang.phone_classes import arpabet_phone_sets


def phone_questions(phones: Mapping[str, int], silence: Sequence[str]) -> list[list[str]]:
    """The tree's multi-phone question sets, as phone symbols (extra_questions.txt).

    The boundary set (the utterance edge, phone 0, and the silence phones) is written
    as the silence phones; single phones are left to ``sets.txt``.
    """
    silence_ids = tuple(phones[p] for p in silence)
    by_id = {i: p for p, i in phones.items()}
    out: list[list[str]] = []
    for _, ids in arpabet_phone_sets(dict(phones), silence_ids):
        symbols = [by_id[i] for i in ids if i != 0]
        if len(symbols) > 1 and symbols not in out:
            out.append(symbols)
    return out


def write_phone_sets(
    out: Path,
    phones: Mapping[str, int],
    words: Mapping[str, int],
    sets: Mapping[str, Sequence[str]],
) -> None:
    """Write every file of ``phones/`` (see the module doc) into ``out/phones``.

    Args:
        out: the lang directory being written.
        phones: phones.txt as symbol -> id.
        words: words.txt as symbol -> id (must hold ``#0``).
        sets: ``silence``, ``nonsilence``, ``optional_silence`` and ``disambig``
            phone lists.
    """
    folder = out / "phones"
    folder.mkdir(exist_ok=True)
    silence, nonsilence = list(sets["silence"]), list(sets["nonsilence"])
    lists = {**sets, "context_indep": silence}
    for name, symbols in lists.items():
        ids = [str(phones[s]) for s in symbols]
        _write_lines(folder / f"{name}.txt", list(symbols))
        _write_lines(folder / f"{name}.int", ids)
        _write_lines(folder / f"{name}.csl", [":".join(ids)] if ids else [])
    lines = {
        "sets": [[p] for p in silence + nonsilence],
        "roots": [["not-shared", "not-split", p] for p in silence]
        + [["not-shared", "split", p] for p in nonsilence],
        "extra_questions": phone_questions(phones, silence),
    }
    for name, rows in lines.items():
        _write_lines(folder / f"{name}.txt", [" ".join(r) for r in rows])
        ints = [" ".join(str(phones[s]) if s in phones else s for s in r) for r in rows]
        _write_lines(folder / f"{name}.int", ints)
    _write_lines(folder / "wdisambig.txt", ["#0"])
    _write_lines(folder / "wdisambig_phones.int", [str(phones["#0"])])
    _write_lines(folder / "wdisambig_words.int", [str(words["#0"])])


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines))
