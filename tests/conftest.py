"""Shared fixtures: one tiny synthesised corpus per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from asr_kd.testing.synth import TINY_SYNTH


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    from asr_kd.data.synth import synthesize_corpus

    return synthesize_corpus(tmp_path_factory.mktemp("synth") / "corpus", TINY_SYNTH)


@pytest.fixture(scope="session")
def tiny_manifests(tiny_corpus) -> Path:
    from asr_kd.data.synth_prepare import prepare_synth

    out = tiny_corpus.parent / "manifests"
    prepare_synth(tiny_corpus, out)
    return out
