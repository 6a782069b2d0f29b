"""One small clean corpus, its lang directory, monophone model, monophone alignments,
tree and tri-phone model, shared by the alignment tests (built once per session:
synthesis and training take seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from asr_kd.align.align import align
from asr_kd.align.mono import train_mono
from asr_kd.align.tri import train_tri
from asr_kd.data.features import FeatureConfig, compute_features
from asr_kd.data.synth import synthesize_corpus
from asr_kd.data.synth_prepare import prepare_synth
from asr_kd.lang import prepare_lang
from asr_kd.testing.synth import CLEAN_SYNTH, FAST_MONO, FAST_TRI, LENIENT_ALIGN
from asr_kd.tree.build import TreeConfig
from asr_kd.tree.targets import build_tree_stage


@pytest.fixture(scope="session")
def clean_data(tmp_path_factory) -> Path:
    """``corpus``, ``manifests``, ``mfcc`` and ``lang`` of CLEAN_SYNTH under one root."""
    root = tmp_path_factory.mktemp("clean")
    corpus = synthesize_corpus(root / "corpus", CLEAN_SYNTH)
    prepare_synth(corpus, root / "manifests")
    compute_features(root / "manifests", root / "mfcc", FeatureConfig(kind="mfcc", num_mel_bins=23))
    words = [w for s in ("train", "dev", "test") for line in (corpus / s / "text").open()
             for w in line.split()[1:]]  # fmt: skip
    prepare_lang(words, root / "lang")
    return root


@pytest.fixture(scope="session")
def model_dir(clean_data) -> Path:
    """The monophone model trained on CLEAN_SYNTH, at ``clean_data / "mono"``."""
    return train_mono(clean_data / "mfcc", clean_data / "lang", clean_data / "mono", FAST_MONO)


@pytest.fixture(scope="session")
def data(clean_data, model_dir) -> Path:
    """The clean corpus with its monophone alignments (``mono_ali``) and tree (``tree``)."""
    align(clean_data / "mfcc", clean_data / "lang", model_dir, clean_data / "mono_ali",
          LENIENT_ALIGN)  # fmt: skip
    config = TreeConfig(num_leaves=120, min_occupancy=30.0)
    build_tree_stage(clean_data / "mono_ali", clean_data / "mfcc", clean_data / "lang",
                     clean_data / "tree", config)  # fmt: skip
    return clean_data


@pytest.fixture(scope="session")
def tri_dir(data) -> Path:
    """The tri-phone model (tri1, ``FAST_TRI``) at ``data / "tri1"``."""
    return train_tri(data / "mono_ali", data / "mfcc", data / "lang", data / "tree",
                     data / "tri1", FAST_TRI)  # fmt: skip
