"""Checks that every corpus's preparation stage runs on its manifests.

A corpus is usable when each recording can be decoded at the expected sampling
rate and each supervision has a transcript and lies inside its recording. The
checks collect every problem and raise one :class:`BadInputError` that lists the
first few (with utterance ids, file paths and the stage), so a user fixes the
corpus in one go rather than one file per rerun.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import soundfile as sf
from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
from tqdm.auto import tqdm

from asr_kd.errors import BadInputError

logger = logging.getLogger(__name__)

MAX_LISTED = 10
"""How many problems an error message lists before it only counts the rest."""

_CHUNK = 1600  # samples decoded at each end of a file (0.1 s at 16 kHz)
_TOLERANCE = 1e-3  # seconds a supervision may overhang its recording (as in Lhotse)


def raise_if_problems(problems: list[str], stage: str, what: str = "the corpus") -> None:
    """Raise one :class:`BadInputError` listing ``problems``, if there are any.

    Args:
        problems: one line per problem, each naming the utterance or file.
        stage: the stage that found them (the ``asr-kd`` subcommand), the message's prefix.
        what: what was checked, for the summary line of several problems.
    """
    if not problems:
        return
    if len(problems) == 1:
        raise BadInputError(f"{stage}: {problems[0]}")
    shown = problems[:MAX_LISTED]
    lines = [f"{stage}: {len(problems)} problems in {what}:"]
    lines += [f"  {p}" for p in shown]
    if len(problems) > len(shown):
        lines.append(f"  ... and {len(problems) - len(shown)} more")
    raise BadInputError("\n".join(lines))


def audio_file_problem(path: Path | str) -> str | None:
    """Why ``path`` cannot be decoded, or ``None`` if it can.

    Reads the header, then decodes the first and the last 0.1 s: a file whose
    header is intact but whose data is cut short (a broken download) passes the
    header and the first chunk and fails only at the end.
    """
    path = Path(path)
    if not path.is_file():
        return "does not exist"
    step = "opening failed"
    try:
        with sf.SoundFile(path) as f:
            frames = f.frames
            step = "decoding the start failed"
            head = f.read(min(_CHUNK, frames))
            if len(head) != min(_CHUNK, frames):
                return f"decoding stopped after {len(head)} of {frames} samples"
            if frames > _CHUNK:
                step = f"truncated? the header says {frames} samples but reading the end failed"
                f.seek(frames - _CHUNK)
                tail = f.read(_CHUNK)
                if len(tail) != _CHUNK:
                    return f"truncated: the header says {frames} samples but the data ends early"
    except (RuntimeError, OSError, ValueError) as e:
        # libsndfile repeats the path ("Error opening '<path>': ..."); the message has it.
        reason = str(e).replace(f" {str(path)!r}", "").strip().splitlines()
        return f"{step}: {reason[0] if reason else type(e).__name__}"
    return None


def _where(recording: Recording) -> str:
    """The recording's file path (or its source description) for messages."""
    return ", ".join(str(s.source) for s in recording.sources)


def _recording_audio_problem(recording: Recording) -> str | None:
    reasons = []
    for source in recording.sources:
        if source.type == "file":
            reason = audio_file_problem(source.source)
            if reason:
                reasons.append(reason)
        else:  # a URL, command or in-memory source: let Lhotse decode both ends
            try:
                d = min(0.1, recording.duration)
                recording.load_audio(duration=d)
                recording.load_audio(offset=recording.duration - d)
            except Exception as e:  # any backend's failure means unreadable
                reasons.append(str(e).strip().splitlines()[0])
            break
    if not reasons:
        return None
    return f"recording {recording.id} ({_where(recording)}): cannot be read as audio ({reasons[0]})"


def audio_problems(recordings: Iterable[Recording], num_workers: int = 4) -> list[str]:
    """One line per recording that cannot be decoded, in the recordings' order.

    Args:
        recordings: the recordings to check.
        num_workers: threads that open files in parallel (the work is mostly I/O, and
            libsndfile releases the GIL).
    """
    recordings = list(recordings)
    workers = max(1, min(num_workers, len(recordings)))
    with ThreadPoolExecutor(workers) as pool:
        results = list(
            tqdm(
                pool.map(_recording_audio_problem, recordings),
                total=len(recordings),
                desc="Checking audio",
                leave=False,
                disable=None,
            )
        )
    return [r for r in results if r]


def validate_corpus(
    recordings: RecordingSet,
    supervisions: SupervisionSet,
    *,
    sampling_rate: int,
    stage: str,
    check_audio: bool = True,
    num_workers: int = 4,
) -> None:
    """Check that a corpus's manifests are usable for training and scoring.

    Checks every recording's sampling rate and (with ``check_audio``) that its
    audio decodes at both ends; and every supervision for a non-blank
    transcript, an existing recording and a span inside that recording.

    Args:
        recordings: the corpus's recordings.
        supervisions: its supervisions (utterances).
        sampling_rate: the rate every recording must have, in Hz.
        stage: the stage being run (the ``asr-kd`` subcommand), named in the error.
        check_audio: open and partly decode every file (one header read and two
            0.1 s reads per file).
        num_workers: threads for the audio check.

    Raises:
        BadInputError: listing the first problems and their total count.
    """
    recs = {r.id: r for r in recordings}
    problems = []
    for r in recs.values():
        if r.sampling_rate != sampling_rate:
            problems.append(
                f"recording {r.id} ({_where(r)}): sampling rate is {r.sampling_rate} Hz, "
                f"expected {sampling_rate} Hz (resample the corpus)"
            )
    for s in supervisions:
        r = recs.get(s.recording_id)
        if r is None:
            problems.append(
                f"utterance {s.id}: its recording {s.recording_id} is not in the recordings"
            )
            continue
        if not (s.text or "").strip():
            problems.append(f"utterance {s.id} ({_where(r)}): empty transcript")
        if s.start < -_TOLERANCE or s.end > r.duration + _TOLERANCE:
            problems.append(
                f"utterance {s.id} ({_where(r)}): spans {s.start:.3f}-{s.end:.3f} s "
                f"but its recording lasts {r.duration:.3f} s"
            )
    if check_audio:
        problems += audio_problems(recs.values(), num_workers=num_workers)
    raise_if_problems(problems, stage)
    logger.debug("%s: %d recordings and their supervisions are valid", stage, len(recs))


def check_vocabulary(
    supervisions: Iterable[SupervisionSegment],
    known: Callable[[str], bool] | Collection[str],
    stage: str,
    max_words: int = 20,
    max_examples: int = 3,
) -> None:
    """Check that every transcript word is known (in a lexicon or word list).

    Args:
        supervisions: the utterances; words are the whitespace-separated tokens of
            their text.
        known: the vocabulary (a set of words) or a predicate on words.
        stage: the stage being run, named in the error.
        max_words: how many out-of-vocabulary words the message lists.
        max_examples: how many utterance ids the message gives per word.

    Raises:
        BadInputError: listing the out-of-vocabulary words, most frequent first,
            with their counts and example utterance ids.
    """
    is_known = known if callable(known) else known.__contains__
    counts: Counter[str] = Counter()
    examples: dict[str, list[str]] = defaultdict(list)
    utts = set()
    for s in supervisions:
        for word in (s.text or "").split():
            if is_known(word):
                continue
            counts[word] += 1
            utts.add(s.id)
            if len(examples[word]) < max_examples and s.id not in examples[word]:
                examples[word].append(s.id)
    if not counts:
        return
    lines = [
        f"{stage}: {len(counts)} words are not in the vocabulary "
        f"({counts.total()} occurrences in {len(utts)} utterances):"
    ]
    for word, n in counts.most_common(max_words):
        times = "time" if n == 1 else "times"
        lines.append(f"  {word}: {n} {times}, e.g. in {', '.join(examples[word])}")
    if len(counts) > max_words:
        lines.append(f"  ... and {len(counts) - max_words} more words")
    raise BadInputError("\n".join(lines))
