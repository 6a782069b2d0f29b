"""An ensemble of teachers as one teacher, on cuts or on training batches.

:class:`EnsembleTeacher` combines its members' distributions at the same temperature
(:func:`asr_kd.teachers.combine.combine_log_probs`, arithmetic or geometric, weighted)
and is itself a :class:`~asr_kd.teachers.Teacher`, so an ensemble decodes, evaluates
and distils like any single model. A distillation uses it on the student's training
batches too (:meth:`EnsembleTeacher.batch_log_probs`, after
:meth:`~EnsembleTeacher.set_batch_normalizer`). Which inputs a member sees there:

* a network teacher (it exposes ``model`` and ``normalizer``, as a
  :class:`~asr_kd.teachers.NeuralTeacher` does) runs in the same batch as the student,
  on ``batch["feats"]``: those are normalised with the student's statistics, so they
  are mapped affinely to the teacher's own (``x * sqrt(var_s / var_t) + (mean_s -
  mean_t) / sqrt(var_t)``, per dimension, on the device; the identity when the
  statistics match). Frozen, in eval mode, without gradients and with bf16 autocast
  on CUDA (``amp="auto"``).
* any other teacher (precomputed posteriors, a specialist system, an ensemble) gets
  the raw cuts: the :func:`attach_cuts` collate hook puts the batch's cuts in
  ``batch["cuts"]`` and its ``log_probs_batch`` is called on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from lhotse import CutSet
from lhotse.cut import Cut

from asr_kd.checked import load_features
from asr_kd.errors import BadInputError, ConfigError
from asr_kd.teachers.base import Teacher, TeacherBase, check_finite, check_teacher
from asr_kd.teachers.combine import METHODS, combine_log_probs, normalise_weights
from asr_kd.train.config import resolve_amp
from asr_kd.train.dataset import Batch, CollateHook, FeatureNormalizer
from asr_kd.train.evaluate import autocast

__all__ = ["CUTS_KEY", "EnsembleTeacher", "attach_cuts", "member_log_probs"]

CUTS_KEY = "cuts"
"""``batch["cuts"]``: the batch's cuts, for teachers that read their own inputs."""


def attach_cuts(cuts: CutSet, batch: Batch) -> None:
    """Collate hook: keep the batch's cuts (in batch order) as ``batch["cuts"]``."""
    batch[CUTS_KEY] = list(cuts)


class EnsembleTeacher(TeacherBase):
    """A teacher whose distribution combines other teachers' at the same temperature.

    Args:
        members: teachers of one senone inventory and frame rate.
        method: ``arithmetic`` or ``geometric`` (:func:`combine_log_probs`).
        weights: per-member weights (``None``: equal); a member of weight 0 is left out
            of the combination.
        name: for tables and logs.
        amp: ``auto`` (bf16 on CUDA), ``bf16`` or ``off`` for the network members on
            training batches.

    Raises:
        ConfigError: no members, an unknown method or bad weights.
        BadInputError: members with different trees, senone counts or frame shifts.
    """

    def __init__(
        self,
        members: Sequence[Teacher],
        method: str = "arithmetic",
        weights: Sequence[float] | None = None,
        name: str | None = None,
        amp: str = "auto",
    ):
        if not members:
            raise ConfigError("an ensemble needs at least one member")
        if method not in METHODS:
            raise ConfigError(
                f"ensemble method must be one of {', '.join(METHODS)}, got {method!r}"
            )
        try:
            self.weights = normalise_weights(weights, len(members))
        except ValueError as e:
            raise ConfigError(f"ensemble weights: {e}") from None
        first = members[0]
        for m in members[1:]:
            check_teacher(m, first.tree_id, first.num_senones, first.frame_shift,
                          f"ensemble member {first.name}")  # fmt: skip
        self.members, self.method, self.amp = list(members), method, amp
        self.num_senones, self.tree_id = first.num_senones, first.tree_id
        self.frame_shift = first.frame_shift
        self.needs_features = any(m.needs_features for m in self.members)
        self.name = name or f"ensemble_{method}"
        parts = ",".join(m.source for m in self.members)
        self.source = f"ensemble[{method}; {self.weights}]({parts})"
        self._batched: list[dict[str, Any] | None] | None = None

    def _combine(self, stacked: torch.Tensor) -> torch.Tensor:
        if len(self.members) == 1:
            return stacked[0]
        return combine_log_probs(stacked, self.method, self.weights)

    def log_probs_batch(
        self,
        cuts: Sequence[Cut],
        temperature: float = 1.0,
        feats: Sequence[np.ndarray] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        stacked, lengths = member_log_probs(self.members, cuts, temperature, feats)
        return self._combine(stacked), lengths

    def set_batch_normalizer(self, normalizer: FeatureNormalizer) -> None:
        """Score training batches whose ``feats`` were normalised with ``normalizer``.

        Raises:
            BadInputError: a network member takes features of another dimension.
        """
        self._batched = [_batched_model(m, normalizer) for m in self.members]

    @property
    def batched(self) -> list[bool]:
        """Per member: whether it runs on the batch's features (else on the cuts)."""
        return [b is not None for b in self._batches()]

    def collate_hooks(self) -> list[CollateHook]:
        """The hooks the batches need (the cuts, when a member reads its own inputs)."""
        return [] if all(self.batched) else [attach_cuts]

    def _batches(self) -> list[dict[str, Any] | None]:
        if self._batched is None:
            raise ValueError("call set_batch_normalizer before scoring training batches")
        return self._batched

    @torch.no_grad()
    def batch_log_probs(
        self, batch: Batch, temperature: float, device: torch.device
    ) -> torch.Tensor:
        """``[B, T, S]`` float32 combined log-probabilities of a training batch on ``device``.

        Padding frames hold the uniform distribution.

        Raises:
            BadInputError: a member gave another number of frames than a cut's features.
        """
        outs = [self._member_batch(i, batch, temperature, device) for i in range(len(self.members))]
        return self._combine(torch.stack(outs)).float()

    def _member_batch(self, i: int, batch: Batch, temperature: float, device) -> torch.Tensor:
        entry = self._batches()[i]
        if batch.get("frame_window"):  # one window per frame (asr_kd.train.frames)
            amp = resolve_amp(self.amp, device)
            return _window_log_probs(entry, self.members[i].name, batch, temperature, device, amp)
        if entry is None:
            return self._from_cuts(i, batch, temperature, device)
        model = entry["model"]
        if next(model.parameters()).device != device:
            model.to(device)
        feats = batch["feats"].to(device, non_blocking=True)
        if entry["scale"] is not None:
            feats = feats * entry["scale"].to(device) + entry["shift"].to(device)
        lengths = batch["lengths"].to(device)
        with autocast(device, resolve_amp(self.amp, device)):
            logits, _ = model(feats, lengths)
        if logits.shape[:2] != feats.shape[:2]:
            raise BadInputError(
                f"teacher {self.members[i].name} turned {tuple(feats.shape[:2])} frames "
                f"into {tuple(logits.shape[:2])}; a hybrid teacher gives one output per frame"
            )
        out = torch.log_softmax(logits.float() / temperature, dim=-1)
        valid = torch.arange(out.shape[1], device=device) < lengths[:, None]
        return out.masked_fill(~valid[..., None], -float(np.log(out.shape[-1])))

    def _from_cuts(self, i: int, batch: Batch, temperature: float, device) -> torch.Tensor:
        cuts, teacher = batch.get(CUTS_KEY), self.members[i]
        if cuts is None:
            raise ValueError("teachers that read cuts need batch['cuts']: add the attach_cuts hook")
        out, got = teacher.log_probs_batch(cuts, temperature)
        for cut, n, m in zip(cuts, batch["lengths"].tolist(), got.tolist(), strict=True):
            if n != m:
                raise BadInputError(
                    f"cut {cut.id}: teacher {teacher.name} gave {m} frames of log-probs "
                    f"for {n} feature frames; its posteriors must come from these features"
                )
        out = out.to(device=device, dtype=torch.float32)
        frames = int(batch["feats"].shape[1])
        if out.shape[1] < frames:  # pad to the batch's frames (uniform rows)
            pad = out.new_full((out.shape[0], frames - out.shape[1], out.shape[2]),
                               -float(np.log(out.shape[2])))  # fmt: skip
            out = torch.cat([out, pad], dim=1)
        return out[:, :frames]


def member_log_probs(
    members: Sequence[Teacher],
    cuts: Sequence[Cut],
    temperature: float = 1.0,
    feats: Sequence[np.ndarray] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``([N, B, T, S], lengths [B])``: every member's batch, features read once.

    On the first member's device; padding frames are uniform.

    Raises:
        BadInputError: members disagreeing on a cut's frame count, or NaN/Inf
            log-probabilities (naming the cut and the member).
    """
    if feats is None and any(m.needs_features for m in members):
        feats = [load_features(cut) for cut in cuts]
    outs = [m.log_probs_batch(cuts, temperature, feats) for m in members]
    device = outs[0][0].device
    lengths = outs[0][1]
    for m, (out, n) in zip(members, outs, strict=True):
        if not torch.equal(n.cpu(), lengths.cpu()):
            raise BadInputError(
                f"teacher {m.name} gives {n.tolist()} frames for the cuts "
                f"{[c.id for c in cuts]} but {members[0].name} {lengths.tolist()}"
            )
        check_finite(out, n, cuts, m)
    return torch.stack([o.to(device) for o, _ in outs]), lengths


def _batched_model(teacher: Any, normalizer: FeatureNormalizer) -> dict[str, Any] | None:
    """The network of a network teacher and the map from the batch's features to its own.

    ``None`` for a teacher without a network (it reads its own inputs per cut).
    """
    model = getattr(teacher, "model", None)
    if not isinstance(model, torch.nn.Module) or not hasattr(teacher, "normalizer"):
        return None
    model.eval().requires_grad_(False)
    own = teacher.normalizer
    if own is None:  # the teacher takes raw features
        own = FeatureNormalizer(np.zeros(normalizer.dim), np.ones(normalizer.dim))
    if own.dim != normalizer.dim:
        raise BadInputError(
            f"teacher {teacher.name} takes {own.dim}-dim features but the student's are "
            f"{normalizer.dim}-dim; teachers and student must share the feature type"
        )
    if np.array_equal(own.mean, normalizer.mean) and np.array_equal(own.scale, normalizer.scale):
        return {"model": model, "scale": None, "shift": None}
    scale = own.scale.astype(np.float64) / normalizer.scale
    shift = (normalizer.mean.astype(np.float64) - own.mean) * own.scale
    return {
        "model": model,
        "scale": torch.from_numpy(scale.astype(np.float32)),
        "shift": torch.from_numpy(shift.astype(np.float32)),
    }


def _window_log_probs(
    entry: dict[str, Any] | None,
    name: str,
    batch: Batch,
    temperature: float,
    device: torch.device,
    amp: torch.dtype | None,
) -> torch.Tensor:
    """``[N, 1, S]`` float32 log-probabilities at ``temperature`` of a frame batch.

    A frame batch (:mod:`asr_kd.train.frames`) holds one window per frame. A teacher
    backed by a registry frame classifier (a DNN or TDNN with a ``frame_context``)
    scores the batch's frames with ``forward_windows`` on windows of its own context,
    gathered from the same in-memory split (``batch["windows_of"]``), mapped to its
    own feature statistics as on the utterance path. Other teachers (sequence models,
    posteriors, plug-ins) need whole utterances: cache their soft targets instead.

    Args:
        entry: the member's network and feature map (:func:`_batched_model`), ``None``
            for a teacher without one.
        name: the teacher, for errors.

    Raises:
        ConfigError: the teacher is not a frame classifier.
    """
    model = None if entry is None else entry["model"]
    context = getattr(model, "frame_context", None)
    if context is None or not hasattr(model, "forward_windows"):
        raise ConfigError(
            f"teacher {name} cannot score single frames (it is not a frame classifier with "
            "a fixed frame context and forward_windows): cache its soft targets "
            "('cache-soft-targets', distill.source: cache) or train the student with "
            "data_path: utterances"
        )
    if next(model.parameters()).device != device:
        model.to(device)
    windows = batch["windows_of"](*context).to(device, non_blocking=True)
    if entry["scale"] is not None:
        windows = windows * entry["scale"].to(device) + entry["shift"].to(device)
    with autocast(device, amp):
        logits = model.forward_windows(windows)
    out = torch.log_softmax(logits.float() / temperature, dim=-1)
    return out[:, None]
