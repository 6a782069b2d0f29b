"""Lhotse manifests a user already has, checked and rewritten in the toolkit's layout.

The input directory holds Lhotse's own names,
``<corpus>_recordings_<split>.jsonl[.gz]`` with ``<corpus>_supervisions_<split>.jsonl[.gz]``,
or ``<corpus>_cuts_<split>.jsonl[.gz]`` (mono cuts with their recordings and
supervisions inside). Each split is checked as the other corpus importers do: every
recording decodes at the expected sampling rate, every supervision has a speaker, a
non-blank ASCII transcript and a span inside its recording, ids are unique, and when
some speakers of a split have a gender all must. Problems are reported as
``<manifest>:<line>: ...``.

The output is ``<corpus>_{recordings,supervisions,cuts}_<split>.jsonl.gz`` with one cut
per supervision (cut id = supervision id); ``_`` in a split name becomes ``-``.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from lhotse import MonoCut, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.serialization import deserialize_item
from lhotse.utils import fastcopy

from asr_kd.data.corpus_files import FirstSeen, transcript_problem
from asr_kd.data.kaldi_dir import SPAN_TOLERANCE, write_utterances
from asr_kd.data.manifests import manifest_path
from asr_kd.data.validate import audio_problems, raise_if_problems, validate_corpus
from asr_kd.errors import ConfigError, MissingInputError
from asr_kd.stage import file_digest, stage_output

logger = logging.getLogger(__name__)

STAGE = "prepare lhotse"
_NAME = re.compile(
    r"^(?P<corpus>.+?)_(?P<kind>recordings|supervisions|cuts)_(?P<split>.+?)\.jsonl(?:\.gz)?$"
)


def find_manifests(manifest_dir: Path) -> dict[tuple[str, str], dict[str, Path]]:
    """(corpus, split) -> {kind: path} for every Lhotse manifest in a directory."""
    if not manifest_dir.is_dir():
        raise MissingInputError(f"{STAGE}: manifest directory {manifest_dir} does not exist")
    found: dict[tuple[str, str], dict[str, Path]] = defaultdict(dict)
    for path in sorted(manifest_dir.iterdir()):
        m = _NAME.match(path.name)
        if m:
            found[(m["corpus"], m["split"])][m["kind"]] = path
    if not found:
        raise MissingInputError(
            f"{STAGE}: {manifest_dir} holds no <corpus>_{{recordings,supervisions,cuts}}_<split>"
            ".jsonl[.gz] manifests"
        )
    return dict(found)


def numbered_items(path: Path, problems: list[str]) -> Iterator[tuple[object, str]]:
    """``(Lhotse object, "<file>:<line>")`` for each line of a JSONL manifest."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            if not line.strip():
                continue
            try:
                yield deserialize_item(json.loads(line)), where
            except Exception as e:  # json or Lhotse's own errors: name the line
                problems.append(f"{where}: not a Lhotse manifest item ({e})")


def _from_cuts(path: Path, problems: list[str]):
    recordings: dict[str, tuple[Recording, str]] = {}
    supervisions: list[tuple[SupervisionSegment, str]] = []
    for cut, where in numbered_items(path, problems):
        if not isinstance(cut, MonoCut) or cut.recording is None:
            problems.append(f"{where}: expected a MonoCut with its recording")
            continue
        recordings.setdefault(cut.recording.id, (cut.recording, where))
        for s in cut.supervisions:  # times relative to the cut -> to the recording
            supervisions.append((fastcopy(s, start=round(s.start + cut.start, 6)), where))
    return recordings, supervisions


def _from_pair(kinds: dict[str, Path], problems: list[str]):
    recordings: dict[str, tuple[Recording, str]] = {}
    seen = FirstSeen("recording")
    for rec, where in numbered_items(kinds["recordings"], problems):
        if not isinstance(rec, Recording):
            problems.append(f"{where}: expected a recording")
        elif not (problem := seen.repeat(rec.id, where)):
            recordings[rec.id] = (rec, where)
        else:
            problems.append(problem)
    supervisions = []
    for sup, where in numbered_items(kinds["supervisions"], problems):
        if isinstance(sup, SupervisionSegment):
            supervisions.append((sup, where))
        else:
            problems.append(f"{where}: expected a supervision segment")
    return recordings, supervisions


def _check_supervisions(supervisions, recordings, problems: list[str]) -> list:
    seen = FirstSeen("utterance")
    kept = []
    for s, where in supervisions:
        if problem := seen.repeat(s.id, where):
            problems.append(problem)
            continue
        rec = recordings.get(s.recording_id, (None,))[0]
        problem = transcript_problem(s.text or "")
        if problem:
            problems.append(f"{where}: utterance {s.id}: {problem}")
        elif rec is None:
            problems.append(f"{where}: utterance {s.id}: recording {s.recording_id} is missing")
        elif not s.speaker:
            problems.append(f"{where}: utterance {s.id} has no speaker")
        elif s.start < -SPAN_TOLERANCE or s.end > rec.duration + SPAN_TOLERANCE:
            problems.append(
                f"{where}: utterance {s.id} spans {s.start:.3f}-{s.end:.3f} s, past the end of "
                f"its recording {rec.id} ({rec.duration:.3f} s)"
            )
        else:
            kept.append((s, where))
    genders: dict[str, str] = {}
    for s, _ in kept:
        genders.setdefault(s.speaker, s.gender)
    if any(genders.values()):  # then every supervision states its speaker's one gender
        for s, where in kept:
            if s.gender != genders[s.speaker] or not s.gender:
                problems.append(
                    f"{where}: speaker {s.speaker} (utterance {s.id}) has no gender or "
                    f"another one ({s.gender!r}, first {genders[s.speaker]!r}); every "
                    "supervision must give its speaker's gender"
                )
    return [s for s, _ in kept]


def read_split(kinds: dict[str, Path], num_jobs: int) -> tuple[RecordingSet, SupervisionSet]:
    """Read and check one split's manifests; raises listing every problem."""
    problems: list[str] = []
    if "recordings" in kinds and "supervisions" in kinds:
        recordings, supervisions = _from_pair(kinds, problems)
    elif "cuts" in kinds:
        recordings, supervisions = _from_cuts(kinds["cuts"], problems)
    else:
        raise MissingInputError(
            f"{STAGE}: {next(iter(kinds.values()))} needs its "
            f"{'supervisions' if 'recordings' in kinds else 'recordings'} manifest (or a cut "
            "manifest) next to it"
        )
    kept = _check_supervisions(supervisions, recordings, problems)
    raise_if_problems(problems, STAGE, "the manifests")
    where = {r.id: w for r, w in recordings.values()}
    problems += [f"{where[p.split()[1]]}: {p}" for p in audio_problems(
        [r for r, _ in recordings.values()], num_workers=num_jobs
    )]  # fmt: skip
    raise_if_problems(problems, STAGE, "the manifests")
    recording_set = RecordingSet.from_recordings(
        sorted((r for r, _ in recordings.values()), key=lambda r: r.id)
    )
    return recording_set, SupervisionSet.from_segments(sorted(kept, key=lambda s: s.id))


def prepare_lhotse(
    manifest_dir: Path | str,
    output_dir: Path | str,
    sampling_rate: int = 16000,
    num_jobs: int = 4,
    force: bool = False,
) -> dict[str, Path]:
    """Check a directory of Lhotse manifests and write them in the toolkit's layout.

    Args:
        manifest_dir: recordings + supervisions or cuts per split (module doc).
        output_dir: the manifest directory; written atomically with a completion marker.
        sampling_rate: the rate every recording must have, in Hz.
        num_jobs: threads checking audio.
        force: redo the stage even if ``output_dir`` is finished.

    Returns:
        Split name -> path of its cut manifest.
    """
    manifest_dir = Path(manifest_dir).absolute()
    found = find_manifests(manifest_dir)
    splits = {(corpus, split.replace("_", "-")): kinds for (corpus, split), kinds in found.items()}
    names = [split for _, split in splits]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"{STAGE}: {manifest_dir} holds two corpora with the same split name ({names}); "
            "put them in separate directories"
        )
    output_dir = Path(output_dir)
    config = {
        "manifest_dir": str(manifest_dir),
        "files_sha256": {
            str(p): file_digest(p) for kinds in found.values() for p in kinds.values()
        },
        "sampling_rate": sampling_rate,
    }
    outputs = {split: manifest_path(output_dir, corpus, "cuts", split) for corpus, split in splits}
    with stage_output(output_dir, STAGE, config, force) as tmp:
        if tmp is None:
            return outputs
        for (corpus, split), kinds in splits.items():
            recordings, supervisions = read_split(kinds, num_jobs)
            validate_corpus(
                recordings, supervisions, sampling_rate=sampling_rate, stage=STAGE,
                check_audio=False,
            )  # fmt: skip
            write_utterances(tmp, corpus, split, recordings, supervisions)
            logger.info("%s: %s %s: %d utterances", STAGE, corpus, split, len(supervisions))
    return outputs
