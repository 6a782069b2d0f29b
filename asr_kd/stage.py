"""Idempotent, atomic stage outputs.

Every stage writes one output directory. It is built under a temporary sibling
(``<out>.tmp-<pid>``) and renamed into place only when the stage succeeded, so a
killed or failed stage never leaves a half-written output. The finished directory
holds ``.done.json``: the stage name, its resolved configuration, the git revision
and package versions. A rerun with the same configuration skips the work; a rerun
with a different one refuses unless ``force`` is given.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from asr_kd.errors import AsrKdError, MissingInputError

logger = logging.getLogger(__name__)

MARKER = ".done.json"
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
    return json.loads((Path(out_dir) / MARKER).read_text())


def require_done(path: Path | str, stage: str) -> Path:
    """Check that ``path`` (a stage output directory) exists and is finished.

    Args:
        path: the directory an earlier stage should have written.
        stage: the ``asr-kd`` subcommand that writes it, named in the error.
    """
    path = Path(path)
    if not is_done(path):
        what = "is incomplete (no completion marker)" if path.exists() else "does not exist"
        raise MissingInputError(f"{path} {what}: run the '{stage}' stage first")
    return path


def require_file(path: Path | str, stage: str) -> Path:
    """Check that an input file exists, naming the stage that writes it."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path} does not exist: run the '{stage}' stage first")
    return path


@contextlib.contextmanager
def stage_output(
    out_dir: Path | str, stage: str, config: dict[str, Any], force: bool = False
) -> Iterator[Path | None]:
    """Build a stage's output directory atomically.

    Yields the temporary directory to write into, or ``None`` when ``out_dir`` is
    already finished with the same configuration (the caller then skips its work).
    On success the temporary directory gets the marker and replaces ``out_dir``;
    on any exception it is removed and ``out_dir`` is left as it was.

    Args:
        out_dir: the final output directory.
        stage: the stage name (the ``asr-kd`` subcommand), recorded in the marker.
        config: the resolved, JSON-serialisable configuration of the stage.
        force: redo the stage even if it is finished.
    """
    out_dir = Path(out_dir)
    config = json.loads(json.dumps(config, default=str))
    if is_done(out_dir) and not force:
        previous = read_marker(out_dir).get("config")
        if previous == config:
            logger.info("%s: %s is finished; skipping (use --force to redo)", stage, out_dir)
            yield None
            return
        raise AsrKdError(
            f"{out_dir} was written by '{stage}' with another configuration; "
            "use --force to overwrite it or choose another output directory"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f"{out_dir.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    start = time.time()
    try:
        yield tmp
        marker = {
            "stage": stage,
            "config": config,
            "git_revision": git_revision(),
            "versions": package_versions(),
            "seconds": round(time.time() - start, 2),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
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
