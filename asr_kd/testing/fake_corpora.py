"""Tiny fake corpora in the real corpora's on-disk layouts, for tests.

The audio is a few tones plus noise (not speech): enough for preparation,
validation and feature extraction to run exactly as on the real corpus.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

FAKE_WORDS = (
    "THE", "OF", "AND", "A", "TO", "IN", "HE", "WAS", "THAT", "IT",
    "HIS", "HAD", "WITH", "AS", "FOR", "SHE", "YOU", "NOT", "BUT", "HER",
)  # fmt: skip
"""The fake transcripts' vocabulary (LibriSpeech style: upper case, no punctuation)."""


def write_tone(
    path: Path | str,
    duration: float,
    sampling_rate: int = 16000,
    seed: int = 0,
) -> Path:
    """Write a mono 16-bit FLAC (or any format soundfile infers from the suffix).

    Args:
        path: the file to write; its parent directories are created.
        duration: seconds; the file holds ``round(duration * sampling_rate)`` samples.
        sampling_rate: samples per second.
        seed: seeds the tone frequencies and the noise.

    Returns:
        ``path``.
    """
    rng = np.random.default_rng(seed)
    num_samples = round(duration * sampling_rate)
    t = np.arange(num_samples) / sampling_rate
    freqs = rng.uniform(150.0, 0.4 * sampling_rate, size=3)
    audio = sum(0.15 * np.sin(2 * np.pi * f * t) for f in freqs)
    audio = audio + 0.05 * rng.standard_normal(num_samples)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio.astype(np.float32), sampling_rate, subtype="PCM_16")
    return path


def make_fake_librispeech(
    root: Path | str,
    parts: Sequence[str] = ("dev-clean-2",),
    speakers: int = 2,
    chapters: int = 1,
    utts: int = 2,
    seed: int = 0,
) -> Path:
    """Write a tiny corpus in LibriSpeech's layout.

    The layout is ``root/LibriSpeech/<part>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac``
    with one ``<spk>-<chapter>.trans.txt`` per chapter, as the OpenSLR archives unpack.
    Speaker and chapter numbers differ between parts (as in LibriSpeech). Each
    utterance lasts 0.5 to 1.4 s (a multiple of 0.1 s) at 16 kHz and has 2 to 5
    words from :data:`FAKE_WORDS`.

    Args:
        root: the directory to write into (as ``target_dir`` of the download).
        parts: the part folders to create.
        speakers: speakers per part.
        chapters: chapters per speaker.
        utts: utterances per chapter.
        seed: seeds durations, transcripts and audio.

    Returns:
        The corpus directory, ``root/LibriSpeech``.
    """
    rng = np.random.default_rng(seed)
    corpus_dir = Path(root) / "LibriSpeech"
    for p, part in enumerate(parts):
        for s in range(speakers):
            spk = 1000 * (p + 1) + s
            for c in range(chapters):
                chapter = 100 * spk + c
                chapter_dir = corpus_dir / part / str(spk) / str(chapter)
                lines = []
                for u in range(utts):
                    utt_id = f"{spk}-{chapter}-{u:04d}"
                    duration = 0.5 + 0.1 * int(rng.integers(0, 10))
                    write_tone(
                        chapter_dir / f"{utt_id}.flac",
                        duration,
                        seed=int(rng.integers(2**31)),
                    )
                    words = rng.choice(FAKE_WORDS, size=int(rng.integers(2, 6)))
                    lines.append(f"{utt_id} {' '.join(words)}\n")
                (chapter_dir / f"{spk}-{chapter}.trans.txt").write_text("".join(lines))
    return corpus_dir


def corrupt_file(path: Path | str, how: Literal["truncate", "garbage"] = "truncate") -> None:
    """Damage an audio file in place.

    Args:
        path: the file.
        how: ``"truncate"`` keeps the header and the first third of the data, so
            the header still parses but decoding fails partway (a broken download);
            ``"garbage"`` replaces the whole file with random bytes.
    """
    path = Path(path)
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: max(len(data) // 3, 64)])
    elif how == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    else:
        raise ValueError(f"corrupt_file: how must be 'truncate' or 'garbage', got {how!r}")
