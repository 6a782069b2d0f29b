"""Data-parallel training helpers (``torchrun``-compatible, ``env://`` initialisation).

Start a multi-process training with e.g.::

    torchrun --nproc-per-node 2 --no-python asr-kd train ...

Each process reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR`` /
``MASTER_PORT`` from the environment; gloo is used on CPU, NCCL on CUDA. A single
process without those variables runs as rank 0 of 1 and never touches
``torch.distributed``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from asr_kd.errors import AsrKdError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly single-process) training.

    Attributes:
        rank: global rank.
        world_size: number of processes.
        device: this process's device.
        owns_group: whether :func:`setup_distributed` created the process group
            (and :func:`teardown` should destroy it).
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """``None`` or ``"auto"``: this rank's GPU when CUDA is available, else the CPU."""
    if device is None or str(device) == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def setup_distributed(device: str | torch.device | None = None) -> DistContext:
    """Join the process group the environment describes (or run alone).

    Args:
        device: ``"auto"``/``None``, ``"cpu"`` or ``"cuda"`` (each rank then takes
            ``cuda:LOCAL_RANK``).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
    dev = resolve_device(device, local_rank)
    if world_size <= 1:
        return DistContext(device=dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    owns = not dist.is_initialized()
    if owns:
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
    ctx = DistContext(dist.get_rank(), dist.get_world_size(), dev, owns)
    logger.info("rank %d of %d on %s (%s)", ctx.rank, ctx.world_size, dev, dist.get_backend())
    return ctx


def teardown(ctx: DistContext) -> None:
    """Destroy the process group if :func:`setup_distributed` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(ctx: DistContext, values: torch.Tensor) -> torch.Tensor:
    """Sum ``values`` over the ranks (a no-op for a single process); returns it."""
    if ctx.active:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def reduce_stats(ctx: DistContext, stats: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """Sum a dict of scalars over the ranks (every rank must pass the same keys)."""
    keys = sorted(stats)
    vec = torch.tensor([float(stats[k]) for k in keys], dtype=torch.float64)
    if ctx.active and ctx.device.type == "cuda":
        vec = vec.to(ctx.device)
    vec = all_reduce_sum(ctx, vec).cpu()
    return {k: float(v) for k, v in zip(keys, vec.tolist(), strict=True)}


def gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's ``obj``, by rank (on every rank)."""
    if not ctx.active:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        dist.barrier()


def run_on_main(ctx: DistContext, fn: Callable[[], None]) -> None:
    """Run ``fn`` on rank 0 only; if it raises an :class:`AsrKdError`, every rank raises.

    (Otherwise the other ranks would wait for rank 0 at the next collective.)
    """
    error = None
    try:
        if ctx.is_main:
            fn()
    except AsrKdError as e:
        error = e
    message = broadcast_object(ctx, None if error is None else str(error))
    if error is not None:
        raise error
    if message is not None:
        raise AsrKdError(f"rank 0 refused: {message}")


@contextlib.contextmanager
def rank_log(log_dir: Path, ctx: DistContext, stem: str = "train") -> Iterator[Path]:
    """Copy the toolkit's log to ``<log_dir>/<stem>.log`` (``<stem>.rank<R>.log`` off rank 0).

    INFO messages are let through while the context lasts even if nothing else
    configured logging.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / (f"{stem}.log" if ctx.is_main else f"{stem}.rank{ctx.rank}.log")
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(name)s] %(message)s"))
    top = logging.getLogger("asr_kd")
    level = top.level
    if top.getEffectiveLevel() > logging.INFO:
        top.setLevel(logging.INFO)
    top.addHandler(handler)
    try:
        yield path
    finally:
        top.removeHandler(handler)
        handler.close()
        top.setLevel(level)
