"""A synthesised corpus small enough for unit tests (seconds to build)."""

from asr_kd.align.align import AlignConfig
from asr_kd.align.mono import MonoConfig
from asr_kd.align.tri import TriConfig
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

# Clean speech: a flat start on a few dozen noisy utterances is too fragile to test;
# 8 speakers x 10 utterances gave 88-99% of word starts within 50 ms over 6 seeds.
CLEAN_SYNTH = SynthCorpusConfig(
    seed=3,
    train_speakers=8,
    dev_speakers=2,
    test_speakers=2,
    train_utts_per_speaker=10,
    eval_utts_per_speaker=3,
    lm_sentences=10,
    max_words=8,
    noise_prob=0.0,
    reverb_prob=0.0,
)
"""Eight clean training speakers: enough for a monophone flat start to align well."""

FAST_MONO = MonoConfig(num_iters=15, total_gaussians=300)
"""A monophone schedule that trains on CLEAN_SYNTH in seconds."""

FAST_TRI = TriConfig(num_iters=8, total_gaussians=400)
"""A tri-phone schedule (tri1 and, with a transform, tri2) for CLEAN_SYNTH."""

LENIENT_ALIGN = AlignConfig(max_failed_share=0.5)
"""Alignment settings for the tests' small models (a few failures are not the point)."""

MIXED_SYNTH = SynthCorpusConfig(
    seed=5,
    train_speakers=3,
    dev_speakers=1,
    test_speakers=3,
    train_utts_per_speaker=2,
    eval_utts_per_speaker=2,
    lm_sentences=50,
    max_words=10,
    noise_prob=0.5,
    reverb_prob=0.6,
    recorded_rir_share=0.5,
    voices={"espeak": 1.0, "piper": 1.0, "hibari": 1.0},
    heldout_voices={"espeak": 1.0, "piper": 1.0, "hibari": 1.0},
    heldout_speakers=3,
)
"""Seven speakers, one test speaker per engine (espeak, piper, hibari), 14 utterances."""
