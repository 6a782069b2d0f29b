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
    read_manifest(path, maker="prepare")          a Lhotse cut manifest (eager CutSet)

The reading stage defaults to the running ``asr-kd`` command, which the CLI records
with :func:`set_command`; library callers may name it (``reader=``).
"""

from __future__ import annotations

import contextvars
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asr_kd.errors import BadInputError, MissingInputError

if TYPE_CHECKING:
    import h5py
    from lhotse import CutSet

_COMMAND: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "asr_kd_command", default=None
)


def set_command(name: str | None) -> None:
    """Record the running ``asr-kd`` command, named by every error of this module."""
    _COMMAND.set(name)


def _who(reader: str | None) -> str:
    return reader or _COMMAND.get() or "asr-kd"


def _reason(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def existing_file(path: Path | str, maker: str, reader: str | None = None) -> Path:
    """``path``, checked to be a non-empty file.

    Raises:
        MissingInputError: it does not exist (run ``maker`` first).
        BadInputError: it is a directory or empty.
    """
    path = Path(path)
    who = _who(reader)
    if not path.exists():
        raise MissingInputError(f"{who}: {path} does not exist: run '{maker}' first")
    if not path.is_file():
        raise BadInputError(f"{who}: {path} is a directory, expected a file made by '{maker}'")
    if path.stat().st_size == 0:
        raise BadInputError(f"{who}: {path} is empty; rerun '{maker}' (with --force) to rewrite it")
    return path


def unreadable(path: Path | str, maker: str, e: BaseException, reader: str | None = None,
               what: str = "file") -> BadInputError:  # fmt: skip
    """The error for a file that exists but cannot be read (to ``raise ... from None``)."""
    return BadInputError(
        f"{_who(reader)}: {path} is truncated or not a {what} ({_reason(e)}); "
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


def read_manifest(path: Path | str, maker: str, reader: str | None = None) -> CutSet:
    """Read a cut manifest eagerly; an empty one is refused."""
    from lhotse import CutSet

    path = existing_file(path, maker, reader)
    try:
        cuts = CutSet.from_file(path)
        cuts = cuts.to_eager() if cuts is not None else None
    except Exception as e:  # lhotse, gzip and json raise many kinds on a damaged file
        raise unreadable(path, maker, e, reader, "cut manifest") from None
    if cuts is None or len(cuts) == 0:
        raise BadInputError(f"{_who(reader)}: {path} holds no cuts; rerun '{maker}'")
    return cuts
