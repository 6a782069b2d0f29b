"""Lhotse manifests for a corpus written by :func:`asr_kd.data.synth.synthesize_corpus`.

This is the ``synth`` counterpart of Lhotse's ``prepare_librispeech``: it reads the
corpus directory and writes recordings, supervisions (with the synthesiser's word
timings as the ``"word"`` alignment, where the voice gives them) and cuts per split,
after checking every audio file and transcript.

Besides the corpus's splits (``train``, ``dev``, ``test``, or ``heldout`` for a
held-out corpus), a test or held-out split that mixes voice engines is also written
per engine, as ``test_<engine>`` (``test_espeak``, ``test_piper`` ...), to be
decoded and scored like any other split.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import soundfile as sf
from lhotse import AudioSource, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.supervision import AlignmentItem

from asr_kd.data.manifests import CLEAN_KEY, manifest_path, write_split
from asr_kd.data.synth import HELDOUT, SPLITS
from asr_kd.data.text import check_in_cmudict
from asr_kd.data.validate import check_vocabulary, validate_corpus
from asr_kd.errors import BadInputError
from asr_kd.stage import read_marker, require_done, stage_output

logger = logging.getLogger(__name__)

STAGE = "prepare synth"


# The fields of an utterances.jsonl row that the manifests are made from, and their types.
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str, "speaker": str, "gender": str, "text": str, "audio": str,
    "sample_rate": int, "num_samples": int, "words": list, "condition": dict, "voice": dict,
}  # fmt: skip


def _read_utterances(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    first: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise BadInputError(
            f"{STAGE}: {path} is not UTF-8 text ({e}); rerun 'synth-corpus'"
        ) from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise BadInputError(f"{STAGE}: {path}:{lineno} is not valid JSON ({e})") from None
        if not isinstance(row, dict):
            raise BadInputError(f"{STAGE}: {path}:{lineno} is a JSON {type(row).__name__}, not an "
                                "utterance object; rerun 'synth-corpus'")  # fmt: skip
        bad = [k for k, t in _FIELDS.items() if not isinstance(row.get(k), t)]
        if bad:
            raise BadInputError(
                f"{STAGE}: {path}:{lineno} (utterance {row.get('id', '?')}): field(s) "
                f"{', '.join(bad)} missing or of the wrong type; rerun 'synth-corpus'"
            )
        if row["id"] in first:
            raise BadInputError(
                f"{STAGE}: {path}:{lineno}: utterance id {row['id']} repeats line "
                f"{first[row['id']]}; ids must be unique (rerun 'synth-corpus')"
            )
        first[row["id"]] = lineno
        rows.append(row)
    if not rows:
        raise BadInputError(f"{STAGE}: {path} holds no utterances; rerun 'synth-corpus'")
    return rows


def _manifests(rows: list[dict[str, Any]], corpus_dir: Path) -> tuple[RecordingSet, SupervisionSet]:
    recordings, supervisions = [], []
    for row in rows:
        duration = row["num_samples"] / row["sample_rate"]
        path = (corpus_dir / row["audio"]).resolve()
        recordings.append(
            Recording(
                id=row["id"],
                sources=[AudioSource(type="file", channels=[0], source=str(path))],
                sampling_rate=row["sample_rate"],
                num_samples=row["num_samples"],
                duration=duration,
            )
        )
        words = [
            AlignmentItem(symbol=w, start=s, duration=round(e - s, 4)) for w, s, e in row["words"]
        ]
        custom = {"condition": row["condition"], "voice": row["voice"]}
        custom["engine"] = row.get("engine", "espeak")
        if "clean_audio" in row:
            custom[CLEAN_KEY] = str(_clean_copy(row, corpus_dir))
        supervisions.append(
            SupervisionSegment(
                id=row["id"],
                recording_id=row["id"],
                start=0.0,
                duration=duration,
                channel=0,
                text=row["text"],
                language="English",
                speaker=row["speaker"],
                gender=row["gender"],
                alignment={"word": words} if words else None,
                custom=custom,
            )
        )
    return RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions)


def _clean_copy(row: dict[str, Any], corpus_dir: Path) -> Path:
    """The utterance's clean copy, checked: readable, at its rate, as long as its audio."""
    path = (corpus_dir / row["clean_audio"]).resolve()
    try:
        info = sf.info(str(path))
    except (OSError, RuntimeError) as e:  # soundfile raises LibsndfileError (a RuntimeError)
        raise BadInputError(
            f"{STAGE}: utterance {row['id']}: clean copy {path} cannot be read ({e})"
        ) from None
    if info.samplerate != row["sample_rate"] or info.frames != row["num_samples"]:
        raise BadInputError(
            f"{STAGE}: utterance {row['id']}: clean copy {path} has {info.frames} samples at "
            f"{info.samplerate} Hz, its audio {row['num_samples']} at {row['sample_rate']} Hz"
        )
    return path


def _engine_splits(split: str, rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """``{<split>_<engine>: rows}`` for a test or held-out split with several engines."""
    if split not in ("test", HELDOUT):
        return {}
    engines = sorted({r.get("engine", "espeak") for r in rows})
    if len(engines) < 2:
        return {}
    return {f"{split}_{e}": [r for r in rows if r.get("engine", "espeak") == e] for e in engines}


def prepare_synth(
    corpus_dir: Path | str, output_dir: Path | str, force: bool = False
) -> dict[str, Path]:
    """Write ``synth_{recordings,supervisions,cuts}_<split>.jsonl.gz`` for every split.

    Splits are those the corpus has (``train``/``dev``/``test`` or ``heldout``), plus
    ``<split>_<engine>`` subsets of the evaluation splits that mix engines.

    Args:
        corpus_dir: a finished ``synth-corpus`` output.
        output_dir: the manifest directory to write (atomic).
        force: redo a finished output.

    Returns:
        split -> path of its cut manifest.
    """
    corpus_dir = require_done(corpus_dir, "synth-corpus").resolve()
    sample_rate = read_marker(corpus_dir)["config"]["sample_rate"]
    output_dir = Path(output_dir)
    config = {"corpus_dir": str(corpus_dir), "sample_rate": sample_rate}
    splits = [s for s in (*SPLITS, HELDOUT) if (corpus_dir / s / "utterances.jsonl").is_file()]
    if not splits:
        raise BadInputError(
            f"{STAGE}: {corpus_dir} has no <split>/utterances.jsonl; run 'asr-kd synth-corpus'"
        )
    rows = {s: _read_utterances(corpus_dir / s / "utterances.jsonl") for s in splits}
    for split in splits:
        rows.update(_engine_splits(split, rows[split]))
    out = {s: manifest_path(output_dir, "synth", "cuts", s) for s in rows}
    with stage_output(output_dir, STAGE, config, force) as tmp:
        if tmp is None:
            return out
        for split, split_rows in rows.items():
            recordings, supervisions = _manifests(split_rows, corpus_dir)
            validate_corpus(recordings, supervisions, sampling_rate=sample_rate, stage=STAGE)
            check_vocabulary(supervisions, lambda w: not check_in_cmudict([w]), stage=STAGE)
            write_split(tmp, "synth", split, recordings, supervisions)
            hours = sum(r.duration for r in recordings) / 3600
            timed = sum(bool(r["words"]) for r in split_rows)
            logger.info(
                "%s: %s: %d utterances (%d with word timings), %.2f h",
                STAGE,
                split,
                len(split_rows),
                timed,
                hours,
            )
    return out
