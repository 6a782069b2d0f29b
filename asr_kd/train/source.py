"""Where a training's batches come from: one protocol, two data paths.

A batch source yields one epoch of this rank's training batches at a time::

    source.start(epoch, skip)   # the next iteration: epoch ``epoch`` from batch ``skip`` on
    for batch in source: ...    # Batch dicts ("feats", "lengths", "targets", "cut_ids", ...)
    source.count(epoch)         # this rank's batches in that epoch

The epoch's batches depend only on the seed and the epoch (never on the batches
consumed before), so a resumed training repeats an epoch exactly. Two sources:
:class:`UtteranceSource` (padded batches of whole cuts, any model) and the frame path
of :mod:`asr_kd.train.frames` (``data_path: frames``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import torch
from lhotse import CutSet

from asr_kd.train.config import TrainConfig
from asr_kd.train.dataset import (
    Batch,
    CollateHook,
    EpochBatches,
    FeatureNormalizer,
    SenoneDataset,
    TrainingData,
    make_loader,
    make_sampler,
)
from asr_kd.train.distributed import DistContext


class BatchSource(Protocol):
    """One epoch of this rank's training batches at a time (see the module docstring)."""

    def start(self, epoch: int, skip: int) -> None: ...

    def __iter__(self) -> Iterator[Batch]: ...

    def count(self, epoch: int) -> int: ...


class UtteranceSource:
    """Padded batches of whole cuts: Lhotse's bucketing sampler, dealt out to the ranks.

    Args:
        cuts: the training cuts.
        normalizer: the feature statistics the batches are normalised with.
        num_senones: the targets' senone count (checked).
        config: ``max_duration``, ``seed`` (the shuffle) and ``num_workers``.
        ctx: this rank's place (:class:`EpochBatches` deals the batches out).
        hooks: add entries (e.g. soft targets) to every batch.
    """

    def __init__(
        self,
        cuts: CutSet,
        normalizer: FeatureNormalizer,
        num_senones: int,
        config: TrainConfig,
        ctx: DistContext,
        hooks: Sequence[CollateHook] = (),
    ):
        sampler = make_sampler(cuts, config.max_duration, shuffle=True, seed=config.seed)
        self.batches = EpochBatches(sampler, ctx.world_size, ctx.rank)
        dataset = SenoneDataset(normalizer, num_senones, hooks)
        self.loader = make_loader(dataset, self.batches, config.num_workers)

    def start(self, epoch: int, skip: int = 0) -> None:
        self.batches.start(epoch, skip)

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.loader)

    def count(self, epoch: int) -> int:
        return self.batches.count(epoch)


def make_source(
    data: TrainingData,
    config: TrainConfig,
    ctx: DistContext,
    model: torch.nn.Module,
    hooks: Sequence[CollateHook] = (),
) -> BatchSource:
    """The batch source ``config.data_path`` names, over ``data.train``.

    Args:
        data: the training data (its normaliser normalises the batches).
        model: the (first) model trained; the frame path splices its ``frame_context``
            (and refuses a model without one).
    """
    if config.data_path == "frames":
        from asr_kd.train.frames import frame_source

        return frame_source(
            data, config, context=getattr(model, "frame_context", None), rank=ctx.rank,
            world_size=ctx.world_size, hooks=hooks, device=ctx.device,
        )  # fmt: skip
    return UtteranceSource(data.train, data.normalizer, data.num_senones, config, ctx, hooks)
