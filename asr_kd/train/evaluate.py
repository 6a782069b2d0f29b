"""Frame accuracy and log-posteriors of a trained acoustic model.

Both run the model in eval mode without gradients, with bf16 autocast on CUDA
(``amp="auto"``), and return float32 results.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from lhotse import CutSet
from lhotse.cut import Cut
from lhotse.dataset import SimpleCutSampler

from asr_kd.errors import BadInputError
from asr_kd.stage import atomic_write_text
from asr_kd.train.checkpoint import ModelBuilder, check_compatible, load_model, registry_builder
from asr_kd.train.config import resolve_amp
from asr_kd.train.dataset import (
    PAD_TARGET,
    Batch,
    FeatureNormalizer,
    SenoneDataset,
    check_cuts,
    load_split,
    make_loader,
    read_targets_info,
)
from asr_kd.train.distributed import DistContext, reduce_stats

logger = logging.getLogger(__name__)


def autocast(device: torch.device, dtype: torch.dtype | None):
    """bf16 autocast on ``device`` when ``dtype`` is set, else a no-op context."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def forward_logits(
    model: torch.nn.Module, batch: Batch, device: torch.device, amp: torch.dtype | None
) -> torch.Tensor:
    """``[B, T, S]`` float32 logits of a batch; the model must keep the frame count.

    Raises:
        ValueError: the model's output has another number of frames than its input.
    """
    feats = batch["feats"].to(device, non_blocking=True)
    lengths = batch["lengths"].to(device, non_blocking=True)
    with autocast(device, amp):
        logits, _ = model(feats, lengths)
    if logits.shape[:2] != feats.shape[:2]:
        raise ValueError(
            f"the model turned {tuple(feats.shape[:2])} frames into {tuple(logits.shape[:2])}: "
            "a hybrid acoustic model must give one output per input frame"
        )
    return logits.float()


def count_correct(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames whose arg-max is the target, and non-padding frames (0-dim tensors)."""
    valid = targets != PAD_TARGET
    correct = ((logits.argmax(-1) == targets) & valid).sum()
    return correct, valid.sum()


@torch.no_grad()
def check_output_size(
    model: torch.nn.Module, feat_dim: int, num_senones: int, tree_id: str
) -> None:
    """Refuse a model whose output size is not the targets' senone count.

    Raises:
        BadInputError: naming both sizes.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        logits, _ = model(
            torch.zeros(1, 50, feat_dim, device=device), torch.tensor([50], device=device)
        )
    finally:
        model.train(was_training)
    if logits.shape[-1] != num_senones:
        raise BadInputError(
            f"the model outputs {logits.shape[-1]} classes but the targets have {num_senones} "
            f"senones (tree {tree_id}); build it for this tree's senone count"
        )


@torch.no_grad()
def frame_counts(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    amp: torch.dtype | None,
) -> tuple[int, int]:
    """``(correct, frames)`` of a model over a loader's batches."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    frames = torch.zeros((), dtype=torch.int64, device=device)
    try:
        for batch in loader:
            logits = forward_logits(model, batch, device, amp)
            c, n = count_correct(logits, batch["targets"].to(device))
            correct += c
            frames += n
    finally:
        model.train(was_training)
    return int(correct), int(frames)


def eval_loader(
    cuts: CutSet,
    normalizer: FeatureNormalizer,
    num_senones: int,
    max_duration: float,
    num_workers: int = 0,
) -> torch.utils.data.DataLoader:
    """Batches of ``cuts`` in a fixed order (sorted by duration, little padding)."""
    cuts = cuts.sort_by_duration()
    sampler = SimpleCutSampler(cuts, max_duration=max_duration, world_size=1, rank=0)
    return make_loader(SenoneDataset(normalizer, num_senones), sampler, num_workers)


def frame_accuracy(
    model: torch.nn.Module,
    cuts: CutSet,
    normalizer: FeatureNormalizer,
    num_senones: int,
    max_duration: float = 200.0,
    device: torch.device | None = None,
    amp: str = "auto",
    num_workers: int = 0,
    ctx: DistContext | None = None,
) -> float:
    """The fraction of frames whose arg-max senone is the target.

    Under DDP (``ctx`` with several ranks) every rank scores its share of the cuts
    and the counts are summed, so every rank returns the same accuracy.
    """
    device = device or next(model.parameters()).device
    if ctx is not None and ctx.active:
        ids = sorted(cut.id for cut in cuts)[ctx.rank :: ctx.world_size]
        cuts = cuts.subset(cut_ids=ids)
    correct, frames = 0, 0
    if len(cuts):
        loader = eval_loader(cuts, normalizer, num_senones, max_duration, num_workers)
        correct, frames = frame_counts(model, loader, device, resolve_amp(amp, device))
    if ctx is not None:
        total = reduce_stats(ctx, {"correct": correct, "frames": frames})
        correct, frames = int(total["correct"]), int(total["frames"])
    return correct / max(frames, 1)


@torch.no_grad()
def log_posteriors(
    model: torch.nn.Module,
    x: Cut | Batch,
    normalizer: FeatureNormalizer | None = None,
    amp: str = "auto",
) -> torch.Tensor:
    """Log-softmax outputs of a model (eval mode, no gradients).

    Args:
        model: the acoustic model (e.g. from :func:`load_model`), on its device.
        x: a cut with features (normalised here with ``normalizer``, e.g.
            ``info.normalizer``) or a collated batch from :class:`SenoneDataset`.
        normalizer: required for a cut.
        amp: ``auto`` (bf16 on CUDA), ``bf16`` or ``off``.

    Returns:
        ``[T, S]`` for a cut, ``[B, T, S]`` (padding frames included) for a batch;
        float32 on the CPU.
    """
    device = next(model.parameters()).device
    if isinstance(x, Cut):
        if normalizer is None:
            raise ValueError("log_posteriors of a cut needs the model's feature normalizer")
        feats = torch.from_numpy(normalizer(x.load_features()))[None]
        batch = {"feats": feats, "lengths": torch.tensor([feats.shape[1]])}
    else:
        batch = x
    was_training = model.training
    model.eval()
    try:
        logits = forward_logits(model, batch, device, resolve_amp(amp, device))
    finally:
        model.train(was_training)
    out = torch.log_softmax(logits, dim=-1).cpu()
    return out[0] if isinstance(x, Cut) else out


def evaluate_frame_accuracy(
    model_path: Path | str,
    data_dir: Path | str,
    split: str = "dev",
    device: str = "auto",
    max_duration: float = 200.0,
    out_file: Path | str | None = None,
    builder: ModelBuilder = registry_builder,
) -> dict[str, Any]:
    """Score a trained model's frame accuracy on a split (``asr-kd eval-frame-acc``).

    Raises:
        BadInputError: the split's targets come from another tree.
    """
    from asr_kd.train.distributed import resolve_device

    start = time.time()
    dev = resolve_device(device)
    model, info = load_model(model_path, dev, builder)
    targets = read_targets_info(data_dir)
    check_compatible(info, targets["num_senones"], targets["tree_id"], str(data_dir))
    cuts = load_split(data_dir, split)
    check_cuts(cuts, info.feat_dim, split)
    acc = frame_accuracy(model, cuts, info.normalizer, info.num_senones, max_duration, dev)
    result = {
        "model": str(model_path),
        "data_dir": str(data_dir),
        "split": split,
        "cuts": len(cuts),
        "frame_acc": acc,
        "seconds": round(time.time() - start, 2),
    }
    if out_file is not None:
        atomic_write_text(Path(out_file), json.dumps(result, indent=2) + "\n")
    logger.info(
        "eval-frame-acc: %s %s: frame accuracy %.2f%% on %d cuts in %.1f s",
        model_path,
        split,
        100 * acc,
        len(cuts),
        result["seconds"],
    )
    return result
