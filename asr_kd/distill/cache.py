"""The teachers' soft targets cached as top-k per frame (``asr-kd cache-soft-targets``).

The teachers (one ``asr_kd.teachers.EnsembleTeacher``, as on the fly) give the
combined log-probabilities of each batch at temperature ``T``, ``[B, T, S]``; the
stage runs them over a split once and stores the k most probable senones per frame::

    <cache>/<corpus>_cuts_<split>.jsonl.gz  the senone-target cuts plus two custom
                                            TemporalArrays: "soft_idx" int32 [T, k] and
                                            "soft_prob" float16 (or float32) [T, k]
    <cache>/soft_<split>.h5                 those arrays (lhotse NumpyHdf5Writer)
    <cache>/info.json                       teachers (and their model.pt digests),
                                            combination, weights, temperature, k,
                                            prob_dtype, tree_id, num_senones,
                                            frame_shift, per split: cuts, frames, hours,
                                            bytes, bytes_per_hour, mean probability mass
                                            kept by the top k; bytes_per_hour overall

:class:`CachedSoftTargets` is the collate hook that feeds them to the distillation
(``batch["soft_idx"]`` int64 and ``batch["soft_prob"]`` float32, ``[B, T, k]``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from lhotse import CutSet, NumpyHdf5Writer
from lhotse.dataset import SimpleCutSampler

from asr_kd.checked import check_h5, read_json
from asr_kd.config import to_dict
from asr_kd.data.manifests import find_cut_manifests, load_cuts, relocate_storage
from asr_kd.errors import BadInputError, ConfigError
from asr_kd.stage import read_marker, require_done, stage_output
from asr_kd.teachers import EnsembleTeacher, load, teacher_digests
from asr_kd.train.dataset import (
    TARGETS_STAGE,
    Batch,
    FeatureNormalizer,
    SenoneDataset,
    check_cuts,
    load_split,
    make_loader,
    read_targets_info,
)

if TYPE_CHECKING:
    from asr_kd.distill.train import DistillConfig

logger = logging.getLogger(__name__)

CACHE_STAGE = "cache-soft-targets"
SOFT_IDX = "soft_idx"
SOFT_PROB = "soft_prob"
SOFT_MASS = "soft_mass"
ROWS = "probabilities"
"""info.json ``rows``: the cached rows are the teacher's probabilities, not renormalised
(their sum is the mass the k senones hold; caches without the key were renormalised)."""


def top_k(log_probs: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k most probable senones per frame.

    Args:
        log_probs: ``[..., S]`` log-probabilities.
        k: senones kept per frame (``k <= S``).

    Returns:
        ``(indices [..., k] int64, probs [..., k] renormalised over the k, mass [...]
        probability the k held before renormalising)``.
    """
    values, indices = log_probs.topk(k, dim=-1)
    return indices, torch.softmax(values, dim=-1), values.exp().sum(-1)


class CachedSoftTargets:
    """Collate hook: the cached top-k soft targets of every cut in a batch.

    Adds ``batch["soft_idx"]`` (int64) and ``batch["soft_prob"]`` (float32, rows
    renormalised), both ``[B, T, k]``, zero on padding frames, and ``batch["soft_mass"]``
    ``[B, T]``: the probability the k senones held (1 for a cache of renormalised rows).

    Args:
        arrays: cut id -> (``soft_idx``, ``soft_prob``) array manifests.
        num_senones: indices must lie below it.
        where: the cache directory (named in errors).
    """

    def __init__(self, arrays: dict[str, tuple[Any, Any]], num_senones: int, where: str):
        self.arrays = arrays
        self.num_senones = num_senones
        self.where = where

    @classmethod
    def from_dir(cls, cache_dir: Path | str, split: str) -> CachedSoftTargets:
        """Read the ``split`` manifest of a finished cache."""
        cache_dir = Path(cache_dir)
        info = read_cache_info(cache_dir)
        manifests = find_cut_manifests(cache_dir, CACHE_STAGE)
        if split not in manifests:
            raise BadInputError(
                f"{cache_dir} holds no soft targets for split '{split}' (cached: "
                f"{', '.join(sorted(manifests))}); rerun '{CACHE_STAGE}' with --split {split}"
            )
        arrays = {}
        for cut in load_cuts(manifests[split][1], CACHE_STAGE):
            if not (cut.has_custom(SOFT_IDX) and cut.has_custom(SOFT_PROB)):
                raise BadInputError(f"cut {cut.id} in {cache_dir} lacks its soft targets; rerun "
                                    f"'{CACHE_STAGE}'")  # fmt: skip
            arrays[cut.id] = (cut.custom[SOFT_IDX], cut.custom[SOFT_PROB])
        return cls(arrays, int(info["num_senones"]), str(cache_dir))

    def check(self, cuts: CutSet) -> None:
        """Every cut has cached targets with its feature frame count (manifests only).

        Raises:
            BadInputError: naming the first cut without targets or with a mismatch.
        """
        for cut in cuts:
            if cut.id not in self.arrays:
                raise BadInputError(
                    f"cut {cut.id} has no cached soft targets in {self.where}; the cache was "
                    f"made from other cuts: rerun '{CACHE_STAGE}' on this senone-target directory"
                )
            frames = self.arrays[cut.id][0].shape[0]
            if frames != cut.num_frames:
                raise BadInputError(
                    f"cut {cut.id}: {frames} cached soft-target frames for {cut.num_frames} "
                    f"feature frames in {self.where}; rerun '{CACHE_STAGE}' with these features"
                )

    def __call__(self, cuts: CutSet, batch: Batch) -> None:
        lengths = batch["lengths"].tolist()
        loaded = [self._rows(cut.id, n) for cut, n in zip(cuts, lengths, strict=True)]
        k = loaded[0][0].shape[1]
        shape = (len(loaded), int(batch["feats"].shape[1]), k)
        idx, prob = torch.zeros(shape, dtype=torch.int64), torch.zeros(shape)
        mass = torch.ones(shape[:2])
        for b, (i, p, m) in enumerate(loaded):
            idx[b, : len(i)], prob[b, : len(p)], mass[b, : len(m)] = i, p, m
        batch[SOFT_IDX], batch[SOFT_PROB], batch[SOFT_MASS] = idx, prob, mass

    def frame_rows(self, cuts: CutSet) -> dict[str, torch.Tensor]:
        """Every frame's targets of ``cuts``, cut after cut, for the frame-level path
        (``asr_kd.train.frames``): ``soft_idx``, ``soft_prob`` ``[frames, k]`` and
        ``soft_mass`` ``[frames]``, as :meth:`__call__` fills a batch."""
        rows = [self._rows(cut.id, cut.num_frames) for cut in cuts]
        return {key: torch.cat([r[j] for r in rows]) for j, key in
                enumerate((SOFT_IDX, SOFT_PROB, SOFT_MASS))}  # fmt: skip

    def _rows(self, cut_id: str, frames: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A cut's indices (int64), renormalised probabilities and the mass they held."""
        idx, p = self._load(cut_id, frames)
        p = p.astype(np.float32)
        total = np.maximum(p.sum(1, keepdims=True), 1e-30)
        rows = (idx.astype(np.int64), p / total, np.minimum(total[:, 0], 1.0))
        return tuple(torch.from_numpy(r) for r in rows)

    def _load(self, cut_id: str, frames: int) -> tuple[np.ndarray, np.ndarray]:
        if cut_id not in self.arrays:
            raise BadInputError(f"cut {cut_id} has no cached soft targets in {self.where}")
        idx_array, prob_array = self.arrays[cut_id]
        idx, prob = np.asarray(idx_array.load()), np.asarray(prob_array.load())
        if len(idx) != frames or idx.shape != prob.shape:
            raise BadInputError(
                f"cut {cut_id}: cached soft targets {idx.shape}/{prob.shape} for {frames} "
                f"feature frames in {self.where}; rerun '{CACHE_STAGE}'"
            )
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_senones):
            raise BadInputError(f"cut {cut_id}: cached senone ids outside 0..{self.num_senones - 1}"
                                f" in {self.where}; rerun '{CACHE_STAGE}'")  # fmt: skip
        if prob.size and not (np.isfinite(prob).all() and prob.min() >= 0):
            raise BadInputError(
                f"cut {cut_id}: cached soft targets hold NaN, Inf or negative probabilities "
                f"in {self.where}; rerun '{CACHE_STAGE}'"
            )
        return idx, prob


def read_cache_info(cache_dir: Path | str) -> dict[str, Any]:
    """``info.json`` of a finished ``cache-soft-targets`` output."""
    cache_dir = require_done(Path(cache_dir), CACHE_STAGE)
    stage = read_marker(cache_dir).get("stage")
    if stage != CACHE_STAGE:
        raise BadInputError(f"{cache_dir} was written by '{stage}', not '{CACHE_STAGE}'")
    for archive in sorted(cache_dir.glob("*.h5")):  # a truncated archive fails here, not mid-way
        check_h5(archive, CACHE_STAGE)
    return read_json(cache_dir / "info.json", CACHE_STAGE)


def check_cache(
    info: dict[str, Any], where: str, tree_id: str, num_senones: int, config: DistillConfig
) -> None:
    """Refuse a cache made for another tree or temperature (or, when the distillation
    config names teachers, for other teachers, combination, weights or k).

    Raises:
        BadInputError: naming the cache and both values.
    """
    expected = {"tree_id": tree_id, "num_senones": num_senones, "temperature": config.temperature}
    if config.teachers:
        expected.update(
            teachers=list(config.teachers),
            combination=config.combination,
            weights=None if config.weights is None else list(config.weights),
            k=config.k,
            teacher_digests=teacher_digests(config.teachers),
        )
    for key, want in expected.items():
        have = info.get(key)
        if have != want and not (key == "temperature" and _same_float(have, want)):
            raise BadInputError(
                f"the soft-target cache {where} was made with {key}={have!r} but the "
                f"distillation needs {key}={want!r}; rerun '{CACHE_STAGE}' for it"
            )


def _same_float(a: Any, b: Any) -> bool:
    return isinstance(a, int | float) and isinstance(b, int | float) and abs(a - b) < 1e-9


def cache_soft_targets(
    data_dir: Path | str,
    feature_dir: Path | str,
    out_dir: Path | str,
    config: DistillConfig,
    *,
    splits: Sequence[str] = ("train",),
    device: str = "auto",
    max_duration: float = 200.0,
    num_workers: int = 0,
    force: bool = False,
) -> Path:
    """Store the teachers' top-k soft targets per frame (``asr-kd cache-soft-targets``).

    Args:
        data_dir: a finished ``senone-targets`` output (the cuts to cache).
        feature_dir: its ``compute-features`` output (the statistics the batches are
            normalised with; each teacher maps them to its own).
        out_dir: the cache directory to write (see the module docstring).
        config: ``teachers``, ``combination``, ``weights``, ``temperature``, ``k``,
            ``prob_dtype`` and ``amp`` are used.
        splits: the splits to cache (distillation reads its training split).
        device: ``auto``, ``cpu`` or ``cuda`` for the teachers.
        max_duration: seconds of audio per teacher batch.
        num_workers: DataLoader workers reading features.
        force: redo a finished output.
    """
    from asr_kd.data.features import load_stats
    from asr_kd.train.distributed import resolve_device

    data_dir = require_done(Path(data_dir).resolve(), TARGETS_STAGE)
    feature_dir = require_done(Path(feature_dir).resolve(), "compute-features")
    out_dir = Path(out_dir).resolve()
    if not config.teachers:
        raise ConfigError(f"'{CACHE_STAGE}' needs the teachers (distill.teachers)")
    info = read_targets_info(data_dir)
    num_senones, tree = int(info["num_senones"]), str(info["tree_id"])
    if config.k > num_senones:
        raise ConfigError(f"k={config.k} exceeds the tree's {num_senones} senones")
    stage_config = {
        "data_dir": str(data_dir),
        "feature_dir": str(feature_dir),
        "splits": list(splits),
        **_teacher_fields(config),
    }
    with stage_output(out_dir, CACHE_STAGE, stage_config, force) as tmp:
        if tmp is None:
            return out_dir
        start = time.time()
        stats, _ = load_stats(feature_dir)
        normalizer = FeatureNormalizer(stats.mean, stats.var)
        manifests = find_cut_manifests(data_dir, TARGETS_STAGE)
        first = load_split(data_dir, splits[0])
        dev = resolve_device(device)
        ensemble = load(
            list(config.teachers), tree, num_senones, float(next(iter(first)).frame_shift), dev,
            config.amp, combination=config.combination, weights=config.weights,
        )  # fmt: skip
        ensemble.set_batch_normalizer(normalizer)
        out = {**_teacher_fields(config), "rows": ROWS, "tree_id": tree, "num_senones": num_senones,
               "frame_shift": float(next(iter(first)).frame_shift), "splits": {}}  # fmt: skip
        for split in splits:
            cuts = load_split(data_dir, split)
            check_cuts(cuts, normalizer.dim, split)
            writer_path = tmp / f"soft_{split}.h5"
            with NumpyHdf5Writer(writer_path) as writer:
                cached, stats_ = _cache_split(
                    cuts, ensemble, normalizer, num_senones, config, writer, dev,
                    max_duration, num_workers, split,
                )  # fmt: skip
            name = f"{manifests[split][0]}_cuts_{split}.jsonl.gz"
            relocate_storage(CutSet.from_cuts(cached), tmp, out_dir).to_file(tmp / name)
            size = writer_path.stat().st_size
            stats_.update(bytes=size, bytes_per_hour=round(size / max(stats_["hours"], 1e-9)))
            out["splits"][split] = stats_
        total = sum(s["bytes"] for s in out["splits"].values())
        hours = sum(s["hours"] for s in out["splits"].values())
        out["bytes_per_hour"] = round(total / max(hours, 1e-9))
        out["seconds"] = round(time.time() - start, 2)
        (tmp / "info.json").write_text(json.dumps(out, indent=2) + "\n")
        logger.info(
            "%s: cached top-%d soft targets (T=%g) of %d teacher(s) for %s: %.1f MB per hour "
            "of audio, %.1f s; wrote %s",
            CACHE_STAGE, config.k, config.temperature, len(config.teachers), ", ".join(splits),
            out["bytes_per_hour"] / 1e6, out["seconds"], out_dir,
        )  # fmt: skip
    return out_dir


def _teacher_fields(config: DistillConfig) -> dict[str, Any]:
    d = to_dict(config)
    keys = ("teachers", "combination", "weights", "temperature", "k", "prob_dtype")
    return {key: d[key] for key in keys} | {"teacher_digests": teacher_digests(config.teachers)}


def _cache_split(
    cuts: CutSet,
    ensemble: EnsembleTeacher,
    normalizer: FeatureNormalizer,
    num_senones: int,
    config: DistillConfig,
    writer: NumpyHdf5Writer,
    device: torch.device,
    max_duration: float,
    workers: int,
    split: str,
) -> tuple[list, dict[str, Any]]:
    from tqdm import tqdm

    by_id = {cut.id: cut for cut in cuts}
    sampler = SimpleCutSampler(cuts.sort_by_duration(), max_duration=max_duration)
    dataset = SenoneDataset(normalizer, num_senones, ensemble.collate_hooks(), with_targets=False)
    out, frames, mass = {}, 0, 0.0
    dtype = np.dtype(config.prob_dtype)
    for batch in tqdm(make_loader(dataset, sampler, workers), desc=f"{CACHE_STAGE} {split}"):
        log_probs = ensemble.batch_log_probs(batch, config.temperature, device)
        indices, probs, kept = top_k(log_probs, config.k)
        indices, probs, kept = indices.cpu(), probs.cpu(), kept.cpu()
        for b, (cid, n) in enumerate(zip(batch["cut_ids"], batch["lengths"].tolist(), strict=True)):
            cut = by_id[cid]
            if n != cut.num_frames:
                raise BadInputError(
                    f"cut {cid}: its features hold {n} frames but its manifest says "
                    f"{cut.num_frames}; rerun 'compute-features' and 'senone-targets'"
                )
            shift = cut.frame_shift
            a = writer.store_array(f"{cid}.idx", indices[b, :n].numpy().astype(np.int32),
                                   frame_shift=shift, temporal_dim=0)  # fmt: skip
            true = probs[b, :n] * kept[b, :n, None]  # rows keep their mass (ROWS)
            p = writer.store_array(f"{cid}.prob", true.numpy().astype(dtype),
                                   frame_shift=shift, temporal_dim=0)  # fmt: skip
            out[cid] = cut.with_custom(SOFT_IDX, a).with_custom(SOFT_PROB, p)
            frames += n
            mass += float(kept[b, :n].double().sum())
    hours = sum(c.duration for c in cuts) / 3600
    stats = {"cuts": len(out), "frames": frames, "hours": round(hours, 6),
             "mean_mass_kept": round(mass / max(frames, 1), 6)}  # fmt: skip
    return [out[cut.id] for cut in cuts], stats
