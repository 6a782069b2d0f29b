"""Posteriors computed elsewhere as a teacher: Kaldi ``.scp``/``.ark``, ``.npz`` or ``.npy``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lhotse.cut import Cut

from asr_kd.errors import BadInputError, ConfigError, MissingInputError
from asr_kd.teachers.base import TeacherBase, check_finite, check_temperature, pad_log_probs

__all__ = ["DEFAULT_FRAME_SHIFT", "FORMATS", "POSTERIOR_KEYS", "PosteriorTeacher"]

DEFAULT_FRAME_SHIFT = 0.01
POSTERIOR_KEYS = {"kind", "name", "posteriors", "format", "domain", "tree_id", "num_senones",
                  "frame_shift"}  # fmt: skip
FORMATS = {"kaldi": (".scp", ".ark"), "npz": (".npz",), "npy": ()}
"""``format``: the path suffixes of each (``npy``: a directory of ``<cut_id>.npy``)."""


def posteriors_format(path: Path) -> str | None:
    """The format a posteriors path is in (``None``: none of :data:`FORMATS`)."""
    if path.is_dir():
        return "npy"
    return next((fmt for fmt, suffixes in FORMATS.items() if path.suffix in suffixes), None)


class PosteriorTeacher(TeacherBase):
    """Posteriors computed elsewhere, one ``[T, S]`` matrix per cut id.

    Args:
        path: a Kaldi ``.scp`` or ``.ark`` (read with kaldiio; relative paths inside an
            scp are relative to the working directory, as in Kaldi), an ``.npz`` archive
            keyed by cut id, or a directory of ``<cut_id>.npy`` files.
        domain: ``log`` (log-probabilities, e.g. Kaldi's ``nnet3-compute`` output) or
            ``prob`` (probabilities); rows are renormalised either way.
        num_senones, tree_id, frame_shift: the declared senone inventory and frame rate.
        name: see :class:`~asr_kd.teachers.Teacher`.
    """

    def __init__(
        self,
        path: Path | str,
        domain: str,
        num_senones: int,
        tree_id: str,
        frame_shift: float = DEFAULT_FRAME_SHIFT,
        name: str | None = None,
    ):
        self.path = Path(path)
        if domain not in ("log", "prob"):
            raise ConfigError(
                f"posteriors {self.path}: domain must be 'log' or 'prob', got {domain!r}"
            )
        if not self.path.exists():
            raise MissingInputError(f"posteriors {self.path} do not exist")
        self.format = posteriors_format(self.path)
        if self.format is None:
            raise ConfigError(
                f"posteriors {self.path}: give a Kaldi .scp or .ark file, an .npz archive or a "
                "directory of <cut_id>.npy files"
            )
        self.domain = domain
        self.num_senones, self.tree_id, self.frame_shift = num_senones, tree_id, frame_shift
        self.name = name or self.path.stem
        self.source = f"posteriors:{self.path.resolve()}"
        self.needs_features = False
        self._table: Any = None

    def _lookup(self, cut_id: str) -> np.ndarray | None:
        if self.format == "npy":
            f = self.path / f"{cut_id}.npy"
            return np.load(f) if f.is_file() else None
        if self._table is None:
            self._table = np.load(self.path) if self.format == "npz" else _open_kaldi(self.path)
        if cut_id not in self._table:
            return None
        value = self._table[cut_id]
        return value if isinstance(value, np.ndarray) else _load_ark_entry(self.path, value)

    def _matrix(self, cut: Cut) -> np.ndarray:
        post = self._lookup(cut.id)
        if post is None:
            raise BadInputError(
                f"cut {cut.id} has no posteriors in {self.path} (teacher {self.name}); compute "
                "them for every cut of the set"
            )
        post = np.asarray(post)
        if post.ndim != 2 or post.shape[1] != self.num_senones:
            raise BadInputError(
                f"cut {cut.id}: posteriors of shape {post.shape} in {self.path}, expected "
                f"[frames, {self.num_senones}]"
            )
        if cut.features is not None and cut.num_frames and len(post) != cut.num_frames:
            raise BadInputError(
                f"cut {cut.id}: {len(post)} frames of posteriors in {self.path} but "
                f"{cut.num_frames} feature frames; were they computed at another frame rate?"
            )
        return post

    def _log(self, cut: Cut, post: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(post.astype(np.float32))
        if self.domain == "prob":
            if bool((x < 0).any()):
                raise BadInputError(
                    f"cut {cut.id}: negative probabilities in {self.path}; are these "
                    "log-probabilities (domain: log)?"
                )
            return torch.log(x)
        if bool((x > 1e-3).any()):
            raise BadInputError(
                f"cut {cut.id}: positive values in {self.path} cannot be log-probabilities; "
                "are these probabilities (domain: prob)?"
            )
        return x

    def log_probs_batch(
        self,
        cuts: Sequence[Cut],
        temperature: float = 1.0,
        feats: Sequence[np.ndarray] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        check_temperature(temperature)
        rows = [torch.log_softmax(self._log(c, self._matrix(c)) / temperature, -1) for c in cuts]
        out, lengths = pad_log_probs(rows, self.num_senones)
        check_finite(out, lengths, cuts, self)
        return out, lengths


def _open_kaldi(path: Path) -> Mapping[str, Any]:
    """An scp as kaldiio's lazy table, or an ark as ``{key: byte offset}`` (one scan)."""
    import kaldiio
    from kaldiio.matio import read_kaldi, read_token

    if path.suffix == ".scp":
        return kaldiio.load_scp(str(path))
    index: dict[str, int] = {}
    with open(path, "rb") as fd:
        while (key := read_token(fd)) is not None:
            index[key] = fd.tell()
            read_kaldi(fd)
    return index


def _load_ark_entry(path: Path, offset: int) -> np.ndarray:
    import kaldiio

    return kaldiio.load_mat(f"{path}:{offset}")
