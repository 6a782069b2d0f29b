"""Training an ensemble of teachers (``asr-kd train-ensemble``), separately or fused.

The teachers of Hinton et al. (2015) share architecture and training procedure and
differ only in their initial weights. Here teacher ``k`` is built by ``build_model``
right after ``seed_everything(seeds[k])``; the data order and dropout RNG come from
the training config's ``seed``, shared by all. Each teacher is an ordinary training
output, ``<exp>/<prefix>K/`` with ``model.pt`` and ``train.json``, whichever way it
was trained:

- separately: one :func:`asr_kd.train.train_model` run per teacher, one after another
  or, with ``num_jobs`` > 1 on the CPU, that many at once in worker processes of one
  thread each (two one-thread trainings on 2 cores do 1.47x the frames of one two-thread
  training: ``bench/RESULTS.md``, "Independent trainings side by side"); on a GPU
  they run one after another (``fused: true`` is the GPU's way to train them together);
- fused (``fused: true``): all teachers in one process and one data pass, one
  :class:`asr_kd.train.Trainer` over the group. Every batch is read once and goes
  through all teachers at once: their weights are stacked and one ``torch.func.vmap``
  of ``functional_call`` runs them as one batched program (``fused_forward: vmap``;
  ``loop`` runs them one after the other on the batch, for architectures vmap cannot
  batch, e.g. with batch-norm buffers). The loss is the sum of the teachers' losses,
  so no gradient mixes; each teacher has its own optimiser, learning-rate schedule
  (newbob follows its own dev scores), gradient clipping, best epoch, early stopping
  and TensorBoard log.

A fused training computes the same teachers as separate trainings: with
``fused_forward: loop`` bitwise on the CPU, with ``vmap`` up to float rounding (the
batched weight gradient sums in another order). Dropout masks match too: vmap draws
one mask for all teachers (``randomness="same"``), as separate runs with one seed do;
``loop`` gives each teacher its own copy of the RNG stream.

A killed fused training resumes from ``<exp>/<first>-<last>.fused.work/``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asr_kd.errors import ConfigError
from asr_kd.parallel import make_executor, worker_result
from asr_kd.train import StepCallback, TrainConfig, train_model, train_models
from asr_kd.train.checkpoint import ModelBuilder, registry_builder, seed_everything
from asr_kd.train.distributed import resolve_device

__all__ = ["EnsembleConfig", "seeded_builder", "train_ensemble", "train_fused"]

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
    num_jobs: int = 1,
) -> list[Path]:
    """Train the ensemble's teachers into ``<exp_dir>/<prefix>1..N`` (``train-ensemble``).

    Args:
        data_dir, feature_dir: as :func:`asr_kd.train.train_model`.
        exp_dir: the experiment directory the teachers are written into.
        ensemble: number, seeds, architectures, fused or not.
        config: the training settings shared by all teachers.
        builder: builds a model from a spec (default: the registry; with ``num_jobs`` >
            1 it must be picklable, a module-level function).
        num_jobs: separate teachers trained at once on the CPU, one thread each (the
            teachers are those of one-thread trainings one after another, bit for bit).

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
    jobs = [
        (k, n, seed, out, dataclasses.replace(config, model=ensemble.architectures[k])
         if ensemble.architectures else config)
        for k, (out, seed) in enumerate(zip(outs, seeds, strict=True))
    ]  # fmt: skip
    common = dict(data_dir=data_dir, feature_dir=feature_dir, mode=mode, train_split=train_split,
                  dev_split=dev_split, device=device, force=force, builder=builder)  # fmt: skip
    if num_jobs > 1 and n > 1 and resolve_device(device).type == "cpu":
        logger.info("%s: %d teachers, %d at a time (one thread each)", STAGE, n, num_jobs)
        with make_executor(min(num_jobs, n)) as pool:
            futures = [pool.submit(_train_teacher, *job, **common) for job in jobs]
            for future in futures:
                worker_result(future)
        return outs
    if num_jobs > 1:
        logger.info("%s: on %s the teachers train one after another", STAGE, device)
    for job in jobs:
        _train_teacher(*job, **common)
    return outs


def _train_teacher(
    k: int, n: int, seed: int, out: Path, config: TrainConfig, *, data_dir: Path | str,
    feature_dir: Path | str, mode: str, train_split: str, dev_split: str, device: str,
    force: bool, builder: ModelBuilder,
) -> None:  # fmt: skip
    """Teacher ``k`` of ``n`` (init seed ``seed``) into ``out``: one ordinary training."""
    logger.info("%s: teacher %d of %d (init seed %d) -> %s", STAGE, k + 1, n, seed, out)
    train_model(
        data_dir, feature_dir, out, config, train_split=train_split, dev_split=dev_split,
        device=device, force=force, builder=seeded_builder(seed, builder), stage=STAGE,
        extra_config=_extra(k, n, seed, False, mode),
    )  # fmt: skip


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
    and written to ``out_dirs[k]`` (``model.pt``, ``train.json``, ``log/``), exactly as
    :func:`train_model` with ``builder=seeded_builder(init_seeds[k])`` would. One
    :class:`asr_kd.train.Trainer` trains them (resumable, a TensorBoard log each).

    Raises:
        ConfigError: several processes (torchrun), or vmap with a model with buffers.
    """
    if len(out_dirs) != len(init_seeds) or not out_dirs:
        raise ValueError(f"{len(out_dirs)} output directories for {len(init_seeds)} seeds")
    if forward not in FORWARD_MODES:
        raise ConfigError(f"fused_forward must be one of {FORWARD_MODES}, got {forward!r}")
    n, names = len(out_dirs), [Path(o).name for o in out_dirs]
    return train_models(
        data_dir, feature_dir, out_dirs, config,
        [seeded_builder(s, builder) for s in init_seeds], forward=forward,
        train_split=train_split, dev_split=dev_split, device=device, force=force,
        callbacks=callbacks, stage=stage,
        extra_configs=[_extra(k, n, s, True, forward) for k, s in enumerate(init_seeds)],
        extra_summaries=[{"fused": {"teachers": names, "forward": forward, "init_seed": s}}
                         for s in init_seeds],
    )  # fmt: skip
