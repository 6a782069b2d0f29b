"""Frame accuracy and log-posteriors of a trained acoustic model.

Both run the model in eval mode without gradients, with bf16 autocast on CUDA
(``amp="auto"``), and return float32 results.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lhotse import CutSet
from lhotse.cut import Cut
from lhotse.dataset import SimpleCutSampler

from asr_kd.checked import load_features
from asr_kd.errors import BadInputError, ConfigError
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
from asr_kd.train.distributed import DistContext, gather_objects, reduce_stats

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

    A frame-level batch (``batch["frame_window"]``, :mod:`asr_kd.train.frames`) holds
    one window ``[N, K, F]`` per frame; the model scores its centre frames through
    ``forward(windows, lengths, windows=True)`` (its ``forward_windows``), giving
    ``[N, 1, S]``.

    Raises:
        ValueError: the model's output has another number of frames than its input.
        ConfigError: a frame-level batch for a model without ``forward_windows``.
    """
    feats = batch["feats"].to(device, non_blocking=True)
    lengths = batch["lengths"].to(device, non_blocking=True)
    frames = batch.get("frame_window", False)
    if frames:
        inner = getattr(model, "module", model)  # under DDP
        inner = getattr(inner, "_orig_mod", inner)  # under torch.compile
        if not callable(getattr(inner, "forward_windows", None)):
            raise ConfigError(
                f"{type(inner).__name__} has no forward_windows: data_path: frames trains "
                "frame classifiers (dnn, tdnn); train this model with data_path: utterances"
            )
    with autocast(device, amp):
        logits, _ = model(feats, lengths, windows=True) if frames else model(feats, lengths)
    expected = (feats.shape[0], 1) if frames else tuple(feats.shape[:2])
    if tuple(logits.shape[:2]) != expected:
        raise ValueError(
            f"the model turned {tuple(feats.shape[:2])} frames into {tuple(logits.shape[:2])}: "
            "a hybrid acoustic model must give one output per input frame"
            + (" (per window on the frame path)" if frames else "")
        )
    return logits.float()


def count_correct(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames whose arg-max is the target, and labelled frames (0-dim tensors; padding and
    unlabelled frames, negative targets, are left out)."""
    valid = targets >= 0
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


Scorer = Callable[[torch.Tensor, Batch], dict[str, torch.Tensor]]
"""``(logits [B, T, S] float32, batch) -> sums by name`` over a dev batch's frames."""


def frame_sums(logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
    """Correct frames, frames and cross-entropy summed over a batch's non-padding frames."""
    targets = batch["targets"].to(logits.device)
    correct, frames = count_correct(logits, targets)
    ce = F.cross_entropy(
        logits.flatten(0, -2), targets.flatten(), ignore_index=PAD_TARGET, reduction="sum"
    )
    return {"correct": correct, "frames": frames, "ce": ce}


@torch.no_grad()
def score_models(
    models: Sequence[torch.nn.Module],
    scorers: Sequence[Scorer],
    loader: Iterable[Batch],
    device: torch.device,
    amp: torch.dtype | None,
) -> list[dict[str, float]]:
    """Every model's summed scores over a loader's batches (one data pass, eval mode)."""
    sums: list[dict[str, float]] = [{} for _ in models]
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        for batch in loader:
            for model, scorer, total in zip(models, scorers, sums, strict=True):
                logits = forward_logits(model, batch, device, amp)
                for k, v in scorer(logits, batch).items():
                    total[k] = total.get(k, 0.0) + float(v)
    finally:
        for m, mode in zip(models, modes, strict=True):
            m.train(mode)
    return sums


def score_split(
    models: Sequence[torch.nn.Module],
    scorers: Sequence[Scorer],
    cuts: CutSet,
    normalizer: FeatureNormalizer,
    num_senones: int,
    max_duration: float = 200.0,
    device: torch.device | None = None,
    amp: str = "auto",
    num_workers: int = 0,
    ctx: DistContext | None = None,
) -> list[dict[str, float]]:
    """Every model's summed scores over ``cuts`` (:func:`frame_sums` by default).

    Under DDP (``ctx`` with several ranks) every rank scores its share of the cuts
    and the sums are added, so every rank returns the same sums.
    """
    device = device or next(models[0].parameters()).device
    if ctx is not None and ctx.active:
        ids = sorted(cut.id for cut in cuts)[ctx.rank :: ctx.world_size]
        cuts = cuts.subset(cut_ids=ids)
    sums: list[dict[str, float]] = [{} for _ in models]
    if len(cuts):
        loader = eval_loader(cuts, normalizer, num_senones, max_duration, num_workers)
        sums = score_models(models, scorers, loader, device, resolve_amp(amp, device))
    if ctx is not None:  # a rank without cuts has no keys: reduce the union of all ranks'
        keys = sorted(set().union(*gather_objects(ctx, sorted({k for s in sums for k in s}))))
        sums = [reduce_stats(ctx, {k: s.get(k, 0.0) for k in keys}) for s in sums]
    return sums


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


def frame_scores(
    model: torch.nn.Module, cuts: CutSet, *args: Any, **kwargs: Any
) -> tuple[float, float]:
    """``(frame accuracy, cross-entropy per frame)`` of a model on ``cuts``.

    The accuracy is the fraction of frames whose arg-max senone is the target; the
    cross-entropy is in nats. The other arguments: :func:`score_split`'s after
    ``cuts`` (``normalizer``, ``num_senones``, ``max_duration``, ``device``, ``amp``,
    ``num_workers``, ``ctx``).
    """
    (s,) = score_split([model], [frame_sums], cuts, *args, **kwargs)
    frames = max(s.get("frames", 0.0), 1.0)
    return s.get("correct", 0.0) / frames, s.get("ce", 0.0) / frames


def frame_accuracy(model: torch.nn.Module, cuts: CutSet, *args: Any, **kwargs: Any) -> float:
    """The fraction of frames whose arg-max senone is the target (:func:`frame_scores`'s
    first value; the same arguments)."""
    return frame_scores(model, cuts, *args, **kwargs)[0]


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
        feats = torch.from_numpy(normalizer(load_features(x)))[None]
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
    acc, ce = frame_scores(model, cuts, info.normalizer, info.num_senones, max_duration, dev)
    result = {
        "model": str(model_path),
        "data_dir": str(data_dir),
        "split": split,
        "cuts": len(cuts),
        "frame_acc": acc,
        "ce": ce,
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
