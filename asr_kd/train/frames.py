"""The frame-level training path of frame classifiers, as Kaldi's nnet1 trains them.

A split's normalised features and senone targets are held in memory (on the training
device), the frames are shuffled globally every epoch and minibatches hold
``frame_batch_size`` frames (Kaldi: 256) from anywhere in the split. Each frame's
input is its window of ``left + 1 + right`` frames, gathered by index with the first
and last frame of its utterance replicated past the utterance's edges: exactly the
window :func:`asr_kd.models.dnn.splice_frames` builds inside the utterance, so both
paths train on the same inputs and targets (``tests/train/test_frames.py``).

A batch (the :class:`FrameBatches` source yields them; ``N`` frames)::

    {"feats":        [N, K, F] float32 normalised windows, K = left + 1 + right,
     "lengths":      [N] int64, all K,
     "targets":      [N, 1] int64 senone ids,
     "frame_window": True (forward_logits scores windows: logits [N, 1, S]),
     "frame_index":  [N] int64, the frames' positions in the split's store,
     "windows_of":   (left, right) -> [N, left + 1 + right, F], the same frames'
                     windows of another context (on-the-fly teachers),
     "cut_ids":      N cut ids, one per frame (named in errors),
     ...             per-frame rows of the collate hooks, [N, 1, ...] (cached soft
                     targets: "soft_idx", "soft_prob" [N, 1, k], "soft_mass" [N, 1])}

With ``augment_*`` set (:class:`WindowAugment`), every window is perturbed (frequency
masks, additive noise) and ``windows_of`` gives on-the-fly teachers the same perturbed
frames: teacher and student see one input ("consistent teaching"), so the soft targets
match what the student is shown. Cached soft targets were computed on clean inputs:
``distill`` refuses them with augmentation.

A collate hook works on this path if it has ``frame_rows(cuts) -> {name: [frames,
...] tensor}``, the rows of every frame of ``cuts`` in order, loaded once
(``asr_kd.distill.CachedSoftTargets`` has it). Teachers run on the fly see the same
windows (``asr_kd.distill.frame_targets``). Sequence models (LSTM, conformer: no
``frame_context``) train on the utterance path; dev evaluation always does.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from lhotse import CutSet

from asr_kd.errors import ConfigError
from asr_kd.train.config import WindowAugment
from asr_kd.train.dataset import (
    Batch,
    CollateHook,
    FeatureNormalizer,
    SenoneDataset,
    TrainingData,
    make_loader,
)

logger = logging.getLogger(__name__)

FRAME_WINDOW = "frame_window"
"""``batch["frame_window"]``: the batch holds one window per frame."""
LOAD_CUTS = 64
"""Cuts read per DataLoader batch while filling the store."""


class FrameStore:
    """A split's normalised features and targets, frame after frame, cut after cut.

    Args:
        feats: ``[M, F]`` float32 normalised features of all ``M`` frames.
        targets: ``[M]`` int64 senone ids.
        first, last: ``[M]`` int64, the first and last frame of each frame's cut.
        cut_of: ``[M]`` (numpy) each frame's cut number.
        cut_ids: the cut ids, in store order.
    """

    def __init__(
        self,
        feats: torch.Tensor,
        targets: torch.Tensor,
        first: torch.Tensor,
        last: torch.Tensor,
        cut_of: np.ndarray,
        cut_ids: Sequence[str],
    ):
        self.feats, self.targets, self.first, self.last = feats, targets, first, last
        self.cut_of, self.cut_ids = cut_of, list(cut_ids)

    @classmethod
    def load(
        cls,
        cuts: CutSet,
        normalizer: FeatureNormalizer,
        num_senones: int,
        device: torch.device | str = "cpu",
        num_workers: int = 0,
    ) -> FrameStore:
        """Read, check and normalise every cut's features and targets (in cut order).

        Raises:
            BadInputError: naming a cut whose features or targets do not fit
                (as :class:`SenoneDataset`).
        """
        cuts = list(cuts)
        chunks = [CutSet.from_cuts(cuts[i : i + LOAD_CUTS]) for i in range(0, len(cuts), LOAD_CUTS)]
        loader = make_loader(SenoneDataset(normalizer, num_senones), chunks, num_workers)
        feats, targets, lengths = [], [], []
        for batch in loader:
            valid = torch.arange(batch["feats"].shape[1]) < batch["lengths"][:, None]
            feats.append(batch["feats"][valid])
            targets.append(batch["targets"][valid])
            lengths.append(batch["lengths"])
        lens = torch.cat(lengths)
        ends = torch.cumsum(lens, 0)
        first = torch.repeat_interleave(ends - lens, lens)
        last = torch.repeat_interleave(ends - 1, lens)
        cut_of = np.repeat(np.arange(len(cuts)), lens.numpy())
        return cls(
            torch.cat(feats).to(device),
            torch.cat(targets).to(device),
            first.to(device),
            last.to(device),
            cut_of,
            [c.id for c in cuts],
        )

    @property
    def num_frames(self) -> int:
        return int(self.targets.shape[0])

    @property
    def device(self) -> torch.device:
        return self.feats.device

    def windows(self, index: torch.Tensor, left: int, right: int) -> torch.Tensor:
        """``[N, left + 1 + right, F]`` windows of the frames ``index`` ``[N]``.

        Window row ``left + j`` is frame ``index + j`` of the same cut, clamped to the
        cut's first and last frame (edge replication, as Kaldi splices).
        """
        index = index.to(self.device)
        offsets = torch.arange(-left, right + 1, device=self.device)
        frames = index[:, None] + offsets
        frames = torch.maximum(
            torch.minimum(frames, self.last[index, None]), self.first[index, None]
        )
        return self.feats[frames]


class BatchAugment:
    """One batch's perturbation, the same for every window of its frames.

    The mask of frame ``n`` and the noise at offset ``j`` from it are drawn from
    generators seeded by ``key`` (seed, epoch, batch) and ``j``: a window of any context
    (the student's, each teacher's) gets the same values where windows overlap, and a
    resumed training draws what the uninterrupted one drew.
    """

    def __init__(self, spec: WindowAugment, n: int, dim: int, key: Sequence[int], device):
        self.spec, self.n, self.dim, self.key, self.device = spec, n, dim, list(key), device
        self.mask: torch.Tensor | None = None
        if spec.freq_masks > 0 and spec.freq_width > 0:
            g = self._generator(-1)
            width = torch.randint(0, spec.freq_width + 1, (n, spec.freq_masks), generator=g)
            start = (torch.rand(n, spec.freq_masks, generator=g) * (dim - width + 1)).long()
            bins = torch.arange(dim)
            inside = (bins >= start[..., None]) & (bins < (start + width)[..., None])
            self.mask = inside.any(dim=1).to(device)  # [N, F]
        self._noise: dict[int, torch.Tensor] = {}

    def _generator(self, offset: int) -> torch.Generator:
        seed = np.random.SeedSequence([*self.key, offset + 2**16]).generate_state(1)[0]
        return torch.Generator().manual_seed(int(seed))

    def noise_at(self, offset: int) -> torch.Tensor:
        """``[N, F]`` noise of the frames ``offset`` away from the batch's frames."""
        if offset not in self._noise:
            g = self._generator(offset)
            noise = torch.randn(self.n, self.dim, generator=g) * self.spec.noise
            self._noise[offset] = noise.to(self.device)
        return self._noise[offset]

    def __call__(self, windows: torch.Tensor, left: int, right: int) -> torch.Tensor:
        """``windows`` ``[N, left + 1 + right, F]`` perturbed."""
        if self.spec.noise > 0:
            noise = torch.stack([self.noise_at(j) for j in range(-left, right + 1)], dim=1)
            windows = windows + noise.to(windows.dtype)
        if self.mask is not None:
            windows = windows.masked_fill(self.mask[:, None, :], 0.0)
        return windows


class FrameBatches:
    """This rank's frame minibatches of one epoch: the frame path's batch source.

    The epoch's order is a permutation of all the store's frames that depends only on
    ``seed`` and the epoch; it is cut into batches of ``batch_size`` frames (the last
    may be short) and rank ``r`` of ``W`` takes batches ``r, r + W, ...``, the same
    number on every rank (the last ``< W`` batches are left out when ``W > 1``).

    Args:
        store: the split in memory.
        context: ``(left, right)`` frames of each window.
        batch_size: frames per batch.
        seed: seeds the shuffle.
        rank, world_size: this process's place in a data-parallel training.
        rows: per-frame rows of the collate hooks, ``{name: [M, ...]}`` on the store's
            device.
        keep: ``[M]`` bool, the frames trained on (``None``: all); the others still
            appear in their neighbours' windows (``TrainConfig.omit_phone``).
        augment: perturbs every batch's windows (off by default).
    """

    def __init__(
        self,
        store: FrameStore,
        context: tuple[int, int],
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        rows: dict[str, torch.Tensor] | None = None,
        passes: int = 1,
        keep: np.ndarray | None = None,
        augment: WindowAugment | None = None,
    ):
        self.store, self.context = store, (int(context[0]), int(context[1]))
        self.frames = None if keep is None else np.flatnonzero(keep)
        self.passes = passes
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.rows = dict(rows or {})
        self.augment = augment or WindowAugment()
        self.epoch, self.skip = 0, 0

    def start(self, epoch: int, skip: int = 0) -> None:
        """The next iteration yields epoch ``epoch`` from this rank's ``skip``-th batch on."""
        self.epoch, self.skip = epoch, skip

    def count(self, epoch: int = 0) -> int:
        """This rank's batches in ``epoch`` (the same in every epoch)."""
        return -(-self.passes * self.num_frames // self.batch_size) // self.world_size

    @property
    def num_frames(self) -> int:
        """The frames trained on (all the store's, or those ``keep`` kept)."""
        return self.store.num_frames if self.frames is None else len(self.frames)

    def order(self, epoch: int) -> np.ndarray:
        """The epoch's order of the store's frames: ``passes`` permutations, one after
        the other (the first depends on ``(seed, epoch)``, pass ``p > 0`` on
        ``(seed, epoch, p)``)."""
        n = self.num_frames
        seeds = [[self.seed, epoch]] + [[self.seed, epoch, p] for p in range(1, self.passes)]
        order = np.concatenate([np.random.default_rng(s).permutation(n) for s in seeds])
        return order if self.frames is None else self.frames[order]

    def __iter__(self) -> Iterator[Batch]:
        order = torch.from_numpy(self.order(self.epoch))
        on_device = order.to(self.store.device)
        size, step = self.batch_size, self.world_size
        for i in range(self.skip, self.count(self.epoch)):
            b = self.rank + i * step
            index, dev = order[b * size : (b + 1) * size], on_device[b * size : (b + 1) * size]
            yield self.batch(index, dev, key=(self.seed, self.epoch, b))

    def batch(
        self,
        index: torch.Tensor,
        on_device: torch.Tensor | None = None,
        key: Sequence[int] = (0,),
    ) -> Batch:
        """The batch of the frames ``index`` ``[N]`` (on the CPU; ``on_device``: the same
        on the store's device), as the module doc lays it out; ``key`` seeds its
        augmentation."""
        store, (left, right) = self.store, self.context
        dev = on_device if on_device is not None else index.to(store.device)
        width = left + 1 + right
        windows_of = functools.partial(store.windows, dev)
        if self.augment.enabled:
            aug = BatchAugment(self.augment, len(index), store.feats.shape[1], key, store.device)

            def windows_of(left: int, right: int) -> torch.Tensor:
                return aug(store.windows(dev, left, right), left, right)

        batch: Batch = {
            "feats": windows_of(left, right),
            "lengths": torch.full((len(index),), width, dtype=torch.int64, device=store.device),
            "targets": store.targets[dev][:, None],
            FRAME_WINDOW: True,
            "frame_index": dev,
            "windows_of": windows_of,
            "cut_ids": [store.cut_ids[c] for c in store.cut_of[index.numpy()]],
        }
        for name, rows in self.rows.items():
            batch[name] = rows[dev][:, None]
        return batch


def frame_source(
    data: TrainingData,
    config: Any,
    context: tuple[int, int] | None,
    rank: int = 0,
    world_size: int = 1,
    hooks: Sequence[CollateHook] = (),
    device: torch.device | str = "cpu",
) -> FrameBatches:
    """The frame-level batch source of a training (``data_path: frames``).

    Args:
        data: the training's checked inputs (its ``train`` split is loaded).
        config: the ``TrainConfig`` (``frame_batch_size``, ``seed``, ``num_workers``).
        context: the model's ``frame_context``; ``None`` (a sequence model) is refused.
        rank, world_size: this process's place in a data-parallel training.
        hooks: the utterance path's collate hooks; each must offer ``frame_rows``.
        device: where the split is held (the training device).

    Raises:
        ConfigError: a model without a fixed frame context, a hook without a frame
            form, or fewer frames than one batch per rank.
    """
    if context is None:
        arch = (getattr(config, "model", None) or {}).get("arch", "this model")
        raise ConfigError(
            f"data_path: frames trains frame classifiers with a fixed frame context (dnn, "
            f"tdnn); {arch} is a sequence model: train it with data_path: utterances"
        )
    for hook in hooks:
        if not callable(getattr(hook, "frame_rows", None)):
            name = getattr(hook, "__name__", type(hook).__name__)
            raise ConfigError(
                f"the batch hook {name} has no frame-level form: teachers that read their "
                "own inputs per cut (posteriors, plug-ins) cannot run on frame batches; "
                "cache their soft targets ('cache-soft-targets', distill.source: cache) "
                "or train with data_path: utterances"
            )
    start = time.time()
    store = FrameStore.load(
        data.train,
        data.normalizer,
        data.num_senones,
        device,
        int(getattr(config, "num_workers", 0)),
    )
    rows: dict[str, torch.Tensor] = {}
    for hook in hooks:
        for name, value in hook.frame_rows(data.train).items():
            rows[name] = torch.as_tensor(value).to(store.device)
    batch_size = int(getattr(config, "frame_batch_size", 256))
    passes = int(getattr(config, "frame_passes", 1))
    keep = None
    if data.drop_senones:
        drop = torch.as_tensor(data.drop_senones, device=store.device)
        keep = (~torch.isin(store.targets, drop)).cpu().numpy()
        logger.info("frame path: %d of %d training frames left out (their senones: %s)",
                    int((~keep).sum()), store.num_frames, list(data.drop_senones))  # fmt: skip
    augment = WindowAugment.of(config)
    source = FrameBatches(
        store, context, batch_size, int(config.seed), rank, world_size, rows, passes, keep,
        augment,
    )  # fmt: skip
    if augment.enabled:
        logger.info("frame path: every window perturbed (%s)", augment)
    if source.count() < 1:
        raise ConfigError(
            f"{store.num_frames} training frames make no batch of {batch_size} frames for "
            f"each of {world_size} ranks; lower frame_batch_size"
        )
    logger.info(
        "frame path: %d frames of %d cuts in memory on %s (%.0f MB, %s), %d batches of %d "
        "frames per epoch and rank, %.1f s",
        store.num_frames,
        len(store.cut_ids),
        store.device,
        (store.feats.numel() * 4 + sum(r.numel() * r.element_size() for r in rows.values())) / 1e6,
        ", ".join(["features", "targets", *rows]),
        source.count(),
        batch_size,
        time.time() - start,
    )
    return source
