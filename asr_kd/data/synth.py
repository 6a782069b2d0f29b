"""The embedded ``synth`` corpus: English speech synthesised offline.

No speech corpus can be downloaded on the machines this toolkit is built on, so the
default recipe makes its own. Sentences come from a domain grammar
(:mod:`asr_kd.data.text`). Speakers come from several voice engines, mixed by the
config's ``voices`` shares in every split: espeak-ng voices with their own accent,
variant, rate and pitch, and neural voices shipped in wheels (:mod:`asr_kd.data.piper`)
made into many speakers by their sampling settings, pitch, formant and speed factors
(:mod:`asr_kd.data.speakers`). A configurable share of utterances gets additive noise
and room reverberation, simulated or recorded (:mod:`asr_kd.data.augment`,
:mod:`asr_kd.data.rirs`). espeak's word timings are kept as reference word alignments;
the neural voices give none (their ``words`` is empty).

``synthesize_corpus(..., heldout=True)`` writes instead a single ``heldout`` split: the
test sentences spoken by voices that no train/dev/test speaker uses (held-out espeak
variants, neural speakers with formant factors outside the training range), mixed by
``heldout_voices``.

The corpus directory written by :func:`synthesize_corpus`::

    <corpus_dir>/speakers.json              speaker profiles and their split
    <corpus_dir>/lm/lm_text.txt             LM training text (no dev/test sentence in it)
    <corpus_dir>/<split>/text               Kaldi-style "<utt-id> <TRANSCRIPT>"
    <corpus_dir>/<split>/utterances.jsonl   one JSON object per utterance (see below)
    <corpus_dir>/<split>/audio/<spk>/<utt>.flac
    <corpus_dir>/<split>/clean/<spk>/<utt>.flac   with clean_copies: the same utterance
                                                  without its noise and reverberation

Each ``utterances.jsonl`` line holds ``id``, ``speaker``, ``gender``, ``text``,
``audio`` (relative path), ``sample_rate``, ``num_samples``, ``words``
(``[[word, start_s, end_s], ...]``, empty for a voice without timings), ``condition``,
``engine`` and ``voice`` (the engine's settings for the utterance), and with
``clean_copies`` ``clean_audio`` (relative path).

Clean copies are for alignment, as Kaldi's recipes for reverberated or far-field data
align the clean (or close-talk) recording and train on the degraded one with those
alignments (AMI's ``--use-ihm-ali``): the copy has the same samples as ``audio``
before the room and the noise (the faint noise floor and the peak level kept), so
its frames line up one to one with the noisy utterance's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from asr_kd.config import to_dict
from asr_kd.data import augment, espeak
from asr_kd.data.piper import ENGINE_PACKAGES, load_engine, require_packages
from asr_kd.data.rirs import RECORDED_ROOMS, recorded_rir, require_recorded_rirs
from asr_kd.data.speakers import (
    NeuralSpeaker,
    SpeakerProfile,
    make_neural_speakers,
    make_speakers,
)
from asr_kd.data.text import generate_sentences
from asr_kd.errors import ConfigError
from asr_kd.parallel import map_progress
from asr_kd.stage import stage_output

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
HELDOUT = "heldout"
ENGINES = ("espeak", *ENGINE_PACKAGES)
Speaker = SpeakerProfile | NeuralSpeaker


@dataclass(frozen=True)
class SynthCorpusConfig:
    """Size and acoustic conditions of a synthesised corpus.

    Attributes:
        seed: every random choice (text, speakers, conditions) derives from it.
        train_speakers, dev_speakers, test_speakers: disjoint speaker sets.
        train_utts_per_speaker, eval_utts_per_speaker: utterances per speaker in
            train and in each of dev and test.
        lm_sentences: size of the LM training text (none of it a dev/test sentence).
        min_words, max_words: sentence length bounds.
        sample_rate: output sampling rate (espeak-ng's 22,050 Hz is resampled).
        jitter: relative per-utterance variation of a speaker's rate and pitch.
        noise_prob: share of utterances with additive noise at an SNR in ``snr_db``.
        noise_kinds: noise colours to draw from.
        reverb_prob: share of utterances convolved with a room response: a recorded
            one (share ``recorded_rir_share`` of them, :mod:`asr_kd.data.rirs`) or a
            simulated one whose RT60 (seconds) is drawn from ``rt60``.
        noise_floor_db: SNR of a faint white-noise floor on every utterance, so that
            no frame is digital silence.
        lead_silence, trail_silence: silence (seconds) added around the speech.
        voices: engine -> share of the speakers of every split (``espeak``, ``piper``,
            ``hibari``); a split's speakers are divided by largest remainder.
        heldout_voices: the same for the held-out split.
        heldout_speakers: speakers of the held-out split (each reads
            ``eval_utts_per_speaker`` of the test sentences).
        clean_copies: also write every train, dev and test utterance without its noise and
            reverberation
            (``clean_audio``), for the GMM stages' alignment (``mfcc.audio: clean``).
    """

    seed: int = 0
    train_speakers: int = 40
    dev_speakers: int = 6
    test_speakers: int = 6
    train_utts_per_speaker: int = 25
    eval_utts_per_speaker: int = 25
    lm_sentences: int = 20000
    min_words: int = 3
    max_words: int = 20
    sample_rate: int = 16000
    jitter: float = 0.08
    noise_prob: float = 0.5
    snr_db: tuple[float, float] = (0.0, 20.0)
    noise_kinds: tuple[str, ...] = ("white", "pink", "brown", "babble-like")
    reverb_prob: float = 0.3
    rt60: tuple[float, float] = (0.2, 0.7)
    noise_floor_db: float = 45.0
    lead_silence: tuple[float, float] = (0.1, 0.4)
    trail_silence: tuple[float, float] = (0.1, 0.4)
    recorded_rir_share: float = 0.0
    voices: dict[str, float] = field(default_factory=lambda: {"espeak": 1.0})
    heldout_voices: dict[str, float] = field(
        default_factory=lambda: {"espeak": 0.5, "piper": 0.25, "hibari": 0.25}
    )
    heldout_speakers: int = 8
    clean_copies: bool = False

    def __post_init__(self) -> None:
        for name in ("train_speakers", "dev_speakers", "test_speakers", "heldout_speakers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("voices", "heldout_voices"):
            shares = getattr(self, name)
            unknown = sorted(set(shares) - set(ENGINES))
            if unknown or any(v < 0 for v in shares.values()) or sum(shares.values()) <= 0:
                raise ValueError(
                    f"{name} must map engines ({', '.join(ENGINES)}) to shares >= 0 with a "
                    f"positive sum, got {shares}"
                )
        for name in ("noise_prob", "reverb_prob", "recorded_rir_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        for name in ("snr_db", "rt60", "lead_silence", "trail_silence"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name} must be (low, high) with low <= high")
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError("need 1 <= min_words <= max_words")

    @property
    def num_speakers(self) -> int:
        return self.train_speakers + self.dev_speakers + self.test_speakers


@dataclass(frozen=True)
class UtteranceJob:
    """Everything a worker needs to synthesise one utterance (picklable)."""

    utt_id: str
    split: str
    text: str
    speaker: Speaker
    seed: int
    condition: dict[str, Any] = field(default_factory=dict)


def engine_counts(shares: dict[str, float], num: int) -> dict[str, int]:
    """Divide ``num`` speakers among engines by their shares (largest remainder)."""
    total = sum(shares.values())
    exact = {e: num * v / total for e, v in shares.items() if v > 0}
    counts = {e: int(x) for e, x in exact.items()}
    by_remainder = sorted(exact, key=lambda e: (counts[e] - exact[e], ENGINES.index(e)))
    for e in by_remainder[: num - sum(counts.values())]:
        counts[e] += 1
    return counts


def _make(engine: str, num: int, seed: int, heldout: bool = False) -> list[Speaker]:
    if engine == "espeak":
        return list(make_speakers(num, seed, heldout=heldout))
    return list(make_neural_speakers(engine, num, seed, heldout=heldout))


def split_speakers(config: SynthCorpusConfig) -> dict[str, list[Speaker]]:
    """Disjoint speaker sets per split, deterministic for ``config.seed``.

    Every split has each engine's share (``config.voices``) of its speakers; an engine's
    speakers are made together (so their settings are distinct) and then dealt out.
    """
    sizes = {"train": config.train_speakers, "dev": config.dev_speakers}
    sizes["test"] = config.test_speakers
    counts = {s: engine_counts(config.voices, n) for s, n in sizes.items()}
    out: dict[str, list[Speaker]] = {s: [] for s in SPLITS}
    for engine in ENGINES:
        need = [counts[s].get(engine, 0) for s in SPLITS]
        if not sum(need):
            continue
        speakers = _make(engine, sum(need), config.seed)
        order = list(range(len(speakers)))
        random.Random(config.seed).shuffle(order)
        shuffled = iter(speakers[i] for i in order)
        for split, n in zip(SPLITS, need, strict=True):
            out[split] += [next(shuffled) for _ in range(n)]
    return out


def heldout_speakers(config: SynthCorpusConfig) -> list[Speaker]:
    """Speakers of voices that no train/dev/test speaker uses (``heldout_voices``)."""
    counts = engine_counts(config.heldout_voices, config.heldout_speakers)
    return [s for e in ENGINES for s in _make(e, counts.get(e, 0), config.seed, heldout=True)]


def _draw_condition(config: SynthCorpusConfig, rng: random.Random) -> dict[str, Any]:
    cond: dict[str, Any] = {
        "lead_silence": round(rng.uniform(*config.lead_silence), 3),
        "trail_silence": round(rng.uniform(*config.trail_silence), 3),
    }
    if rng.random() < config.reverb_prob:
        if config.recorded_rir_share > 0 and rng.random() < config.recorded_rir_share:
            cond["rir"] = rng.choice(sorted(RECORDED_ROOMS))
        else:
            cond["rt60"] = round(rng.uniform(*config.rt60), 3)
    if rng.random() < config.noise_prob:
        cond["noise"] = rng.choice(config.noise_kinds)
        cond["snr_db"] = round(rng.uniform(*config.snr_db), 2)
    return cond


def plan_corpus(config: SynthCorpusConfig) -> tuple[list[UtteranceJob], list[str]]:
    """Decide every utterance (text, speaker, condition) and the LM text.

    Returns:
        The utterance jobs of all splits, and the LM training sentences, which
        contain no dev or test sentence verbatim.
    """
    speakers = split_speakers(config)
    per_split = {
        "train": config.train_utts_per_speaker,
        "dev": config.eval_utts_per_speaker,
        "test": config.eval_utts_per_speaker,
    }
    total = sum(len(speakers[s]) * per_split[s] for s in SPLITS)
    sentences = iter(
        generate_sentences(total, config.seed, config.min_words, config.max_words, unique=True)
    )
    rng = random.Random(config.seed + 1)
    jobs = []
    for split in SPLITS:
        for spk in speakers[split]:
            for i in range(per_split[split]):
                jobs.append(
                    UtteranceJob(
                        utt_id=f"{spk.speaker_id}-{split}-{i:04d}",
                        split=split,
                        text=next(sentences),
                        speaker=spk,
                        seed=rng.getrandbits(32),
                        condition=_draw_condition(config, rng),
                    )
                )
    held_out = {j.text for j in jobs if j.split != "train"}
    lm_text = generate_sentences(
        config.lm_sentences,
        config.seed + 7919,
        config.min_words,
        config.max_words,
        exclude=held_out,
    )
    return jobs, lm_text


def plan_heldout(config: SynthCorpusConfig) -> list[UtteranceJob]:
    """The held-out split's jobs: the test sentences read by ``heldout_speakers``."""
    test_text = [j.text for j in plan_corpus(replace(config, lm_sentences=0))[0]]
    test_text = test_text[-config.test_speakers * config.eval_utts_per_speaker :]
    rng = random.Random(config.seed + 2)
    jobs = []
    for k, spk in enumerate(heldout_speakers(config)):
        for i in range(config.eval_utts_per_speaker):
            jobs.append(
                UtteranceJob(
                    utt_id=f"{spk.speaker_id}-{HELDOUT}-{i:04d}",
                    split=HELDOUT,
                    text=test_text[(k * config.eval_utts_per_speaker + i) % len(test_text)],
                    speaker=spk,
                    seed=rng.getrandbits(32),
                    condition=_draw_condition(config, rng),
                )
            )
    return jobs


def _speech_end(x: np.ndarray, sample_rate: int, start: int) -> int:
    """Last sample after ``start`` of the final 10 ms frame above -40 dB of the peak."""
    hop = sample_rate // 100
    seg = x[start:]
    n = len(seg) // hop
    if n == 0:
        return len(x)
    energy = (seg[: n * hop].reshape(n, hop) ** 2).mean(axis=1)
    active = np.nonzero(energy > energy.max() * 1e-4)[0]
    return start + (int(active[-1]) + 1) * hop if len(active) else len(x)


def render_utterance(
    job: UtteranceJob, config: SynthCorpusConfig
) -> tuple[np.ndarray, list[list[Any]], dict[str, Any]]:
    """Synthesise one utterance with its word timings (seconds) and voice settings.

    The word timings are empty for a voice that gives none. The result depends only on
    ``job`` and ``config``: bit-identical across calls and processes.
    """
    x, _, words, voice = render_with_clean_copy(job, config, clean_copy=False)
    return x, words, voice


def render_with_clean_copy(
    job: UtteranceJob, config: SynthCorpusConfig, clean_copy: bool = True
) -> tuple[np.ndarray, np.ndarray | None, list[list[Any]], dict[str, Any]]:
    """:func:`render_utterance`'s audio, and the same utterance without room and noise.

    The clean copy has the same length and the same faint noise floor and peak level;
    drawing it takes nothing from the utterance's random streams, so the noisy audio
    is the same with and without it. ``clean_copy=False`` skips it (``None``).
    """
    rng = random.Random(job.seed)
    nrng = np.random.default_rng(job.seed)
    sr = config.sample_rate
    if isinstance(job.speaker, NeuralSpeaker):
        x, spans, voice = _neural_speech(job, job.speaker, rng, config)
        starts, ends = [a for a, _ in spans], [b for _, b in spans]
        spoken = job.text.split() if spans else []
    else:
        params = job.speaker.voice_params(rng, config.jitter)
        syn = espeak.synthesize(job.text, params)
        x = augment.resample(syn.samples, syn.sample_rate, sr)
        scale = sr / syn.sample_rate
        starts = [int(round(w.start * scale)) for w in syn.words]
        ends = starts[1:] + [_speech_end(x, sr, starts[-1])]
        spoken, voice = [w.word for w in syn.words], dataclasses.asdict(params)
    cond = job.condition
    lead = int(cond["lead_silence"] * sr)
    x = np.concatenate(
        [np.zeros(lead, np.float32), x, np.zeros(int(cond["trail_silence"] * sr), np.float32)]
    )
    dry = x
    if "rt60" in cond:
        x = augment.reverberate(x, augment.synth_rir(sr, cond["rt60"], nrng))
    elif "rir" in cond:
        x = augment.reverberate(x, recorded_rir(cond["rir"], sr))
    x = augment.add_noise(x, augment.make_noise(len(x), "white", nrng, sr), config.noise_floor_db)
    if "noise" in cond:
        noise = augment.make_noise(len(x), cond["noise"], nrng, sr)
        x = augment.add_noise(x, noise, cond["snr_db"])
    peak = rng.uniform(0.3, 0.9)
    x = augment.normalize_peak(x, peak=peak)
    clean = None
    if clean_copy:
        floor = augment.make_noise(len(dry), "white", np.random.default_rng([job.seed, 1]), sr)
        clean = augment.normalize_peak(augment.add_noise(dry, floor, config.noise_floor_db), peak)
        clean = clean.astype(np.float32)
    words = [
        [w.upper(), round((lead + s) / sr, 4), round((lead + e) / sr, 4)]
        for w, s, e in zip(spoken, starts, ends, strict=True)
    ]
    return x.astype(np.float32), clean, words, voice


def _neural_speech(
    job: UtteranceJob, speaker: NeuralSpeaker, rng: random.Random, config: SynthCorpusConfig
) -> tuple[np.ndarray, list[tuple[int, int]], dict[str, Any]]:
    """A neural voice's audio at the corpus rate (speed, pitch and formants applied),
    its word spans in samples (empty when the engine gives none) and its settings."""
    settings = speaker.settings(rng, config.jitter)
    engine = load_engine(speaker.engine)
    x, spans = engine.synthesize(job.text.lower(), settings, job.seed)
    sr = config.sample_rate
    x = augment.resample(x, engine.sample_rate, sr)
    x = augment.speed_perturb(x, speaker.speed)
    x = augment.shift_voice(x, sr, speaker.pitch, speaker.formants)
    scale = sr / engine.sample_rate / speaker.speed
    spans = [(int(round(a * scale)), min(int(round(b * scale)), len(x))) for a, b in spans or []]
    voice = dataclasses.asdict(settings)
    voice.update(pitch=speaker.pitch, formants=speaker.formants, speed=speaker.speed)
    return x, spans, voice


def _synthesize_job(job: UtteranceJob, config: SynthCorpusConfig, root: Path) -> dict[str, Any]:
    wanted = config.clean_copies and job.split != HELDOUT  # the held-out set is only decoded
    x, clean, words, voice = render_with_clean_copy(job, config, clean_copy=wanted)
    rel = Path(job.split) / "audio" / job.speaker.speaker_id / f"{job.utt_id}.flac"
    extra = {}
    if clean is not None:
        extra["clean_audio"] = str(
            Path(job.split) / "clean" / job.speaker.speaker_id / f"{job.utt_id}.flac"
        )
        _write_flac(root / extra["clean_audio"], clean, config.sample_rate)
    _write_flac(root / rel, x, config.sample_rate)
    return {
        "id": job.utt_id,
        "speaker": job.speaker.speaker_id,
        "gender": job.speaker.gender,
        "engine": job.speaker.engine,
        "text": job.text,
        "audio": str(rel),
        "sample_rate": config.sample_rate,
        "num_samples": len(x),
        "words": words,
        "condition": job.condition,
        "voice": voice,
        **extra,
    }


def _write_flac(path: Path, x: np.ndarray, sample_rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, sample_rate, subtype="PCM_16", format="FLAC")


def synthesize_corpus(
    out_dir: Path | str,
    config: SynthCorpusConfig,
    executor=None,
    force: bool = False,
    heldout: bool = False,
) -> Path:
    """Synthesise the corpus into ``out_dir`` (atomic, skipped when already finished).

    Args:
        out_dir: the corpus directory to write (layout in the module docstring).
        config: corpus size and conditions.
        executor: a ``concurrent.futures`` executor for the per-utterance work
            (see :func:`asr_kd.parallel.make_executor`); ``None`` works in-process.
        force: redo a finished corpus.
        heldout: write the held-out split only (:func:`plan_heldout`), no LM text.
    """
    out_dir = Path(out_dir)
    key = "heldout_voices" if heldout else "voices"
    for engine in (e for e, v in getattr(config, key).items() if v > 0 and e != "espeak"):
        require_packages(engine, key)
    if config.recorded_rir_share > 0 and config.reverb_prob > 0:
        require_recorded_rirs()
    marker = {**to_dict(config), "heldout": heldout}
    with stage_output(out_dir, "synth-corpus", marker, force) as tmp:
        if tmp is None:
            return out_dir
        start = time.time()
        if heldout:
            jobs, lm_text = plan_heldout(config), []
            speakers = {HELDOUT: heldout_speakers(config)}
        else:
            jobs, lm_text = plan_corpus(config)
            speakers = split_speakers(config)
            if len(set(j.text for j in jobs)) != len(jobs):
                raise ConfigError("the sentence generator repeated a sentence (internal error)")
        worker = partial(_synthesize_job, config=config, root=tmp)
        metas = map_progress(worker, jobs, executor, "synth-corpus")
        by_split = {
            s: [m for j, m in zip(jobs, metas, strict=True) if j.split == s] for s in speakers
        }
        _write_corpus_files(tmp, by_split, lm_text, speakers)
        audio = sum(m["num_samples"] for m in metas) / config.sample_rate
        wall = time.time() - start
        logger.info(
            "synth-corpus: wrote %d utterances (%.2f h of audio) and %d LM sentences to %s "
            "in %.1f s (%.0fx real time)",
            len(metas),
            audio / 3600,
            len(lm_text),
            out_dir,
            wall,
            audio / max(wall, 1e-9),
        )
    return out_dir


def _write_corpus_files(
    root: Path,
    by_split: dict[str, list[dict[str, Any]]],
    lm_text: list[str],
    speakers: dict[str, list[Speaker]],
) -> None:
    if lm_text:
        (root / "lm").mkdir(exist_ok=True)
        (root / "lm" / "lm_text.txt").write_text("".join(s + "\n" for s in lm_text))
    spk = {split: [dataclasses.asdict(p) for p in profiles] for split, profiles in speakers.items()}
    (root / "speakers.json").write_text(json.dumps(spk, indent=1) + "\n")
    for split, rows in by_split.items():
        (root / split).mkdir(exist_ok=True)
        with open(root / split / "utterances.jsonl", "w") as f:
            for m in rows:
                f.write(json.dumps(m) + "\n")
        (root / split / "text").write_text("".join(f"{m['id']} {m['text']}\n" for m in rows))
