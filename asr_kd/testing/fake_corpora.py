"""Tiny fake corpora in the real corpora's on-disk layouts, for tests.

The audio is a few tones plus noise (not speech): enough for preparation,
validation and feature extraction to run exactly as on the real corpus.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import soundfile as sf

from asr_kd.errors import ConfigError

if TYPE_CHECKING:
    from asr_kd.data.synth import SynthCorpusConfig

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
        The corpus directory, ``root/LibriSpeech`` (with a ``SPEAKERS.TXT``: even
        speakers male, odd female).
    """
    rng = np.random.default_rng(seed)
    corpus_dir = Path(root) / "LibriSpeech"
    genders = {}
    for p, part in enumerate(parts):
        for s in range(speakers):
            spk = 1000 * (p + 1) + s
            genders[str(spk)] = ("F" if s % 2 else "M", part)
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
    write_speakers_txt(corpus_dir, genders)
    return corpus_dir


def write_speakers_txt(corpus_dir: Path, speakers: dict[str, tuple[str, str]]) -> Path:
    """Write LibriSpeech's ``SPEAKERS.TXT``: speaker id -> (``"M"``/``"F"``, part)."""
    lines = [
        "; Fake speakers, in the layout of LibriSpeech's SPEAKERS.TXT\n",
        ";ID  |SEX| SUBSET           |MINUTES| NAME\n",
    ]
    for spk, (sex, part) in sorted(speakers.items(), key=lambda kv: int(kv[0])):
        lines.append(f"{spk:<5}| {sex} | {part:<17}| 1.00  | Speaker {spk}\n")
    path = Path(corpus_dir) / "SPEAKERS.TXT"
    path.write_text("".join(lines))
    return path


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


SYNTH_LIBRISPEECH_PARTS = {"train": "train-clean-5", "dev": "dev-clean-2", "test": "test-clean"}
"""Where each split of the synthesised corpus goes in the LibriSpeech layout."""


def make_synth_librispeech(
    root: Path | str,
    config: SynthCorpusConfig,
    parts: dict[str, str | list[str]] | None = None,
    force: bool = False,
) -> Path:
    """Synthesise speech offline and lay it out exactly as a LibriSpeech download.

    Writes, atomically (a rerun with the same config is skipped)::

        root/LibriSpeech/<part>/<spk>/<chapter>/<spk>-<chapter>-<nnnn>.flac
        root/LibriSpeech/<part>/<spk>/<chapter>/<spk>-<chapter>.trans.txt
        root/LibriSpeech/SPEAKERS.TXT
        root/librispeech-lm-norm.txt      the LM text (no dev or test sentence)
        root/librispeech-lexicon.txt      CMUdict pronunciations of every word, Kaldi format

    Speakers are numbered 100, 101, ... in the synthesiser's order, one chapter each
    (number ``10 * speaker + 1``), so the recipe can run without the real corpus.

    Args:
        root: the download directory (the corpus is ``root/LibriSpeech``).
        config: the synthesiser's configuration (speakers, utterances, conditions).
        parts: synth split -> LibriSpeech part, or a list of parts over which the split's
            speakers are dealt in turn (``test`` -> ``[test-clean, test-other]``: two
            test sets of disjoint speakers); default :data:`SYNTH_LIBRISPEECH_PARTS`.
        force: redo a finished corpus.

    Returns:
        The corpus directory, ``root/LibriSpeech``.
    """
    from asr_kd.config import to_dict
    from asr_kd.data.synth import synthesize_corpus
    from asr_kd.stage import stage_output

    parts = {k: v if isinstance(v, str) else list(v)
             for k, v in (parts or SYNTH_LIBRISPEECH_PARTS).items()}  # fmt: skip
    root = Path(root)
    config_dict = {"synth": to_dict(config), "parts": parts}
    with stage_output(root, "fake librispeech", config_dict, force) as tmp:
        if tmp is None:
            return root / "LibriSpeech"
        synth = synthesize_corpus(tmp / "synth", config)
        corpus_dir = tmp / "LibriSpeech"
        rows = {
            split: [json.loads(x) for x in (synth / split / "utterances.jsonl").open()]
            for split in parts
        }
        numbers = {}
        speakers = {}
        words = set()
        for split, split_parts in parts.items():
            chapters: dict[str, list[str]] = {}
            dealt = [split_parts] if isinstance(split_parts, str) else split_parts
            num_speakers = len({row["speaker"] for row in rows[split]})
            if num_speakers < len(dealt):
                raise ConfigError(
                    f"fake corpus: the {split} split has {num_speakers} speaker(s) for "
                    f"{len(dealt)} parts ({', '.join(dealt)}); raise fake_corpus."
                    f"{split}_speakers to at least {len(dealt)}"
                )
            part_of: dict[str, str] = {}
            for row in rows[split]:
                spk = numbers.setdefault(row["speaker"], str(100 + len(numbers)))
                part = part_of.setdefault(spk, dealt[len(part_of) % len(dealt)])
                speakers[spk] = (row["gender"].upper()[0], part)
                chapter = str(10 * int(spk) + 1)
                lines = chapters.setdefault(f"{spk}/{chapter}", [])
                utt = f"{spk}-{chapter}-{len(lines):04d}"
                lines.append(f"{utt} {row['text']}\n")
                words.update(row["text"].split())
                flac = corpus_dir / part / spk / chapter / f"{utt}.flac"
                flac.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(synth / row["audio"], flac)
            for folder, lines in chapters.items():
                spk, chapter = folder.split("/")
                (corpus_dir / part_of[spk] / folder / f"{spk}-{chapter}.trans.txt").write_text(
                    "".join(lines)
                )
        write_speakers_txt(corpus_dir, speakers)
        lm_text = (synth / "lm" / "lm_text.txt").read_text()
        (tmp / "librispeech-lm-norm.txt").write_text(lm_text)
        words.update(lm_text.split())
        write_cmudict_lexicon(tmp / "librispeech-lexicon.txt", words)
        shutil.rmtree(synth)
    return root / "LibriSpeech"


def write_cmudict_lexicon(path: Path, words: Iterable[str]) -> Path:
    """A Kaldi-format lexicon (``WORD<TAB>PH0 PH1 ...``, stress kept) for ``words`` from CMUdict.

    Words CMUdict lacks are left out (as a real lexicon lacks some corpus words).
    """
    from asr_kd.lang.lexicon import cmudict_pronunciations

    prons = cmudict_pronunciations()
    with open(path, "w") as f:
        for word in sorted(set(words)):
            for pron in prons.get(word.lower(), []):
                f.write(f"{word}\t{' '.join(pron)}\n")
    return path


def librispeech_as_kaldi_dir(corpus_dir: Path | str, part: str, out_dir: Path | str) -> Path:
    """Write one LibriSpeech part as a Kaldi data directory (as Kaldi's ``data_prep.sh``).

    ``wav.scp`` names each FLAC by its absolute path; ``spk2gender`` comes from
    ``SPEAKERS.TXT``. Read straight from the corpus files, independently of the
    toolkit's LibriSpeech importer.
    """
    corpus_dir, out_dir = Path(corpus_dir).absolute(), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wav, text, utt2spk, spks = [], [], [], set()
    for trans in sorted((corpus_dir / part).rglob("*.trans.txt")):
        for line in trans.read_text().splitlines():
            utt, words = line.split(maxsplit=1)
            wav.append(f"{utt} {trans.parent / (utt + '.flac')}\n")
            text.append(f"{utt} {words}\n")
            utt2spk.append(f"{utt} {utt.split('-')[0]}\n")
            spks.add(utt.split("-")[0])
    genders = {}
    for line in (corpus_dir / "SPEAKERS.TXT").read_text().splitlines():
        if line.strip() and not line.startswith(";"):
            spk, sex = (f.strip() for f in line.split("|")[:2])
            genders[spk] = sex.lower()
    for name, lines in (("wav.scp", wav), ("text", text), ("utt2spk", utt2spk)):
        (out_dir / name).write_text("".join(sorted(lines)))
    (out_dir / "spk2gender").write_text("".join(f"{s} {genders[s]}\n" for s in sorted(spks)))
    return out_dir


def librispeech_as_lhotse(
    corpus_dir: Path | str, part: str, out_dir: Path | str, corpus: str = "mine"
) -> Path:
    """Write one LibriSpeech part as Lhotse recordings and supervisions (built by hand).

    Files: ``<corpus>_recordings_<part>.jsonl.gz`` and ``<corpus>_supervisions_<part>.jsonl.gz``.
    """
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    kaldi = librispeech_as_kaldi_dir(corpus_dir, part, Path(out_dir) / ".kaldi")
    genders = dict(line.split() for line in (kaldi / "spk2gender").read_text().splitlines())
    recordings, supervisions = [], []
    texts = dict(line.split(maxsplit=1) for line in (kaldi / "text").read_text().splitlines())
    for line in (kaldi / "wav.scp").read_text().splitlines():
        utt, path = line.split()
        rec = Recording.from_file(path, recording_id=utt)
        recordings.append(rec)
        spk = utt.split("-")[0]
        supervisions.append(
            SupervisionSegment(
                id=utt,
                recording_id=utt,
                start=0.0,
                duration=rec.duration,
                channel=0,
                text=texts[utt],
                language="English",
                speaker=spk,
                gender=genders[spk],
            )
        )
    shutil.rmtree(kaldi)
    out_dir = Path(out_dir)
    RecordingSet.from_recordings(recordings).to_file(
        out_dir / f"{corpus}_recordings_{part}.jsonl.gz"
    )
    SupervisionSet.from_segments(supervisions).to_file(
        out_dir / f"{corpus}_supervisions_{part}.jsonl.gz"
    )
    return out_dir
