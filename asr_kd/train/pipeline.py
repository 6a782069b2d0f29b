"""The training stage (``asr-kd train``): N >= 1 models, each an ordinary training output.

Output of each model (one directory, written atomically when the training ends)::

    <out>/model.pt          spec, model config, the selected epoch's weights, feature
                            statistics, num_senones, tree id, frame shift, train config,
                            selected epoch and its dev frame accuracy (see ``load_model``)
    <out>/train.json        per epoch: train loss, frame accuracy and cross-entropy, dev
                            frame accuracy and cross-entropy, learning rate, seconds,
                            frames/s; num_epochs, converged, stop_reason, best epoch,
                            parameters, totals
    <out>/checkpoints/      epoch-N.pt (resumable), best.pt        (one model)
    <out>/log/              train.log (train.rank<R>.log on other ranks), tensorboard/
    <out>/train_subset.txt  the training cut ids, when train_fraction < 1

One model trains in ``<out>.work/`` (:class:`WorkDir`), possibly data-parallel under
``torchrun``; a group (the fused ensemble) in ``<first>-<last>.fused.work/``, whose
checkpoints hold the whole group and are removed at the end (each output gets
``model.pt``, ``train.json`` and ``log/``). Both survive a kill: a rerun with the same
configuration resumes (see :mod:`asr_kd.train.loop`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asr_kd.config import to_dict
from asr_kd.errors import ConfigError
from asr_kd.stage import git_revision, require_done, stage_output
from asr_kd.train.checkpoint import (
    ModelBuilder,
    ModelInfo,
    WorkDir,
    finished_output,
    registry_builder,
    save_model,
    seed_everything,
)
from asr_kd.train.config import TrainConfig, updates_for_fraction
from asr_kd.train.dataset import (
    TARGETS_STAGE,
    CollateHook,
    TrainingData,
    is_unlabelled,
    load_training_data,
)
from asr_kd.train.distributed import (
    DistContext,
    barrier,
    rank_log,
    resolve_device,
    run_on_main,
    setup_distributed,
    teardown,
)
from asr_kd.train.evaluate import check_output_size
from asr_kd.train.loop import Trainer
from asr_kd.train.members import (
    CONVERGED,
    LoopState,
    LossFn,
    Member,
    Objective,
    StepCallback,
    cross_entropy,
)
from asr_kd.train.source import make_source

logger = logging.getLogger(__name__)

STAGE = "train"


def summary(state: LoopState, extra: dict[str, Any]) -> dict[str, Any]:
    """The ``train.json`` document of one model."""
    return {
        "epochs": state.history,
        "num_epochs": len(state.history),
        "converged": state.stop_reason in CONVERGED,
        "stop_reason": state.stop_reason,
        "best_epoch": state.best_epoch,
        "best_dev_frame_acc": state.best_acc,
        "best_dev_ce": state.best_ce,
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
    """The completion-marker config of a training output."""
    return {
        "data_dir": str(data_dir),
        "feature_dir": str(feature_dir),
        "train_split": train_split,
        "dev_split": dev_split,
        "num_senones": data.num_senones,
        "tree_id": data.tree_id,
        # unset options (omit_phone: None) are left out: markers of older outputs still match
        stage: {k: v for k, v in to_dict(config).items() if v is not None},
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
    return train_models(
        data_dir, feature_dir, [out_dir], config, [builder], train_split=train_split,
        dev_split=dev_split, device=device, force=force, loss_fn=loss_fn,
        collate_hooks=collate_hooks, callbacks=callbacks, stage=stage,
        extra_configs=[extra_config],
    )[0]  # fmt: skip


def train_models(
    data_dir: Path | str,
    feature_dir: Path | str,
    out_dirs: Sequence[Path | str],
    config: TrainConfig,
    builders: Sequence[ModelBuilder],
    *,
    forward: str = "loop",
    train_split: str = "train",
    dev_split: str = "dev",
    device: str = "auto",
    force: bool = False,
    loss_fn: LossFn | None = None,
    collate_hooks: Sequence[CollateHook] = (),
    callbacks: Sequence[StepCallback] = (),
    stage: str = STAGE,
    extra_configs: Sequence[dict[str, Any] | None] = (),
    extra_summaries: Sequence[dict[str, Any]] = (),
) -> list[Path]:
    """Train N models with one data pass into N training outputs (see the module doc).

    Model ``k`` is ``builders[k](config.model, ...)`` (called after
    ``seed_everything(config.seed)``) and is written to ``out_dirs[k]``. Several
    models train in one process, one after the other on each batch (``forward:
    loop``) or as one batched program (``vmap``).

    Args:
        extra_configs: per model, additional completion-marker configuration.
        extra_summaries: per model, additional ``train.json`` entries.
        The others: as :func:`train_model`.

    Raises:
        ConfigError: several models under ``torchrun``.
    """
    n = len(out_dirs)
    if not n or len(builders) != n:
        raise ValueError(f"{len(builders)} model builders for {n} output directories")
    if n > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("a group of models trains in one process; launch it without torchrun")
    ctx = setup_distributed(device) if n == 1 else DistContext(device=resolve_device(device))
    try:
        outs = [Path(o).resolve() for o in out_dirs]
        data_dir = require_done(Path(data_dir).resolve(), TARGETS_STAGE)
        feature_dir = require_done(Path(feature_dir).resolve(), "compute-features")
        data = load_training_data(
            data_dir, feature_dir, train_split, dev_split, config.train_fraction, config.subset_seed
        )
        if config.omit_phone is not None:
            from asr_kd.tree.phones import phone_senones

            senones = phone_senones(data_dir, config.omit_phone)
            data = dataclasses.replace(data, drop_senones=tuple(senones))
        if loss_fn is None and any(is_unlabelled(c) for c in data.train):
            raise ConfigError(
                f"{data_dir} ({train_split}) holds untranscribed cuts: they have no hard "
                "targets to train on; distil a student on them ('distill')"
            )
        extras = list(extra_configs) or [None] * n
        configs = [training_stage_config(data_dir, feature_dir, train_split, dev_split, data,
                                         config, stage, e) for e in extras]  # fmt: skip
        done = [finished_output(o, stage, c, force) for o, c in zip(outs, configs, strict=True)]
        if all(done):
            return outs
        if n == 1:
            work = WorkDir(outs[0])
            identity = {"stage": stage, "config": configs[0], "world_size": ctx.world_size}
        else:
            work = WorkDir(outs[0].with_name(f"{outs[0].name}-{outs[-1].name}.fused"))
            identity = {"stage": f"{stage}-fused", "config": {"models": configs},
                        "world_size": 1}  # fmt: skip
        run_on_main(ctx, lambda: work.prepare(identity, force))
        run = _Run(
            ctx=ctx, work=work, stage=stage, config=config, stage_configs=configs, data=data,
            outs=outs, builders=builders, loss_fn=loss_fn, collate_hooks=collate_hooks,
            forward=forward, callbacks=callbacks, force=force, extra_summaries=extra_summaries,
        )  # fmt: skip
        try:
            _train(run)
        except BaseException:
            if ctx.is_main:
                work.discard_if_unstarted()
            raise
        if n > 1:
            shutil.rmtree(work.path)
        return outs
    finally:
        teardown(ctx)


@dataclasses.dataclass(frozen=True)
class _Run:
    """What one training of N models needs once its work dir is prepared."""

    ctx: DistContext
    work: WorkDir
    stage: str
    config: TrainConfig
    stage_configs: list[dict[str, Any]]  # per model: its completion marker's config
    data: TrainingData
    outs: list[Path]
    builders: Sequence[ModelBuilder]
    loss_fn: LossFn | None
    collate_hooks: Sequence[CollateHook]
    forward: str
    callbacks: Sequence[StepCallback]
    force: bool
    extra_summaries: Sequence[dict[str, Any]]


def _train(run: _Run) -> None:
    """The training itself, in ``run.work`` (prepared), then each model's output."""
    ctx, work, stage, config, data = run.ctx, run.work, run.stage, run.config, run.data
    configs, n = run.stage_configs, len(run.outs)
    with rank_log(work.log, ctx):
        logger.info("%s: %d model(s), rank %d of %d on %s; config %s (git %s)", stage, n,
                    ctx.rank, ctx.world_size, ctx.device, json.dumps(configs[0]),
                    git_revision())  # fmt: skip
        members = _build(config, ctx, data, run.outs, run.builders, run.loss_fn)
        subset_frames = sum(c.num_frames or 0 for c in data.train)
        config = updates_for_fraction(config, subset_frames, data.train_total_frames,
                                      world_size=ctx.world_size) \
            if config.data_path == "frames" else config  # fmt: skip
        source = make_source(data, config, ctx, members[0].model, run.collate_hooks)
        config = updates_for_fraction(
            config, subset_frames, data.train_total_frames,
            math.ceil(source.count(0) / config.accum_grad),
        ) if config.data_path != "frames" else config  # fmt: skip
        if config.updates_as_full and config.train_fraction < 1.0:
            logger.info("%s: %d updates, as on the whole training set, in %d epochs of "
                        "%d passes", stage, config.max_steps, config.max_epochs,
                        config.frame_passes)  # fmt: skip
        trainer = Trainer(members, config, ctx, work, data, source, run.forward, run.callbacks)
        trainer.restore()
        m = members[0]
        logger.info(
            "model %s: %d parameters; %d training cuts (%.2f h), %d steps per epoch",
            json.dumps(m.spec), sum(p.numel() for p in m.model.parameters()),
            len(data.train), sum(c.duration for c in data.train) / 3600,
            trainer.steps_per_epoch,
        )  # fmt: skip
        trainer.run()
        trainer.close()
        barrier(ctx)
        if ctx.is_main:
            summaries = list(run.extra_summaries) or [{}] * n
            for m, stage_config, more in zip(members, configs, summaries, strict=True):
                _finalise(trainer, m, stage, stage_config, run.force, config, data, more)


def _build(config, ctx, data, outs, builders, loss_fn) -> list[Member]:
    """The models, seeded as a single training would seed them."""
    seed_everything(config.seed)
    members = []
    for out, builder in zip(outs, builders, strict=True):
        model, spec, model_config = builder(config.model, data.feat_dim, data.num_senones)
        model = model.to(ctx.device)
        check_output_size(model, data.feat_dim, data.num_senones, data.tree_id)
        objective = Objective(loss_fn or cross_entropy(config.label_smoothing))
        members.append(Member(out.name, model, objective, spec, model_config, out))
    seed_everything(config.seed + 1 + ctx.rank)  # the data order's and dropout's stream
    return members


def _finalise(
    trainer: Trainer,
    m: Member,
    stage: str,
    stage_config: dict[str, Any],
    force: bool,
    config: TrainConfig,
    data: TrainingData,
    more: dict[str, Any],
) -> None:
    """Write one model's training output (module docstring)."""
    st, ctx, work = m.state, trainer.ctx, trainer.work
    info = ModelInfo(
        spec=m.spec, model_config=m.model_config, feat_dim=data.feat_dim,
        num_senones=data.num_senones, tree_id=data.tree_id, frame_shift=data.frame_shift,
        feature_mean=data.normalizer.mean.tolist(), feature_var=data.normalizer.var.tolist(),
        train_config=to_dict(config), best_epoch=st.best_epoch, dev_frame_acc=float(st.best_acc),
    )  # fmt: skip
    flops = getattr(m.model, "flops_per_frame", None)
    extra = {
        "params": sum(p.numel() for p in m.model.parameters()),
        "flops_per_frame": flops() if callable(flops) else None,
        "device": str(ctx.device), "world_size": ctx.world_size, "train_cuts": len(data.train),
        "train_hours": round(sum(c.duration for c in data.train) / 3600, 4),
        "train_fraction": config.train_fraction, "subset_seed": config.subset_seed,
        "select": config.select, **more,
    }  # fmt: skip
    doc = summary(st, extra)
    weights = trainer.best_weights(m)
    with stage_output(m.out_dir, stage, stage_config, force) as tmp:
        if tmp is None:
            return
        dest = tmp if trainer.group else work.path
        save_model(dest / "model.pt", info, weights)
        (dest / "train.json").write_text(json.dumps(doc, indent=2) + "\n")
        if len(data.train) < data.train_total:
            (dest / "train_subset.txt").write_text("".join(f"{c.id}\n" for c in data.train))
        if trainer.group:
            (tmp / "log").mkdir()
            shutil.copy(work.log / "train.log", tmp / "log" / "train.log")
            shutil.copytree(work.log / "tensorboard" / m.name, tmp / "log" / "tensorboard")
        else:
            work.finish(tmp)
    logger.info(
        "%s: wrote %s: best epoch %d of %d, dev frame acc %.2f%%, dev ce %.4f, %d steps (%s)",
        stage, m.out_dir, st.best_epoch, len(st.history), 100 * st.best_acc, st.best_ce,
        st.step, st.stop_reason,
    )  # fmt: skip
