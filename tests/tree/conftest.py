"""Fixtures: one synthetic corpus and its tree statistics per test session."""

from __future__ import annotations

import pytest
from tree_synth import make_corpus

from asr_kd.tree import accumulate_stats


@pytest.fixture(scope="session")
def corpus():
    return make_corpus(400)


@pytest.fixture(scope="session")
def stats(corpus):
    return accumulate_stats(corpus)
