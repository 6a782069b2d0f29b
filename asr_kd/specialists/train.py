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

   On a GPU all specialists train as one batched program: their weights are stacked
   (output layers padded to the largest cluster, padding masked) and one
   ``torch.func.vmap`` of ``functional_call`` runs them on every batch. On the CPU
   they are shared out over ``--num-jobs`` processes, each looping over its share.

Output ``<out>/`` (atomic)::

    clusters.json       {"num_clusters", "sizes", "covered_senones", "frames",
                         "clusters": [[senone ids], ...]}
    specialists.json    generalist spec and digest, tree, senone count, inference settings
                        (top_n, em_iters), per specialist: file, size, keep rate, dustbin
                        shift, best epoch, dev accuracies, seconds
    specialist<m>.pt    {"cluster": [...], "state_dict": ..., "dustbin_shift": ...}
    train.json          params of the system (generalist + specialists); per specialist,
                        per epoch: loss, frames, dev accuracies
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr_kd.config import to_dict
from asr_kd.errors import AsrKdError, BadInputError, ConfigError
from asr_kd.parallel import make_executor, map_progress
from asr_kd.stage import file_digest, require_done, stage_output
from asr_kd.train.checkpoint import save_atomic, seed_everything
from asr_kd.train.config import resolve_amp
from asr_kd.train.dataset import (
    PAD_TARGET,
    TARGETS_STAGE,
    EpochBatches,
    SenoneDataset,
    load_training_data,
    make_loader,
    make_sampler,
)
from asr_kd.train.distributed import resolve_device
from asr_kd.train.evaluate import autocast, eval_loader

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
        epochs, lr, weight_decay, grad_clip, max_duration: specialist training (Adam).
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
    lr: float = 2e-4
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


def _prediction_covariance(teacher, cuts, max_frames: int, max_duration: float, device):
    """Covariance of the teacher's distributions over (up to) ``max_frames`` frames."""
    from lhotse.dataset import SimpleCutSampler

    from asr_kd.specialists.clusters import CovarianceAccumulator

    cuts = cuts.sort_by_duration()  # a deterministic, length-homogeneous order
    if max_frames > 0:
        ids = sorted(c.id for c in cuts)
        order = np.random.default_rng(0).permutation(len(ids))
        keep, frames = [], 0
        by_id = {c.id: c for c in cuts}
        for i in order:
            if frames >= max_frames:
                break
            keep.append(ids[i])
            frames += by_id[ids[i]].num_frames
        cuts = cuts.subset(cut_ids=keep)
    acc = CovarianceAccumulator(teacher.num_senones, device)
    sampler = SimpleCutSampler(cuts, max_duration=max_duration)
    for batch in sampler:
        log_probs, lengths = teacher.log_probs_batch(list(batch))
        valid = (
            torch.arange(log_probs.shape[1], device=log_probs.device)
            < lengths.to(log_probs.device)[:, None]
        )
        acc.add(log_probs[valid].exp())
    return acc


def _read_clusters(path: Path, num_senones: int) -> list[list[int]]:
    try:
        doc = json.loads(Path(path).read_text())
        clusters = [[int(s) for s in c] for c in doc["clusters"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInputError(f"{path}: not a clusters file ({e}); 'clusters': [[ids]]") from None
    seen: set[int] = set()
    for i, c in enumerate(clusters):
        bad = [s for s in c if not 0 <= s < num_senones]
        if bad or not c:
            raise BadInputError(
                f"{path}: cluster {i} is empty or names senones outside 0..{num_senones - 1} "
                f"({bad[:5]}); it was made for another tree"
            )
        if seen & set(c):
            raise BadInputError(f"{path}: cluster {i} overlaps an earlier one")
        seen |= set(c)
    return clusters


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


class _Group:
    """Specialists trained together: stacked (vmap) or one after the other (loop)."""

    def __init__(self, job: _Job):
        from asr_kd.specialists.combine import specialist_targets
        from asr_kd.teachers import load, make_specialist

        self.job, self.config = job, job.config
        self.device = resolve_device(job.device)
        teacher = load(job.generalist, device=self.device, amp="off")
        self.num_senones = teacher.num_senones
        self.normalizer = teacher.normalizer
        self.width = max(len(c) for c in job.clusters) + 1
        self.models = []
        for c in job.clusters:
            model = make_specialist(teacher.model, self.num_senones, c, self.width)
            self.models.append(model.to(self.device).train())
        self.luts = torch.stack([specialist_targets(c, self.num_senones) for c in job.clusters])
        self.luts = self.luts.to(self.device)
        mask = torch.zeros(len(job.clusters), self.width, device=self.device)
        for j, c in enumerate(job.clusters):
            mask[j, len(c) + 1 :] = float("-inf")  # padding classes never win
        self.mask = mask
        counts = np.asarray(job.counts)
        from asr_kd.specialists.combine import dustbin_shift

        self.keep, self.shift = [], []
        for c in job.clusters:
            inside = int(counts[c].sum())
            keep, shift = dustbin_shift(inside, int(counts.sum()) - inside,
                                        self.config.in_cluster_share)  # fmt: skip
            self.keep.append(keep)
            self.shift.append(shift)
        self.mode = _fused_mode(self.config, self.device)
        self.amp = resolve_amp(self.config.amp, self.device)
        params = [p for m in self.models for p in m.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=self.config.lr,
                                          weight_decay=self.config.weight_decay)  # fmt: skip
        # One stream per specialist: its frame selection does not depend on which
        # process or group trains it.
        self.rngs = [torch.Generator(device=self.device) for _ in job.indices]
        for rng, index in zip(self.rngs, job.indices, strict=True):
            rng.manual_seed(self.config.seed + index)
        if self.mode == "vmap":
            import copy

            self.base = copy.deepcopy(self.models[0])
            self.params = [dict(m.named_parameters()) for m in self.models]

    def logits(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[M, B, T, W]`` float32 logits of every specialist (padding classes -inf)."""
        if self.mode == "loop":
            with autocast(self.device, self.amp):
                out = torch.stack([m(feats, lengths)[0] for m in self.models])
        else:
            from asr_kd.ensemble.fused import stacked_forward

            with autocast(self.device, self.amp):
                out = stacked_forward(self.base, self.params, feats, lengths)
        return out.float() + self.mask[:, None, None, :]

    def local_targets(self, targets: torch.Tensor) -> torch.Tensor:
        """``[M, B, T]`` specialist classes (PAD_TARGET kept)."""
        pad = targets == PAD_TARGET
        local = self.luts[:, targets.clamp(min=0)]
        return local.masked_fill(pad[None], PAD_TARGET)

    def step(self, batch) -> list[dict[str, float]]:
        feats = batch["feats"].to(self.device)
        lengths = batch["lengths"].to(self.device)
        local = self.local_targets(batch["targets"].to(self.device))
        logits = self.logits(feats, lengths)
        losses, stats = [], []
        for j in range(len(self.models)):
            t = local[j]
            inside = t > 0
            dust = t == 0
            keep = torch.rand(t.shape, generator=self.rngs[j], device=self.device) < self.keep[j]
            sel = inside | (dust & keep)
            n = int(sel.sum())
            if n == 0:
                stats.append({"loss": 0.0, "frames": 0, "inside": 0})
                continue
            loss = torch.nn.functional.cross_entropy(logits[j][sel], t[sel], reduction="sum")
            losses.append(loss / n)
            stats.append({"loss": float(loss.detach()), "frames": n, "inside": int(inside.sum())})
        if not losses:
            return stats
        total = torch.stack(losses).sum()
        if not torch.isfinite(total):
            raise AsrKdError(
                f"{STAGE}: non-finite loss on cuts {', '.join(batch['cut_ids'])}; lower "
                "specialists.lr"
            )
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        for m in self.models:
            torch.nn.utils.clip_grad_norm_(list(m.parameters()), self.config.grad_clip)
        self.optimizer.step()
        return stats

    @torch.no_grad()
    def dev_accuracy(self, loader) -> list[dict[str, float]]:
        """Per specialist: accuracy on its cluster's dev frames, on the others (dustbin),
        and their mean, the balanced accuracy (before the dustbin shift: the training mix
        is balanced)."""
        for m in self.models:
            m.eval()
        sums = np.zeros((len(self.models), 4))
        try:
            for batch in loader:
                local = self.local_targets(batch["targets"].to(self.device))
                logits = self.logits(batch["feats"].to(self.device),
                                     batch["lengths"].to(self.device))  # fmt: skip
                hit = logits.argmax(-1) == local
                inside, dust = local > 0, local == 0
                sums += torch.stack([(hit & inside).sum((1, 2)), inside.sum((1, 2)),
                                     (hit & dust).sum((1, 2)), dust.sum((1, 2))],
                                    1).cpu().numpy()  # fmt: skip
        finally:
            for m in self.models:
                m.train()
        out = []
        for a_in, n_in, a_out, n_out in sums:
            acc_in, acc_out = a_in / max(n_in, 1), a_out / max(n_out, 1)
            out.append({"in_cluster": acc_in, "dustbin": acc_out,
                        "balanced": (acc_in + acc_out) / 2})  # fmt: skip
        return out


def _train_job(job: _Job) -> list[dict[str, Any]]:
    """Train one share of the specialists; write their files into ``job.out_dir``."""
    config = job.config
    seed_everything(config.seed)
    group = _Group(job)
    data = load_training_data(job.data_dir, job.feature_dir)
    normalizer = group.normalizer or data.normalizer
    sampler = make_sampler(data.train, config.max_duration, shuffle=True, seed=config.seed)
    batches = EpochBatches(sampler)
    loader = make_loader(SenoneDataset(normalizer, data.num_senones), batches, config.num_workers)
    dev_loader = eval_loader(data.dev, normalizer, data.num_senones, 200.0, config.num_workers)
    m_count = len(job.indices)
    best = [-1.0] * m_count
    best_state: list[dict | None] = [None] * m_count
    best_epoch = [0] * m_count
    history: list[list[dict]] = [[] for _ in range(m_count)]
    start = time.time()
    for epoch in range(1, config.epochs + 1):
        t0 = time.time()
        batches.start(epoch)
        sums = [{"loss": 0.0, "frames": 0, "inside": 0} for _ in range(m_count)]
        for batch in loader:
            for s, st in zip(sums, group.step(batch), strict=True):
                for k in s:
                    s[k] += st[k]
        dev = group.dev_accuracy(dev_loader)
        for j in range(m_count):
            entry = {
                "epoch": epoch,
                "loss": sums[j]["loss"] / max(sums[j]["frames"], 1),
                "frames": sums[j]["frames"],
                "in_cluster_share": sums[j]["inside"] / max(sums[j]["frames"], 1),
                "dev": dev[j],
                "seconds": round(time.time() - t0, 2),
            }
            history[j].append(entry)
            if dev[j]["balanced"] > best[j]:
                best[j], best_epoch[j] = dev[j]["balanced"], epoch
                best_state[j] = {k: v.detach().cpu().clone()
                                 for k, v in group.models[j].state_dict().items()}  # fmt: skip
        logger.info(
            "%s: specialists %s epoch %d: dev balanced accuracy %s (%.1f s)",
            STAGE, job.indices, epoch,
            ", ".join(f"{d['balanced'] * 100:.1f}%" for d in dev), time.time() - t0,
        )  # fmt: skip
    results = []
    for j, index in enumerate(job.indices):
        cluster = job.clusters[j]
        state = _strip_padding(best_state[j], group, len(cluster), group.shift[j])
        file = Path(job.out_dir) / f"specialist{index}.pt"
        save_atomic({"cluster": cluster, "state_dict": state, "dustbin_shift": group.shift[j],
                     "num_senones": group.num_senones}, file)  # fmt: skip
        results.append({
            "index": index,
            "params": int(sum(t.numel() for t in state.values())),
            "file": file.name,
            "size": len(cluster),
            "keep_rate": group.keep[j],
            "dustbin_shift": group.shift[j],
            "best_epoch": best_epoch[j],
            "dev": history[j][best_epoch[j] - 1]["dev"],
            "epochs": history[j],
            "seconds": round(time.time() - start, 2),
        })  # fmt: skip
    return results


def _strip_padding(state: dict, group: _Group, n: int, shift: float) -> dict:
    """The output layer cut to ``n + 1`` rows, the dustbin shift added to its bias."""
    from asr_kd.teachers import output_layer

    name, _ = output_layer(group.models[0], group.width)
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
) -> Path:
    """Find confusable senone clusters and train one specialist per cluster.

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
        train = load_split(data_dir, "train")
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
        jobs = [_Job(share, [clusters[i] for i in share], gen_spec, str(data_dir),
                     str(feature_dir), str(tmp), config, str(dev), counts.tolist())
                for share in shares]  # fmt: skip
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
    from asr_kd.specialists.clusters import find_clusters

    if clusters_file is not None:
        clusters = _read_clusters(Path(clusters_file), num_senones)
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
        acc = _prediction_covariance(source, train, config.cluster_frames, 200.0, dev)
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
