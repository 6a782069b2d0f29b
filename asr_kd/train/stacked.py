"""M models of one shape run as one batched program (``torch.func.vmap``).

Used to train a group of models on one data pass (:class:`asr_kd.train.loop.Trainer`
with ``forward="vmap"``: fused teachers, specialists): their parameters are stacked
and one ``vmap`` of ``functional_call`` runs them on the batch. Gradients flow back to
each model's own parameters; dropout draws one mask for all (``randomness="same"``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from asr_kd.errors import ConfigError
from asr_kd.train.dataset import Batch
from asr_kd.train.evaluate import autocast


class _Windows(torch.nn.Module):
    """Runs ``model.forward_windows`` (frame classifiers on ``[N, K, F]`` windows)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.model.forward_windows(feats), None


def shape_of(model: torch.nn.Module) -> torch.nn.Module:
    """A weightless copy of ``model`` (on the meta device) for :func:`stacked_forward`.

    Raises:
        ConfigError: the model has buffers (batch-norm statistics), which vmap cannot
            keep per model.
    """
    if any(True for _ in model.buffers()):
        raise ConfigError(
            "vmap needs a model without buffers (batch norm has running statistics); "
            "train the models one after the other (fused_forward: loop; specialists: fused: loop)"
        )
    return copy.deepcopy(model).to("meta")


def stacked_forward(
    base: torch.nn.Module,
    params: Sequence[dict[str, torch.Tensor]],
    batch: Batch,
    device: torch.device,
    amp: torch.dtype | None,
) -> torch.Tensor:
    """``[M, B, T, C]`` float32 logits of M models of ``base``'s shape on one batch.

    Args:
        base: from :func:`shape_of`.
        params: each model's ``dict(named_parameters())``.
        batch: utterances (``feats [B, T, F]``, ``lengths``) or frame windows
            (``frame_window``: ``feats [N, K, F]``, run through ``forward_windows``;
            the logits are ``[M, N, 1, C]``).
        device, amp: where and in which precision (``None``: float32) to run.

    Raises:
        ValueError: the models change the number of frames.
    """
    from torch.func import functional_call, vmap

    feats = batch["feats"].to(device, non_blocking=True)
    lengths = batch["lengths"].to(device, non_blocking=True)
    windows = bool(batch.get("frame_window"))
    module = _Windows(base) if windows else base
    prefix = "model." if windows else ""
    stacked = {prefix + n: torch.stack([p[n] for p in params]) for n in params[0]}

    def one(weights, x, n):
        return functional_call(module, weights, (x, n))[0]

    with autocast(device, amp):
        logits = vmap(one, in_dims=(0, None, None), randomness="same")(stacked, feats, lengths)
    if windows:
        return logits.float().unsqueeze(2)
    if logits.shape[1:3] != feats.shape[:2]:
        raise ValueError(
            f"the model turned {tuple(feats.shape[:2])} frames into {tuple(logits.shape[1:3])}: "
            "a hybrid acoustic model must give one output per input frame"
        )
    return logits.float()
