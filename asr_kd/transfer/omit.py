"""The omitted phone (the paper's MNIST "3" over speech): evaluation and bias correction.

Hinton et al. (2015, section 3) removed every 3 from the transfer set; the distilled
net still recognised most test 3s once its bias for the 3 class was raised. Here the
training frames of one phone are left out of the student's transfer set and of a
hard-target control (``TrainConfig.omit_phone``; the teachers keep them), and
``asr-kd eval-omitted-phone`` scores every system on dev and test:

- frame accuracy on the phone's frames (their target is one of its senones) and on the
  rest, in percent;
- the same with a bias correction: one constant ``b`` added to the output biases of the
  phone's senones only, ``b`` chosen from a grid by the overall dev frame accuracy (the
  paper chose it on the test set; we never tune on test) and applied as it is to test.

Output ``<out>/`` (atomic)::

    omitted_phone.json   {"phone", "senones", "bias_grid", "utterances": {split: ids
                         containing the phone}, "systems": {name: {"model", "omitted",
                         "bias", "dev_grid": {b: overall dev frame acc}, split:
                         {"frame_acc_phone", "frame_acc_phone_bias_corrected",
                         "frame_acc_rest", "frame_acc_rest_bias_corrected",
                         "frames_phone", "frames_rest"}}}}
    <name>_bias_corrected/model.pt   each omitted-phone system with its dev-chosen
                         bias added: decode it like any model
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr_kd.distill.train import student_builder
from asr_kd.errors import BadInputError, ConfigError
from asr_kd.stage import stage_output
from asr_kd.train.checkpoint import check_compatible, load_model, save_model
from asr_kd.train.dataset import (
    TARGETS_STAGE,
    Batch,
    check_cuts,
    load_split,
    read_targets_info,
)
from asr_kd.train.evaluate import score_split
from asr_kd.tree.phones import phone_senones

logger = logging.getLogger(__name__)

STAGE = "eval-omitted-phone"
BIAS_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
SPLITS = ("dev", "test")


def output_bias(model: torch.nn.Module, num_senones: int) -> torch.nn.Parameter:
    """The output layer's bias: the last ``[num_senones]`` bias parameter of the model.

    Raises:
        ConfigError: the model has no such parameter (a bias-free output layer).
    """
    found = [p for n, p in model.named_parameters()
             if n.endswith("bias") and tuple(p.shape) == (num_senones,)]  # fmt: skip
    if not found:
        raise ConfigError(
            f"{type(model).__name__} has no [{num_senones}] output bias to correct; the "
            "omitted-phone bias correction needs an output layer with a bias"
        )
    return found[-1]


@torch.no_grad()
def add_bias(model: torch.nn.Module, senones: Sequence[int], num_senones: int, b: float) -> None:
    """Add ``b`` to the output biases of ``senones`` only (in place)."""
    bias = output_bias(model, num_senones)
    bias[torch.as_tensor(list(senones), dtype=torch.long, device=bias.device)] += b


def phone_scorer(senones: Sequence[int], num_senones: int, grid: Sequence[float]):
    """A :data:`asr_kd.train.evaluate.Scorer`: correct frames on the phone's frames and on
    the rest for every bias of ``grid`` (added to the phone's senones' logits, which is
    adding it to their output biases)."""
    mask = torch.zeros(num_senones, dtype=torch.bool)
    mask[list(senones)] = True

    def score(logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        targets = batch["targets"].to(logits.device)
        valid = targets >= 0
        m = mask.to(logits.device)
        on_phone = valid & m[targets.clamp_min(0)]
        rest = valid & ~on_phone
        out = {"frames_phone": on_phone.sum(), "frames_rest": rest.sum()}
        for b in grid:
            hit = (logits + b * m).argmax(-1) == targets
            out[f"phone@{b}"] = (hit & on_phone).sum()
            out[f"rest@{b}"] = (hit & rest).sum()
        return out

    return score


def _pct(num: float, den: float) -> float | None:
    return round(100.0 * num / den, 4) if den else None


def choose_bias(dev: Mapping[str, float], grid: Sequence[float]) -> float:
    """The grid's bias with the best overall dev frame accuracy (the smallest of ties)."""
    return max(grid, key=lambda b: (dev[f"phone@{b}"] + dev[f"rest@{b}"], -b))


def split_scores(sums: Mapping[str, float], b: float) -> dict[str, Any]:
    """One split's entry of a system (module doc) at bias ``b``."""
    n_phone, n_rest = sums["frames_phone"], sums["frames_rest"]
    return {
        "frame_acc_phone": _pct(sums["phone@0.0"], n_phone),
        "frame_acc_phone_bias_corrected": _pct(sums[f"phone@{b}"], n_phone),
        "frame_acc_rest": _pct(sums["rest@0.0"], n_rest),
        "frame_acc_rest_bias_corrected": _pct(sums[f"rest@{b}"], n_rest),
        "frames_phone": int(n_phone),
        "frames_rest": int(n_rest),
    }


def utterances_with(cuts, senones: Sequence[int]) -> list[str]:
    """Ids of the cuts whose senone targets hold one of ``senones`` (the phone is spoken)."""
    wanted = set(int(s) for s in senones)
    out = []
    for cut in cuts:
        targets = np.rint(np.asarray(cut.load_custom("senones"))).astype(np.int64)
        if wanted.intersection(np.unique(targets).tolist()):
            out.append(cut.id)
    return sorted(out)


def evaluate_omitted_phone(
    data_dir: Path | str,
    systems: Mapping[str, Path | str],
    out_dir: Path | str,
    *,
    phone: str | None = None,
    grid: Sequence[float] = BIAS_GRID,
    splits: Mapping[str, str] | None = None,
    device: str = "cpu",
    max_duration: float = 200.0,
    force: bool = False,
) -> Path:
    """Score the systems on the omitted phone's frames and the rest (``asr-kd eval-omitted-phone``).

    Args:
        data_dir: a ``senone-targets`` output (its ``tree.json`` names the senones).
        systems: name -> a trained model (directory or ``model.pt``); those trained with
            ``omit_phone`` (all must name the same) also get a bias-corrected copy.
        out_dir: the output directory (module doc).
        phone: the phone; by default the one the systems were trained without.
        grid: the biases tried on dev; 0 is always among them.
        splits: the report's split (``dev``, ``test``) -> the data's split name; the bias
            is chosen on ``dev``, which must be among them (default: ``dev`` and ``test``).

    Raises:
        ConfigError: systems trained without different phones, none trained without a
            phone and no ``phone`` given, or ``phone`` differing from theirs.
    """
    from asr_kd.train.distributed import resolve_device

    splits = dict(splits or {s: s for s in SPLITS})
    if "dev" not in splits:
        raise ConfigError(f"{STAGE}: the bias is chosen on dev; give a dev split")
    data_dir = Path(data_dir).resolve()
    info = read_targets_info(data_dir)
    models = {n: load_model(p, resolve_device(device), student_builder) for n, p in systems.items()}
    omitted = {n: (i.train_config or {}).get("omit_phone") for n, (_, i) in models.items()}
    phone = _the_phone(omitted, phone)
    senones = phone_senones(data_dir, phone)
    grid = sorted({0.0, *(float(b) for b in grid)})
    config = {"data_dir": str(data_dir), "systems": {n: str(p) for n, p in systems.items()},
              "phone": phone, "grid": grid, "splits": splits}  # fmt: skip
    out_dir = Path(out_dir).resolve()
    with stage_output(out_dir, STAGE, config, force) as tmp:
        if tmp is None:
            return out_dir
        start = time.time()
        cuts = {key: load_split(data_dir, name) for key, name in splits.items()}
        doc: dict[str, Any] = {"phone": phone, "senones": senones, "bias_grid": grid,
                               "split_names": splits, "systems": {},
                               "utterances": {k: utterances_with(c, senones)
                                              for k, c in cuts.items()}}  # fmt: skip
        scorer = phone_scorer(senones, int(info["num_senones"]), grid)
        for name, (model, minfo) in models.items():
            check_compatible(minfo, int(info["num_senones"]), str(info["tree_id"]), str(data_dir))
            sums = {}
            for key, split_cuts in cuts.items():
                check_cuts(split_cuts, minfo.feat_dim, splits[key])
                (sums[key],) = score_split([model], [scorer], split_cuts, minfo.normalizer,
                                           minfo.num_senones, max_duration)  # fmt: skip
            if not sums["dev"]["frames_phone"]:
                raise BadInputError(
                    f"{data_dir} ({splits['dev']}) has no frame of {phone}: nothing to choose "
                    "the bias on; choose a phone spoken in dev"
                )
            b = choose_bias(sums["dev"], grid)
            doc["systems"][name] = {
                "model": str(systems[name]), "omitted": bool(omitted[name]), "bias": b,
                "dev_grid": {str(g): dev_accuracy(sums["dev"], g) for g in grid},
                **{k: split_scores(v, b) for k, v in sums.items()},
            }  # fmt: skip
            if omitted[name]:
                _save_corrected(model, minfo, senones, b, tmp / f"{name}_bias_corrected")
            dev = doc["systems"][name]["dev"]
            logger.info(
                "%s: %s (dev): %s frames %.2f%% (%.2f%% with bias %+g), the rest %.2f%%",
                STAGE, name, phone, dev["frame_acc_phone"] or 0.0,
                dev["frame_acc_phone_bias_corrected"] or 0.0, b, dev["frame_acc_rest"] or 0.0,
            )  # fmt: skip
        (tmp / "omitted_phone.json").write_text(json.dumps(doc, indent=2) + "\n")
        logger.info("%s: wrote %s in %.1f s", STAGE, out_dir, time.time() - start)
    return out_dir


def _the_phone(omitted: Mapping[str, str | None], phone: str | None) -> str:
    """The phone the systems were trained without (all the same), or ``phone``."""
    phones = {p.upper() for p in omitted.values() if p}
    if len(phones) > 1 or (phone and phones and phones != {phone.upper()}):
        raise ConfigError(
            f"{STAGE}: the systems were trained without different phones "
            f"({json.dumps(omitted)}); given phone: {phone}"
        )
    phone = (phone or next(iter(phones), "")).upper()
    if not phone:
        raise ConfigError(f"{STAGE}: no system was trained with omit_phone; give --phone")
    return phone


def dev_accuracy(sums: Mapping[str, float], b: float) -> float | None:
    """Overall frame accuracy (percent) at bias ``b``."""
    frames = sums["frames_phone"] + sums["frames_rest"]
    return _pct(sums[f"phone@{b}"] + sums[f"rest@{b}"], frames)


def _save_corrected(model, info, senones: Sequence[int], b: float, out: Path) -> None:
    """``out/model.pt``: the model with ``b`` added to the senones' output biases."""
    add_bias(model, senones, info.num_senones, b)
    out.mkdir()
    save_model(out / "model.pt", info, {k: v.detach().cpu() for k, v in model.state_dict().items()})


def read_omitted_phone(out_dir: Path | str) -> dict[str, Any]:
    """``omitted_phone.json`` of a finished ``eval-omitted-phone`` output."""
    from asr_kd.stage import require_done

    path = require_done(Path(out_dir), STAGE) / "omitted_phone.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BadInputError(f"{path} is unreadable ({e}); rerun '{STAGE}' with --force") from None


__all__ = ["STAGE", "TARGETS_STAGE", "add_bias", "evaluate_omitted_phone", "read_omitted_phone"]
