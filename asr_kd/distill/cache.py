"""Soft targets from the teachers: per batch on the fly, or cached as top-k per frame.

:class:`TeacherEnsemble` turns a collated training batch into the combined teachers'
log-probabilities at temperature ``T``, ``[B, T, S]``. Which inputs a teacher sees:

* a teacher backed by an acoustic model with feature statistics (it exposes ``model``
  and ``normalizer`` or ``info.normalizer``, as a registry model's teacher does) runs
  in the same batch as the student, on ``batch["feats"]``: those are normalised with
  the student's statistics, so they are mapped affinely to the teacher's own
  (``x * sqrt(var_s / var_t) + (mean_s - mean_t) / sqrt(var_t)``, per dimension, on
  the device; the identity when the statistics match). Frozen, in eval mode, without
  gradients and with bf16 autocast on CUDA (``amp="auto"``).
* any other teacher (precomputed posteriors, a plug-in with its own input
  processing) gets the raw cuts: a collate hook puts the batch's cuts in
  ``batch["cuts"]`` and ``Teacher.log_probs(cut, T)`` is called per cut.

The ``cache-soft-targets`` stage runs the same code over a split once and stores the
k most probable senones per frame, renormalised over the k::

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
from collections.abc import Mapping, Sequence
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
from asr_kd.stage import file_digest, read_marker, require_done, stage_output
from asr_kd.train.config import resolve_amp
from asr_kd.train.dataset import (
    TARGETS_STAGE,
    Batch,
    CollateHook,
    FeatureNormalizer,
    SenoneDataset,
    check_cuts,
    load_split,
    make_loader,
    read_targets_info,
)
from asr_kd.train.evaluate import autocast

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
CUTS_KEY = "cuts"
"""``batch["cuts"]``: the batch's cuts, for teachers that read their own inputs."""


def attach_cuts(cuts: CutSet, batch: Batch) -> None:
    """Collate hook: keep the batch's cuts (in batch order) as ``batch["cuts"]``."""
    batch[CUTS_KEY] = list(cuts)


class TeacherEnsemble:
    """Frozen teachers whose combined log-probabilities are the soft targets of a batch.

    Args:
        teachers: objects of the ``asr_kd.teachers.Teacher`` protocol; network teachers
            (a ``model`` attribute and a ``normalizer``, ``None`` meaning raw features)
            run on the batch's features, the others per batch of cuts (module doc).
        combination: ``arithmetic`` or ``geometric`` (``asr_kd.ensemble.combine``).
        weights: one per teacher, or ``None`` for equal weights.
        normalizer: the statistics ``batch["feats"]`` were normalised with.
        amp: ``auto`` (bf16 on CUDA), ``bf16`` or ``off`` for the network teachers.
    """

    def __init__(
        self,
        teachers: Sequence[Any],
        combination: str,
        weights: Sequence[float] | None,
        normalizer: FeatureNormalizer,
        amp: str = "auto",
    ):
        if not teachers:
            raise ConfigError("distillation needs at least one teacher")
        if weights is not None and len(weights) != len(teachers):
            raise ConfigError(f"{len(weights)} weights for {len(teachers)} teachers")
        self.teachers = list(teachers)
        self.combination = combination
        self.weights = None if weights is None else tuple(float(w) for w in weights)
        self.amp = amp
        self._batched = [_batched_model(t, normalizer) for t in self.teachers]

    @classmethod
    def load(
        cls,
        specs: Sequence[Any],
        *,
        tree_id: str,
        num_senones: int,
        frame_shift: float,
        normalizer: FeatureNormalizer,
        combination: str = "arithmetic",
        weights: Sequence[float] | None = None,
        device: str | torch.device = "auto",
        amp: str = "auto",
    ) -> TeacherEnsemble:
        """Load the teachers ``specs`` name, refusing any of another tree or frame shift.

        A spec may also name an ensemble (``ensemble:A,B[:method]`` or an ensemble
        file, see ``asr_kd.ensemble.load_system``): when it is the only spec, its members
        are combined here (batched), and its method and weights must be the config's.
        """
        try:
            from asr_kd.ensemble.evaluate import load_system as load
        except ImportError:  # the ensemble package is optional here
            from asr_kd.teachers import load_teacher as load

        expect = {"expect_tree_id": tree_id, "expect_num_senones": num_senones,
                  "expect_frame_shift": frame_shift, "device": device, "amp": amp}  # fmt: skip
        teachers = [load(spec, **expect) for spec in specs]
        if len(teachers) == 1 and hasattr(teachers[0], "members"):
            ens = teachers[0]
            ours = _normalised(weights, len(ens.members))
            same = len(ours) == len(ens.weights) and np.allclose(ours, ens.weights)
            if ens.method != combination or not same:
                raise ConfigError(
                    f"the ensemble {specs[0]!r} combines by {ens.method} with weights "
                    f"{ens.weights} but distill says {combination} with {weights}; make "
                    "distill.combination and distill.weights agree with it"
                )
            teachers = list(ens.members)
            weights = None if weights is None else ens.weights
        return cls(teachers, combination, weights, normalizer, amp)

    @property
    def batched(self) -> list[bool]:
        """Per teacher: whether it runs on the batch's features (else on the cuts)."""
        return [b is not None for b in self._batched]

    def collate_hooks(self) -> list[CollateHook]:
        """The hooks the batches need (the cuts, when a teacher reads its own inputs)."""
        return [] if all(self.batched) else [attach_cuts]

    @torch.no_grad()
    def log_probs(self, batch: Batch, temperature: float, device: torch.device) -> torch.Tensor:
        """``[B, T, S]`` float32 combined log-probabilities at ``temperature`` on ``device``.

        Padding frames hold the uniform distribution.

        Raises:
            BadInputError: a teacher gave another number of frames than a cut's features.
        """
        outs = [self._one(i, batch, temperature, device) for i in range(len(self.teachers))]
        if len(outs) == 1:
            return outs[0]
        from asr_kd.ensemble.combine import combine_log_probs

        return combine_log_probs(torch.stack(outs), self.combination, self.weights).float()

    def _one(self, i: int, batch: Batch, temperature: float, device: torch.device) -> torch.Tensor:
        entry = self._batched[i]
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
                f"teacher {_name(self.teachers[i], i)} turned {tuple(feats.shape[:2])} frames "
                f"into {tuple(logits.shape[:2])}; a hybrid teacher gives one output per frame"
            )
        out = torch.log_softmax(logits.float() / temperature, dim=-1)
        valid = torch.arange(out.shape[1], device=device) < lengths[:, None]
        return out.masked_fill(~valid[..., None], -float(np.log(out.shape[-1])))

    def _from_cuts(self, i: int, batch: Batch, temperature: float, device) -> torch.Tensor:
        cuts, teacher = batch.get(CUTS_KEY), self.teachers[i]
        if cuts is None:
            raise ValueError("teachers that read cuts need batch['cuts']: add the attach_cuts hook")
        lengths = batch["lengths"].tolist()
        if hasattr(teacher, "log_probs_batch"):
            out, got = teacher.log_probs_batch(cuts, temperature)
            got = [int(n) for n in got]
        else:
            rows = [torch.as_tensor(np.asarray(teacher.log_probs(c, temperature))) for c in cuts]
            got = [len(r) for r in rows]
            out = torch.full((len(rows), max(got), rows[0].shape[-1]), -np.log(rows[0].shape[-1]))
            for b, r in enumerate(rows):
                out[b, : len(r)] = r
        for cut, n, m in zip(cuts, lengths, got, strict=True):
            if n != m:
                raise BadInputError(
                    f"cut {cut.id}: teacher {_name(teacher, i)} gave {m} frames of log-probs "
                    f"for {n} feature frames; its posteriors must come from these features"
                )
        out = out.to(device=device, dtype=torch.float32)
        frames = int(batch["feats"].shape[1])
        if out.shape[1] < frames:  # pad to the batch's frames (uniform rows)
            pad = out.new_full((out.shape[0], frames - out.shape[1], out.shape[2]),
                               -float(np.log(out.shape[2])))  # fmt: skip
            out = torch.cat([out, pad], dim=1)
        return out[:, :frames]


def _normalised(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None or len(weights) != n:
        return [1.0 / n] * n if weights is None else list(weights)
    total = float(sum(weights))
    return [float(w) / total for w in weights]


def _name(teacher: Any, i: int) -> str:
    return str(getattr(teacher, "name", None) or f"{i + 1}")


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
            f"teacher {_name(teacher, 0)} takes {own.dim}-dim features but the student's are "
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
        loaded = [self._load(cut.id, n) for cut, n in zip(cuts, lengths, strict=True)]
        k = loaded[0][0].shape[1]
        shape = (len(loaded), int(batch["feats"].shape[1]), k)
        idx, prob = torch.zeros(shape, dtype=torch.int64), torch.zeros(shape)
        mass = torch.ones(shape[:2])
        for b, (i, p) in enumerate(loaded):
            idx[b, : len(i)] = torch.from_numpy(i.astype(np.int64))
            p = p.astype(np.float32)
            total = np.maximum(p.sum(1, keepdims=True), 1e-30)
            prob[b, : len(p)] = torch.from_numpy(p / total)
            mass[b, : len(p)] = torch.from_numpy(np.minimum(total[:, 0], 1.0))
        batch[SOFT_IDX], batch[SOFT_PROB], batch[SOFT_MASS] = idx, prob, mass

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


def teacher_model_file(spec: Any) -> Path | None:
    """The ``model.pt`` a teacher spec points at (a training directory or the file), if any."""
    if isinstance(spec, Mapping):
        paths = [spec[k] for k in ("model", "path", "dir") if isinstance(spec.get(k), str)]
        spec = paths[0] if paths else None
    if not isinstance(spec, str | Path):
        return None
    path = Path(spec)
    if path.is_dir() and (path / "specialists.json").is_file():  # the generalist's architecture
        return teacher_model_file(json.loads((path / "specialists.json").read_text())["generalist"])
    if path.is_dir() and (path / "model.pt").is_file():
        return path / "model.pt"
    return path if path.is_file() and path.suffix == ".pt" else None


def teacher_digests(specs: Sequence[Any]) -> list[str | None]:
    """A digest of each teacher's ``model.pt`` (``None`` for other kinds of teacher)."""
    out = []
    for s in specs:
        if isinstance(s, str | Path) and (Path(s) / "specialists.json").is_file():
            out.append(file_digest(Path(s) / "specialists.json"))  # changes with any specialist
        else:
            out.append(file_digest(p) if (p := teacher_model_file(s)) else None)
    return out


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
        ensemble = TeacherEnsemble.load(
            config.teachers, tree_id=tree, num_senones=num_senones,
            frame_shift=float(next(iter(first)).frame_shift), normalizer=normalizer,
            combination=config.combination, weights=config.weights, device=dev, amp=config.amp,
        )  # fmt: skip
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
    ensemble: TeacherEnsemble,
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
        log_probs = ensemble.log_probs(batch, config.temperature, device)
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
