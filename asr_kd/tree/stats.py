"""Tree statistics: one diagonal Gaussian per tri-phone HMM state seen in training.

The alignment stage gives, per utterance, a monophone alignment ``ali [T, 2]`` of
(phone id, HMM state index) per frame and the features ``feats [T, D]``. Each frame
is labelled with its context (left phone, centre phone, right phone, state) and the
frame's features are summed per context: count, sum and sum of squares, the
sufficient statistics of a diagonal Gaussian (Kaldi's ``GaussClusterable``, as
written by ``acc-tree-stats``).

A new phone instance starts where the phone id changes or the state index goes
backwards, so "AA AA" is two instances. Phone 0 (``<eps>``) is the context before
the first and after the last phone of an utterance.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr_kd.errors import BadInputError

# Columns of a context array: [N, 4] = (left, centre, right, state).
LEFT, CENTRE, RIGHT, STATE = 0, 1, 2, 3
_RADIX = 1 << 15  # packing four ids below 2**15 into one int64 sort key
_FLUSH_ROWS = 200_000


def frame_contexts(ali: np.ndarray) -> np.ndarray:
    """The tri-phone context of every frame of a monophone alignment.

    Args:
        ali: ``[T, 2]`` integer array of (phone id, HMM state index) per frame.

    Returns:
        ``[T, 4]`` int32 array of (left phone, centre phone, right phone, state), with
        phone 0 as the context beyond either end of the utterance.

    Raises:
        ValueError: if ``ali`` is not a ``[T, 2]`` integer array.
    """
    ali = np.asarray(ali)
    if ali.ndim != 2 or ali.shape[1] != 2 or not np.issubdtype(ali.dtype, np.integer):
        raise ValueError(
            f"an alignment must be an integer array [T, 2] of (phone, state); got "
            f"{ali.dtype} {list(ali.shape)}"
        )
    phone = ali[:, 0].astype(np.int32)
    state = ali[:, 1].astype(np.int32)
    out = np.empty((len(ali), 4), dtype=np.int32)
    if len(ali) == 0:
        return out
    starts = np.ones(len(ali), dtype=bool)
    starts[1:] = (phone[1:] != phone[:-1]) | (state[1:] < state[:-1])
    instance = np.cumsum(starts) - 1
    seq = phone[starts]
    prev = np.concatenate([[0], seq[:-1]]).astype(np.int32)
    nxt = np.concatenate([seq[1:], [0]]).astype(np.int32)
    out[:, LEFT] = prev[instance]
    out[:, CENTRE] = phone
    out[:, RIGHT] = nxt[instance]
    out[:, STATE] = state
    return out


def gauss_objf(count: np.ndarray, total: np.ndarray, sumsq: np.ndarray, floor: np.ndarray):
    """Log-likelihood of data under its own ML diagonal Gaussian, variance floored.

    With the variance floored at ``floor`` the mean stays the ML mean and the
    variance ``max(var, floor)`` is the ML variance among floored ones, so the
    objective of a split's two children is never below their parent's (the gain of a
    split is >= 0). Kaldi's ``GaussClusterable::Objf`` drops the ``var/floored_var``
    term; keeping it is what makes that guarantee exact.

    Args:
        count: ``[...]`` frame counts.
        total: ``[..., D]`` feature sums.
        sumsq: ``[..., D]`` sums of squared features.
        floor: ``[D]`` variance floor.

    Returns:
        ``[...]`` float64 log-likelihoods (0 where the count is 0).
    """
    count = np.asarray(count, dtype=np.float64)
    n = np.maximum(count, 1e-300)[..., None]
    mean = total / n
    raw = sumsq / n - mean * mean
    var = np.maximum(raw, floor)
    dim = total.shape[-1]
    per_frame = np.log(var).sum(-1) + (raw / var).sum(-1) + dim * math.log(2 * math.pi)
    return np.where(count > 0, -0.5 * count * per_frame, 0.0)


@dataclass(frozen=True, eq=False)
class TreeStats:
    """Diagonal-Gaussian statistics per (left, centre, right, state) context.

    Rows are sorted by context and unique, so two accumulations of the same data
    compare equal whatever the order of their shards.

    Attributes:
        contexts: ``[N, 4]`` int32, (left, centre, right, state) per row.
        count: ``[N]`` float64 frame counts.
        total: ``[N, D]`` float64 feature sums.
        sumsq: ``[N, D]`` float64 sums of squared features.
    """

    contexts: np.ndarray
    count: np.ndarray
    total: np.ndarray
    sumsq: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.total.shape[1])

    @property
    def num_frames(self) -> float:
        return float(self.count.sum())

    def __len__(self) -> int:
        return len(self.count)

    def merge(self, other: TreeStats) -> TreeStats:
        """The statistics of both (for shards accumulated in parallel)."""
        if len(self) and len(other) and self.dim != other.dim:
            raise ValueError(f"cannot merge tree stats of dimension {self.dim} and {other.dim}")
        return _reduce(
            np.concatenate([self.contexts, other.contexts]),
            np.concatenate([self.count, other.count]),
            np.concatenate([self.total, other.total]),
            np.concatenate([self.sumsq, other.sumsq]),
        )

    def save(self, path: Path | str) -> None:
        """Write the statistics to an ``.npz`` file atomically."""
        path = Path(path)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}.npz")
        np.savez(tmp, contexts=self.contexts, count=self.count, total=self.total, sumsq=self.sumsq)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path | str) -> TreeStats:
        """Read statistics written by :meth:`save`."""
        path = Path(path)
        try:
            with np.load(path) as z:
                return cls(z["contexts"], z["count"], z["total"], z["sumsq"])
        except (OSError, KeyError, ValueError) as e:
            raise BadInputError(f"{path} is not a tree-stats file ({e})") from None


def _reduce(contexts, count, total, sumsq) -> TreeStats:
    """Sum rows with equal contexts; rows come out sorted by context."""
    dim = total.shape[1] if total.ndim == 2 else 0
    if len(count) == 0:
        empty = np.zeros((0, dim))
        return TreeStats(np.zeros((0, 4), np.int32), np.zeros(0), empty, empty.copy())
    c = contexts.astype(np.int64)
    key = ((c[:, 0] * _RADIX + c[:, 1]) * _RADIX + c[:, 2]) * _RADIX + c[:, 3]
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    return TreeStats(
        contexts[order[starts]].astype(np.int32),
        np.add.reduceat(count[order], starts),
        np.add.reduceat(total[order], starts, axis=0),
        np.add.reduceat(sumsq[order], starts, axis=0),
    )


def _check_utterance(where: str, ali: np.ndarray, feats: np.ndarray) -> None:
    if feats.ndim != 2:
        raise BadInputError(f"{where}: features must be [T, D], got shape {list(feats.shape)}")
    if len(ali) != len(feats):
        raise BadInputError(
            f"{where}: alignment has {len(ali)} frames but features have {len(feats)} "
            "(alignments and features must come from the same 'align' run)"
        )
    if len(ali) and (ali.min() < 0 or ali.max() >= _RADIX):
        raise BadInputError(f"{where}: alignment ids must lie in [0, {_RADIX})")
    if len(ali) and (ali[:, 0] == 0).any():
        raise BadInputError(f"{where}: alignment contains phone 0 (<eps>), which is not a phone")
    if not np.isfinite(feats).all():
        raise BadInputError(f"{where}: features contain NaN or infinity")


def accumulate_stats(utterances: Iterable[tuple]) -> TreeStats:
    """Accumulate tree statistics from monophone alignments and features.

    Args:
        utterances: items ``(ali, feats)`` or ``(utt_id, ali, feats)``, where ``ali``
            is ``[T, 2]`` (phone id, HMM state) per frame and ``feats`` is ``[T, D]``.

    Returns:
        The statistics; merge shards accumulated elsewhere with :meth:`TreeStats.merge`.

    Raises:
        BadInputError: an utterance's alignment and features disagree or hold bad values.
    """
    done: TreeStats | None = None
    pending: list[tuple[np.ndarray, ...]] = []
    rows = 0
    dim: int | None = None
    for index, item in enumerate(utterances):
        name, (ali, feats) = ("", item) if len(item) == 2 else (str(item[0]), item[1:])
        where = f"utterance {name!r}" if name else f"utterance #{index}"
        try:
            ctx = frame_contexts(ali)
        except ValueError as e:
            raise BadInputError(f"{where}: {e}") from None
        feats = np.asarray(feats, dtype=np.float64)
        _check_utterance(where, np.asarray(ali), feats)
        if len(ctx) and dim is not None and feats.shape[1] != dim:
            raise BadInputError(
                f"{where}: features have dimension {feats.shape[1]}, earlier utterances {dim}"
            )
        dim = feats.shape[1] if len(ctx) and dim is None else dim
        pending.append((ctx, np.ones(len(ctx)), feats, feats * feats))
        rows += len(ctx)
        if rows >= _FLUSH_ROWS:
            done = _flush(done, pending)
            pending, rows = [], 0
    done = _flush(done, pending)
    if done is None:
        raise BadInputError("no aligned frames to accumulate tree statistics from")
    return done


def _flush(done: TreeStats | None, pending: list[tuple[np.ndarray, ...]]) -> TreeStats | None:
    parts = [p for p in pending if len(p[0])]
    if not parts:
        return done
    new = _reduce(*(np.concatenate([p[i] for p in parts]) for i in range(4)))
    return new if done is None else done.merge(new)
