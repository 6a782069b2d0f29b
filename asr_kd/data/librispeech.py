"""LibriSpeech and mini-LibriSpeech: download and manifest preparation through Lhotse.

The corpus directory is the one the OpenSLR archives unpack to::

    <corpus_dir>/<part>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac
    <corpus_dir>/<part>/<spk>/<chapter>/<spk>-<chapter>.trans.txt
    <corpus_dir>/SPEAKERS.TXT        (optional: each speaker's gender)

Preparation writes, for each part, ``librispeech_{recordings,supervisions,cuts}_<part>.jsonl.gz``
into one output directory, atomically and idempotently (:func:`asr_kd.stage.stage_output`).
One cut per utterance; the cut id is the utterance id.
"""

from __future__ import annotations

import logging
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path

from lhotse import RecordingSet, SupervisionSet
from lhotse.utils import fastcopy

from asr_kd.data.corpus_files import FirstSeen, decode_problem, numbered_lines, transcript_problem
from asr_kd.data.manifests import manifest_path, write_split
from asr_kd.data.validate import audio_file_problem, raise_if_problems, validate_corpus
from asr_kd.errors import AsrKdError, BadInputError, ConfigError, MissingInputError
from asr_kd.stage import stage_output

logger = logging.getLogger(__name__)

LIBRISPEECH_PARTS = (
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean-2",  # mini-LibriSpeech
    "train-clean-5",  # mini-LibriSpeech
)
SAMPLING_RATE = 16000
CORPUS = "librispeech"
STAGE = "prepare librispeech"  # the asr-kd subcommand: error prefix and completion marker


def _check_parts(parts: Sequence[str], stage: str) -> list[str]:
    if isinstance(parts, str):
        parts = [parts]
    unknown = [p for p in parts if p not in LIBRISPEECH_PARTS]
    if unknown:
        raise ConfigError(
            f"{stage}: unknown LibriSpeech part(s) {', '.join(unknown)}; "
            f"known parts: {', '.join(LIBRISPEECH_PARTS)}"
        )
    return list(dict.fromkeys(parts))


MINI_LIBRISPEECH_PARTS = ("dev-clean-2", "train-clean-5")
"""mini-LibriSpeech: what ``asr-kd download librispeech`` fetches when no part is named."""
OPENSLR_URL = "https://www.openslr.org/resources"
DOWNLOAD_STAGE = "download librispeech"


def download_librispeech(
    target_dir: Path | str,
    parts: Sequence[str] = MINI_LIBRISPEECH_PARTS,
    base_url: str = OPENSLR_URL,
) -> Path:
    """Download and unpack the named LibriSpeech parts from OpenSLR, skipping finished ones.

    Only the parts named are fetched (LibriSpeech from ``<base_url>/12``,
    mini-LibriSpeech from ``<base_url>/31``). A part is finished when
    ``<target_dir>/LibriSpeech/<part>/.completed`` exists (Lhotse writes it after
    unpacking). The ``.tar.gz`` archives stay in ``target_dir``.

    Args:
        target_dir: where the archives go; they unpack to ``target_dir/LibriSpeech``.
        parts: part names from :data:`LIBRISPEECH_PARTS` (default: mini-LibriSpeech).
        base_url: the OpenSLR resources address (or a mirror with the same layout).

    Returns:
        The corpus directory to give :func:`prepare_librispeech`.

    Raises:
        ConfigError: an unknown part name (the message lists the known ones) or no part.
        AsrKdError: a download or unpacking failed (the part and the address named).
    """
    from lhotse.recipes.librispeech import download_librispeech as lhotse_download

    parts = _check_parts(parts, DOWNLOAD_STAGE)
    if not parts:
        raise ConfigError(
            f"{DOWNLOAD_STAGE}: no part named; known parts: {', '.join(LIBRISPEECH_PARTS)}"
        )
    target_dir = Path(target_dir)
    corpus_dir = target_dir / "LibriSpeech"
    for part in parts:
        if (corpus_dir / part / ".completed").is_file():
            logger.info("%s: %s is already in %s; skipping", DOWNLOAD_STAGE, part, corpus_dir)
            continue
        logger.info("%s: fetching %s from %s", DOWNLOAD_STAGE, part, base_url)
        try:
            lhotse_download(target_dir, dataset_parts=[part], base_url=base_url.rstrip("/"))
        except (OSError, tarfile.TarError) as e:  # URLError, HTTP errors, full disks, bad tars
            raise AsrKdError(
                f"{DOWNLOAD_STAGE}: downloading {part} from {base_url} into {target_dir} "
                f"failed: {e}"
            ) from e
        if not (corpus_dir / part).is_dir():
            raise AsrKdError(
                f"{DOWNLOAD_STAGE}: the archive of {part} from {base_url} did not unpack to "
                f"{corpus_dir / part}; is it a LibriSpeech archive?"
            )
    return corpus_dir


def _resolve_parts(corpus_dir: Path, parts: Sequence[str] | None) -> list[str]:
    """The parts to prepare, each checked to be present in ``corpus_dir``."""
    if not corpus_dir.is_dir():
        hint = ""
        if corpus_dir.name != "LibriSpeech" and (corpus_dir / "LibriSpeech").is_dir():
            hint = f" (did you mean {corpus_dir / 'LibriSpeech'}?)"
        raise MissingInputError(
            f"{STAGE}: corpus directory {corpus_dir} does not exist{hint}; "
            "download it with 'asr-kd download librispeech --part PART TARGET_DIR'"
        )
    if parts is None:
        present = [p for p in LIBRISPEECH_PARTS if (corpus_dir / p).is_dir()]
        if not present:
            hint = ""
            if (corpus_dir / "LibriSpeech").is_dir():
                hint = f" (did you mean {corpus_dir / 'LibriSpeech'}?)"
            raise MissingInputError(
                f"{STAGE}: {corpus_dir} holds none of the LibriSpeech part folders "
                f"{', '.join(LIBRISPEECH_PARTS)}{hint}"
            )
        return present
    parts = _check_parts(parts, STAGE)
    missing = [str(corpus_dir / p) for p in parts if not (corpus_dir / p).is_dir()]
    if missing:
        raise MissingInputError(
            f"{STAGE}: LibriSpeech part folder(s) {', '.join(missing)} do not exist; "
            "download them with 'asr-kd download librispeech --part PART TARGET_DIR'"
        )
    return parts


def read_speakers(corpus_dir: Path) -> dict[str, str] | None:
    """Speaker id -> ``"m"``/``"f"`` from ``<corpus_dir>/SPEAKERS.TXT``; ``None`` without it.

    The file's lines are ``ID | SEX | SUBSET | MINUTES | NAME`` (``;`` starts a comment;
    names may themselves hold ``|``).
    """
    path = corpus_dir / "SPEAKERS.TXT"
    if not path.is_file():
        logger.info("%s: no %s; the supervisions get no gender", STAGE, path)
        return None
    problems = []
    genders: dict[str, str] = {}
    seen = FirstSeen("speaker")
    for lineno, line in numbered_lines(path):
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        where = f"{path}:{lineno}"
        fields = [f.strip() for f in line.split("|", maxsplit=4)]
        if len(fields) < 3 or fields[1].upper() not in ("M", "F") or not fields[0].isdigit():
            problems.append(f"{where}: expected 'ID | M or F | SUBSET | MINUTES | NAME'")
        elif problem := seen.repeat(fields[0], where):
            problems.append(problem)
        else:
            genders[fields[0]] = fields[1].lower()
    raise_if_problems(problems, STAGE, str(path))
    return genders


def _scan_transcripts(part_dir: Path, genders: dict[str, str] | None) -> dict[str, Path]:
    """Utterance id -> FLAC path from a part's ``*.trans.txt`` files.

    Catches what Lhotse's recipe would crash on without naming the file (a line
    with no transcript) or silently drop (a listed FLAC that is missing), non-ASCII
    transcripts, repeated utterance ids and speakers missing from ``SPEAKERS.TXT``.
    """
    problems = []
    utts: dict[str, Path] = {}
    trans_files = sorted(part_dir.rglob("*.trans.txt"))
    if not trans_files:
        raise MissingInputError(
            f"{STAGE}: {part_dir} holds no <spk>-<chapter>.trans.txt files; "
            "is the part fully unpacked?"
        )
    seen = FirstSeen("utterance")
    no_gender: set[str] = set()
    for trans in trans_files:
        if problem := decode_problem(trans):
            problems.append(problem)
            continue
        for lineno, line in numbered_lines(trans):
            fields = line.split(maxsplit=1)
            where = f"{trans}:{lineno}"
            utt = fields[0] if fields else "(blank line)"
            if problem := transcript_problem(fields[1] if len(fields) == 2 else ""):
                problems.append(f"utterance {utt} ({where}): {problem}")
                continue
            ids = utt.split("-")
            if len(ids) != 3:
                problems.append(f"{where}: utterance id {utt!r} is not <spk>-<chapter>-<utt>")
                continue
            flac = part_dir / ids[0] / ids[1] / f"{utt}.flac"
            if problem := seen.repeat(utt, where):
                problems.append(problem)
            elif not flac.is_file():
                problems.append(f"utterance {utt} ({flac}): audio file does not exist")
            elif genders is not None and ids[0] not in genders and ids[0] not in no_gender:
                no_gender.add(ids[0])
                problems.append(
                    f"{where}: speaker {ids[0]} (utterance {utt}) has no gender: it is not in "
                    f"{part_dir.parent / 'SPEAKERS.TXT'}"
                )
            utts[utt] = flac
    raise_if_problems(problems, STAGE, f"the transcripts of {part_dir}")
    return utts


def _prepare_part(
    corpus_dir: Path, part: str, num_jobs: int
) -> tuple[RecordingSet, SupervisionSet]:
    """Run Lhotse's LibriSpeech recipe on one part; name the bad files if it fails."""
    from lhotse.recipes.librispeech import prepare_librispeech as lhotse_prepare

    genders = read_speakers(corpus_dir)
    utts = _scan_transcripts(corpus_dir / part, genders)
    try:
        manifests = lhotse_prepare(corpus_dir, dataset_parts=[part], num_jobs=num_jobs)
    except Exception as e:  # Lhotse names at most the first bad path, never the stage
        problems = [
            f"recording {utt} ({path}): cannot be read as audio ({reason})"
            for utt, path in utts.items()
            if (reason := audio_file_problem(path))
        ]
        raise_if_problems(problems, STAGE)
        raise BadInputError(f"{STAGE}: Lhotse failed on {corpus_dir / part}: {e}") from e
    recordings = manifests[part]["recordings"]
    supervisions = manifests[part]["supervisions"]
    if genders is not None:
        supervisions = [fastcopy(s, gender=genders[s.speaker]) for s in supervisions]
    recordings = RecordingSet.from_recordings(sorted(recordings, key=lambda r: r.id))
    supervisions = SupervisionSet.from_segments(sorted(supervisions, key=lambda s: s.id))
    return recordings, supervisions


def prepare_librispeech(
    corpus_dir: Path | str,
    output_dir: Path | str,
    parts: Sequence[str] | None = None,
    num_jobs: int = 1,
    force: bool = False,
) -> dict[str, Path]:
    """Write validated Lhotse manifests for LibriSpeech parts.

    Args:
        corpus_dir: the unpacked corpus, holding one folder per part (``dev-clean``, ...).
        output_dir: the manifest directory; written atomically with a completion marker.
        parts: parts to prepare; ``None`` prepares every known part present.
        num_jobs: threads for reading audio headers and checking audio.
        force: redo the stage even if ``output_dir`` is finished.

    Returns:
        Part name -> path of its cut manifest (one cut per utterance, id = utterance id).

    Raises:
        MissingInputError: the corpus directory or a requested part is missing.
        BadInputError: a transcript, audio file or sampling rate is wrong (all listed).
        ConfigError: an unknown part name.
    """
    # Lhotse stores audio paths as given: make them absolute so manifests work from anywhere.
    corpus_dir = Path(corpus_dir).resolve()
    output_dir = Path(output_dir)
    parts = _resolve_parts(corpus_dir, parts)
    outputs = {p: manifest_path(output_dir, CORPUS, "cuts", p) for p in parts}
    config = {"corpus_dir": str(corpus_dir), "parts": parts, "sampling_rate": SAMPLING_RATE}
    start = time.time()
    with stage_output(output_dir, STAGE, config, force) as tmp:
        if tmp is None:
            return outputs
        num_utts, seconds = 0, 0.0
        for part in parts:
            recordings, supervisions = _prepare_part(corpus_dir, part, num_jobs)
            validate_corpus(
                recordings,
                supervisions,
                sampling_rate=SAMPLING_RATE,
                stage=STAGE,
                num_workers=max(num_jobs, 4),
            )
            write_split(tmp, CORPUS, part, recordings, supervisions)
            num_utts += len(supervisions)
            seconds += sum(r.duration for r in recordings)
    logger.info(
        "%s: wrote %s (%s): %d utterances, %.2f h in %.1f s",
        STAGE,
        output_dir,
        ", ".join(parts),
        num_utts,
        seconds / 3600,
        time.time() - start,
    )
    return outputs
