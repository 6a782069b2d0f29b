"""Training an ensemble of teachers (``asr-kd train-ensemble``), separately or fused.

The teachers of Hinton et al. (2015) share architecture and training procedure and
differ only in their initial weights. Here teacher ``k`` is built by ``build_model``
right after ``seed_everything(seeds[k])``; the data order and dropout RNG come from
the training config's ``seed``, shared by all. Each teacher is an ordinary training
output, ``<exp>/<prefix>K/`` with ``model.pt`` and ``train.json``, whichever way it
was trained:

- separately: one :func:`asr_kd.train.train_model` run per teacher;
- fused (``fused: true``): all teachers in one process and one data pass. Every batch
  is read once and goes through all teachers at once: their weights are stacked and
  one ``torch.func.vmap`` of ``functional_call`` runs them as one batched program
  (``fused_forward: vmap``; ``loop`` runs them one after the other on the batch, for
  architectures vmap cannot batch, e.g. with batch-norm buffers). The loss is the sum
  of the teachers' losses, so no gradient mixes; one optimiser holds one parameter
  group per teacher, each with its own learning-rate schedule (newbob follows each
  teacher's dev accuracy), gradient clipping, best epoch and early stopping.

A fused training computes the same teachers as separate trainings: with
``fused_forward: loop`` bitwise on the CPU, with ``vmap`` up to float rounding (the
batched weight gradient sums in another order). Dropout masks match too: vmap draws
one mask for all teachers (``randomness="same"``), as separate runs with one seed do;
``loop`` gives each teacher its own copy of the RNG stream.

A killed fused training resumes from ``<exp>/<first>-<last>.fused.work/``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import torch

from asr_kd.config import to_dict
from asr_kd.errors import ConfigError
from asr_kd.stage import git_revision, require_done, stage_output
from asr_kd.train import TrainConfig, train_model
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
from asr_kd.train.config import LrSchedule, make_optimizer, resolve_amp
from asr_kd.train.dataset import (
    PAD_TARGET,
    Batch,
    EpochBatches,
    SenoneDataset,
    TrainingData,
    load_training_data,
    make_loader,
    make_sampler,
)
from asr_kd.train.distributed import DistContext, rank_log, resolve_device
from asr_kd.train.evaluate import (
    autocast,
    check_output_size,
    count_correct,
    eval_loader,
    forward_logits,
)
from asr_kd.train.loop import (
    LoopState,
    NonFiniteLossError,
    StepCallback,
    cross_entropy,
    summary,
    training_stage_config,
)

__all__ = ["EnsembleConfig", "seeded_builder", "stacked_forward", "train_ensemble", "train_fused"]

logger = logging.getLogger(__name__)

STAGE = "train-ensemble"
FORWARD_MODES = ("vmap", "loop")


@dataclasses.dataclass(frozen=True)
class EnsembleConfig:
    """The ``ensemble:`` section: how many teachers, their seeds and how to train them.

    Attributes:
        num_teachers: N.
        seeds: the N initialisation seeds (default ``1..N``); the training section's
            ``seed`` sets the data order and dropout, shared by all teachers.
        fused: train all teachers in one batched program (see the module docstring).
        fused_forward: ``vmap`` (one batched program) or ``loop``.
        architectures: optional per-teacher model specs (``{arch, preset, options}``;
            N of them, or none for the training section's model); fused training
            needs one architecture.
        name_prefix: teacher ``k`` is written to ``<exp>/<name_prefix>k``.
    """

    num_teachers: int = 4
    seeds: tuple[int, ...] = ()
    fused: bool = False
    fused_forward: str = "vmap"
    architectures: tuple[dict[str, Any], ...] = ()
    name_prefix: str = "teacher"

    def __post_init__(self) -> None:
        if self.num_teachers < 1:
            raise ValueError(f"num_teachers must be at least 1, got {self.num_teachers}")
        if self.seeds and len(self.seeds) != self.num_teachers:
            raise ValueError(f"{len(self.seeds)} seeds for {self.num_teachers} teachers")
        if len(set(self.init_seeds())) != self.num_teachers:
            raise ValueError(f"the teachers' seeds must differ, got {list(self.seeds)}")
        if self.architectures and len(self.architectures) != self.num_teachers:
            raise ValueError(
                f"{len(self.architectures)} architectures for {self.num_teachers} teachers "
                "(give one per teacher, or none to use the training section's model)"
            )
        if self.fused_forward not in FORWARD_MODES:
            raise ValueError(f"fused_forward must be one of {FORWARD_MODES}")
        if self.fused and len({json.dumps(s, sort_keys=True) for s in self.architectures}) > 1:
            raise ValueError("fused training needs one architecture for all teachers")
        if not self.name_prefix or "/" in self.name_prefix:
            raise ValueError(f"name_prefix must be a plain name, got {self.name_prefix!r}")

    def init_seeds(self) -> list[int]:
        return [int(s) for s in self.seeds] or list(range(1, self.num_teachers + 1))

    def teacher_dirs(self, exp_dir: Path) -> list[Path]:
        return [exp_dir / f"{self.name_prefix}{k + 1}" for k in range(self.num_teachers)]


def seeded_builder(init_seed: int, base: ModelBuilder = registry_builder) -> ModelBuilder:
    """A model builder that seeds every RNG with ``init_seed`` first (a teacher's weights)."""

    def build(spec: dict[str, Any], feat_dim: int, num_senones: int):
        seed_everything(init_seed)
        return base(spec, feat_dim, num_senones)

    return build


def _extra(k: int, n: int, seed: int, fused: bool, forward: str) -> dict[str, Any]:
    info = {"teacher": k + 1, "num_teachers": n, "init_seed": seed, "fused": fused}
    return {"ensemble": info | ({"fused_forward": forward} if fused else {})}


def train_ensemble(
    data_dir: Path | str,
    feature_dir: Path | str,
    exp_dir: Path | str,
    ensemble: EnsembleConfig,
    config: TrainConfig,
    *,
    train_split: str = "train",
    dev_split: str = "dev",
    device: str = "auto",
    force: bool = False,
    builder: ModelBuilder = registry_builder,
) -> list[Path]:
    """Train the ensemble's teachers into ``<exp_dir>/<prefix>1..N`` (``train-ensemble``).

    Args:
        data_dir, feature_dir: as :func:`asr_kd.train.train_model`.
        exp_dir: the experiment directory the teachers are written into.
        ensemble: number, seeds, architectures, fused or not.
        config: the training settings shared by all teachers.
        builder: builds a model from a spec (default: the registry).

    Returns:
        The teachers' directories.
    """
    seeds, outs = ensemble.init_seeds(), ensemble.teacher_dirs(Path(exp_dir))
    n, mode = ensemble.num_teachers, ensemble.fused_forward
    if ensemble.fused:
        train = config
        if ensemble.architectures:
            train = dataclasses.replace(config, model=ensemble.architectures[0])
        return train_fused(
            data_dir, feature_dir, outs, train, seeds, forward=mode, train_split=train_split,
            dev_split=dev_split, device=device, force=force, builder=builder,
        )  # fmt: skip
    for k, (out, seed) in enumerate(zip(outs, seeds, strict=True)):
        train = config
        if ensemble.architectures:
            train = dataclasses.replace(config, model=ensemble.architectures[k])
        logger.info("%s: teacher %d of %d (init seed %d) -> %s", STAGE, k + 1, n, seed, out)
        train_model(
            data_dir, feature_dir, out, train, train_split=train_split, dev_split=dev_split,
            device=device, force=force, builder=seeded_builder(seed, builder), stage=STAGE,
            extra_config=_extra(k, n, seed, False, mode),
        )  # fmt: skip
    return outs


@dataclasses.dataclass
class _Member:
    """One teacher of a fused training."""

    name: str
    out_dir: Path
    seed: int
    model: torch.nn.Module
    spec: dict[str, Any]
    model_config: dict[str, Any]
    state: LoopState = dataclasses.field(default_factory=LoopState)
    schedule: LrSchedule | None = None
    best: dict[str, torch.Tensor] | None = None
    rng: dict[str, torch.Tensor] | None = None
    local: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    interval: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.state.stop_reason is None


class _GroupView:
    """An optimiser seen as its ``index``-th parameter group only (for :class:`LrSchedule`)."""

    def __init__(self, optimizer: torch.optim.Optimizer, index: int):
        self.optimizer, self.index = optimizer, index

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [self.optimizer.param_groups[self.index]]


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


def stacked_forward(
    base: torch.nn.Module,
    params: Sequence[dict[str, torch.Tensor]],
    feats: torch.Tensor,
    lengths: torch.Tensor,
) -> torch.Tensor:
    """``[M, B, T, C]`` logits of M models of ``base``'s shape on one batch, as one batched
    program: their parameters stacked, one ``vmap`` of ``functional_call`` (gradients flow
    back to each model's own parameters; one dropout mask for all, ``randomness="same"``)."""
    from torch.func import functional_call, vmap

    stacked = {n: torch.stack([p[n] for p in params]) for n in params[0]}

    def one(weights, x, n):
        return functional_call(base, weights, (x, n))[0]

    return vmap(one, in_dims=(0, None, None), randomness="same")(stacked, feats, lengths)


class FusedTrainer:
    """Trains N teachers of one architecture on one data pass (see the module docstring).

    Args:
        members: the teachers, their models built and on the device.
        config: the shared training settings.
        ctx: the (single-process) device context.
        work: the fused work directory.
        data: the checked training data.
        forward: ``vmap`` or ``loop``.
        callbacks: called after every optimiser step with ``(step, facts)``.
    """

    def __init__(
        self,
        members: list[_Member],
        config: TrainConfig,
        ctx: DistContext,
        work: WorkDir,
        data: TrainingData,
        forward: str = "vmap",
        callbacks: Sequence[StepCallback] = (),
    ):
        self.members = members
        self.training: list[_Member] = []  # the teachers training in the current epoch
        self.config, self.ctx, self.work, self.data = config, ctx, work, data
        self.forward_mode, self.callbacks = forward, tuple(callbacks)
        self.amp = resolve_amp(config.amp, ctx.device)
        self.loss_fn = cross_entropy(config.label_smoothing)
        if forward == "vmap" and any(True for _ in members[0].model.buffers()):
            raise ConfigError(
                "fused_forward: vmap needs a model without buffers (batch norm has running "
                "statistics); use fused_forward: loop"
            )
        self.base = copy.deepcopy(members[0].model).to("meta")  # vmap swaps the weights in
        self.params = [dict(m.model.named_parameters()) for m in members]
        self.optimizer = make_optimizer(members[0].model.parameters(), config)
        for m in members[1:]:
            self.optimizer.add_param_group({"params": list(m.model.parameters())})
        sampler = make_sampler(data.train, config.max_duration, shuffle=True, seed=config.seed)
        self.batches = EpochBatches(sampler)
        self.steps_per_epoch = math.ceil(self.batches.count(0) / config.accum_grad)
        dataset = SenoneDataset(data.normalizer, data.num_senones)
        self.loader = make_loader(dataset, self.batches, config.num_workers)
        total = self.steps_per_epoch * config.max_epochs
        total = min(total, config.max_steps or total)
        for i, m in enumerate(members):
            m.schedule = LrSchedule(config, _GroupView(self.optimizer, i), total)
        self.shared = {"epoch": 0, "batches_done": 0, "step": 0, "epoch_seconds": 0.0}
        self._clock = time.time()

    # ---- checkpoints -------------------------------------------------------------
    def save(self, name: str) -> None:
        self._tick()
        payload = {
            "model": {
                f"{i}/{k}": v for i, m in enumerate(self.members)
                for k, v in m.model.state_dict().items()
            },
            "best": [m.best for m in self.members],
            "optimizer": self.optimizer.state_dict(),
            "schedules": [m.schedule.state_dict() for m in self.members],
            "states": [dataclasses.asdict(m.state) for m in self.members],
            "member_rng": [m.rng for m in self.members],
            "shared": dict(self.shared),
            "rng": rng_state(),
            "world_size": 1,
            "config": dataclasses.asdict(self.config),
        }  # fmt: skip
        self.work.save(payload, name)

    def resume(self, path: Path) -> None:
        ckpt = load_file(path)
        for i, m in enumerate(self.members):
            prefix = f"{i}/"
            weights = {
                k[len(prefix) :]: v for k, v in ckpt["model"].items() if k.startswith(prefix)
            }
            m.model.load_state_dict(weights)
            m.best, m.rng = ckpt["best"][i], ckpt["member_rng"][i]
            m.schedule.load_state_dict(ckpt["schedules"][i])
            m.state = LoopState(**ckpt["states"][i])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.shared = dict(ckpt["shared"])
        set_rng_state(ckpt["rng"])
        sh = self.shared
        logger.info("resumed from %s: epoch %d, %d batches into it, step %d", path.name,
                    sh["epoch"] + 1, sh["batches_done"], sh["step"])  # fmt: skip

    def _tick(self) -> None:
        now = time.time()
        self.shared["epoch_seconds"] += now - self._clock
        self._clock = now

    # ---- the loop ----------------------------------------------------------------
    def run(self) -> None:
        """Train until every teacher has stopped (max_epochs, max_steps, early stopping)."""
        if self.forward_mode == "loop":
            for m in self.members:
                m.rng = m.rng or _torch_rng(self.ctx.device)
        self._clock = time.time()
        while any(m.active for m in self.members):
            self._train_epoch()
            self._end_epoch()

    def _out_of_steps(self) -> bool:
        return bool(self.config.max_steps) and self.shared["step"] >= self.config.max_steps

    def _train_epoch(self) -> None:
        from tqdm import tqdm

        sh, accum = self.shared, self.config.accum_grad
        self.training = [m for m in self.members if m.active]
        for m in self.training:
            m.model.train()
        self.batches.start(sh["epoch"], skip=sh["batches_done"])
        batches = iter(self.loader)
        with tqdm(total=self.steps_per_epoch, initial=sh["batches_done"] // accum,
                  desc=f"epoch {sh['epoch'] + 1}", leave=False, disable=None) as bar:  # fmt: skip
            while not self._out_of_steps() and (micro := list(islice(batches, accum))):
                self._step(micro)
                sh["batches_done"] += len(micro)
                bar.update(1)
                self._after_step()
        if self._out_of_steps():
            for m in self.members:
                m.state.stop_reason = m.state.stop_reason or "max_steps"

    def _forward(self, active: list[_Member], batch: Batch) -> list[torch.Tensor]:
        """Every active teacher's ``[B, T, S]`` float32 logits of one batch."""
        device = self.ctx.device
        batch = _on_device(batch, device)  # read once, moved once, shared by the teachers
        if self.forward_mode == "loop":
            out = []
            for m in active:  # each teacher draws dropout from its own copy of the stream
                _set_torch_rng(m.rng, device)
                out.append(forward_logits(m.model, batch, device, self.amp))
                m.rng = _torch_rng(device)
            return out
        idx = [self.members.index(m) for m in active]
        feats, lengths = batch["feats"], batch["lengths"]
        self.base.train()
        with autocast(device, self.amp):
            logits = stacked_forward(self.base, [self.params[i] for i in idx], feats, lengths)
        if logits.shape[1:3] != feats.shape[:2]:
            raise ValueError(
                f"the model turned {tuple(feats.shape[:2])} frames into "
                f"{tuple(logits.shape[1:3])}: a hybrid acoustic model keeps the frame count"
            )
        return list(logits.float().unbind(0))

    def _step(self, micro: list[Batch]) -> None:
        """One optimiser step of every active teacher over ``accum_grad`` batches."""
        active = [m for m in self.members if m.active]
        frames = sum(int((b["targets"] != PAD_TARGET).sum()) for b in micro)
        scale = 1 / max(frames, 1)  # as the loop: the step's frame count, known beforehand
        for m in active:
            m.state.lr = m.schedule.apply(self.shared["step"])
        self.optimizer.zero_grad(set_to_none=True)
        for batch in micro:
            batch = _on_device(batch, self.ctx.device)
            logits = self._forward(active, batch)
            targets = batch["targets"]
            losses = []
            for m, lg in zip(active, logits, strict=True):
                loss, extra = self.loss_fn(lg, batch)
                correct, n = count_correct(lg.detach(), targets)
                sums = {"loss": loss, "correct": correct, "frames": n, **extra}
                for k, v in sums.items():
                    v = v.detach().double()
                    m.local[k] = m.local[k] + v if k in m.local else v
                losses.append(loss)
            (torch.stack(losses).sum() * scale).backward()
        bad = []
        for m in active:
            params = [p for p in m.model.parameters() if p.grad is not None]
            if self.config.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
            else:
                norm = torch.nn.utils.get_total_norm([p.grad for p in params])
            if not math.isfinite(float(norm)):
                bad.append(m.name)
        if bad:
            ids = ", ".join(i for b in micro for i in b["cut_ids"])
            raise NonFiniteLossError(
                f"non-finite gradient of {', '.join(bad)} at step {self.shared['step'] + 1} "
                f"(cuts {ids}); no checkpoint was written with these weights; lower lr or set "
                "grad_clip"
            )
        self.optimizer.step()
        self.shared["step"] += 1
        for m in active:
            m.state.step = self.shared["step"]

    def _flush(self, m: _Member) -> None:
        for k, v in m.local.items():
            m.state.sums[k] = m.state.sums.get(k, 0.0) + float(v)
            m.interval[k] = m.interval.get(k, 0.0) + float(v)
        m.local = {}

    def _after_step(self) -> None:
        c, step = self.config, self.shared["step"]
        if step % c.log_interval == 0:
            parts = []
            for m in self.members:
                self._flush(m)
                if m.interval:
                    frames = max(m.interval.get("frames", 0.0), 1.0)
                    parts.append(f"{m.name} loss {m.interval['loss'] / frames:.4f} "
                                 f"acc {100 * m.interval['correct'] / frames:.2f}%")  # fmt: skip
                m.interval = {}
            logger.info("epoch %d step %d: %s", self.shared["epoch"] + 1, step, "; ".join(parts))
        if c.checkpoint_interval and step % c.checkpoint_interval == 0:
            for m in self.members:
                self._flush(m)
            self.save(f"step-{step}.pt")
        info = {"epoch": self.shared["epoch"] + 1, "batches_done": self.shared["batches_done"]}
        for callback in self.callbacks:
            callback(step, info)

    @torch.no_grad()
    def _dev_accuracies(self, members: list[_Member]) -> list[float]:
        """Every teacher's dev frame accuracy from one pass over the dev batches."""
        c, data, device = self.config, self.data, self.ctx.device
        loader = eval_loader(data.dev, data.normalizer, data.num_senones, c.max_duration,
                             c.num_workers)  # fmt: skip
        counts = [[0, 0] for _ in members]
        for m in members:
            m.model.eval()
        try:
            for batch in loader:
                batch = _on_device(batch, device)
                targets = batch["targets"]
                for i, m in enumerate(members):
                    logits = forward_logits(m.model, batch, device, self.amp)
                    correct, n = count_correct(logits, targets)
                    counts[i][0] += int(correct)
                    counts[i][1] += int(n)
        finally:
            for m in members:
                m.model.train()
        return [correct / max(n, 1) for correct, n in counts]

    def _end_epoch(self) -> None:
        sh = self.shared
        for m in self.training:
            self._flush(m)
        self._tick()
        start = time.time()
        accs = self._dev_accuracies(self.training)
        dev_seconds = round(time.time() - start, 3)
        for m, acc in zip(self.training, accs, strict=True):
            self._end_member_epoch(m, acc, dev_seconds)
        sh["epoch"], sh["batches_done"], sh["epoch_seconds"] = sh["epoch"] + 1, 0, 0.0
        self._clock = time.time()
        self.save(f"epoch-{sh['epoch']}.pt")

    def _end_member_epoch(self, m: _Member, dev_acc: float, dev_seconds: float) -> None:
        st, c, seconds = m.state, self.config, self.shared["epoch_seconds"]
        frames = max(st.sums.get("frames", 0.0), 1.0)
        record = {
            "epoch": st.epoch + 1,
            "steps": st.step,
            "train_loss": st.sums.get("loss", 0.0) / frames,
            "train_frame_acc": st.sums.get("correct", 0.0) / frames,
            "dev_frame_acc": dev_acc,
            "lr": st.lr,
            "seconds": round(seconds, 3),
            "dev_seconds": dev_seconds,
            "frames": int(st.sums.get("frames", 0)),
            "frames_per_second": round(st.sums.get("frames", 0.0) / max(seconds, 1e-9)),
        }
        st.history.append(record)
        improved = st.best_acc is None or dev_acc > st.best_acc
        m.schedule.end_epoch(dev_acc, st.best_acc)
        if improved:
            st.best_acc, st.best_epoch, st.bad_epochs = dev_acc, st.epoch + 1, 0
            m.best = {k: v.detach().cpu().clone() for k, v in m.model.state_dict().items()}
        else:
            st.bad_epochs += 1
        if st.stop_reason is None:
            if c.patience and st.bad_epochs >= c.patience:
                st.stop_reason = "early_stopping"
            elif st.epoch + 1 >= c.max_epochs:
                st.stop_reason = "max_epochs"
        logger.info(
            "%s epoch %d: train loss %.4f, train frame acc %.2f%%, dev frame acc %.2f%%%s",
            m.name, record["epoch"], record["train_loss"], 100 * record["train_frame_acc"],
            100 * dev_acc, " (best)" if improved else "",
        )  # fmt: skip
        st.epoch, st.batches_done, st.sums, st.epoch_seconds = st.epoch + 1, 0, {}, 0.0


def train_fused(
    data_dir: Path | str,
    feature_dir: Path | str,
    out_dirs: Sequence[Path | str],
    config: TrainConfig,
    init_seeds: Sequence[int],
    *,
    forward: str = "vmap",
    train_split: str = "train",
    dev_split: str = "dev",
    device: str = "auto",
    force: bool = False,
    callbacks: Sequence[StepCallback] = (),
    builder: ModelBuilder = registry_builder,
    stage: str = STAGE,
) -> list[Path]:
    """Train N teachers of ``config.model`` together; write N ordinary training outputs.

    Teacher ``k`` is initialised as ``build_model`` after ``seed_everything(init_seeds[k])``
    and written to ``out_dirs[k]`` (``model.pt``, ``train.json``, ``log/train.log``),
    exactly as :func:`train_model` with ``builder=seeded_builder(init_seeds[k])`` would.

    Raises:
        ConfigError: several processes (torchrun), or vmap with a model with buffers.
    """
    if len(out_dirs) != len(init_seeds) or not out_dirs:
        raise ValueError(f"{len(out_dirs)} output directories for {len(init_seeds)} seeds")
    if forward not in FORWARD_MODES:
        raise ConfigError(f"fused_forward must be one of {FORWARD_MODES}, got {forward!r}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("fused ensemble training runs in one process; launch it without torchrun")
    ctx = DistContext(device=resolve_device(device))
    outs = [Path(o).resolve() for o in out_dirs]
    data_dir = require_done(Path(data_dir).resolve(), "senone-targets")
    feature_dir = require_done(Path(feature_dir).resolve(), "compute-features")
    data = load_training_data(data_dir, feature_dir, train_split, dev_split,
                              config.train_fraction, config.subset_seed)  # fmt: skip
    n = len(outs)
    configs = [
        training_stage_config(data_dir, feature_dir, train_split, dev_split, data, config, stage,
                      _extra(k, n, s, True, forward))
        for k, s in enumerate(init_seeds)
    ]  # fmt: skip
    done = [finished_output(o, stage, c, force) for o, c in zip(outs, configs, strict=True)]
    if all(done):
        return outs
    work = WorkDir(outs[0].with_name(f"{outs[0].name}-{outs[-1].name}.fused"))
    work.prepare({"stage": f"{stage}-fused", "config": {"teachers": configs}, "world_size": 1},
                 force)  # fmt: skip
    with rank_log(work.log, ctx):
        logger.info("%s (fused, %s): %d teachers on %s; config %s (git %s)", stage, forward, n,
                    ctx.device, json.dumps(configs[0]), git_revision())  # fmt: skip
        seed_everything(config.seed)  # as train_model (each builder then seeds its own)
        members = []
        for out, seed in zip(outs, init_seeds, strict=True):
            model, spec, model_config = seeded_builder(seed, builder)(
                config.model, data.feat_dim, data.num_senones
            )
            model = model.to(ctx.device)
            check_output_size(model, data.feat_dim, data.num_senones, data.tree_id)
            members.append(_Member(out.name, out, seed, model, spec, model_config))
        seed_everything(config.seed + 1)  # the dropout stream of rank 0, as train_model
        trainer = FusedTrainer(members, config, ctx, work, data, forward, callbacks)
        resume = work.resume_point()
        if resume is not None:
            trainer.resume(resume)
        trainer.run()
        for m, stage_config in zip(members, configs, strict=True):
            _finalise(m, stage, stage_config, force, config, data, work, ctx, forward, outs)
    shutil.rmtree(work.path)
    return outs


def _finalise(m: _Member, stage, stage_config, force, config, data: TrainingData, work, ctx,
              forward, outs) -> None:  # fmt: skip
    """Write one teacher's training output (the contract of :func:`train_model`)."""
    info = ModelInfo(
        spec=m.spec, model_config=m.model_config, feat_dim=data.feat_dim,
        num_senones=data.num_senones, tree_id=data.tree_id, frame_shift=data.frame_shift,
        feature_mean=data.normalizer.mean.tolist(), feature_var=data.normalizer.var.tolist(),
        train_config=to_dict(config), best_epoch=m.state.best_epoch,
        dev_frame_acc=float(m.state.best_acc),
    )  # fmt: skip
    params = sum(p.numel() for p in m.model.parameters())
    flops = getattr(m.model, "flops_per_frame", None)
    extra = {
        "params": params, "flops_per_frame": flops() if callable(flops) else None,
        "device": str(ctx.device), "world_size": 1, "train_cuts": len(data.train),
        "train_hours": round(sum(c.duration for c in data.train) / 3600, 4),
        "train_fraction": config.train_fraction, "subset_seed": config.subset_seed,
        "fused": {"teachers": [o.name for o in outs], "forward": forward, "init_seed": m.seed},
    }  # fmt: skip
    with stage_output(m.out_dir, stage, stage_config, force) as tmp:
        if tmp is None:
            return
        save_model(tmp / "model.pt", info, m.best)
        doc = summary(m.state, extra)
        (tmp / "train.json").write_text(json.dumps(doc, indent=2) + "\n")
        (tmp / "log").mkdir()
        shutil.copy(work.log / "train.log", tmp / "log" / "train.log")
        if len(data.train) < data.train_total:
            (tmp / "train_subset.txt").write_text("".join(f"{c.id}\n" for c in data.train))
    logger.info("%s: wrote %s: best epoch %d of %d, dev frame acc %.2f%% (%s)", stage, m.out_dir,
                m.state.best_epoch, len(m.state.history), 100 * m.state.best_acc,
                m.state.stop_reason)  # fmt: skip
