#!/usr/bin/env python3
"""Synthesise a LibriSpeech-layout corpus offline, to try the recipe without the data.

Usage: local/librispeech/make_fake_corpus.py CONFIG ROOT

Speech from the toolkit's synthesiser (the config's ``fake_corpus:`` section, as
``asr-kd synth-corpus`` reads ``corpus:``) laid out as the OpenSLR archives unpack:
``ROOT/LibriSpeech/<part>/<spk>/<chapter>/*.flac``, ``*.trans.txt``, ``SPEAKERS.TXT``,
the parts being the config's ``librispeech:`` train, dev and test parts (the test
speakers dealt in turn over the test parts: test-clean, test-other...); plus
``ROOT/librispeech-lm-norm.txt`` (LM text) and ``ROOT/librispeech-lexicon.txt``.
A rerun with the same config is skipped.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from parts import read_parts

from asr_kd.config import load_section
from asr_kd.data.synth import SynthCorpusConfig
from asr_kd.errors import AsrKdError
from asr_kd.testing.fake_corpora import make_synth_librispeech

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        parts = read_parts(sys.argv[1])
        config = load_section(sys.argv[1], "fake_corpus", SynthCorpusConfig)
        split_parts = {"train": parts.train, "dev": parts.dev, "test": parts.test}
        print(make_synth_librispeech(Path(sys.argv[2]), config, split_parts))
    except AsrKdError as e:
        sys.exit(f"{sys.argv[0]}: {e}")
