"""Idempotent, atomic stage outputs with declared inputs and a lock.

Every stage writes one output directory. It is built under a temporary sibling
(``<out>.tmp-<pid>``) and renamed into place only when the stage succeeded, so a
killed or failed stage never leaves a half-written output; temporary siblings left
by a killed process are removed by the next run. The finished directory holds
``.done.json``: the stage name, its resolved configuration, the git revision,
package versions and the stage's inputs. A rerun with the same configuration skips
the work; a rerun with a different one refuses unless ``force`` is given.

Inputs. Every finished input a stage checks with :func:`require_done` (or
:func:`require_file`) is recorded, with the stage that makes it and a digest of its
``.done.json``, in the marker of the stage being written. When an upstream stage is
redone (``asr-kd align --force``), its marker changes, and a downstream stage that
would otherwise skip refuses with :class:`~asr_kd.errors.StaleInputError` until it is
rerun with ``--force`` (as Kaldi's ``mkgraph.sh`` compares timestamps).

Outputs. Next to the marker, ``.outputs.json`` records the size and a digest of every
file the stage wrote. A file read through :func:`require_file` or :mod:`asr_kd.checked`
is compared with it (:func:`changed_since_written`): a file truncated, damaged in the
middle or replaced since its stage finished is named before anything reads it, whatever
its format (a torch checkpoint or an HDF5 array has no checksum of its own).

Lock. While a stage writes ``<out>`` it holds an exclusive lock on ``<out>.lock``
(``flock``, released by the kernel if the process dies); a second run of the same
stage on the same output fails at once with :class:`~asr_kd.errors.StageBusyError`.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from asr_kd.errors import (
    AsrKdError,
    BadInputError,
    MissingInputError,
    StageBusyError,
    StaleInputError,
    first_few,
)

logger = logging.getLogger(__name__)

MARKER = ".done.json"
OUTPUTS = ".outputs.json"
DIGEST_MAX_BYTES = 1 << 30
"""Files up to this size get a digest in ``.outputs.json``; larger ones only their size."""
_VERSIONED = (
    "asr-kd",
    "torch",
    "torchaudio",
    "lhotse",
    "kaldi-hmm-gmm",
    "kaldifst",
    "kaldi-decoder",
    "kaldilm",
    "numpy",
)


def package_versions() -> dict[str, str]:
    """Versions of the packages whose behaviour shapes a stage's output."""
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_revision() -> str:
    """The git revision of the asr-kd checkout, or ``"unknown"`` outside one."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def is_done(out_dir: Path | str) -> bool:
    """Whether ``out_dir`` is a finished stage output."""
    return (Path(out_dir) / MARKER).is_file()


def read_marker(out_dir: Path | str) -> dict[str, Any]:
    """The completion marker of a finished output.

    Raises:
        BadInputError: the marker is not valid JSON (the disk was full or it was edited).
    """
    path = Path(out_dir) / MARKER
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInputError(
            f"{path} is not a valid completion marker ({e}); rerun the stage that wrote "
            f"{Path(out_dir).name} with --force"
        ) from None
    if not isinstance(doc, dict):
        raise BadInputError(f"{path} is not a valid completion marker; rerun with --force")
    return doc


def marker_digest(out_dir: Path | str) -> str:
    """A short sha256 of a finished output's ``.done.json`` (changes whenever it is redone)."""
    return file_digest(Path(out_dir) / MARKER)


# The inputs checked since the current stage began: resolved path -> {"stage", "marker"}.
_INPUTS: contextvars.ContextVar[dict[str, dict[str, str]] | None] = contextvars.ContextVar(
    "asr_kd_stage_inputs", default=None
)


# The command line of the running ``asr-kd`` command (set by the CLI), for the marker.
_COMMAND_LINE: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "asr_kd_command_line", default=None
)


def set_command_line(argv: list[str] | None) -> None:
    """Record the ``asr-kd`` command line that runs the stage (written into its marker)."""
    _COMMAND_LINE.set(list(argv) if argv is not None else None)


def _record_input(path: Path, stage: str) -> None:
    inputs = _INPUTS.get()
    if inputs is None:
        inputs = {}
        _INPUTS.set(inputs)
    inputs[str(path.resolve())] = {"stage": stage, "marker": marker_digest(path)}


def recorded_inputs() -> dict[str, dict[str, str]]:
    """The inputs :func:`require_done` has checked since the last stage output was written."""
    return dict(_INPUTS.get() or {})


# The files opened through asr_kd.checked since the current stage began: path -> maker.
_FILES: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "asr_kd_stage_files", default=None
)


def note_file(path: Path | str, maker: str) -> None:
    """Record a file the running stage read (``asr_kd.checked`` does, for every open)."""
    files = _FILES.get()
    if files is None:
        files = {}
        _FILES.set(files)
    files[str(Path(path).resolve())] = maker


def reset_inputs() -> None:
    """Forget the recorded inputs and files (a new stage begins)."""
    _INPUTS.set({})
    _FILES.set({})


def require_done(path: Path | str, stage: str) -> Path:
    """Check that ``path`` (a stage output directory) exists and is finished.

    The input is recorded, with ``stage`` and its marker's digest, for the marker of
    the stage being run (see the module docstring).

    Args:
        path: the directory an earlier stage should have written.
        stage: the ``asr-kd`` subcommand that writes it, named in the error.
    """
    path = Path(path)
    if not is_done(path):
        what = "is incomplete (no completion marker)" if path.exists() else "does not exist"
        raise MissingInputError(f"{path} {what}: run the '{stage}' stage first")
    read_marker(path)  # an unreadable marker is an unfinished output, not a finished one
    _record_input(path, stage)
    return path


def require_file(path: Path | str, stage: str) -> Path:
    """Check that an input file exists, is not empty and is as its stage wrote it
    (:func:`changed_since_written`), naming the stage that writes it.

    The file is recorded as read (the marker's ``files``); when it lies in a finished
    stage output, that output is recorded as an input.
    """
    path = Path(path)
    who = reading_command()
    if not path.is_file():
        raise MissingInputError(f"{who}{path} does not exist: run the '{stage}' stage first")
    if path.stat().st_size == 0:
        raise BadInputError(f"{who}{path} is empty: rerun the '{stage}' stage with --force")
    check_unchanged(path, stage)
    note_file(path, stage)
    if is_done(path.parent):
        _record_input(path.parent, stage)
    return path


# The running ``asr-kd`` subcommand's name (set by the CLI through asr_kd.checked).
_COMMAND_NAME: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "asr_kd_command_name", default=None
)


def set_command_name(name: str | None) -> None:
    """Record the running ``asr-kd`` subcommand (named by input errors)."""
    _COMMAND_NAME.set(name)


def reading_command() -> str:
    """``"<command>: "`` of the running ``asr-kd`` command (for messages), or ``""``."""
    name = _COMMAND_NAME.get()
    return f"{name}: " if name else ""


def _digest_of(path: Path, size: int) -> str | None:
    return file_digest(path) if size <= DIGEST_MAX_BYTES else None


def record_outputs(directory: Path) -> dict[str, list[Any]]:
    """Write ``directory/.outputs.json``: relative path -> [size, digest] of every file."""
    record: dict[str, list[Any]] = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file() and not p.is_symlink() and p.name not in (MARKER, OUTPUTS):
            size = p.stat().st_size
            record[str(p.relative_to(directory))] = [size, _digest_of(p, size)]
    (directory / OUTPUTS).write_text(json.dumps(record, separators=(",", ":")) + "\n")
    return record


# (path, size, mtime_ns) -> digest, so that a file read twice is hashed once.
_SEEN: dict[tuple[str, int, int], str | None] = {}
# output directory -> (mtime_ns of its record, the record).
_RECORDS: dict[str, tuple[int, dict[str, list[Any]]]] = {}


def _record_of(directory: Path) -> dict[str, list[Any]] | None:
    path = directory / OUTPUTS
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    cached = _RECORDS.get(str(path))
    if cached is None or cached[0] != mtime:
        try:
            cached = (mtime, json.loads(path.read_text()))
        except (OSError, ValueError):
            return None  # a damaged record checks nothing (the marker is the contract)
        _RECORDS[str(path)] = cached
    return cached[1] if isinstance(cached[1], dict) else None


def changed_since_written(path: Path | str) -> str | None:
    """How ``path`` differs from what its stage wrote (``.outputs.json`` of the finished
    output holding it), or ``None`` (unchanged, or not in a recorded output)."""
    path = Path(path).resolve()
    for directory in list(path.parents)[:4]:
        if not is_done(directory):
            continue
        entry = (_record_of(directory) or {}).get(str(path.relative_to(directory)))
        if not isinstance(entry, list) or len(entry) != 2:
            return None
        size, digest = entry
        st = path.stat()
        if st.st_size != size:
            return f"is truncated or replaced ({st.st_size} bytes; its stage wrote {size})"
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in _SEEN:
            _SEEN[key] = _digest_of(path, st.st_size) if digest else None
        if digest and _SEEN[key] != digest:
            return "is damaged or replaced (its bytes differ from what its stage wrote)"
        return None
    return None


def check_unchanged(path: Path | str, maker: str, reader: str | None = None) -> None:
    """Raise when ``path`` is not what ``maker`` wrote (:func:`changed_since_written`).

    Raises:
        BadInputError: naming the file, the reading command and ``maker``.
    """
    why = changed_since_written(path)
    if why:
        who = f"{reader}: " if reader else reading_command()
        raise BadInputError(
            f"{who}{path} {why}; rerun '{maker}' (with --force) to rewrite it (if you "
            f"edited it on purpose, remove {OUTPUTS} from its directory)"
        )


def note_input(path: Path | str, stage: str | None = None) -> None:
    """Record ``path`` (or the finished output holding the file ``path``) as an input of
    the running stage, when it is a finished output; anything else is left unrecorded
    (a plug-in teacher file, a spec). ``stage``: its maker (default: its marker's)."""
    path = Path(path)
    for d in (path, path.parent):
        if is_done(d):
            _record_input(d, stage or str(read_marker(d).get("stage", "?")))
            return


def upstream(out_dir: Path | str) -> list[Path]:
    """Every finished output ``out_dir`` was made from, directly or not (from the markers)."""
    seen: dict[str, Path] = {}
    todo = [Path(out_dir)]
    while todo:
        d = todo.pop()
        if not is_done(d):
            continue
        for path in read_marker(d).get("inputs") or {}:
            if path not in seen:
                seen[path] = Path(path)
                todo.append(Path(path))
    return list(seen.values())


def stale_inputs(marker: dict[str, Any]) -> list[str]:
    """One line per input recorded in ``marker`` that has been redone or removed since."""
    problems = []
    for path, entry in (marker.get("inputs") or {}).items():
        maker = entry.get("stage", "?")
        if not is_done(path):
            problems.append(f"its input {path} (from '{maker}') is gone or unfinished")
        elif marker_digest(path) != entry.get("marker"):
            problems.append(f"its input {path} was redone by '{maker}' since")
    return problems


def finished(out_dir: Path | str, stage: str, config: dict[str, Any], force: bool) -> bool:
    """Whether ``out_dir`` is finished with ``config`` and its inputs unchanged (skip it).

    Raises:
        AsrKdError: it is finished with another configuration (and ``force`` is off).
        StaleInputError: an input it was made from has been redone or removed since.
    """
    out_dir = Path(out_dir)
    if force or not is_done(out_dir):
        return False
    marker = read_marker(out_dir)
    writer = marker.get("stage", "?")
    if writer != stage:
        raise AsrKdError(
            f"{stage}: {out_dir} is the output of '{writer}', not of '{stage}'; choose "
            "another output directory (or --force to replace it)"
        )
    if marker.get("config") != json.loads(json.dumps(config, default=str)):
        raise AsrKdError(
            f"{out_dir} was written by '{stage}' with another configuration; "
            "use --force to overwrite it or choose another output directory"
        )
    stale = stale_inputs(marker)
    if stale:
        raise StaleInputError(
            f"{stage}: {out_dir} is out of date: {'; '.join(stale)}; "
            f"rerun '{stage}' with --force to redo it from the new input"
        )
    logger.info("%s: %s is finished; skipping (use --force to redo)", stage, out_dir)
    return True


# Locks this process holds: resolved output path -> [fd, count, lock file].
_HELD: dict[str, list[Any]] = {}


def acquire_lock(path: Path | str, stage: str) -> None:
    """Take the exclusive lock on output ``path`` (``<path>.lock``); reentrant in a process.

    Raises:
        StageBusyError: another process holds it, naming that process's stage and pid.
    """
    path = Path(path).resolve()
    held = _HELD.get(str(path))
    if held is not None:
        held[1] += 1
        return
    lock = path.with_name(f"{path.name}.lock")
    check_writable_dir(path.parent, stage)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 4096, 0).decode(errors="replace").strip().split(maxsplit=1)
            os.close(fd)
            pid, other = (owner + ["?", "?"])[:2]
            raise StageBusyError(
                f"another asr-kd {other} (pid {pid}) is writing {path}; wait for it to "
                "finish (or stop it) and rerun"
            ) from None
        try:  # a releasing holder may have removed the file between our open and flock
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {stage}\n".encode(), 0)
    _HELD[str(path)] = [fd, 1, lock]


def release_lock(path: Path | str, all_holds: bool = False) -> None:
    """Release one hold on ``path``'s lock (every hold with ``all_holds``)."""
    key = str(Path(path).resolve())
    held = _HELD.get(key)
    if held is None:
        return
    held[1] = 0 if all_holds else held[1] - 1
    if held[1] <= 0:
        del _HELD[key]
        held[2].unlink(missing_ok=True)  # while still locked: the next taker makes a new file
        os.close(held[0])


def check_writable_dir(directory: Path | str, stage: str) -> Path:
    """Create ``directory`` if needed and check that files can be made in it.

    Raises:
        BadInputError: it is a file, or cannot be created or written.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise BadInputError(f"{stage}: {directory} is a file, not a directory; move it away")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadInputError(f"{stage}: cannot create {directory} ({e.strerror})") from None
    probe = directory / f".asr-kd-probe-{os.getpid()}"
    try:  # a real write: os.access says yes to root on a read-only file system
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as e:
        raise BadInputError(f"{stage}: cannot write into {directory} ({e.strerror})") from None
    return directory


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(out_dir: Path | str) -> list[Path]:
    """Remove ``<out>.tmp-<pid>`` and ``<out>.old-<pid>`` left by processes that died."""
    out_dir = Path(out_dir)
    removed = []
    for kind in ("tmp", "old"):
        prefix = f"{out_dir.name}.{kind}-"
        if not out_dir.parent.is_dir():
            break
        for p in out_dir.parent.iterdir():
            pid = p.name[len(prefix) :] if p.name.startswith(prefix) else ""
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                logger.warning("removing %s, left by a process (pid %s) that died", p, pid)
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def _check_replaceable(out_dir: Path, stage: str, force: bool) -> None:
    """Refuse to replace a non-empty directory that no stage finished, unless forced.

    A stage's output appears only when the stage finishes (the temporary sibling is
    renamed), so such a directory is someone's own files, or the output of an
    interrupted older version: either way not ours to delete without being told.
    """
    if force or is_done(out_dir) or not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    listed = sorted(p.name for p in out_dir.iterdir())
    raise BadInputError(
        f"{stage}: {out_dir} exists and holds files ({first_few(listed, 5)}) but is no finished "
        "stage output; move it away, choose another output directory, or pass --force to "
        "replace it"
    )


@contextlib.contextmanager
def stage_output(
    out_dir: Path | str, stage: str, config: dict[str, Any], force: bool = False
) -> Iterator[Path | None]:
    """Build a stage's output directory atomically, under the output's lock.

    Yields the temporary directory to write into, or ``None`` when ``out_dir`` is
    already finished with the same configuration and unchanged inputs (the caller
    then skips its work). On success the temporary directory gets the marker (with
    the inputs checked by :func:`require_done` before and during the stage) and
    replaces ``out_dir``; on any exception it is removed and ``out_dir`` is left as it
    was. Temporary siblings of dead processes are removed first.

    Args:
        out_dir: the final output directory.
        stage: the stage name (the ``asr-kd`` subcommand), recorded in the marker.
        config: the resolved, JSON-serialisable configuration of the stage.
        force: redo the stage even if it is finished.

    Raises:
        StageBusyError: another process is writing ``out_dir``.
        StaleInputError: it is finished, but an input has been redone since.
    """
    out_dir = Path(out_dir)
    config = json.loads(json.dumps(config, default=str))
    acquire_lock(out_dir, stage)
    try:
        clean_stale(out_dir)
        if finished(out_dir, stage, config, force):
            yield None
            return
        _check_replaceable(out_dir, stage, force)
        tmp = out_dir.with_name(f"{out_dir.name}.tmp-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        start = time.time()
        try:
            yield tmp
            own = str(out_dir.resolve())
            mine = (own + os.sep, own + ".tmp-", own + ".work" + os.sep)  # its own files
            inputs = {
                k: v
                for k, v in sorted(recorded_inputs().items())
                if k != own and not k.startswith(mine)
            }
            files = {
                k: v for k, v in sorted((_FILES.get() or {}).items()) if not k.startswith(mine)
            }
            marker = {
                "stage": stage,
                "run_id": uuid.uuid4().hex,  # a redo changes the marker even within a second
                "config": config,
                "inputs": inputs,
                "files": files,
                "command": _COMMAND_LINE.get(),
                "git_revision": git_revision(),
                "versions": package_versions(),
                "seconds": round(time.time() - start, 2),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            record_outputs(tmp)
            (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            if out_dir.exists():
                old = out_dir.with_name(f"{out_dir.name}.old-{os.getpid()}")
                out_dir.rename(old)
                tmp.rename(out_dir)
                shutil.rmtree(old)
            else:
                tmp.rename(out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        reset_inputs()
        release_lock(out_dir, all_holds=True)


def json_stage(
    out_dir: Path | str,
    stage: str,
    config: dict[str, Any],
    compute: Callable[[], dict[str, Any]],
    force: bool = False,
    name: str = "eval.json",
) -> dict[str, Any]:
    """A stage whose output is one JSON document (an evaluation): ``out_dir/<name>``.

    ``compute`` runs only when the stage is not finished with ``config`` and unchanged
    inputs; otherwise the finished document is read back.
    """
    with stage_output(out_dir, stage, config, force) as tmp:
        if tmp is None:
            path = Path(out_dir) / name
            try:
                return json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise BadInputError(
                    f"{stage}: {path} cannot be read ({e}); rerun '{stage}' with --force"
                ) from None
        doc = compute()
        (tmp / name).write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write a text file through a temporary sibling and a rename."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def file_digest(path: Path | str) -> str:
    """A short sha256 (16 hex digits) of a file's bytes, to name an input in a stage's config."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path} does not exist")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:16]
