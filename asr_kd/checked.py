"""One checked way to open each kind of file a stage reads.

A missing, empty, truncated or corrupt input must end in one line that names the
file, the stage (command) reading it and the stage that makes it, never in a
library's traceback (``PytorchStreamReader failed reading zip archive``, h5py's
``OSError``, a ``JSONDecodeError``). Every opener here raises
:class:`~asr_kd.errors.MissingInputError` for a missing file and
:class:`~asr_kd.errors.BadInputError` for an unreadable one::

    open_checkpoint(path, maker="train")          model.pt, epoch-N.pt (torch.load)
    open_h5(path, maker="cache-soft-targets")     an HDF5 array archive (h5py)
    check_h5(path, ...)                           ... opened and every array read once
    read_json(path, maker="align")                info.json, stats, markers' siblings
    read_text(path, maker="prepare-lang")         words.txt, topo, any text file
    open_fst(path, maker="train-lm")              an OpenFst file (G.fst, L.fst, HCLG.fst)
    read_manifest(path, maker="prepare")          a Lhotse cut manifest (eager CutSet; in
                                                  asr_kd.data.manifests, which validates it)
    load_features(cut)                            a cut's feature matrix (lilcom, HDF5)
    load_weights(model, state, path, maker)       a checkpoint's weights into their model

The reading stage defaults to the running ``asr-kd`` command, which the CLI records
with :func:`set_command`; library callers may name it (``reader=``).
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asr_kd.errors import BadInputError, MissingInputError
from asr_kd.stage import check_unchanged, is_done, note_file, read_marker, set_command_name

if TYPE_CHECKING:
    import h5py

_COMMAND: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "asr_kd_command", default=None
)


def set_command(name: str | None) -> None:
    """Record the running ``asr-kd`` command, named by every error of this module."""
    _COMMAND.set(name)
    set_command_name(name)


def reader_name(reader: str | None) -> str:
    return reader or _COMMAND.get() or "asr-kd"


def _reason(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def existing_file(path: Path | str, maker: str, reader: str | None = None) -> Path:
    """``path``, checked to be a non-empty file, as ``maker`` wrote it (its size and
    digest in the stage output's ``.outputs.json``, see :mod:`asr_kd.stage`).

    Raises:
        MissingInputError: it does not exist (run ``maker`` first).
        BadInputError: it is a directory, empty, or changed since it was written.
    """
    path = Path(path)
    who = reader_name(reader)
    if not path.exists():
        raise MissingInputError(f"{who}: {path} does not exist: run '{maker}' first")
    if not path.is_file():
        raise BadInputError(f"{who}: {path} is a directory, expected a file made by '{maker}'")
    if path.stat().st_size == 0:
        raise BadInputError(f"{who}: {path} is empty; rerun '{maker}' (with --force) to rewrite it")
    check_unchanged(path, maker, who)
    note_file(path, maker)  # the stage's marker lists the files it read
    return path


def unreadable(path: Path | str, maker: str, e: BaseException, reader: str | None = None,
               what: str = "file") -> BadInputError:  # fmt: skip
    """The error for a file that exists but cannot be read (to ``raise ... from None``)."""
    return BadInputError(
        f"{reader_name(reader)}: {path} is truncated or not a {what} ({_reason(e)}); "
        f"rerun '{maker}' (with --force) to rewrite it"
    )


def open_checkpoint(path: Path | str, maker: str = "train", reader: str | None = None) -> Any:
    """``torch.load`` a checkpoint or ``model.pt`` on the CPU (weights only)."""
    import pickle
    import zipfile

    import torch

    path = existing_file(path, maker, reader)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError,
            zipfile.BadZipFile) as e:  # fmt: skip
        raise unreadable(path, maker, e, reader, "torch checkpoint") from None


def open_h5(path: Path | str, maker: str, reader: str | None = None) -> h5py.File:
    """Open an HDF5 file for reading (the caller closes it)."""
    import h5py

    path = existing_file(path, maker, reader)
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError, KeyError) as e:
        raise unreadable(path, maker, e, reader, "HDF5 file") from None


def check_h5(path: Path | str, maker: str, reader: str | None = None, deep: bool = True) -> int:
    """Open an HDF5 archive (a truncated one fails here) and, with ``deep``, read every
    array in it once (damaged metadata fails then, not in the middle of a training);
    returns the array count."""
    import h5py

    count = 0
    with open_h5(path, maker, reader) as f:
        if not deep:
            return len(f)
        names: list[str] = []
        f.visititems(
            lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None
        )
        for name in names:
            try:
                f[name][()]
            except (OSError, ValueError, KeyError, RuntimeError) as e:
                raise unreadable(path, maker, e, reader, f"HDF5 file (array {name})") from None
            count += 1
    return count


def read_json(path: Path | str, maker: str, reader: str | None = None) -> Any:
    """Parse a JSON file."""
    path = existing_file(path, maker, reader)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise unreadable(path, maker, e, reader, "JSON file") from None


def read_text(path: Path | str, maker: str, reader: str | None = None) -> str:
    """Read a UTF-8 text file."""
    path = existing_file(path, maker, reader)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise unreadable(path, maker, e, reader, "UTF-8 text file") from None


def open_fst(path: Path | str, maker: str, reader: str | None = None) -> Any:
    """Read an OpenFst ``StdVectorFst`` (kaldifst returns ``None`` or raises on a bad one)."""
    import kaldifst

    path = existing_file(path, maker, reader)
    try:
        fst = kaldifst.StdVectorFst.read(str(path))
    except (RuntimeError, ValueError, OSError, MemoryError) as e:
        raise unreadable(path, maker, e, reader, "OpenFst file") from None
    if fst is None:
        raise unreadable(
            path, maker, ValueError("OpenFst could not read it"), reader, "OpenFst file"
        )
    return fst


def check_storage(cuts: Iterable[Any], maker: str, reader: str | None = None) -> int:
    """Check every archive the cuts' features and arrays are stored in, once each: present,
    non-empty, an HDF5 one opening and holding the first cut's array in the shape the
    manifest gives (a deleted or truncated archive, or one of another feature dimension,
    is named here, not by Lhotse or a model in the middle of a stage). Returns how many
    archives were checked.

    Args:
        cuts: the cuts of a manifest.
        maker: the stage that wrote the manifest (named when an archive's own directory
            has no completion marker saying which stage wrote it).
        reader: the stage reading them (default: the running command).
    """
    found: dict[str, tuple[str, tuple[str, str, tuple[int, ...]]]] = {}
    for cut in cuts:
        stored = [getattr(cut, "features", None)]  # Features, Array, TemporalArray.array
        stored += [getattr(v, "array", v) for v in (getattr(cut, "custom", None) or {}).values()]
        for s in stored:
            kind, where = getattr(s, "storage_type", None), getattr(s, "storage_path", None)
            if kind and where and "memory" not in kind and where not in found:
                shape = getattr(s, "shape", None) or [s.num_frames, s.num_features]
                found[where] = (kind, (cut.id, s.storage_key, tuple(shape[1:])))
    for path, (kind, sample) in found.items():
        owner = _maker_of(Path(path), maker)
        if kind.endswith("_files"):  # one file per array, in a directory
            if not Path(path).is_dir():
                raise MissingInputError(
                    f"{reader_name(reader)}: {path} does not exist: run '{owner}'"
                )
        elif "hdf5" in kind:
            check_h5(path, owner, reader, deep=False)
            if kind == "numpy_hdf5":  # arrays stored as they are (lilcom's are bytes)
                _check_shape(path, owner, reader, sample)
        else:
            existing_file(path, owner, reader)
    return len(found)


def _check_shape(path: str, maker: str, reader: str | None,
                 sample: tuple[str, str, tuple[int, ...]]) -> None:  # fmt: skip
    """The archive holds ``sample``'s array (cut id, key, shape after the first axis)."""
    cut_id, key, tail = sample
    with open_h5(path, maker, reader) as f:
        shape = tuple(f[key].shape) if key in f else None
    if shape is None:
        raise BadInputError(f"{reader_name(reader)}: {path} holds no array for cut {cut_id} "
                            f"(key {key}): it is not the archive its manifest names; "
                            f"rerun '{maker}'")  # fmt: skip
    if tuple(shape[1:]) != tail:
        who = reader_name(reader)
        raise BadInputError(f"{who}: {path} stores cut {cut_id} as {list(shape)} but "
                            f"its manifest says [frames, {', '.join(map(str, tail))}] (an "
                            f"archive of another run?); rerun '{maker}'")  # fmt: skip


def load_features(cut: Any, maker: str = "compute-features", reader: str | None = None) -> Any:
    """``cut.load_features()``, with a damaged archive named (cut, file, the stage that
    writes it) instead of lilcom's ``decompress_float returned 6`` or h5py's ``OSError``.
    """
    try:
        return cut.load_features()
    except (ValueError, OSError, KeyError, EOFError, RuntimeError, TypeError) as e:
        features = getattr(cut, "features", None)
        where = getattr(features, "storage_path", None) or "its feature archive"
        owner = _maker_of(Path(where), maker) if features is not None else maker
        raise BadInputError(
            f"{reader_name(reader)}: cut {cut.id}: the features in {where} cannot be read "
            f"({_reason(e)}): the archive is damaged; rerun '{owner}' (with --force)"
        ) from None


def load_weights(
    model: Any,
    state: Any,
    path: Path | str,
    maker: str,
    reader: str | None = None,
    what: str = "the model it describes",
) -> None:
    """``model.load_state_dict(state)``; weights of another shape or names (an edited or
    damaged file, a checkpoint of another model) are one line naming the file."""
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, AttributeError, ValueError) as e:
        lines = [x.strip() for x in str(e).strip().splitlines() if x.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else type(e).__name__)
        more = f" (and {len(lines) - 2} more)" if len(lines) > 2 else ""
        raise BadInputError(
            f"{reader_name(reader)}: the weights in {path} do not fit {what}: {detail}{more}; "
            f"rerun '{maker}' (with --force), or give the checkpoint of that model"
        ) from None


def note_audio(recordings: Iterable[Any], default: str = "prepare") -> None:
    """Record the audio files of a corpus's first recording as read by the running stage
    (a corpus has too many files to list each in a marker; one per manifest stands for
    them in the stage's record and in the fault matrix)."""
    for recording in list(recordings)[:1]:
        for source in recording.sources:
            if source.type == "file":
                note_file(source.source, _maker_of(Path(source.source), default))


def _maker_of(path: Path, default: str) -> str:
    """The stage that wrote the finished output holding ``path`` (its marker), else ``default``."""
    for d in list(path.resolve().parents)[:4]:
        if is_done(d):
            return str(read_marker(d).get("stage") or default)
    return default
