"""The specialists stage (``asr-kd train-specialists``): clusters, then one specialist each.

Input: a generalist (any teacher spec with a network: a ``model.pt``, its training
directory, or a plug-in teacher file), a ``senone-targets`` directory and its features.

1. Clusters (:mod:`asr_kd.specialists.clusters`): the generalist (or
   ``cluster_teacher``, e.g. the ensemble) runs over up to ``cluster_frames`` training
   frames; the columns of the covariance of its distributions are clustered. Or
   ``--clusters FILE`` gives them (a ``clusters.json`` of an earlier run).
2. Specialists (:mod:`asr_kd.specialists.combine`): each starts from the generalist's
   weights with a ``[dustbin, *cluster]`` output layer and trains with cross-entropy
   on every frame of its cluster plus a random share of the other frames (labelled
   dustbin) so that the cluster makes ``in_cluster_share`` of them (half by default).
   The epoch with the best dev balanced accuracy (mean of the in-cluster and the
   dustbin frames' accuracy) is kept; then the dustbin logit is raised by the log of
   the oversampling factor (baked into the output bias).

   Training is :class:`asr_kd.train.Trainer`'s over a group of models (each
   specialist a :class:`SpecialistObjective`: its own optimiser, schedule, best epoch
   and TensorBoard log; a killed run resumes). On a GPU all specialists train as one
   batched program: their weights are stacked (output layers padded to the largest
   cluster, padding masked) and one ``torch.func.vmap`` of ``functional_call`` runs
   them on every batch. On the CPU they are shared out over ``--num-jobs``
   processes, each looping over its share.

Output ``<out>/`` (atomic)::

    clusters.json       {"num_clusters", "sizes", "covered_senones", "frames",
                         "clusters": [[senone ids], ...]}
    specialists.json    generalist spec and digest, tree, senone count, inference settings
                        (top_n, em_iters), per specialist: file, size, keep rate, dustbin
                        shift, best epoch, dev accuracies, seconds
    specialist<m>.pt    {"cluster": [...], "state_dict": ..., "dustbin_shift": ...}
    train.json          params of the system (generalist + specialists); per specialist,
                        per epoch (the training's records): train loss, frames,
                        in-cluster share (train_in_cluster), dev accuracies ("dev")
    log/job<K>of<N>/    each process's train.log and tensorboard/specialist<m>/
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr_kd.config import to_dict
from asr_kd.errors import BadInputError, ConfigError
from asr_kd.parallel import make_executor, map_progress
from asr_kd.stage import file_digest, require_done, stage_output
from asr_kd.train import Member, Objective, StepCallback, TrainConfig, Trainer
from asr_kd.train.checkpoint import WorkDir, save_atomic, seed_everything
from asr_kd.train.config import OPTIMIZERS, SCHEDULES
from asr_kd.train.dataset import PAD_TARGET, TARGETS_STAGE, Batch, load_training_data
from asr_kd.train.distributed import DistContext, rank_log, resolve_device
from asr_kd.train.source import make_source

__all__ = ["SpecialistConfig", "senone_counts", "train_specialists"]

logger = logging.getLogger(__name__)

STAGE = "train-specialists"
CLUSTERS_FILE = "clusters.json"
INFO_FILE = "specialists.json"
FUSED_MODES = ("auto", "vmap", "loop")


@dataclass(frozen=True)
class SpecialistConfig:
    """Clusters, specialist training and inference (YAML section ``specialists``).

    Attributes:
        num_clusters: k of the k-means over covariance columns.
        num_specialists: train specialists for this many clusters, the most confused
            by the generalist (0: every cluster).
        min_cluster_size, max_cluster_size: clusters smaller get no specialist; larger
            ones give their farthest senones to the next-nearest cluster.
        cluster_frames: training frames for the covariance (0: all).
        cluster_teacher: the teacher spec whose predictions are clustered (``None``:
            the generalist), e.g. ``ensemble:exp/teacher1,exp/teacher2``.
        kmeans_passes: passes of the online k-means.
        in_cluster_share: the cluster's share of a specialist's training frames.
        epochs, optimizer, lr, schedule, patience, weight_decay, grad_clip, max_duration:
            specialist training (:class:`asr_kd.train.TrainConfig`'s meaning; one
            :class:`asr_kd.train.Trainer` trains a process's share, resumable).
        fused: ``vmap`` (one batched program), ``loop``, or ``auto`` (vmap on CUDA).
        top_n: at inference, a specialist is active on a frame when one of the
            generalist's ``top_n`` senones is in its cluster.
        em_iters, em_tol: the KL combination's iterations and tolerance.
        specialist_weight: each specialist's KL term against the generalist's in the
            combination (the paper: 1).
        seed, amp, num_workers: as in training.
    """

    num_clusters: int = 8
    num_specialists: int = 0
    min_cluster_size: int = 3
    max_cluster_size: int = 64
    cluster_frames: int = 300_000
    cluster_teacher: str | None = None
    kmeans_passes: int = 20
    in_cluster_share: float = 0.5
    epochs: int = 2
    optimizer: str = "adam"
    lr: float = 2e-4
    schedule: str = "constant"
    patience: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    max_duration: float = 20.0
    fused: str = "auto"
    top_n: int = 3
    em_iters: int = 100
    em_tol: float = 1e-7
    specialist_weight: float = 1.0
    seed: int = 0
    amp: str = "auto"
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.num_clusters < 1:
            raise ValueError(f"num_clusters must be at least 1, got {self.num_clusters}")
        if not 1 <= self.min_cluster_size <= self.max_cluster_size:
            raise ValueError(
                "need 1 <= min_cluster_size <= max_cluster_size, got "
                f"{self.min_cluster_size}, {self.max_cluster_size}"
            )
        if not 0 < self.in_cluster_share < 1:
            raise ValueError(f"in_cluster_share must be in (0, 1), got {self.in_cluster_share}")
        if not self.specialist_weight > 0:
            raise ValueError(f"specialist_weight must be positive, got {self.specialist_weight}")
        if self.epochs < 1 or self.top_n < 1 or self.em_iters < 1:
            raise ValueError("epochs, top_n and em_iters must be at least 1")
        if self.optimizer not in OPTIMIZERS or self.schedule not in SCHEDULES:
            raise ValueError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)} and schedule one of "
                f"{', '.join(SCHEDULES)}, got {self.optimizer!r}, {self.schedule!r}"
            )
        if self.fused not in FUSED_MODES:
            raise ValueError(f"fused must be one of {', '.join(FUSED_MODES)}, got {self.fused!r}")


def senone_counts(cuts: Any, num_senones: int) -> np.ndarray:
    """Frames per senone over the cuts' targets ``[S]`` int64."""
    from asr_kd.ensemble.evaluate import cut_targets

    counts = np.zeros(num_senones, dtype=np.int64)
    for cut in cuts:
        t = cut_targets(cut)
        if t.size and (t.min() < 0 or t.max() >= num_senones):
            raise BadInputError(f"cut {cut.id}: senone ids outside 0..{num_senones - 1}")
        counts += np.bincount(t, minlength=num_senones)
    return counts


def _fused_mode(config: SpecialistConfig, device: torch.device) -> str:
    if config.fused != "auto":
        return config.fused
    return "vmap" if device.type == "cuda" else "loop"


@dataclass
class _Job:
    """One process's share of the specialists (picklable)."""

    indices: list[int]
    clusters: list[list[int]]
    generalist: str
    data_dir: str
    feature_dir: str
    out_dir: str
    config: SpecialistConfig
    device: str
    counts: list[int]
    work_dir: str
    identity: dict[str, Any]
    force: bool = False
    callbacks: tuple = ()
    train_split: str = "train"
    dev_split: str = "dev"


class SpecialistObjective(Objective):
    """A specialist learns its cluster's senones and a dustbin class for all the others.

    Training uses every frame of the cluster and each other frame (class 0, the
    dustbin) with probability ``keep``, drawn from the specialist's own stream (so its
    frames do not depend on which process or group trains it). The output layer may be
    wider than ``len(cluster) + 1`` (specialists stacked for vmap): the padding classes
    are masked. On dev, ``dev_frame_acc`` is the balanced accuracy, the mean of the
    in-cluster and the dustbin frames' accuracy (the training mix is balanced).

    Args:
        cluster: the specialist's senone ids.
        num_senones: the generalist's senone count.
        width: the output layer's size.
        keep: the share of the other frames trained on.
        seed: seeds its frame selection.
        device: where the targets are mapped.
    """

    def __init__(self, cluster: list[int], num_senones: int, width: int, keep: float,
                 seed: int, device: torch.device):  # fmt: skip
        from asr_kd.specialists.combine import specialist_targets

        super().__init__()
        self.lut = specialist_targets(cluster, num_senones).to(device)
        self.mask = torch.zeros(width, device=device)
        self.mask[len(cluster) + 1 :] = float("-inf")  # padding classes never win
        self.keep, self.device = keep, device
        self.rng = torch.Generator(device=device)
        self.rng.manual_seed(seed)

    def logits(self, logits: torch.Tensor) -> torch.Tensor:
        return logits + self.mask

    def dev_batch(self, batch: Batch) -> Batch:
        targets = batch["targets"].to(self.device)
        local = self.lut[targets.clamp(min=0)].masked_fill(targets == PAD_TARGET, PAD_TARGET)
        return {**batch, "targets": local}

    def batch(self, batch: Batch) -> Batch:
        batch = self.dev_batch(batch)
        local = batch["targets"]
        keep = torch.rand(local.shape, generator=self.rng, device=self.device) < self.keep
        chosen = (local > 0) | ((local == 0) & keep)
        return {**batch, "targets": local.masked_fill(~chosen, PAD_TARGET)}

    def loss(self, logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        loss, extra = self.loss_fn(logits, batch)
        return loss, {**extra, "in_cluster": (batch["targets"] > 0).sum()}

    def dev_sums(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        sums = super().dev_sums(logits, batch)
        local = self.dev_batch(batch)["targets"]
        hit = self.logits(logits).argmax(-1) == local
        inside, dust = local > 0, local == 0
        return {**sums, "in_correct": (hit & inside).sum(), "in_frames": inside.sum(),
                "out_correct": (hit & dust).sum(), "out_frames": dust.sum()}  # fmt: skip

    def dev_record(self, sums: dict[str, float]) -> dict[str, Any]:
        acc_in = sums.get("in_correct", 0.0) / max(sums.get("in_frames", 0.0), 1.0)
        acc_out = sums.get("out_correct", 0.0) / max(sums.get("out_frames", 0.0), 1.0)
        balanced = (acc_in + acc_out) / 2
        dev = {"in_cluster": acc_in, "dustbin": acc_out, "balanced": balanced}
        return {**super().dev_record(sums), "dev_frame_acc": balanced, "dev": dev}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.rng.set_state(state["rng"])


def _train_config(config: SpecialistConfig) -> TrainConfig:
    """The specialists' training settings for :class:`asr_kd.train.Trainer`."""
    return TrainConfig(
        model={"arch": "specialist"}, seed=config.seed, max_epochs=config.epochs,
        optimizer=config.optimizer, lr=config.lr, weight_decay=config.weight_decay,
        schedule=config.schedule, grad_clip=config.grad_clip, max_duration=config.max_duration,
        amp=config.amp, num_workers=config.num_workers, patience=config.patience,
    )  # fmt: skip


def _train_job(job: _Job) -> list[dict[str, Any]]:
    """Train one share of the specialists (resumable); write their files into ``job.out_dir``."""
    from asr_kd.specialists.combine import dustbin_shift
    from asr_kd.teachers import load, make_specialist

    config, train = job.config, _train_config(job.config)
    ctx = DistContext(device=resolve_device(job.device))
    seed_everything(config.seed)
    teacher = load(job.generalist, device=ctx.device, amp="off")
    width = max(len(c) for c in job.clusters) + 1
    counts = np.asarray(job.counts)
    members, shifts = [], []
    for index, cluster in zip(job.indices, job.clusters, strict=True):
        inside = int(counts[cluster].sum())
        keep, shift = dustbin_shift(inside, int(counts.sum()) - inside, config.in_cluster_share)
        model = make_specialist(teacher.model, teacher.num_senones, cluster, width)
        objective = SpecialistObjective(cluster, teacher.num_senones, width, keep,
                                        config.seed + index, ctx.device)  # fmt: skip
        members.append(Member(f"specialist{index}", model.to(ctx.device).train(), objective))
        shifts.append((keep, shift))
    data = load_training_data(job.data_dir, job.feature_dir, job.train_split, job.dev_split)
    data = dataclasses.replace(data, normalizer=teacher.normalizer or data.normalizer)
    work = WorkDir(job.work_dir)
    work.prepare(job.identity, job.force)
    start = time.time()
    with rank_log(work.log, ctx):
        source = make_source(data, train, ctx, members[0].model)
        mode = _fused_mode(config, ctx.device)
        trainer = Trainer(members, train, ctx, work, data, source, mode, job.callbacks)
        trainer.restore()
        trainer.run()
        trainer.close()
    results = []
    for m, index, cluster, (keep, shift) in zip(members, job.indices, job.clusters, shifts,
                                                strict=True):  # fmt: skip
        state = _strip_padding(trainer.best_weights(m), m.model, width, len(cluster), shift)
        file = Path(job.out_dir) / f"specialist{index}.pt"
        save_atomic({"cluster": cluster, "state_dict": state, "dustbin_shift": shift,
                     "num_senones": teacher.num_senones}, file)  # fmt: skip
        history = m.state.history
        results.append({
            "index": index, "params": int(sum(t.numel() for t in state.values())),
            "file": file.name, "size": len(cluster), "keep_rate": keep, "dustbin_shift": shift,
            "best_epoch": m.state.best_epoch, "dev": history[m.state.best_epoch - 1]["dev"],
            "stop_reason": m.state.stop_reason, "epochs": history,
            "seconds": round(time.time() - start, 2),
        })  # fmt: skip
    job_name = Path(job.work_dir).name.rpartition(".")[2]  # job<K>of<N>
    shutil.copytree(work.log, Path(job.out_dir) / "log" / job_name)
    shutil.rmtree(work.path)
    return results


def _strip_padding(state: dict, model: torch.nn.Module, width: int, n: int, shift: float) -> dict:
    """The output layer cut to ``n + 1`` rows, the dustbin shift added to its bias."""
    from asr_kd.teachers import output_layer

    name, _ = output_layer(model, width)
    state = dict(state)
    state[f"{name}.weight"] = state[f"{name}.weight"][: n + 1].clone()
    bias = state[f"{name}.bias"][: n + 1].clone()
    bias[0] += shift
    state[f"{name}.bias"] = bias
    return state


def _generalist_file(spec: str) -> Path:
    from asr_kd.teachers import teacher_file

    path = teacher_file(spec)
    if path is None:
        raise ConfigError(
            f"generalist {spec!r}: give a model.pt, its training directory or a teacher file"
        )
    return path


def train_specialists(
    generalist: str | Path,
    data_dir: Path | str,
    feature_dir: Path | str,
    out_dir: Path | str,
    config: SpecialistConfig,
    *,
    clusters_file: Path | str | None = None,
    num_jobs: int = 1,
    device: str = "auto",
    force: bool = False,
    callbacks: Sequence[StepCallback] = (),
    train_split: str = "train",
    dev_split: str = "dev",
) -> Path:
    """Find confusable senone clusters and train one specialist per cluster.

    A killed run resumes each process's share of the specialists from its
    ``<out>.job<K>of<N>.work/`` (the same clusters and settings; ``force`` discards it).

    Args:
        generalist: the generalist's teacher spec (a network: model.pt, its training
            directory or a plug-in teacher file).
        data_dir: a ``senone-targets`` output; feature_dir: its features.
        out_dir: the stage's output (module doc).
        config: clusters, training and inference settings.
        clusters_file: use these clusters instead of finding them.
        num_jobs: CPU processes to share the specialists out to.
        device: ``auto``, ``cpu`` or ``cuda``.
        force: redo a finished stage.
        callbacks: called after every training step (one process only).
        train_split: the split the clusters and specialists are trained on.
        dev_split: the split that selects each specialist's best epoch.

    Raises:
        BadInputError: a generalist for another tree, or clusters for another inventory.
        MissingInputError: a stage before this one has not run.
    """
    from asr_kd.teachers import load
    from asr_kd.train.dataset import load_split, read_targets_info

    data_dir = require_done(Path(data_dir).resolve(), TARGETS_STAGE)
    feature_dir = require_done(Path(feature_dir).resolve(), "compute-features")
    out_dir = Path(out_dir).resolve()
    info = read_targets_info(data_dir)
    tree_id, num_senones = str(info["tree_id"]), int(info["num_senones"])
    gen_spec = str(Path(generalist).resolve())
    gen_file = _generalist_file(gen_spec)
    stage_config = {
        "generalist": gen_spec,
        "generalist_digest": file_digest(gen_file),
        "data_dir": str(data_dir),
        "feature_dir": str(feature_dir),
        "tree_id": tree_id,
        "num_senones": num_senones,
        "clusters_file": str(clusters_file) if clusters_file else None,
        "clusters_digest": file_digest(clusters_file) if clusters_file else None,
        "specialists": to_dict(config),
    }
    if (train_split, dev_split) != ("train", "dev"):  # (outputs made before the option read)
        stage_config["splits"] = [train_split, dev_split]
    dev = resolve_device(device)
    with stage_output(out_dir, STAGE, stage_config, force) as tmp:
        if tmp is None:
            return out_dir
        start = time.time()
        teacher = load(gen_spec, tree_id, num_senones, device=dev, amp=config.amp)
        if not hasattr(teacher, "model"):
            raise ConfigError(
                f"generalist {gen_spec}: a specialist starts from the generalist's weights, so "
                "it must be a network (model.pt or a plug-in module), not stored posteriors"
            )
        train = load_split(data_dir, train_split)
        counts = senone_counts(train, num_senones)
        clusters = _clusters(config, teacher, train, clusters_file, tmp, num_senones,
                             tree_id, dev)  # fmt: skip
        gen_params = sum(p.numel() for p in teacher.model.parameters())
        del teacher
        if not clusters:
            raise BadInputError(
                f"{STAGE}: no cluster has {config.min_cluster_size} or more senones; lower "
                "specialists.min_cluster_size or raise num_clusters"
            )
        mode = _fused_mode(config, dev)
        jobs_n = (
            1 if (mode == "vmap" or dev.type == "cuda") else max(1, min(num_jobs, len(clusters)))
        )
        shares = [list(range(len(clusters)))[i::jobs_n] for i in range(jobs_n)]
        jobs = []
        for k, share in enumerate(shares):
            mine = [clusters[i] for i in share]
            identity = {
                "stage": STAGE,
                "world_size": 1,
                "config": {**stage_config, "specialists": share, "clusters": mine},
            }
            work = out_dir.with_name(f"{out_dir.name}.job{k + 1}of{jobs_n}")
            jobs.append(_Job(share, mine, gen_spec, str(data_dir), str(feature_dir), str(tmp),
                             config, str(dev), counts.tolist(), str(work), identity, force,
                             tuple(callbacks), train_split, dev_split))  # fmt: skip
        logger.info(
            "%s: %d specialists (%s senones) from %s; %s, %d process(es)",
            STAGE, len(clusters), sum(len(c) for c in clusters), gen_spec, mode, jobs_n,
        )  # fmt: skip
        with make_executor(jobs_n) as pool:
            done = map_progress(_train_job, jobs, pool, desc=STAGE)
        results = sorted((r for share in done for r in share), key=lambda r: r["index"])
        doc = {
            "generalist": gen_spec,
            "generalist_digest": stage_config["generalist_digest"],
            "tree_id": tree_id,
            "num_senones": num_senones,
            "top_n": config.top_n,
            "em_iters": config.em_iters,
            "em_tol": config.em_tol,
            "specialist_weight": config.specialist_weight,
            "fused": mode,
            "seconds": round(time.time() - start, 2),
            "specialists": [{k: v for k, v in r.items() if k != "epochs"} for r in results],
        }
        (tmp / INFO_FILE).write_text(json.dumps(doc, indent=2) + "\n")
        history = {
            "params": gen_params + sum(r["params"] for r in results),  # the whole system
            "generalist_params": gen_params,
            "specialists": {f"specialist{r['index']}": r["epochs"] for r in results},
        }
        (tmp / "train.json").write_text(json.dumps(history, indent=2) + "\n")
        logger.info(
            "%s: wrote %s: %d specialists, dev balanced accuracy %s, in %.1f s",
            STAGE, out_dir, len(results),
            ", ".join(f"{r['dev']['balanced'] * 100:.1f}%" for r in results), doc["seconds"],
        )  # fmt: skip
    return out_dir


def _clusters(config, teacher, train, clusters_file, tmp, num_senones, tree_id, dev):
    from asr_kd.specialists.clusters import find_clusters, prediction_covariance, read_clusters

    if clusters_file is not None:
        clusters = read_clusters(Path(clusters_file), num_senones)
        doc = {"num_clusters": len(clusters), "sizes": [len(c) for c in clusters],
               "covered_senones": sum(len(c) for c in clusters), "frames": None,
               "source": str(clusters_file), "clusters": clusters}  # fmt: skip
    else:
        source = teacher
        if config.cluster_teacher:
            from asr_kd.teachers import load

            source = load(config.cluster_teacher, tree_id, num_senones, device=dev,
                          amp=config.amp)  # fmt: skip
        t0 = time.time()
        acc = prediction_covariance(source, train, config.cluster_frames, 200.0, dev)
        result = find_clusters(
            acc.covariance(), config.num_clusters, config.min_cluster_size,
            config.max_cluster_size, config.kmeans_passes, config.seed, acc.frames,
            config.num_specialists,
        )  # fmt: skip
        clusters = result.clusters
        doc = {**result.to_dict(), "source": config.cluster_teacher or "generalist",
               "seconds": round(time.time() - t0, 2)}  # fmt: skip
        logger.info(
            "%s: %d clusters of %s senones from %d frames (%.1f s)",
            STAGE, len(clusters), [len(c) for c in clusters], acc.frames, time.time() - t0,
        )  # fmt: skip
    (tmp / CLUSTERS_FILE).write_text(json.dumps(doc, indent=1) + "\n")
    return clusters
