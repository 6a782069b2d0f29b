"""The manifest directory contract: which files are a split's cuts."""

from __future__ import annotations

import pytest

from asr_kd.data.manifests import find_cut_manifests
from asr_kd.errors import MissingInputError


def _touch(directory, *names):
    for name in names:
        (directory / name).write_bytes(b"")


def test_split_names_with_underscores_and_hyphens_are_found(tmp_path):
    """Per-engine test sets (``test_piper``) and LibriSpeech's parts (``dev-clean``) get
    features: a split name may hold ``_`` and ``-``."""
    _touch(
        tmp_path,
        "synth_cuts_train.jsonl.gz",
        "synth_cuts_test_piper.jsonl.gz",
        "synth_cuts_test_espeak_ng.jsonl.gz",
        "librispeech_cuts_dev-clean.jsonl.gz",
        "librispeech_cuts_train-clean-100.jsonl.gz",
        "synth_recordings_test_piper.jsonl.gz",  # not a cut manifest
    )
    found = find_cut_manifests(tmp_path, "prepare")
    assert {split: corpus for split, (corpus, _) in found.items()} == {
        "train": "synth",
        "test_piper": "synth",
        "test_espeak_ng": "synth",
        "dev-clean": "librispeech",
        "train-clean-100": "librispeech",
    }
    assert found["test_piper"][1] == tmp_path / "synth_cuts_test_piper.jsonl.gz"


def test_a_split_with_an_underscore_that_lost_its_cuts_is_named(tmp_path):
    _touch(tmp_path, "synth_cuts_train.jsonl.gz", "synth_supervisions_test_piper.jsonl.gz")
    with pytest.raises(MissingInputError, match="synth_cuts_test_piper.jsonl.gz does not exist"):
        find_cut_manifests(tmp_path, "prepare")
