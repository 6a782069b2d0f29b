"""Names and locations of the Lhotse manifests every stage reads and writes.

The directory contract (as in icefall's ``data/manifests`` and ``data/fbank``)::

    <manifest_dir>/<corpus>_recordings_<split>.jsonl.gz
    <manifest_dir>/<corpus>_supervisions_<split>.jsonl.gz
    <manifest_dir>/<corpus>_cuts_<split>.jsonl.gz
    <feature_dir>/<corpus>_cuts_<split>.jsonl.gz     (cuts with features)
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from lhotse import CutSet, RecordingSet, SupervisionSet
from lhotse.array import Array, TemporalArray
from lhotse.utils import fastcopy

from asr_kd.checked import check_storage, existing_file, reader_name, unreadable
from asr_kd.data.validate import validate_manifest
from asr_kd.errors import BadInputError, MissingInputError

ALI_KEY = "mono_ali"
"""The cut field holding a forced alignment, per-frame (phone, HMM state) labels (a Lhotse
TemporalArray written by ``asr-kd align``; the name predates tri-phone alignments and
is kept so that existing work dirs read)."""

CLEAN_KEY = "clean_audio"
"""The supervision's custom field naming the cut's clean copy (the audio before room and
noise, ``corpus.clean_copies``), which ``compute-features`` reads for ``audio: clean``."""

# The corpus name ends at the first ``_cuts_`` (``_recordings_``...): split names may hold
# ``_`` and ``-`` (``test_piper``, ``dev-clean``); corpus names may not hold the kind.
_CUTS = re.compile(r"^(?P<corpus>.+?)_cuts_(?P<split>.+)\.jsonl\.gz$")
_PARTS = re.compile(r"^(?P<corpus>.+?)_(?:recordings|supervisions)_(?P<split>.+)\.jsonl\.gz$")


def manifest_path(directory: Path | str, corpus: str, kind: str, split: str) -> Path:
    """``<directory>/<corpus>_<kind>_<split>.jsonl.gz`` (kind: recordings, supervisions, cuts)."""
    return Path(directory) / f"{corpus}_{kind}_{split}.jsonl.gz"


def find_cut_manifests(directory: Path | str, stage: str) -> dict[str, tuple[str, Path]]:
    """All ``<corpus>_cuts_<split>.jsonl.gz`` files in a directory: split -> (corpus, path)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingInputError(f"{directory} does not exist: run the '{stage}' stage first")
    found = {}
    for path in sorted(directory.glob("*_cuts_*.jsonl.gz")):
        m = _CUTS.match(path.name)
        if m:
            found[m["split"]] = (m["corpus"], path)
    for path in sorted(directory.glob("*_*_*.jsonl.gz")):  # a split's cuts lost, the rest kept
        m = _PARTS.match(path.name)
        if m and m["split"] not in found:
            cuts = manifest_path(directory, m["corpus"], "cuts", m["split"])
            raise MissingInputError(
                f"{cuts} does not exist but {path.name} does: split {m['split']} lost its cut "
                f"manifest; rerun the '{stage}' stage with --force"
            )
    if not found:
        raise MissingInputError(
            f"{directory} holds no <corpus>_cuts_<split>.jsonl.gz manifests: "
            f"run the '{stage}' stage first"
        )
    return found


def relocate_storage(cuts: CutSet, old_dir: Path | str, new_dir: Path | str) -> CutSet:
    """A copy of ``cuts`` whose features and custom arrays under ``old_dir`` point at ``new_dir``.

    Stages write into a temporary directory that is renamed when they finish; the
    manifests they save must name the final location.
    """
    old, new = str(old_dir), str(new_dir)

    def move(path: str) -> str:
        return new + path[len(old) :] if path.startswith(old) else path

    def move_array(value):
        if isinstance(value, TemporalArray):
            return replace(value, array=move_array(value.array))
        if isinstance(value, Array):
            return replace(value, storage_path=move(value.storage_path))
        return value

    def fix(cut):
        changes = {}
        if cut.features is not None:
            path = move(cut.features.storage_path)
            changes["features"] = replace(cut.features, storage_path=path)
        if cut.custom:
            changes["custom"] = {k: move_array(v) for k, v in cut.custom.items()}
        return fastcopy(cut, **changes)

    return CutSet.from_cuts(fix(cut) for cut in cuts)


def write_split(
    out_dir: Path | str,
    corpus: str,
    split: str,
    recordings: RecordingSet,
    supervisions: SupervisionSet,
) -> CutSet:
    """Write a split's recordings, supervisions and cuts (one cut per utterance).

    Cut ids are the utterance (supervision) ids, as Kaldi's utterance ids, rather
    than Lhotse's ``<recording>-<index>`` default.
    """
    cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    cuts = CutSet.from_cuts(c.with_id(c.supervisions[0].id) for c in cuts)
    recordings.to_file(manifest_path(out_dir, corpus, "recordings", split))
    supervisions.to_file(manifest_path(out_dir, corpus, "supervisions", split))
    cuts.to_file(manifest_path(out_dir, corpus, "cuts", split))
    return cuts


def read_manifest(
    path: Path | str, maker: str, reader: str | None = None, sampling_rate: int | None = None
) -> CutSet:
    """Read a cut manifest eagerly, check it is consistent
    (:func:`asr_kd.data.validate.validate_manifest`: unique ids, supervisions inside their
    recordings, ``sampling_rate`` when given) and check its archives
    (:func:`asr_kd.checked.check_storage`); an empty one is refused."""
    path = existing_file(path, maker, reader)
    try:
        cuts = CutSet.from_file(path)
        cuts = cuts.to_eager() if cuts is not None else None
    except Exception as e:  # lhotse, gzip and json raise many kinds on a damaged file
        raise unreadable(path, maker, e, reader, "cut manifest") from None
    if cuts is None or len(cuts) == 0:
        raise BadInputError(f"{reader_name(reader)}: {path} holds no cuts; rerun '{maker}'")
    validate_manifest(cuts, path, reader_name(reader), maker, sampling_rate)
    check_storage(cuts, maker, reader)
    return cuts


def load_cuts(path: Path | str, stage: str) -> CutSet:
    """Read a cut manifest eagerly; an unreadable or empty one names the stage that writes it."""
    return read_manifest(path, maker=stage)
