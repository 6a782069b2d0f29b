"""Frame-level training data: normalised features and senone targets per padded batch.

The dataset is map-style in Lhotse's manner: the sampler yields a :class:`CutSet`
per batch and :meth:`SenoneDataset.__getitem__` loads and pads it::

    {"feats":   [B, T, F] float32, normalised with the training split's mean/var,
     "targets": [B, T] int64 senone ids, PAD_TARGET (-100) on padding,
     "lengths": [B] int64 frames per cut,
     "cut_ids": list of B cut ids}

Collate hooks add further per-frame entries (the distillation stage's soft targets)
without touching this module.

Batches come from Lhotse's :class:`DynamicBucketingSampler` through
:class:`EpochBatches`, which restarts an epoch part-way through for a resumed
training (see :mod:`asr_kd.train.loop`).
"""

from __future__ import annotations

import logging
import random
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lhotse import CutSet
from lhotse.cut import Cut
from lhotse.dataset import DynamicBucketingSampler

from asr_kd.checked import load_features, read_json
from asr_kd.data.manifests import find_cut_manifests, load_cuts
from asr_kd.errors import BadInputError, MissingInputError
from asr_kd.stage import require_done

logger = logging.getLogger(__name__)

TARGETS_STAGE = "senone-targets"
"""The stage that writes the targets (``asr_kd.tree.targets``), named in errors."""
TARGETS_KEY = "senones"
"""The cuts' custom TemporalArray with the senone targets (``asr_kd.tree.targets.SENONE_KEY``)."""
PAD_TARGET = -100
"""Target of padded frames (``torch.nn.functional.cross_entropy``'s ``ignore_index``)."""
UNLABELLED_KEY = "unlabelled"
"""A cut's custom flag: untranscribed audio, no senone targets (``asr_kd.transfer.unlabelled``)."""
UNLABELLED_TARGET = -1
"""Target of an unlabelled cut's frames: a real frame that only soft terms train on
(the hard cross-entropy and frame accuracy leave it out; ``asr_kd.distill.loss``)."""

Batch = dict[str, Any]
CollateHook = Callable[[CutSet, Batch], None]
"""Adds entries to a collated batch in place, e.g. ``batch["soft_targets"] = [B, T, K]``."""


class FeatureNormalizer:
    """Global mean and variance normalisation, ``(x - mean) / sqrt(var)``.

    Args:
        mean: ``[F]`` per-dimension mean of the training split's features.
        var: ``[F]`` variance.
    """

    def __init__(self, mean: Sequence[float] | np.ndarray, var: Sequence[float] | np.ndarray):
        self.mean = np.asarray(mean, dtype=np.float32)
        self.var = np.asarray(var, dtype=np.float64)
        self.scale = (1.0 / np.sqrt(np.maximum(self.var, 1e-10))).astype(np.float32)
        if self.mean.shape != self.scale.shape or self.mean.ndim != 1:
            raise ValueError(f"mean {self.mean.shape} and var must be equal-length vectors")

    @property
    def dim(self) -> int:
        return len(self.mean)

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        """``[T, F]`` features -> ``[T, F]`` float32 normalised features."""
        return (feats.astype(np.float32) - self.mean) * self.scale


class SenoneDataset(torch.utils.data.Dataset):
    """Loads, normalises and pads a batch of cuts with their senone targets.

    Args:
        normalizer: the training split's feature normaliser.
        num_senones: target ids must lie in ``0..num_senones-1``.
        hooks: called with ``(cuts, batch)`` after collation, in order.
        with_targets: ``False`` for cuts without targets (inference); then the
            batch has no ``"targets"``.
    """

    def __init__(
        self,
        normalizer: FeatureNormalizer,
        num_senones: int,
        hooks: Sequence[CollateHook] = (),
        with_targets: bool = True,
    ):
        self.normalizer = normalizer
        self.num_senones = num_senones
        self.hooks = tuple(hooks)
        self.with_targets = with_targets

    def __getitem__(self, cuts: CutSet) -> Batch:
        cuts = list(cuts)
        feats = [self._features(cut) for cut in cuts]
        lengths = torch.tensor([len(f) for f in feats], dtype=torch.int64)
        dim = self.normalizer.dim
        padded = torch.zeros(len(cuts), int(lengths.max()), dim, dtype=torch.float32)
        for i, f in enumerate(feats):
            padded[i, : len(f)] = torch.from_numpy(f)
        batch: Batch = {"feats": padded, "lengths": lengths, "cut_ids": [c.id for c in cuts]}
        if self.with_targets:
            targets = torch.full(padded.shape[:2], PAD_TARGET, dtype=torch.int64)
            for i, cut in enumerate(cuts):
                targets[i, : lengths[i]] = torch.from_numpy(self._targets(cut, int(lengths[i])))
            batch["targets"] = targets
        for hook in self.hooks:
            hook(CutSet.from_cuts(cuts), batch)
        return batch

    def _features(self, cut: Cut) -> np.ndarray:
        feats = load_features(cut)
        if feats.ndim != 2 or feats.shape[1] != self.normalizer.dim:
            raise BadInputError(
                f"cut {cut.id}: features of shape {feats.shape}, expected [T, "
                f"{self.normalizer.dim}] as the statistics ('compute-features')"
            )
        return self.normalizer(feats)

    def _targets(self, cut: Cut, num_frames: int) -> np.ndarray:
        if is_unlabelled(cut):
            return np.full(num_frames, UNLABELLED_TARGET, dtype=np.int64)
        if not cut.has_custom(TARGETS_KEY):
            raise BadInputError(
                f"cut {cut.id} has no '{TARGETS_KEY}' targets: run '{TARGETS_STAGE}' first"
            )
        targets = np.asarray(cut.load_custom(TARGETS_KEY)).reshape(-1)
        if len(targets) != num_frames:
            raise BadInputError(
                f"cut {cut.id}: {len(targets)} senone targets for {num_frames} feature frames; "
                f"rerun '{TARGETS_STAGE}' with the features the model trains on"
            )
        targets = np.rint(targets).astype(np.int64)
        if len(targets) and (targets.min() < 0 or targets.max() >= self.num_senones):
            raise BadInputError(
                f"cut {cut.id}: senone ids {targets.min()}..{targets.max()} outside "
                f"0..{self.num_senones - 1}; were the targets made with another tree? "
                f"(rerun '{TARGETS_STAGE}')"
            )
        return targets


def is_unlabelled(cut: Cut) -> bool:
    """Whether a cut is untranscribed audio (custom ``unlabelled: true``), without targets."""
    return bool((cut.custom or {}).get(UNLABELLED_KEY, False))


def read_targets_info(data_dir: Path | str) -> dict[str, Any]:
    """``info.json`` of a finished senone-target directory (``num_senones``, ``tree_id``)."""
    data_dir = require_done(data_dir, TARGETS_STAGE)
    info = read_json(data_dir / "info.json", TARGETS_STAGE)
    for key in ("num_senones", "tree_id"):
        if key not in info:
            raise BadInputError(f"{data_dir}/info.json has no '{key}'; rerun '{TARGETS_STAGE}'")
    return info


def load_split(data_dir: Path | str, split: str) -> CutSet:
    """The cuts (features + senone targets) of ``split`` in a senone-target directory."""
    manifests = find_cut_manifests(data_dir, TARGETS_STAGE)
    if split not in manifests:
        raise MissingInputError(
            f"{data_dir} has no '{split}' split (found: {', '.join(sorted(manifests))})"
        )
    return load_cuts(manifests[split][1], TARGETS_STAGE)


def check_cuts(cuts: CutSet, feat_dim: int, split: str) -> None:
    """Check every cut's features and targets from the manifest alone (no array reads).

    Raises:
        BadInputError: naming the cut and the stage that writes the bad part.
    """
    for cut in cuts:
        if cut.features is None or not cut.num_frames:
            raise BadInputError(f"cut {cut.id} ({split}) has no features: run 'compute-features'")
        if cut.num_features != feat_dim:
            raise BadInputError(
                f"cut {cut.id} ({split}) has {cut.num_features}-dim features but the "
                f"statistics {feat_dim}: pass the feature directory the targets were made on"
            )
        if is_unlabelled(cut):
            continue
        if not cut.has_custom(TARGETS_KEY):
            raise BadInputError(
                f"cut {cut.id} ({split}) has no '{TARGETS_KEY}' targets: run '{TARGETS_STAGE}'"
            )
        frames = getattr(cut.custom[TARGETS_KEY], "shape", [None])[0]
        if frames != cut.num_frames:
            raise BadInputError(
                f"cut {cut.id} ({split}): {frames} senone targets for {cut.num_frames} feature "
                f"frames; rerun '{TARGETS_STAGE}' with the features the model trains on"
            )


def _speaker(cut: Cut) -> str:
    sups = getattr(cut, "supervisions", None) or []
    return (sups[0].speaker if sups and sups[0].speaker else None) or cut.id


def select_subset(cuts: CutSet, fraction: float, seed: int) -> CutSet:
    """A deterministic random ``fraction`` of ``cuts`` (at least one), stratified by speaker.

    Each speaker keeps its share of the subset (largest-remainder rounding of
    ``fraction`` x its cuts, remainders tied at random), so a small subset keeps the
    speaker mix of the whole: a plain random 3% of ``small`` drew 23 male and 11 female
    utterances, and its models lost 6-7 points from dev to test. The choice depends
    only on the set of cut ids and speakers, ``fraction`` and ``seed``, not on the
    manifest's order.
    """
    if fraction >= 1.0:
        return cuts
    rng = random.Random(seed)
    by_speaker: dict[str, list[str]] = {}
    for cut in cuts:
        by_speaker.setdefault(_speaker(cut), []).append(cut.id)
    speakers = sorted(by_speaker)
    total = max(1, round(fraction * sum(len(v) for v in by_speaker.values())))
    quota = {s: int(fraction * len(by_speaker[s])) for s in speakers}
    ranked = sorted(
        speakers, key=lambda s: (-(fraction * len(by_speaker[s]) - quota[s]), rng.random())
    )
    for s in ranked[: max(0, total - sum(quota.values()))]:
        quota[s] += 1
    keep: set[str] = set()
    for s in speakers:
        keep.update(rng.sample(sorted(by_speaker[s]), quota[s]))
    return cuts.filter(lambda cut: cut.id in keep).to_eager()


def make_sampler(
    cuts: CutSet, max_duration: float, shuffle: bool, seed: int
) -> DynamicBucketingSampler:
    """Lhotse's dynamic bucketing sampler over all the cuts (one process's view).

    The sampler is built alike on every rank (``world_size=1``) and
    :class:`EpochBatches` deals its batches out to the ranks, so the sequence of
    batches does not depend on the number of ranks. (Lhotse's own ``world_size``
    would change it: with bucket sync every rank takes the same bucket, and without
    it Lhotse 1.33 can stop an epoch early when it picks an empty bucket, dropping
    the cuts left.)
    """
    num_buckets = min(10, len(cuts))
    bins = None if num_buckets >= 2 else [max(c.duration for c in cuts) + 1.0]
    with warnings.catch_warnings():
        # The cuts are small enough to hold in memory; lhotse warns about eager cut sets.
        warnings.filterwarnings("ignore", message=".*eagerly read CutSet.*")
        warnings.filterwarnings("ignore", message=".*buffer_size.*")
        return DynamicBucketingSampler(
            cuts,
            max_duration=max_duration,
            shuffle=shuffle,
            seed=seed,
            num_buckets=max(num_buckets, 2),
            duration_bins=bins,
            world_size=1,
            rank=0,
        )


class EpochBatches:
    """This rank's batches of one epoch, optionally from the ``skip``-th on (a resume).

    Rank ``r`` of ``W`` takes batch ``r`` of every ``W`` consecutive batches of the
    sampler. The cuts of a last incomplete group are split into ``W`` parts (dropped
    if fewer than ``W`` cuts), so every rank gets as many batches. Used as a
    DataLoader's sampler; the loop records how many batches it consumed rather than
    the Lhotse sampler's position, which DataLoader workers' prefetching runs ahead.

    Args:
        sampler: from :func:`make_sampler`.
        world_size, rank: this process's place in a data-parallel training.
    """

    def __init__(self, sampler: DynamicBucketingSampler, world_size: int = 1, rank: int = 0):
        self.sampler = sampler
        self.world_size, self.rank = world_size, rank
        self.epoch = 0
        self.skip = 0

    def start(self, epoch: int, skip: int = 0) -> None:
        """The next iteration yields epoch ``epoch`` from its ``skip``-th batch on."""
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Iterator[CutSet]:
        self.sampler.set_epoch(self.epoch)
        self.sampler.allow_iter_to_reset_state()
        batches = iter(self.sampler)  # a Lhotse sampler is its own iterator; never iter() it again
        index = 0
        while group := _take(batches, self.world_size):
            if len(group) < self.world_size:
                cuts = [cut for batch in group for cut in batch]
                if len(cuts) < self.world_size:
                    return
                parts = np.array_split(np.arange(len(cuts)), self.world_size)
                group = [CutSet.from_cuts(cuts[i] for i in part) for part in parts]
            if index >= self.skip:
                yield group[self.rank]
            index += 1

    def count(self, epoch: int = 0) -> int:
        """This rank's batches in ``epoch`` (reads manifests only)."""
        self.start(epoch)
        return sum(1 for _ in self)


def _take(batches: Iterator[CutSet], n: int) -> list[CutSet]:
    out = []
    for _ in range(n):
        batch = next(batches, None)
        if batch is None:
            break
        out.append(batch)
    return out


def _worker_init(_: int) -> None:
    # Never share an HDF5 handle opened before the fork.
    from lhotse.features.io import close_cached_file_handles

    close_cached_file_handles()


def make_loader(
    dataset: SenoneDataset, batches: EpochBatches | Any, num_workers: int
) -> torch.utils.data.DataLoader:
    """A DataLoader over Lhotse batches that leaves the global torch RNG alone.

    (A DataLoader draws its workers' base seed from the global RNG unless it has its
    own generator; a resumed training would then draw a different dropout mask.)
    """
    return torch.utils.data.DataLoader(
        dataset,
        sampler=batches,
        batch_size=None,
        num_workers=num_workers,
        worker_init_fn=_worker_init if num_workers else None,
        generator=torch.Generator().manual_seed(0),
    )


@dataclass(frozen=True)
class TrainingData:
    """The checked inputs of a training.

    Attributes:
        train, dev: the cuts (``train`` already reduced to ``train_fraction``).
        normalizer: the training split's feature statistics.
        num_senones, tree_id: the senone inventory of the targets.
        frame_shift: seconds per frame.
        train_total: training cuts before sub-sampling.
        drop_senones: senones whose training frames the frame path leaves out (a
            ``TrainConfig.omit_phone``'s senones).
    """

    train: CutSet
    dev: CutSet
    normalizer: FeatureNormalizer
    num_senones: int
    tree_id: str
    frame_shift: float
    train_total: int
    train_total_frames: int = 0
    drop_senones: tuple[int, ...] = ()

    @property
    def feat_dim(self) -> int:
        return self.normalizer.dim


def load_training_data(
    data_dir: Path | str,
    feature_dir: Path | str,
    train_split: str = "train",
    dev_split: str = "dev",
    train_fraction: float = 1.0,
    subset_seed: int = 0,
) -> TrainingData:
    """Read and check a senone-target directory and the feature statistics.

    Raises:
        MissingInputError: a stage has not run, or a split is missing.
        BadInputError: a cut without features or targets, or a frame-count mismatch.
    """
    from asr_kd.data.features import load_stats

    info = read_targets_info(data_dir)
    stats, _ = load_stats(require_done(feature_dir, "compute-features"))
    normalizer = FeatureNormalizer(stats.mean, stats.var)
    train, dev = load_split(data_dir, train_split), load_split(data_dir, dev_split)
    check_cuts(train, normalizer.dim, train_split)
    check_cuts(dev, normalizer.dim, dev_split)
    subset = select_subset(train, train_fraction, subset_seed)
    return TrainingData(
        train=subset,
        dev=dev,
        normalizer=normalizer,
        num_senones=int(info["num_senones"]),
        tree_id=str(info["tree_id"]),
        frame_shift=float(next(iter(train)).frame_shift),
        train_total=len(train),
        train_total_frames=sum(c.num_frames or 0 for c in train),
    )
