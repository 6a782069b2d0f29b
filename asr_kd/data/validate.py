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
from dataclasses import replace
from pathlib import Path
from typing import Any

import soundfile as sf
from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.array import Array, TemporalArray
from lhotse.cut import Cut
from lhotse.utils import fastcopy

from asr_kd.errors import BadInputError
from asr_kd.parallel import map_progress

logger = logging.getLogger(__name__)

MAX_LISTED = 10
"""How many problems an error message lists before it only counts the rest."""

_BLOCK = 1 << 14  # samples decoded at a time (~1 s: where the damage lies)
_TOLERANCE = 1e-3  # seconds a supervision may overhang its recording (as in Lhotse)
_TOLERANCE_S = 0.025  # seconds a file's length may differ from its manifest (Lhotse's default)


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


def audio_file_problem(
    path: Path | str, sampling_rate: int | None = None, num_samples: int | None = None
) -> str | None:
    """Why ``path`` cannot be decoded (or disagrees with its manifest), or ``None``.

    Decodes the whole file once, block by block: a FLAC whose header is intact but
    whose data is damaged in the middle (a bad sector, a broken copy) fails only
    there, and Lhotse's feature extraction would drop its cut with a warning.

    Args:
        path: the audio file.
        sampling_rate: the rate its manifest gives (checked when given).
        num_samples: the length its manifest gives (checked when given, to within
            Lhotse's tolerance of 25 ms).
    """
    path = Path(path)
    if not path.is_file():
        return "does not exist"
    step = "opening failed"
    try:
        with sf.SoundFile(path) as f:
            frames, rate = f.frames, f.samplerate
            if sampling_rate is not None and rate != sampling_rate:
                return f"its sampling rate is {rate} Hz but its manifest says {sampling_rate} Hz"
            if num_samples is not None and abs(frames - num_samples) > _TOLERANCE_S * rate:
                return (
                    f"it holds {frames} samples ({frames / rate:.3f} s) but its manifest says "
                    f"{num_samples} ({num_samples / rate:.3f} s)"
                )
            done = 0
            while done < frames:
                step = f"decoding failed at {done / rate:.2f} s of {frames / rate:.2f} s"
                block = f.read(min(_BLOCK, frames - done), dtype="int16")
                if len(block) == 0:
                    return f"truncated: decoding stopped after {done} of {frames} samples"
                done += len(block)
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
            samples = recording.num_samples if len(recording.sources) == 1 else None
            reason = audio_file_problem(source.source, recording.sampling_rate, samples)
            if reason:
                reasons.append(reason)
        else:  # a URL, command or in-memory source: let Lhotse decode it
            try:
                recording.load_audio()
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
        results = map_progress(_recording_audio_problem, recordings, pool, "Checking audio")
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

    Checks every recording's sampling rate and (with ``check_audio``) that its audio
    decodes to the end at its manifest's rate and length; and every supervision for a
    non-blank transcript, an existing recording and a span inside that recording.

    Args:
        recordings: the corpus's recordings.
        supervisions: its supervisions (utterances).
        sampling_rate: the rate every recording must have, in Hz.
        stage: the stage being run (the ``asr-kd`` subcommand), named in the error.
        check_audio: decode every file once (in ``num_workers`` threads).
        num_workers: threads for the audio check.

    Raises:
        BadInputError: listing the first problems and their total count.
    """
    from asr_kd.checked import note_audio

    recs = {r.id: r for r in recordings}
    note_audio(recs.values())
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


def manifest_problems(cuts: Iterable[Cut], sampling_rate: int | None = None) -> list[str]:
    """One line per inconsistency of a cut manifest, from the manifest alone (no audio or
    feature reads: O(n), cheap enough for every read of a manifest).

    Checks: cut ids unique; each supervision belongs to its cut's recording and lies
    inside it (one may recur in overlapping cuts); a recording shared by several cuts
    described the same way by each; the recordings' sampling rate (``sampling_rate``,
    when given); one feature dimension and frame shift for the whole manifest.
    """
    problems: list[str] = []
    cut_ids: set[str] = set()
    recordings: dict[str, tuple[int, int]] = {}
    dims: dict[tuple[int, float], str] = {}
    for cut in cuts:
        if cut.id in cut_ids:
            problems.append(f"cut id {cut.id} appears more than once")
        cut_ids.add(cut.id)
        rec = getattr(cut, "recording", None)
        if rec is not None:
            seen = recordings.setdefault(rec.id, (rec.sampling_rate, rec.num_samples))
            if seen != (rec.sampling_rate, rec.num_samples):
                problems.append(f"cut {cut.id}: recording {rec.id} is described twice, "
                                f"differently ({seen} and {(rec.sampling_rate, rec.num_samples)} "
                                "as sampling rate, samples)")  # fmt: skip
            if sampling_rate is not None and rec.sampling_rate != sampling_rate:
                problems.append(f"cut {cut.id}: recording {rec.id} ({_where(rec)}) has "
                                f"sampling rate {rec.sampling_rate} Hz, expected "
                                f"{sampling_rate} Hz")  # fmt: skip
        for sup in getattr(cut, "supervisions", None) or []:
            if rec is not None and sup.recording_id != rec.id:
                problems.append(f"cut {cut.id}: utterance {sup.id} is of recording "
                                f"{sup.recording_id}, the cut of {rec.id}")  # fmt: skip
            elif rec is not None and sup.end + cut.start > rec.duration + _TOLERANCE_S:
                problems.append(f"cut {cut.id}: utterance {sup.id} ends at "
                                f"{sup.end + cut.start:.3f} s, after its recording "
                                f"({rec.duration:.3f} s)")  # fmt: skip
        feats = getattr(cut, "features", None)
        if feats is not None:
            key = (feats.num_features, feats.frame_shift)
            dims.setdefault(key, cut.id)
    if len(dims) > 1:
        shown = ", ".join(f"{d} features every {s} s (cut {c})" for (d, s), c in dims.items())
        problems.append(f"its cuts' features differ: {shown}")
    return problems


def validate_manifest(
    cuts: Iterable[Cut], path: Path | str, stage: str, maker: str, sampling_rate: int | None = None
) -> None:
    """Raise one :class:`BadInputError` naming the manifest ``path``, the reading ``stage``
    and its ``maker``, listing :func:`manifest_problems` (nothing when it is consistent)."""
    problems = manifest_problems(cuts, sampling_rate)
    if len(problems) == 1:
        raise BadInputError(f"{stage}: {path}: {problems[0]}; fix it and rerun '{maker}'")
    raise_if_problems(problems, stage, f"{path} (fix them and rerun '{maker}')")


def _tuple_shapes(cut: Cut) -> Cut:
    """A copy of ``cut`` whose custom arrays' shapes are tuples (see :func:`validate_cuts`)."""
    if not cut.custom:
        return cut

    def fix(value: Any) -> Any:
        if isinstance(value, TemporalArray):
            return replace(value, array=fix(value.array))
        if isinstance(value, Array):
            return replace(value, shape=tuple(value.shape))
        return value

    return fastcopy(cut, custom={k: fix(v) for k, v in cut.custom.items()})


def validate_cuts(cuts: Iterable[Cut], stage: str, read_data: bool = False) -> None:
    """Lhotse's own validation of every cut, its problems collected into one error.

    Works around a Lhotse 1.33.0 bug: ``lhotse.qa.validate_array`` and
    ``validate_temporal_array`` compare the loaded array's shape (a tuple) with the
    manifest's (a list once the manifest has been through JSON), so with
    ``read_data=True`` every ``TemporalArray`` written with ``store_array`` fails. Lhotse
    is given copies whose shapes are tuples; a real shape mismatch still fails.

    Args:
        cuts: the cuts to check.
        stage: the stage being run, named in the error.
        read_data: also load every cut's features, audio and arrays.

    Raises:
        BadInputError: one line per bad cut (the first :data:`MAX_LISTED`).
    """
    from lhotse.qa import validate

    problems = []
    for cut in cuts:
        try:
            validate(_tuple_shapes(cut), read_data=read_data)
        except AssertionError as e:
            problems.append(f"cut {cut.id}: {str(e).strip() or 'fails Lhotse validation'}")
        except Exception as e:  # a storage backend's error: the data cannot be read
            first = (str(e).strip().splitlines() or [""])[0]
            problems.append(f"cut {cut.id}: its data cannot be read ({type(e).__name__}: {first})")
    raise_if_problems(problems, stage, "the cuts")


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
