"""Lhotse manifests for a user's corpus given as Kaldi data directories.

A Kaldi data directory (``data/train``, ``data/dev_clean``, ...) holds::

    wav.scp      <recording-id> <audio file>           (or a plain sox/flac decode, below)
    text         <utterance-id> WORD WORD ...
    utt2spk      <utterance-id> <speaker-id>
    segments     <utterance-id> <recording-id> <start s> <end s>     (optional)
    spk2gender   <speaker-id> m|f                                   (optional)

Without ``segments`` each utterance is a whole recording (utterance id = recording
id). ``wav.scp`` lines that are commands are refused, except the two plain decode
commands whose output is the file itself: ``flac -c -d -s FILE |`` and
``sox FILE -t wav - |``, which are read as ``FILE``. Relative audio paths are
relative to the current directory, as in Kaldi. With ``spk2gender`` every speaker
must have a gender.

Each directory becomes one split, named after the directory with ``_`` made ``-``
(``dev_clean`` -> ``dev-clean``), written as
``<corpus>_{recordings,supervisions,cuts}_<split>.jsonl.gz`` (one cut per utterance,
cut id = utterance id), the layout every later stage reads. Every problem is
reported as ``<file>:<line>: ...``; nothing is written unless every directory is valid.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

from asr_kd.data.corpus_files import FirstSeen, decode_problem, numbered_lines, transcript_problem
from asr_kd.data.manifests import manifest_path, write_split
from asr_kd.data.validate import audio_file_problem, raise_if_problems, validate_corpus
from asr_kd.errors import ConfigError, MissingInputError
from asr_kd.stage import file_digest, stage_output

logger = logging.getLogger(__name__)

STAGE = "prepare kaldi-dir"
REQUIRED = ("wav.scp", "text", "utt2spk")
OPTIONAL = ("segments", "spk2gender")
GENDERS = {"m": "m", "f": "f", "male": "m", "female": "f"}
SPAN_TOLERANCE = 1e-3  # seconds a segment may end past its recording (as validate.py)

_FORMATS = {
    "wav.scp": "'RECORDING-ID AUDIO-FILE'",
    "text": "'UTTERANCE-ID WORD ...'",
    "utt2spk": "'UTTERANCE-ID SPEAKER-ID'",
    "segments": "'UTTERANCE-ID RECORDING-ID START END'",
    "spk2gender": "'SPEAKER-ID m|f'",
}
_NUM_FIELDS = {"utt2spk": 2, "segments": 4, "spk2gender": 2}

Row = tuple[list[str], str]  # fields after the key, "<file>:<line>"


def split_name(data_dir: Path) -> str:
    """The split a data directory becomes: its name with ``_`` made ``-``."""
    return data_dir.name.replace("_", "-")


def read_table(path: Path, problems: list[str], what: str) -> dict[str, Row]:
    """The lines of one Kaldi table file, keyed by their first field.

    Appends ``<file>:<line>: ...`` to ``problems`` for blank lines, lines with the
    wrong number of fields and repeated keys.
    """
    rows: dict[str, Row] = {}
    problem = decode_problem(path)
    if problem:
        problems.append(problem)
        return rows
    num_fields = _NUM_FIELDS.get(path.name)
    seen = FirstSeen(what)
    for lineno, line in numbered_lines(path):
        where = f"{path}:{lineno}"
        fields = line.split()
        if not fields:
            problems.append(f"{where}: blank line")
        elif len(fields) < 2 and path.name != "text" or num_fields and len(fields) != num_fields:
            problems.append(f"{where}: expected {_FORMATS[path.name]}, got {line.strip()!r}")
        elif problem := seen.repeat(fields[0], where):
            problems.append(problem)
        else:
            rows[fields[0]] = (fields[1:], where)
    return rows


def wav_scp_audio(fields: list[str], where: str, rec: str) -> tuple[Path | None, str | None]:
    """The audio file of a ``wav.scp`` entry, or a problem line.

    A plain path, ``flac -c -d -s FILE |`` (any order of ``-c``, ``-d``, ``-s`` and
    their long forms) or ``sox FILE -t wav - |``.
    """
    if fields[-1] != "|" and not fields[-1].endswith("|"):
        if len(fields) == 1:
            return Path(fields[0]).absolute(), None
        return None, f"{where}: recording {rec}: expected one audio file path, got {fields}"
    cmd = " ".join(fields).rstrip("|").split()
    flac_flags = {"-c", "-d", "-s", "--decode", "--stdout", "--silent"}
    if len(cmd) >= 2 and cmd[0] == "flac":
        flags = [f for a in cmd[1:-1] for f in (["-" + c for c in a[1:]] if a[:2] != "--" else [a])]
        named = {{"--decode": "-d", "--stdout": "-c", "--silent": "-s"}.get(f, f) for f in flags}
        if set(flags) <= flac_flags and {"-c", "-d"} <= named:
            return Path(cmd[-1]).absolute(), None
    if len(cmd) == 5 and cmd[0] == "sox" and cmd[2:] == ["-t", "wav", "-"]:
        return Path(cmd[1]).absolute(), None
    return None, (
        f"{where}: recording {rec}: the command {' '.join(cmd)!r} is not supported; give the "
        "audio file's path, or 'flac -c -d -s FILE |' or 'sox FILE -t wav - |' (decode other "
        "formats or pipelines to audio files first)"
    )


def _read_recording(item: tuple[str, Path, str]) -> Recording | str:
    rec, path, where = item
    reason = audio_file_problem(path)
    if reason:
        return f"{where}: recording {rec} ({path}): cannot be read as audio ({reason})"
    return Recording.from_file(path, recording_id=rec)


def read_recordings(wav_scp: dict[str, Row], problems: list[str], num_jobs: int) -> dict:
    """Recording id -> :class:`Recording` for every readable ``wav.scp`` entry."""
    items = []
    for rec, (fields, where) in wav_scp.items():
        path, problem = wav_scp_audio(fields, where, rec)
        if problem:
            problems.append(problem)
        else:
            items.append((rec, path, where))
    with ThreadPoolExecutor(max(1, min(num_jobs, len(items)))) as pool:
        results = list(pool.map(_read_recording, items))
    problems += [r for r in results if isinstance(r, str)]
    return {r.id: r for r in results if isinstance(r, Recording)}


def _spans(data_dir: Path, recordings: dict, wav_scp: dict, problems: list[str]) -> dict:
    """Utterance id -> (recording id, start, end, where): from ``segments`` or whole files.

    An utterance whose segment line has a problem maps to ``None`` (already reported).
    """
    segments_file = data_dir / "segments"
    if not segments_file.is_file():
        return {rec: (rec, 0.0, None, where) for rec, (_, where) in wav_scp.items()}
    spans = {}
    for utt, ((rec, start, end), where) in read_table(segments_file, problems, "utterance").items():
        spans[utt] = None
        try:
            t0, t1 = float(start), float(end)
        except ValueError:
            problems.append(f"{where}: utterance {utt}: start and end must be seconds")
            continue
        if rec not in wav_scp:
            problems.append(f"{where}: utterance {utt}: recording {rec} is not in wav.scp")
        elif not 0 <= t0 < t1:
            problems.append(f"{where}: utterance {utt}: expected 0 <= start < end, got {t0}-{t1}")
        elif rec in recordings and t1 > recordings[rec].duration + SPAN_TOLERANCE:
            problems.append(
                f"{where}: utterance {utt} ends at {t1:.3f} s, past the end of its recording "
                f"{rec} ({recordings[rec].duration:.3f} s)"
            )
        else:
            spans[utt] = (rec, t0, t1, where)
    return spans


def read_kaldi_dir(
    data_dir: Path, language: str | None = None, num_jobs: int = 4
) -> tuple[RecordingSet, SupervisionSet]:
    """Read and check one Kaldi data directory.

    Returns:
        Its recordings and supervisions, sorted by id.

    Raises:
        MissingInputError: the directory or one of wav.scp, text, utt2spk is missing.
        BadInputError: listing every ``<file>:<line>`` problem found.
    """
    missing = [name for name in REQUIRED if not (data_dir / name).is_file()]
    if missing:
        raise MissingInputError(
            f"{STAGE}: {data_dir} is not a Kaldi data directory: it lacks {', '.join(missing)}"
        )
    problems: list[str] = []
    wav_scp = read_table(data_dir / "wav.scp", problems, "recording")
    text = read_table(data_dir / "text", problems, "utterance")
    utt2spk = read_table(data_dir / "utt2spk", problems, "utterance")
    genders = None
    if (data_dir / "spk2gender").is_file():
        genders = read_table(data_dir / "spk2gender", problems, "speaker")
        for spk, ((gender,), where) in genders.items():
            if gender.lower() not in GENDERS:
                problems.append(f"{where}: speaker {spk}: gender must be m or f, got {gender!r}")
    raise_if_problems(problems, STAGE, str(data_dir))
    recordings = read_recordings(wav_scp, problems, num_jobs)
    spans = _spans(data_dir, recordings, wav_scp, problems)
    supervisions = []
    no_gender: set[str] = set()
    for utt, (words, where) in text.items():
        problem = transcript_problem(" ".join(words))
        span = spans.get(utt)
        if utt in spans and span is None:
            continue
        if problem:
            problems.append(f"{where}: utterance {utt}: {problem}")
        elif span is None:
            source = "segments" if (data_dir / "segments").is_file() else "wav.scp"
            problems.append(f"{where}: utterance {utt} has no entry in {data_dir / source}")
        elif utt not in utt2spk:
            problems.append(f"{where}: utterance {utt} has no speaker in {data_dir / 'utt2spk'}")
        elif span[0] in recordings:
            rec, start, end = span[0], span[1], span[2]
            duration = recordings[rec].duration if end is None else round(end - start, 8)
            (spk,), spk_where = utt2spk[utt]
            gender = None
            if genders is not None:
                if spk not in genders:
                    if spk in no_gender:
                        continue
                    no_gender.add(spk)
                    problems.append(
                        f"{spk_where}: speaker {spk} (of utterance {utt}) has no gender in "
                        f"{data_dir / 'spk2gender'}"
                    )
                    continue
                gender = GENDERS[genders[spk][0][0].lower()]
            supervisions.append(
                SupervisionSegment(
                    id=utt,
                    recording_id=rec,
                    start=start,
                    duration=duration,
                    channel=0,
                    text=" ".join(words),
                    language=language,
                    speaker=spk,
                    gender=gender,
                )
            )
    for utt, (_, where) in utt2spk.items():
        if utt not in text:
            problems.append(f"{where}: utterance {utt} has no transcript in {data_dir / 'text'}")
    raise_if_problems(problems, STAGE, str(data_dir))
    recording_set = RecordingSet.from_recordings(sorted(recordings.values(), key=lambda r: r.id))
    supervision_set = SupervisionSet.from_segments(sorted(supervisions, key=lambda s: s.id))
    return recording_set, supervision_set


def write_utterances(
    out_dir: Path, corpus: str, split: str, recordings: RecordingSet, supervisions: SupervisionSet
) -> None:
    """Write a split's manifests with one cut per utterance (cut id = utterance id).

    A recording that is one whole utterance gives the same cut as
    :func:`asr_kd.data.manifests.write_split` (the LibriSpeech and synth path); a
    recording with segments is cut into one cut per segment.
    """
    per_recording = Counter(s.recording_id for s in supervisions)
    whole = all(
        per_recording[s.recording_id] == 1
        and s.start == 0
        and abs(s.duration - recordings[s.recording_id].duration) < SPAN_TOLERANCE
        for s in supervisions
    )
    if whole:
        write_split(out_dir, corpus, split, recordings, supervisions)
        return
    recordings.to_file(manifest_path(out_dir, corpus, "recordings", split))
    supervisions.to_file(manifest_path(out_dir, corpus, "supervisions", split))
    cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    cuts.trim_to_supervisions(keep_overlapping=False).to_file(
        manifest_path(out_dir, corpus, "cuts", split)
    )


def prepare_kaldi_dirs(
    data_dirs: Sequence[Path | str],
    output_dir: Path | str,
    corpus: str = "kaldi",
    sampling_rate: int = 16000,
    language: str | None = None,
    num_jobs: int = 4,
    force: bool = False,
) -> dict[str, Path]:
    """Write validated Lhotse manifests for Kaldi data directories (see the module doc).

    Args:
        data_dirs: one Kaldi data directory per split.
        output_dir: the manifest directory; written atomically with a completion marker.
        corpus: the manifests' corpus name (``<corpus>_cuts_<split>.jsonl.gz``).
        sampling_rate: the rate every recording must have, in Hz.
        language: stored on every supervision (e.g. ``"English"``), or none.
        num_jobs: threads reading audio headers and checking audio.
        force: redo the stage even if ``output_dir`` is finished.

    Returns:
        Split name -> path of its cut manifest.
    """
    dirs = [Path(d).absolute() for d in data_dirs]
    if not dirs:
        raise ConfigError(f"{STAGE}: no data directory given")
    splits = [split_name(d) for d in dirs]
    if len(set(splits)) != len(splits) or "_" in corpus:
        raise ConfigError(
            f"{STAGE}: every data directory must give its own split name and the corpus name "
            f"must not contain '_'; got splits {splits} and corpus {corpus!r}"
        )
    output_dir = Path(output_dir)
    config = {
        "data_dirs": [str(d) for d in dirs],
        "files_sha256": {
            str(d / n): file_digest(d / n)
            for d in dirs
            for n in REQUIRED + OPTIONAL
            if (d / n).is_file()
        },
        "corpus": corpus,
        "sampling_rate": sampling_rate,
        "language": language,
    }
    outputs = {s: manifest_path(output_dir, corpus, "cuts", s) for s in splits}
    start = time.time()
    with stage_output(output_dir, STAGE, config, force) as tmp:
        if tmp is None:
            return outputs
        for data_dir, split in zip(dirs, splits, strict=True):
            recordings, supervisions = read_kaldi_dir(data_dir, language, num_jobs)
            validate_corpus(
                recordings, supervisions, sampling_rate=sampling_rate, stage=STAGE,
                check_audio=False,
            )  # fmt: skip
            write_utterances(tmp, corpus, split, recordings, supervisions)
            logger.info(
                "%s: %s -> %s: %d utterances, %.2f h",
                STAGE,
                data_dir,
                split,
                len(supervisions),
                sum(s.duration for s in supervisions) / 3600,
            )
    logger.info("%s: wrote %s in %.1f s", STAGE, output_dir, time.time() - start)
    return outputs
