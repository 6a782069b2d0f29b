"""A synthesised corpus small enough for unit tests (seconds to build)."""

from asr_kd.data.synth import SynthCorpusConfig

TINY_SYNTH = SynthCorpusConfig(
    seed=3,
    train_speakers=3,
    dev_speakers=1,
    test_speakers=1,
    train_utts_per_speaker=3,
    eval_utts_per_speaker=2,
    lm_sentences=300,
    max_words=12,
    noise_prob=0.5,
    reverb_prob=0.5,
)
"""Five speakers, 13 utterances, both noise and reverberation in use."""
