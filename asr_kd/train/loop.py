"""Frame-level training of a hybrid acoustic model (``asr-kd train``).

Output (one directory, written atomically when the training ends)::

    <out>/model.pt          spec, model config, best epoch's weights, feature statistics,
                            num_senones, tree id, frame shift, train config, best epoch
                            and its dev frame accuracy (see :func:`load_model`)
    <out>/train.json        per epoch: train loss and frame accuracy, dev frame accuracy,
                            learning rate, seconds, frames/s; best epoch; parameters; totals
    <out>/checkpoints/      epoch-N.pt (resumable), best.pt
    <out>/log/              train.log (train.rank<R>.log on other ranks), tensorboard/
    <out>/train_subset.txt  the training cut ids, when train_fraction < 1

Resuming. The training runs in ``<out>.work/`` (:class:`WorkDir`), which survives a
kill. A checkpoint (every epoch, and every ``checkpoint_interval`` steps) holds the
model, optimiser, schedule, the loop state (epoch, step, batches consumed in the
epoch, the epoch's running sums, history, best epoch, early-stopping count) and every
rank's RNG states. A rerun with the same configuration loads the latest one, restarts
the sampler at the same epoch (its shuffle depends only on seed and epoch) and skips
the batches already consumed, so it repeats exactly the steps after the checkpoint:
on the CPU the final weights are bitwise those of an uninterrupted run.

Data parallelism. Rank ``r`` of ``W`` takes batches ``r, r+W, ...`` of the sampler's
single-process sequence (:class:`EpochBatches`). Every step's loss is the sum over
frames divided by the global frame count of the step (summed over ranks and
``accum_grad`` batches, known before the forward pass), times ``W`` because DDP
averages gradients. So W ranks compute the same update as one process with
``accum_grad = W`` seeing the same batches (for models without dropout; up to float
summation order). ``loss_fn`` returns sums, never means, to keep that true.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from asr_kd.config import to_dict
from asr_kd.errors import AsrKdError
from asr_kd.stage import git_revision, require_done, stage_output
from asr_kd.train.checkpoint import (
    ModelBuilder,
    ModelInfo,
    WorkDir,
    finished_output,
    load_file,
    registry_builder,
    rng_state,
    save_model,
    seed_everything,
    set_rng_state,
)
from asr_kd.train.config import LrSchedule, TrainConfig, make_optimizer, resolve_amp
from asr_kd.train.dataset import (
    PAD_TARGET,
    TARGETS_STAGE,
    Batch,
    CollateHook,
    EpochBatches,
    SenoneDataset,
    TrainingData,
    load_training_data,
    make_loader,
    make_sampler,
)
from asr_kd.train.distributed import (
    DistContext,
    all_reduce_sum,
    barrier,
    broadcast_object,
    gather_objects,
    rank_log,
    reduce_stats,
    run_on_main,
    setup_distributed,
    teardown,
)
from asr_kd.train.evaluate import (
    check_output_size,
    count_correct,
    forward_logits,
    frame_accuracy,
)

logger = logging.getLogger(__name__)

STAGE = "train"

LossFn = Callable[[torch.Tensor, Batch], tuple[torch.Tensor, dict[str, torch.Tensor]]]
"""``(logits [B, T, S] float32, batch) -> (loss summed over frames, extra sums by name)``.

Sums, not means: the loop divides by the step's global frame count. The extra sums
(e.g. the KL and CE parts of a distillation loss) are logged per frame; every rank
must return the same names.
"""
StepCallback = Callable[[int, dict[str, Any]], None]
"""Called after every optimiser step (and its checkpoint) with the step count and facts."""


class NonFiniteLossError(AsrKdError):
    """The loss or the gradient became NaN or infinite."""


def cross_entropy(label_smoothing: float = 0.0) -> LossFn:
    """Frame-level cross-entropy against ``batch["targets"]``, summed over real frames."""

    def loss_fn(logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        targets = batch["targets"].to(logits.device)
        loss = F.cross_entropy(
            logits.flatten(0, 1),
            targets.flatten(),
            ignore_index=PAD_TARGET,
            reduction="sum",
            label_smoothing=label_smoothing,
        )
        return loss, {}

    return loss_fn


@dataclasses.dataclass
class LoopState:
    """Everything about the loop's progress a resumed training needs (plain data)."""

    epoch: int = 0
    batches_done: int = 0
    step: int = 0
    sums: dict[str, float] = dataclasses.field(default_factory=dict)
    epoch_seconds: float = 0.0
    lr: float = 0.0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    best_epoch: int = 0
    best_acc: float | None = None
    bad_epochs: int = 0
    stop_reason: str | None = None


class Trainer:
    """Runs epochs of training with checkpoints, evaluation and early stopping.

    Args:
        model: the model on its device (weights identical on every rank).
        config: the training settings.
        ctx: rank, world size and device.
        work: the work directory (only rank 0 writes to it).
        batches: the training batches (the loader's sampler).
        loader: the training DataLoader.
        dev_accuracy: the dev frame accuracy of a model (reduced over ranks).
        loss_fn: the loss (default: cross-entropy with the config's label smoothing).
        callbacks: called after every step.
        steps_per_epoch: the first epoch's optimiser steps (progress bar, cosine).
        tensorboard: a SummaryWriter (rank 0) or ``None``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: TrainConfig,
        ctx: DistContext,
        work: WorkDir,
        batches: EpochBatches,
        loader: torch.utils.data.DataLoader,
        dev_accuracy: Callable[[torch.nn.Module], float],
        loss_fn: LossFn | None = None,
        callbacks: Sequence[StepCallback] = (),
        steps_per_epoch: int = 1,
        tensorboard: Any = None,
    ):
        self.raw, self.config, self.ctx, self.work = model, config, ctx, work
        self.batches, self.loader, self.dev_accuracy = batches, loader, dev_accuracy
        self.loss_fn = loss_fn or cross_entropy(config.label_smoothing)
        self.callbacks = tuple(callbacks)
        self.steps_per_epoch = steps_per_epoch
        self.tb = tensorboard
        self.amp = resolve_amp(config.amp, ctx.device)
        self.model: torch.nn.Module = model
        if ctx.active:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.model = DistributedDataParallel(model, device_ids=ids)
        if config.compile:
            self.model = torch.compile(self.model, dynamic=True)
        self.optimizer = make_optimizer(model.parameters(), config)
        total = steps_per_epoch * config.max_epochs
        self.schedule = LrSchedule(config, self.optimizer, min(total, config.max_steps or total))
        self.state = LoopState()
        self._local: dict[str, torch.Tensor] = {}
        self._interval: dict[str, float] = {}
        self._clock = time.time()

    # ---- checkpoints -------------------------------------------------------------
    def resume(self, path: Path) -> None:
        """Restore model, optimiser, schedule, loop state and RNG from a checkpoint."""
        ckpt = load_file(path)
        if ckpt["world_size"] != self.ctx.world_size:
            raise AsrKdError(
                f"{path} was written by {ckpt['world_size']} ranks, not "
                f"{self.ctx.world_size}; resume with as many or use --force"
            )
        self.raw.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["schedule"])
        self.state = LoopState(**ckpt["state"])
        set_rng_state(ckpt["rng"][self.ctx.rank])
        logger.info(
            "resumed from %s: epoch %d, %d batches into it, step %d",
            path.name,
            self.state.epoch + 1,
            self.state.batches_done,
            self.state.step,
        )

    def _save(self, name: str, best: bool = False) -> None:
        """Write a checkpoint (rank 0; every rank contributes its RNG state)."""
        self._tick()
        rngs = gather_objects(self.ctx, rng_state())
        if not self.ctx.is_main:
            return
        payload = {
            "model": self.raw.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "state": dataclasses.asdict(self.state),
            "rng": rngs,
            "world_size": self.ctx.world_size,
            "sampler": {"epoch": self.state.epoch, "batches_done": self.state.batches_done},
            "config": dataclasses.asdict(self.config),
        }
        self.work.save(payload, name, best=best)

    def _tick(self) -> None:
        now = time.time()
        self.state.epoch_seconds += now - self._clock
        self._clock = now

    # ---- the loop ----------------------------------------------------------------
    def run(self) -> LoopState:
        """Train until max_epochs, max_steps or early stopping; returns the final state."""
        self._clock = time.time()
        while self.state.stop_reason is None:
            self._train_epoch()
            self._end_epoch()
        return self.state

    def _train_epoch(self) -> None:
        from tqdm import tqdm

        st, accum = self.state, self.config.accum_grad
        self.raw.train()
        self.batches.start(st.epoch, skip=st.batches_done)
        batches = iter(self.loader)
        with tqdm(
            total=self.steps_per_epoch,
            initial=st.batches_done // accum,
            desc=f"epoch {st.epoch + 1}",
            disable=(not self.ctx.is_main) or None,
            leave=False,
        ) as bar:
            while not self._out_of_steps() and (micro := list(islice(batches, accum))):
                self._step(micro)
                st.batches_done += len(micro)
                bar.update(1)
                self._after_step()
        if self._out_of_steps():
            st.stop_reason = "max_steps"

    def _out_of_steps(self) -> bool:
        return bool(self.config.max_steps) and self.state.step >= self.config.max_steps

    def _step(self, micro: list[Batch]) -> None:
        """One optimiser step over this rank's ``accum_grad`` batches."""
        ctx, device = self.ctx, self.ctx.device
        frames = sum(int((b["targets"] != PAD_TARGET).sum()) for b in micro)
        total = int(all_reduce_sum(ctx, torch.tensor([frames], device=_comm(ctx))).item())
        scale = ctx.world_size / max(total, 1)
        self.state.lr = self.schedule.apply(self.state.step)
        self.optimizer.zero_grad(set_to_none=True)
        sums: list[dict[str, torch.Tensor]] = []
        for i, batch in enumerate(micro):
            last = i == len(micro) - 1
            sync = self.model.no_sync() if ctx.active and not last else contextlib.nullcontext()
            with sync:
                logits = forward_logits(self.model, batch, device, self.amp)
                loss, extra = self.loss_fn(logits, batch)
                (loss * scale).backward()
            correct, n = count_correct(logits.detach(), batch["targets"].to(device))
            sums.append({"loss": loss.detach(), "correct": correct, "frames": n, **extra})
        params = [p for p in self.raw.parameters() if p.grad is not None]
        if self.config.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        if not math.isfinite(float(norm)):
            raise self._nonfinite(micro, sums)
        self.optimizer.step()
        self.state.step += 1
        for s in sums:
            for k, v in s.items():
                v = v.detach().double()
                self._local[k] = self._local[k] + v if k in self._local else v

    def _nonfinite(self, micro: list[Batch], sums: list[dict]) -> NonFiniteLossError:
        st = self.state
        bad = [
            b["cut_ids"]
            for b, s in zip(micro, sums, strict=True)
            if not math.isfinite(float(s["loss"]))
        ]
        where = f"step {st.step + 1} (epoch {st.epoch + 1})"
        if bad:
            ids = ", ".join(i for ids in bad for i in ids)
            what = f"non-finite loss at {where} in the batch of cuts {ids}"
        else:
            ids = ", ".join(i for b in micro for i in b["cut_ids"])
            what = (
                f"non-finite gradient at {where} (loss finite here; another rank or the "
                f"backward pass overflowed); this rank's cuts: {ids}"
            )
        return NonFiniteLossError(
            f"{what}. No checkpoint was written with these weights; lower lr, set grad_clip, "
            "or check those cuts' features"
        )

    def _flush(self) -> None:
        """Sum the rank-local statistics over ranks into the epoch's and interval's sums."""
        keys = sorted(self._local)
        local = {k: self._local[k] for k in keys}
        glob = reduce_stats(self.ctx, local) if keys else {}
        for k, v in glob.items():
            self.state.sums[k] = self.state.sums.get(k, 0.0) + v
            self._interval[k] = self._interval.get(k, 0.0) + v
        self._local = {}

    def _after_step(self) -> None:
        st, c = self.state, self.config
        if st.step % c.log_interval == 0:
            self._flush()
            self._log_interval()
        if c.checkpoint_interval and st.step % c.checkpoint_interval == 0:
            self._flush()
            self._save(f"step-{st.step}.pt")
        info = {"epoch": st.epoch + 1, "batches_done": st.batches_done, "lr": st.lr}
        for callback in self.callbacks:
            callback(st.step, info)

    def _log_interval(self) -> None:
        s, frames = self._interval, max(self._interval.get("frames", 0.0), 1.0)
        loss, acc = s.get("loss", 0.0) / frames, s.get("correct", 0.0) / frames
        logger.info(
            "epoch %d step %d: loss %.4f, frame acc %.2f%%, lr %.3g",
            self.state.epoch + 1,
            self.state.step,
            loss,
            100 * acc,
            self.state.lr,
        )
        if self.tb is not None:
            self.tb.add_scalar("train/loss", loss, self.state.step)
            self.tb.add_scalar("train/frame_acc", acc, self.state.step)
            self.tb.add_scalar("train/lr", self.state.lr, self.state.step)
            for k in set(s) - {"loss", "correct", "frames"}:
                self.tb.add_scalar(f"train/{k}", s[k] / frames, self.state.step)
        self._interval = {}

    def _end_epoch(self) -> None:
        st, c = self.state, self.config
        self._flush()
        self._tick()
        start = time.time()
        dev_acc = self.dev_accuracy(self.raw)
        frames = max(st.sums.get("frames", 0.0), 1.0)
        record = {
            "epoch": st.epoch + 1,
            "steps": st.step,
            "train_loss": st.sums.get("loss", 0.0) / frames,
            "train_frame_acc": st.sums.get("correct", 0.0) / frames,
            "dev_frame_acc": dev_acc,
            "lr": st.lr,
            "seconds": round(st.epoch_seconds, 3),
            "dev_seconds": round(time.time() - start, 3),
            "frames": int(st.sums.get("frames", 0)),
            "frames_per_second": round(st.sums.get("frames", 0.0) / max(st.epoch_seconds, 1e-9)),
        }
        record.update(
            {
                f"train_{k}": v / frames
                for k, v in st.sums.items()
                if k not in ("loss", "correct", "frames")
            }
        )
        st.history.append(record)
        improved = st.best_acc is None or dev_acc > st.best_acc
        self.schedule.end_epoch(dev_acc, st.best_acc)
        if improved:
            st.best_acc, st.best_epoch, st.bad_epochs = dev_acc, st.epoch + 1, 0
        else:
            st.bad_epochs += 1
        if st.stop_reason is None:
            if c.patience and st.bad_epochs >= c.patience:
                st.stop_reason = "early_stopping"
            elif st.epoch + 1 >= c.max_epochs:
                st.stop_reason = "max_epochs"
        logger.info(
            "epoch %d: train loss %.4f, train frame acc %.2f%%, dev frame acc %.2f%%%s, "
            "%.1f s, %d frames/s",
            record["epoch"],
            record["train_loss"],
            100 * record["train_frame_acc"],
            100 * dev_acc,
            " (best)" if improved else "",
            record["seconds"],
            record["frames_per_second"],
        )
        if self.tb is not None:
            self.tb.add_scalar("dev/frame_acc", dev_acc, st.step)
            self.tb.add_scalar("train/epoch_frame_acc", record["train_frame_acc"], st.step)
        st.epoch, st.batches_done, st.sums, st.epoch_seconds = st.epoch + 1, 0, {}, 0.0
        self._clock = time.time()  # the next epoch's clock starts now, not at the dev pass
        self._save(f"epoch-{record['epoch']}.pt", best=improved)


def _comm(ctx: DistContext) -> torch.device:
    """Where tensors for a collective live (NCCL needs them on the GPU)."""
    return ctx.device if ctx.active and ctx.device.type == "cuda" else torch.device("cpu")


def summary(state: LoopState, extra: dict[str, Any]) -> dict[str, Any]:
    """The ``train.json`` document."""
    return {
        "epochs": state.history,
        "best_epoch": state.best_epoch,
        "best_dev_frame_acc": state.best_acc,
        "stop_reason": state.stop_reason,
        "total_steps": state.step,
        "total_seconds": round(sum(e["seconds"] + e["dev_seconds"] for e in state.history), 3),
        "total_frames": sum(e["frames"] for e in state.history),
        **extra,
    }


def training_stage_config(
    data_dir: Path,
    feature_dir: Path,
    train_split: str,
    dev_split: str,
    data: TrainingData,
    config: TrainConfig,
    stage: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The completion-marker config of a training output (also the fused ensemble's)."""
    return {
        "data_dir": str(data_dir),
        "feature_dir": str(feature_dir),
        "train_split": train_split,
        "dev_split": dev_split,
        "num_senones": data.num_senones,
        "tree_id": data.tree_id,
        stage: to_dict(config),
        **(extra or {}),
    }


def train_model(
    data_dir: Path | str,
    feature_dir: Path | str,
    out_dir: Path | str,
    config: TrainConfig,
    *,
    train_split: str = "train",
    dev_split: str = "dev",
    device: str = "auto",
    force: bool = False,
    loss_fn: LossFn | None = None,
    collate_hooks: Sequence[CollateHook] = (),
    callbacks: Sequence[StepCallback] = (),
    builder: ModelBuilder = registry_builder,
    stage: str = STAGE,
    extra_config: dict[str, Any] | None = None,
) -> Path:
    """Train an acoustic model on senone targets (``asr-kd train``); resumes if killed.

    Run it in every process of a ``torchrun`` launch for data-parallel training.

    Args:
        data_dir: a finished ``senone-targets`` output.
        feature_dir: the ``compute-features`` output of those features (its global
            statistics normalise the input and are stored with the model).
        out_dir: the training directory to write (see the module docstring).
        config: the training settings.
        train_split, dev_split: the splits to train on and to select epochs with.
        device: ``auto`` (this rank's GPU if any), ``cpu`` or ``cuda``.
        force: retrain (and discard an unfinished training) even if finished.
        loss_fn: replaces cross-entropy (e.g. distillation); returns frame sums.
        collate_hooks: add entries (e.g. soft targets) to every training batch.
        callbacks: called after every optimiser step with ``(step, facts)``.
        builder: builds the model from ``config.model`` (default: the registry).
        stage, extra_config: the stage name and additional configuration recorded
            in the completion marker (for stages built on this one).

    Returns:
        ``out_dir``.
    """
    ctx = setup_distributed(device)
    try:
        out_dir = Path(out_dir).resolve()
        data_dir = require_done(Path(data_dir).resolve(), TARGETS_STAGE)
        feature_dir = require_done(Path(feature_dir).resolve(), "compute-features")
        data = load_training_data(
            data_dir, feature_dir, train_split, dev_split, config.train_fraction, config.subset_seed
        )
        stage_config = training_stage_config(
            data_dir, feature_dir, train_split, dev_split, data, config, stage, extra_config
        )
        if finished_output(out_dir, stage, stage_config, force):
            return out_dir
        work = WorkDir(out_dir)
        identity = {"stage": stage, "config": stage_config, "world_size": ctx.world_size}
        run_on_main(ctx, lambda: _prepare(work, identity, force, data))
        with rank_log(work.log, ctx):
            logger.info(
                "%s: rank %d of %d on %s; config %s (git %s)",
                stage,
                ctx.rank,
                ctx.world_size,
                ctx.device,
                json.dumps(stage_config),
                git_revision(),
            )
            trainer, extra = _make_trainer(
                config, ctx, work, data, loss_fn, collate_hooks, callbacks, builder
            )
            state = trainer.run()
            if trainer.tb is not None:
                trainer.tb.close()
            barrier(ctx)
            if ctx.is_main:
                _finalise(out_dir, work, stage, stage_config, force, config, data, state, extra)
        return out_dir
    finally:
        teardown(ctx)


def _prepare(work: WorkDir, identity: dict, force: bool, data: TrainingData) -> None:
    work.prepare(identity, force)
    if len(data.train) < data.train_total:
        ids = "".join(f"{cut.id}\n" for cut in data.train)
        (work.path / "train_subset.txt").write_text(ids)


def _make_trainer(config, ctx, work, data, loss_fn, hooks, callbacks, builder):
    seed_everything(config.seed)
    model, spec, model_config = builder(config.model, data.feat_dim, data.num_senones)
    model = model.to(ctx.device)
    check_output_size(model, data.feat_dim, data.num_senones, data.tree_id)
    seed_everything(config.seed + 1 + ctx.rank)
    sampler = make_sampler(data.train, config.max_duration, shuffle=True, seed=config.seed)
    batches = EpochBatches(sampler, ctx.world_size, ctx.rank)
    steps = math.ceil(batches.count(0) / config.accum_grad)
    dataset = SenoneDataset(data.normalizer, data.num_senones, hooks)
    loader = make_loader(dataset, batches, config.num_workers)

    def dev_accuracy(m: torch.nn.Module) -> float:
        return frame_accuracy(
            m,
            data.dev,
            data.normalizer,
            data.num_senones,
            config.max_duration,
            ctx.device,
            config.amp,
            config.num_workers,
            ctx,
        )

    trainer = Trainer(
        model, config, ctx, work, batches, loader, dev_accuracy, loss_fn, callbacks, steps
    )
    resume = broadcast_object(ctx, work.resume_point() if ctx.is_main else None)
    if resume is not None:
        trainer.resume(resume)
    if ctx.is_main:
        from torch.utils.tensorboard import SummaryWriter

        purge = trainer.state.step if resume is not None else None
        trainer.tb = SummaryWriter(str(work.log / "tensorboard"), purge_step=purge)
    params = sum(p.numel() for p in model.parameters())
    flops = getattr(model, "flops_per_frame", None)
    logger.info(
        "model %s: %d parameters; %d training cuts (%.2f h), %d steps per epoch",
        json.dumps(spec),
        params,
        len(data.train),
        sum(c.duration for c in data.train) / 3600,
        steps,
    )
    extra = {
        "spec": spec,
        "model_config": model_config,
        "params": params,
        "flops_per_frame": flops() if callable(flops) else None,
        "device": str(ctx.device),
        "world_size": ctx.world_size,
        "train_cuts": len(data.train),
        "train_hours": round(sum(c.duration for c in data.train) / 3600, 4),
        "train_fraction": config.train_fraction,
        "subset_seed": config.subset_seed,
    }
    return trainer, extra


def _finalise(out_dir, work, stage, stage_config, force, config, data, state, extra) -> None:
    best = load_file(work.checkpoints / "best.pt")
    info = ModelInfo(
        spec=extra["spec"],
        model_config=extra["model_config"],
        feat_dim=data.feat_dim,
        num_senones=data.num_senones,
        tree_id=data.tree_id,
        frame_shift=data.frame_shift,
        feature_mean=data.normalizer.mean.tolist(),
        feature_var=data.normalizer.var.tolist(),
        train_config=to_dict(config),
        best_epoch=state.best_epoch,
        dev_frame_acc=float(state.best_acc),
    )
    save_model(work.path / "model.pt", info, best["model"])
    doc = summary(state, {k: v for k, v in extra.items() if k not in ("spec", "model_config")})
    (work.path / "train.json").write_text(json.dumps(doc, indent=2) + "\n")
    with stage_output(out_dir, stage, stage_config, force) as tmp:
        work.finish(tmp)
    logger.info(
        "%s: wrote %s: best epoch %d of %d, dev frame acc %.2f%%, %d steps in %.1f s (%s)",
        stage,
        out_dir,
        state.best_epoch,
        len(state.history),
        100 * state.best_acc,
        state.step,
        doc["total_seconds"],
        state.stop_reason,
    )
