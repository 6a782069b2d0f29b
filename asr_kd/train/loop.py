"""One trainer for a group of N >= 1 acoustic models on one data pass.

Every training of the toolkit runs here: one model (``asr-kd train``, the student of
``asr-kd distill``, possibly data-parallel), N teachers together (the fused ensemble)
and the specialists. Each model of the group (a :class:`Member`) has its own
optimiser, learning-rate schedule, dev scores, best epoch, early stopping and
TensorBoard log; what it learns is plugged in as an :class:`Objective` (target
mapping, loss and dev scores: hard cross-entropy by default, the distillation loss,
the specialists' dustbin targets). The group reads every batch once and runs its
models one after the other on it (``forward="loop"``) or as one batched program
(``"vmap"``, :mod:`asr_kd.train.stacked`).

Checkpoints. A checkpoint (every epoch, and every ``checkpoint_interval`` steps)
holds every model's weights, optimiser, schedule, loop state (history, best epoch,
early-stopping count) and objective state, the data position (epoch, batches consumed
in it, step) and every rank's RNG states. :meth:`Trainer.restore` loads the latest
one; the batch source restarts at the same epoch (its order depends only on seed and
epoch) and skips the batches already consumed, so the run repeats exactly the steps
after the checkpoint: on the CPU the final weights are bitwise those of an
uninterrupted run. With one model a checkpoint's ``"model"`` is its state dict and
``checkpoints/best.pt`` links the selected epoch's; with several, ``"model"`` holds
``"<i>/<name>"`` keys and ``"members"`` the rest, the selected weights included.

Data parallelism (one model only). Rank ``r`` of ``W`` takes batches ``r, r+W, ...``
of the single-process sequence. Every step's loss is the sum over frames divided by
the global frame count of the step (summed over ranks and ``accum_grad`` batches,
known before the forward pass), times ``W`` because DDP averages gradients. So W
ranks compute the same update as one process with ``accum_grad = W`` seeing the same
batches (for models without dropout; up to float summation order). A loss returns
sums, never means, to keep that true.

Convergence. After every epoch a model's dev frame accuracy and cross-entropy update
its schedule (``newbob``, ``newbob_ce``), its selected epoch (``select``) and its
stopping: ``converged`` (``newbob_ce``'s stop), ``early_stopping`` (``patience``),
``max_epochs`` or ``max_steps``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from asr_kd.errors import AsrKdError, ConfigError, first_few
from asr_kd.train.checkpoint import WorkDir, load_file, rng_state, set_rng_state
from asr_kd.train.config import LrSchedule, TrainConfig, make_optimizer, resolve_amp
from asr_kd.train.dataset import PAD_TARGET, Batch, TrainingData
from asr_kd.train.distributed import (
    DistContext,
    all_reduce_sum,
    broadcast_object,
    gather_objects,
    reduce_stats,
)
from asr_kd.train.evaluate import count_correct, forward_logits, score_split
from asr_kd.train.members import (
    CONVERGED,
    LoopState,
    LossFn,
    Member,
    NonFiniteLossError,
    Objective,
    Position,
    StepCallback,
    cross_entropy,
)
from asr_kd.train.source import BatchSource
from asr_kd.train.stacked import shape_of, stacked_forward

logger = logging.getLogger(__name__)

FORWARD_MODES = ("loop", "vmap")
__all__ = ["CONVERGED", "FORWARD_MODES", "LoopState", "LossFn", "Member", "NonFiniteLossError",
           "Objective", "StepCallback", "Trainer", "cross_entropy"]  # fmt: skip


def _on_device(batch: Batch, device: torch.device) -> Batch:
    keys = ("feats", "lengths", "targets")
    return {k: v.to(device, non_blocking=True) if k in keys else v for k, v in batch.items()}


def _torch_rng(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_torch_rng(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _comm(ctx: DistContext) -> torch.device:
    """Where tensors for a collective live (NCCL needs them on the GPU)."""
    return ctx.device if ctx.active and ctx.device.type == "cuda" else torch.device("cpu")


class Trainer:
    """Trains a group of models with checkpoints, dev scores, schedules and stopping.

    Args:
        members: the models (built, on ``ctx.device``) and their objectives.
        config: the training settings, shared by the group.
        ctx: rank, world size and device (several ranks: one model only).
        work: the work directory (only rank 0 writes to it).
        data: ``dev``, ``normalizer`` and ``num_senones`` score the dev split.
        source: the training batches.
        forward: ``loop`` (one model after the other on each batch) or ``vmap``.
        callbacks: called after every step.
    """

    def __init__(
        self,
        members: Sequence[Member],
        config: TrainConfig,
        ctx: DistContext,
        work: WorkDir,
        data: TrainingData,
        source: BatchSource,
        forward: str = "loop",
        callbacks: Sequence[StepCallback] = (),
    ):
        if forward not in FORWARD_MODES:
            raise ConfigError(f"forward must be one of {FORWARD_MODES}, got {forward!r}")
        self.members = list(members)
        self.group = len(self.members) > 1
        if self.group and ctx.active:
            raise ConfigError("a group of models trains in one process; launch it without torchrun")
        self.config, self.ctx, self.work, self.data = config, ctx, work, data
        self.source, self.callbacks = source, tuple(callbacks)
        self.forward_mode = forward if self.group else "loop"
        self.amp = resolve_amp(config.amp, ctx.device)
        self.steps_per_epoch = math.ceil(source.count(0) / config.accum_grad)
        total = self.steps_per_epoch * config.max_epochs
        total = min(total, config.max_steps or total)
        for m in self.members:
            m.runner = m.model
            if ctx.active:
                ids = [ctx.device.index] if ctx.device.type == "cuda" else None
                m.runner = DistributedDataParallel(m.model, device_ids=ids)
            if config.compile:
                m.runner = torch.compile(m.runner, dynamic=True)
            m.optimizer = make_optimizer(m.model.parameters(), config)
            m.schedule = LrSchedule(config, m.optimizer, total)
        if self.forward_mode == "vmap":
            self.base = shape_of(self.members[0].model)  # vmap swaps the weights in
            self.params = [dict(m.model.named_parameters()) for m in self.members]
        self.training: list[Member] = []  # the models training in the current epoch
        self.position = Position()
        self._clock = time.time()

    # ---- checkpoints -------------------------------------------------------------
    def restore(self) -> bool:
        """Resume from the work directory's latest checkpoint, if any; open TensorBoard.

        Returns:
            Whether it resumed.
        """
        path = broadcast_object(self.ctx, self.work.resume_point() if self.ctx.is_main else None)
        if path is not None:
            self.resume(path)
        if self.ctx.is_main:
            from torch.utils.tensorboard import SummaryWriter

            purge = self.position.step if path is not None else None
            for m in self.members:
                where = self.work.log / "tensorboard"
                m.tb = SummaryWriter(str(where / m.name if self.group else where),
                                     purge_step=purge)  # fmt: skip
        return path is not None

    def close(self) -> None:
        for m in self.members:
            if m.tb is not None:
                m.tb.close()

    def resume(self, path: Path) -> None:
        """Restore weights, optimisers, schedules, loop states and RNGs from a checkpoint."""
        ckpt = load_file(path)
        if ckpt["world_size"] != self.ctx.world_size:
            raise AsrKdError(
                f"{path} was written by {ckpt['world_size']} ranks, not "
                f"{self.ctx.world_size}; resume with as many or use --force"
            )
        entries = ckpt["members"] if self.group else [ckpt]
        for i, (m, entry) in enumerate(zip(self.members, entries, strict=True)):
            weights = ckpt["model"]
            if self.group:
                prefix = f"{i}/"
                weights = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
            m.model.load_state_dict(weights)
            m.optimizer.load_state_dict(entry["optimizer"])
            m.schedule.load_state_dict(entry["schedule"])
            m.state = LoopState(**entry["state"])
            m.objective.load_state_dict(entry.get("objective") or {})
            m.best, m.rng = entry.get("best"), entry.get("dropout_rng")
        self.position = Position(**ckpt["position"])
        set_rng_state(ckpt["rng"][self.ctx.rank])
        pos = self.position
        logger.info("resumed from %s: epoch %d, %d batches into it, step %d", path.name,
                    pos.epoch + 1, pos.batches_done, pos.step)  # fmt: skip

    def _entry(self, m: Member) -> dict[str, Any]:
        entry = {
            "optimizer": m.optimizer.state_dict(),
            "schedule": m.schedule.state_dict(),
            "state": dataclasses.asdict(m.state),
            "objective": m.objective.state_dict(),
        }
        if self.group:
            entry |= {"best": m.best, "dropout_rng": m.rng}
        return entry

    def _save(self, name: str, best: bool = False) -> None:
        """Write a checkpoint (rank 0; every rank contributes its RNG state)."""
        self._tick()
        rngs = gather_objects(self.ctx, rng_state())
        if not self.ctx.is_main:
            return
        if self.group:
            payload = {
                "model": {f"{i}/{k}": v for i, m in enumerate(self.members)
                          for k, v in m.model.state_dict().items()},
                "members": [self._entry(m) for m in self.members],
            }  # fmt: skip
        else:
            payload = {"model": self.members[0].model.state_dict(), **self._entry(self.members[0])}
        pos = self.position
        payload |= {
            "position": dataclasses.asdict(pos),
            "rng": rngs,
            "world_size": self.ctx.world_size,
            "sampler": {"epoch": pos.epoch, "batches_done": pos.batches_done},
            "config": dataclasses.asdict(self.config),
        }
        self.work.save(payload, name, best=best)

    def best_weights(self, m: Member) -> dict[str, torch.Tensor]:
        """The selected epoch's weights of ``m`` (after :meth:`run`, on rank 0)."""
        if self.group:
            return m.best
        return load_file(self.work.checkpoints / "best.pt")["model"]

    def _tick(self) -> None:
        now = time.time()
        self.position.epoch_seconds += now - self._clock
        self._clock = now

    # ---- the loop ----------------------------------------------------------------
    def run(self) -> None:
        """Train until every model has stopped."""
        if self.group and self.forward_mode == "loop":
            for m in self.members:  # each model draws dropout from its own copy of the stream
                m.rng = m.rng or _torch_rng(self.ctx.device)
        self._clock = time.time()
        while any(m.active for m in self.members):
            self._train_epoch()
            self._end_epoch()

    def _out_of_steps(self) -> bool:
        return bool(self.config.max_steps) and self.position.step >= self.config.max_steps

    def _train_epoch(self) -> None:
        from tqdm import tqdm

        pos, accum = self.position, self.config.accum_grad
        self.training = [m for m in self.members if m.active]
        for m in self.training:
            m.model.train()
        self.source.start(pos.epoch, skip=pos.batches_done)
        batches = iter(self.source)
        with tqdm(
            total=self.steps_per_epoch,
            initial=pos.batches_done // accum,
            desc=f"epoch {pos.epoch + 1}",
            disable=(not self.ctx.is_main) or None,
            leave=False,
        ) as bar:
            while not self._out_of_steps() and (micro := list(islice(batches, accum))):
                self._step(micro)
                pos.batches_done += len(micro)
                bar.update(1)
                self._after_step()
        if self._out_of_steps():
            for m in self.members:
                m.state.stop_reason = m.state.stop_reason or "max_steps"

    def _forward(self, active: list[Member], batch: Batch) -> list[torch.Tensor]:
        """Every active model's ``[B, T, S]`` float32 logits of one batch."""
        device = self.ctx.device
        if self.forward_mode == "vmap":
            params = [self.params[self.members.index(m)] for m in active]
            self.base.train()
            return list(stacked_forward(self.base, params, batch, device, self.amp).unbind(0))
        if not self.group:
            return [forward_logits(active[0].runner, batch, device, self.amp)]
        out = []
        for m in active:
            _set_torch_rng(m.rng, device)
            out.append(forward_logits(m.runner, batch, device, self.amp))
            m.rng = _torch_rng(device)
        return out

    def _step(self, micro: list[Batch]) -> None:
        """One optimiser step of every active model over this rank's ``accum_grad`` batches."""
        ctx, device = self.ctx, self.ctx.device
        active = [m for m in self.training if m.active]
        if self.group:
            micro = [_on_device(b, device) for b in micro]  # moved once, shared by the group
        mapped = [[m.objective.batch(b) for b in micro] for m in active]
        frames = [sum(int((b["targets"] != PAD_TARGET).sum()) for b in mb) for mb in mapped]
        totals = all_reduce_sum(ctx, torch.tensor(frames, device=_comm(ctx))).tolist()
        scales = [ctx.world_size / max(int(t), 1) for t in totals]
        for m in active:
            m.state.lr = m.schedule.apply(self.position.step)
            m.optimizer.zero_grad(set_to_none=True)
        losses: list[list[torch.Tensor]] = [[] for _ in active]
        for i, batch in enumerate(micro):
            last = i == len(micro) - 1
            runner = active[0].runner
            sync = runner.no_sync() if ctx.active and not last else contextlib.nullcontext()
            with sync:
                terms = []
                for j, (m, logits) in enumerate(zip(active, self._forward(active, batch),
                                                    strict=True)):  # fmt: skip
                    b = mapped[j][i]
                    logits = m.objective.logits(logits)
                    loss, extra = m.objective.loss(logits, b)
                    terms.append(loss * scales[j])
                    losses[j].append(loss.detach())
                    correct, n = count_correct(logits.detach(), b["targets"].to(device))
                    self._add(m, {"loss": loss.detach(), "correct": correct, "frames": n, **extra})
                (terms[0] if len(terms) == 1 else torch.stack(terms).sum()).backward()
        stepped = [m for m, t in zip(active, totals, strict=True) if t > 0]
        for j, m in enumerate(active):
            params = [p for p in m.model.parameters() if p.grad is not None]
            if self.config.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
            else:
                norm = torch.nn.utils.get_total_norm([p.grad for p in params])
            if m in stepped and not math.isfinite(float(norm)):
                raise self._nonfinite(m, micro, losses[j])
        for m in stepped:  # a model with no frame in this step (a specialist) skips it
            m.optimizer.step()
            m.state.step += 1
        self.position.step += 1

    @staticmethod
    def _add(m: Member, sums: dict[str, torch.Tensor]) -> None:
        for k, v in sums.items():
            v = v.detach().double()
            m.local[k] = m.local[k] + v if k in m.local else v

    def _nonfinite(
        self, m: Member, micro: list[Batch], losses: list[torch.Tensor]
    ) -> NonFiniteLossError:
        pos = self.position
        of = f" of {m.name}" if self.group else ""
        bad = [b["cut_ids"] for b, loss in zip(micro, losses, strict=True)
               if not math.isfinite(float(loss))]  # fmt: skip
        where = f"step {pos.step + 1} (epoch {pos.epoch + 1})"
        if bad:
            ids = first_few([i for ids in bad for i in ids])
            what = f"non-finite loss{of} at {where} in the batch of cuts {ids}"
        else:
            ids = first_few([i for b in micro for i in b["cut_ids"]])
            what = (
                f"non-finite gradient{of} at {where} (loss finite here; another rank or the "
                f"backward pass overflowed); this rank's cuts: {ids}"
            )
        return NonFiniteLossError(
            f"{what}. No checkpoint was written with these weights; lower lr, set grad_clip, "
            "or check those cuts' features"
        )

    def _flush(self) -> None:
        """Sum the rank-local statistics over ranks into the epoch's and interval's sums."""
        for m in self.members:
            keys = sorted(m.local)
            glob = reduce_stats(self.ctx, {k: m.local[k] for k in keys}) if keys else {}
            for k, v in glob.items():
                m.state.sums[k] = m.state.sums.get(k, 0.0) + v
                m.interval[k] = m.interval.get(k, 0.0) + v
            m.local = {}

    def _after_step(self) -> None:
        c, pos = self.config, self.position
        if pos.step % c.log_interval == 0:
            self._flush()
            self._log_interval()
        if c.checkpoint_interval and pos.step % c.checkpoint_interval == 0:
            self._flush()
            self._save(f"step-{pos.step}.pt")
        info = {"epoch": pos.epoch + 1, "batches_done": pos.batches_done,
                "lr": self.members[0].state.lr}  # fmt: skip
        for callback in self.callbacks:
            callback(pos.step, info)

    def _log_interval(self) -> None:
        parts, step = [], self.position.step
        for m in self.members:
            s, frames = m.interval, max(m.interval.get("frames", 0.0), 1.0)
            m.interval = {}
            if not s:
                continue
            loss, acc = s.get("loss", 0.0) / frames, s.get("correct", 0.0) / frames
            name = f"{m.name} " if self.group else ""
            parts.append(f"{name}loss {loss:.4f}, frame acc {100 * acc:.2f}%, lr {m.state.lr:.3g}")
            if m.tb is not None:
                m.tb.add_scalar("train/loss", loss, step)
                m.tb.add_scalar("train/frame_acc", acc, step)
                m.tb.add_scalar("train/lr", m.state.lr, step)
                for k in set(s) - {"loss", "correct", "frames"}:
                    m.tb.add_scalar(f"train/{k}", s[k] / frames, step)
        logger.info("epoch %d step %d: %s", self.position.epoch + 1, step, "; ".join(parts))

    def _dev_records(self, members: list[Member]) -> list[dict[str, Any]]:
        """Every model's dev scores from one pass over the dev split."""
        c, data = self.config, self.data
        sums = score_split(
            [m.model for m in members], [m.objective.dev_sums for m in members], data.dev,
            data.normalizer, data.num_senones, c.max_duration, self.ctx.device, c.amp,
            c.num_workers, self.ctx,
        )  # fmt: skip
        return [m.objective.dev_record(s) for m, s in zip(members, sums, strict=True)]

    def _end_epoch(self) -> None:
        pos = self.position
        self._flush()
        self._tick()
        start = time.time()
        records = self._dev_records(self.training)
        dev_seconds = round(time.time() - start, 3)
        selected = [self._end_member_epoch(m, r, dev_seconds)
                    for m, r in zip(self.training, records, strict=True)]  # fmt: skip
        pos.epoch, pos.batches_done, pos.epoch_seconds = pos.epoch + 1, 0, 0.0
        self._clock = time.time()  # the next epoch's clock starts now, not at the dev pass
        self._save(f"epoch-{pos.epoch}.pt", best=not self.group and selected[0])

    def _end_member_epoch(self, m: Member, dev: dict[str, Any], dev_seconds: float) -> bool:
        """Record the epoch; update schedule, selection and stopping. Returns: selected."""
        st, c, seconds = m.state, self.config, self.position.epoch_seconds
        frames = max(st.sums.get("frames", 0.0), 1.0)
        acc, ce = dev["dev_frame_acc"], dev["dev_ce"]
        record = {
            "epoch": len(st.history) + 1,
            "steps": st.step,
            "train_loss": st.sums.get("loss", 0.0) / frames,
            "train_frame_acc": st.sums.get("correct", 0.0) / frames,
            **dev,
            "lr": st.lr,
            "seconds": round(seconds, 3),
            "dev_seconds": dev_seconds,
            "frames": int(st.sums.get("frames", 0)),
            "frames_per_second": round(st.sums.get("frames", 0.0) / max(seconds, 1e-9)),
        }
        record |= {f"train_{k}": v / frames for k, v in st.sums.items()
                   if k not in ("loss", "correct", "frames")}  # fmt: skip
        before = st.history
        best_acc = max((e["dev_frame_acc"] for e in before), default=None)
        best_ce = min((e["dev_ce"] for e in before), default=None)
        st.history.append(record)
        converged = m.schedule.end_epoch(acc, best_acc, ce, best_ce)
        if c.select == "dev_ce":
            better = best_ce is None or ce < best_ce
        else:
            better = best_acc is None or acc > best_acc
        selected = better or c.select == "last"
        st.bad_epochs = 0 if better else st.bad_epochs + 1
        if selected:
            st.best_acc, st.best_ce, st.best_epoch = acc, ce, record["epoch"]
            if self.group:
                m.best = {k: v.detach().cpu().clone() for k, v in m.model.state_dict().items()}
        if st.stop_reason is None:
            if converged:
                st.stop_reason = "converged"
            elif c.patience and st.bad_epochs >= c.patience:
                st.stop_reason = "early_stopping"
            elif record["epoch"] >= c.max_epochs:
                st.stop_reason = "max_epochs"
        logger.info(
            "%sepoch %d: train loss %.4f, train frame acc %.2f%%, dev frame acc %.2f%%, "
            "dev ce %.4f%s, %.1f s, %d frames/s",
            f"{m.name} " if self.group else "", record["epoch"], record["train_loss"],
            100 * record["train_frame_acc"], 100 * acc, ce, " (best)" if selected else "",
            record["seconds"], record["frames_per_second"],
        )  # fmt: skip
        if m.tb is not None:
            m.tb.add_scalar("dev/frame_acc", acc, self.position.step)
            m.tb.add_scalar("dev/ce", ce, self.position.step)
            m.tb.add_scalar("train/epoch_frame_acc", record["train_frame_acc"], self.position.step)
        st.sums = {}
        return selected
