"""Senone priors from a model's averaged posteriors (Kaldi's ``nnet3-am-adjust-priors``).

``asr-kd adjust-priors`` writes ``exp/<model>/priors_posterior/``::

    priors.json   the model's softmax posteriors summed over a subset of training frames
                  (source "posteriors"; the format of the alignment counts' priors.json)
    info.json     frames and utterances used, the scores' id, the tree id

The alignment counts (``senone-targets``' ``priors.json``) describe the targets; the
averaged posteriors describe what the model actually predicts, so that dividing them
out leaves likelihoods the model is calibrated for. Kaldi's nnet3 recipes estimate
them on a subset of 20,000 training frames (``--prior-subset-size``); so do we
(``decode.prior_frames``). ``decode.priors`` (``counts`` | ``posteriors``) selects which
priors ``asr-kd decode`` divides out; its ``wer.json`` says which it used.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lhotse.cut import Cut

from asr_kd.decode.stage import BatchScoreFn, _digest
from asr_kd.errors import BadInputError
from asr_kd.stage import stage_output
from asr_kd.tree.priors import write_priors

logger = logging.getLogger(__name__)

STAGE = "adjust-priors"


def prior_subset(cuts: Sequence[Cut], num_frames: int, frame_shift: float = 0.01) -> list[Cut]:
    """Cuts spread evenly over ``cuts`` (every k-th) that hold about ``num_frames`` frames.

    Evenly spread rather than the first ones, so that a manifest sorted by speaker gives
    every speaker a share; deterministic, so a rerun uses the same frames.
    """
    total = sum(c.duration for c in cuts) / frame_shift
    if total <= num_frames:
        return list(cuts)
    keep = max(1, round(len(cuts) * num_frames / total))
    picks = np.unique(np.linspace(0, len(cuts) - 1, keep).round().astype(int))
    return [cuts[i] for i in picks]


def posterior_sums(
    cuts: Sequence[Cut], batch_score_fn: BatchScoreFn, num_senones: int, batch_size: int = 32
) -> tuple[np.ndarray, int]:
    """The posteriors ``exp(log p(s|x))`` summed over every frame of ``cuts``.

    Returns:
        ``[num_senones]`` float64 sums (expected frame counts) and the number of frames.
    """
    sums = torch.zeros(num_senones, dtype=torch.float64)
    frames = 0
    for start in range(0, len(cuts), batch_size):
        batch = list(cuts[start : start + batch_size])
        log_post, lengths = batch_score_fn(batch)
        if log_post.dim() != 3 or log_post.shape[-1] != num_senones:
            raise BadInputError(
                f"{STAGE}: cuts {batch[0].id}..: scores must be [batch, frames, {num_senones}], "
                f"got {list(log_post.shape)}: model and senone targets from different trees?"
            )
        valid = (
            torch.arange(log_post.shape[1], device=log_post.device)[None]
            < lengths.to(log_post.device)[:, None]
        )
        sums += log_post[valid].double().exp().sum(0).cpu()
        frames += int(lengths.sum())
    if frames == 0:
        raise BadInputError(f"{STAGE}: the cuts have no frames to average posteriors over")
    return sums.numpy(), frames


def adjust_priors(
    cuts: Sequence[Cut],
    batch_score_fn: BatchScoreFn,
    num_senones: int,
    out_dir: Path | str,
    num_frames: int = 20_000,
    batch_size: int = 32,
    scores_id: str = "",
    tree_id: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Write a model's averaged-posterior priors (``asr-kd adjust-priors``); see the module doc.

    Args:
        cuts: training cuts (the model's own training split).
        batch_score_fn: a batch of cuts -> (log-posteriors ``[B, T, S]``, lengths ``[B]``).
        num_senones: the senone inventory's size.
        out_dir: ``exp/<model>/priors_posterior``, written atomically.
        num_frames: about this many frames, from cuts spread over the set.
        batch_size: cuts scored at a time.
        scores_id: what makes the scores (recorded: another model is not skipped).
        tree_id: the senone inventory's tree id (recorded).
        force: redo a finished output.

    Returns:
        The contents of ``info.json``.
    """
    cuts = list(cuts)
    if not cuts:
        raise BadInputError(f"{STAGE}: no cuts to average posteriors over for {out_dir}")
    subset = prior_subset(cuts, num_frames)
    config = {"scores_id": scores_id, "tree_id": tree_id, "num_frames": num_frames,
              "cuts": len(subset), "cut_ids_sha": _digest(c.id for c in subset)}  # fmt: skip
    with stage_output(out_dir, STAGE, config, force) as tmp:
        if tmp is None:
            return json.loads((Path(out_dir) / "info.json").read_text())
        sums, frames = posterior_sums(subset, batch_score_fn, num_senones, batch_size)
        write_priors(tmp / "priors.json", sums, source="posteriors")
        info = {"frames": frames, "utterances": len(subset), "scores_id": scores_id,
                "tree_id": tree_id, "num_senones": num_senones}  # fmt: skip
        (tmp / "info.json").write_text(json.dumps(info, indent=2) + "\n")
        logger.info("%s: averaged posteriors over %d frames (%d utterances); wrote %s",
                    STAGE, frames, len(subset), out_dir)  # fmt: skip
    return info
