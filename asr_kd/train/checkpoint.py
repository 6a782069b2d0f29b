"""Checkpoints, the persistent work directory of a training, and the final model file.

A training writes into ``<out>.work/`` (not the ``<out>.tmp-<pid>`` of
:func:`asr_kd.stage.stage_output`, which a failure removes)::

    <out>.work/work.json              the stage configuration and world size it belongs to
    <out>.work/checkpoints/epoch-N.pt  resumable, after every epoch
    <out>.work/checkpoints/step-S.pt   resumable, every ``checkpoint_interval`` steps
                                       (only the latest is kept)
    <out>.work/checkpoints/best.pt     the best epoch's checkpoint (a hard link)
    <out>.work/checkpoints/resume.json which checkpoint a restart resumes from
    <out>.work/log/                    train.log (train.rank<R>.log), tensorboard/

A killed training rerun with the same configuration resumes from ``resume.json``;
another configuration is refused unless ``force`` (which starts afresh). When the
training ends, ``model.pt`` and ``train.json`` are written there, everything except
``work.json``, ``resume.json`` and the step checkpoints moves into the stage's
output, and the work directory is removed.

``model.pt`` holds everything inference needs (:func:`load_model`): the model spec
and weights, feature statistics, senone inventory and frame shift.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr_kd.checked import load_weights, open_checkpoint
from asr_kd.errors import AsrKdError, BadInputError, MissingInputError
from asr_kd.stage import acquire_lock, atomic_write_text, finished
from asr_kd.train.dataset import FeatureNormalizer

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pt"

ModelBuilder = Callable[[dict[str, Any], int, int], tuple[torch.nn.Module, dict, dict]]
"""``(spec dict, feat_dim, num_senones) -> (model, normalised spec dict, model config)``."""


def registry_builder(
    spec: dict[str, Any], feat_dim: int, num_senones: int
) -> tuple[torch.nn.Module, dict, dict]:
    """Build a model from the ``asr_kd.models`` registry (config: the resolved dataclass)."""
    import dataclasses

    from asr_kd.models import ModelSpec, build_model, model_config

    s = ModelSpec.from_dict(spec)
    config = dataclasses.asdict(model_config(s, feat_dim, num_senones))
    return build_model(s, feat_dim, num_senones), s.to_dict(), config


def resolved_spec(spec: dict[str, Any], model_config: dict[str, Any]) -> dict[str, Any]:
    """The spec that rebuilds a model from its resolved config, whatever presets say later."""
    if not model_config:
        return spec
    options = {k: v for k, v in model_config.items() if k not in ("feat_dim", "num_senones")}
    return {"arch": spec["arch"], "preset": None, "options": options}


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary sibling and a rename."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    tmp.replace(path)


def load_file(path: Path | str) -> dict[str, Any]:
    """A checkpoint or ``model.pt``; a missing, truncated or corrupt one names the file."""
    return open_checkpoint(path, maker="train")


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) RNG states, as plain data and tensors."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # this rank's device only
    return state


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_tuples(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _tuples(x: Any) -> Any:
    return tuple(_tuples(v) for v in x) if isinstance(x, list | tuple) else x


def all_finite(state_dict: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in state_dict.values() if t.is_floating_point())


def finished_output(out_dir: Path, stage: str, config: dict, force: bool) -> bool:
    """Whether ``out_dir`` is finished with ``config`` (as :func:`asr_kd.stage.stage_output`).

    Checked before a training starts, so that its output directory is only created
    (through ``stage_output``) when the training has ended.

    Raises:
        AsrKdError: it is finished with another configuration and ``force`` is off.
    """
    return finished(out_dir, stage, config, force)


class WorkDir:
    """The persistent working directory of one training (see the module docstring).

    Args:
        out_dir: the stage's final output directory; the work directory is its
            sibling ``<out>.work``.
    """

    def __init__(self, out_dir: Path | str):
        out_dir = Path(out_dir)
        self.path = out_dir.with_name(f"{out_dir.name}.work")
        self.checkpoints = self.path / "checkpoints"
        self.log = self.path / "log"

    def prepare(self, identity: dict[str, Any], force: bool) -> None:
        """Create the directory, or check that it belongs to ``identity`` (main rank only).

        Raises:
            AsrKdError: it holds a training with another configuration or world size.
        """
        identity = json.loads(json.dumps(identity, default=str))
        # held until the stage's output is written (stage_output releases it) or we exit
        acquire_lock(self.path.with_name(self.path.name.removesuffix(".work")), identity["stage"])
        marker = self.path / "work.json"
        if force and self.path.exists():
            logger.info("--force: discarding the unfinished training in %s", self.path)
            shutil.rmtree(self.path)
        self.discard_if_unstarted()
        if marker.is_file():
            previous = json.loads(marker.read_text())
            if previous != identity:
                changed = sorted(
                    k
                    for k in set(previous["config"]) | set(identity["config"])
                    if previous["config"].get(k) != identity["config"].get(k)
                )
                what = (
                    f"different options ({', '.join(changed)})" if changed else "another world size"
                )
                raise AsrKdError(
                    f"{self.path} holds an unfinished training with {what}; rerun "
                    "with the same settings to resume it, or use --force to start afresh"
                )
            return
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.log.mkdir(parents=True, exist_ok=True)
        atomic_write_text(marker, json.dumps(identity, indent=2) + "\n")

    def discard_if_unstarted(self) -> None:
        """Remove the directory if no checkpoint was written in it: a training that
        failed while loading its data or in its first epoch holds nothing to resume, so
        it leaves no ``<out>.work`` behind and does not hold a rerun to its settings (the
        error is in the stage's log)."""
        if self.path.is_dir() and not (self.checkpoints / "resume.json").is_file():
            logger.info("discarding %s: it holds no checkpoint to resume", self.path)
            shutil.rmtree(self.path, ignore_errors=True)

    def resume_point(self) -> Path | None:
        """The checkpoint to resume from, or ``None`` for a fresh start."""
        pointer = self.checkpoints / "resume.json"
        if not pointer.is_file():
            return None
        path = self.checkpoints / json.loads(pointer.read_text())["checkpoint"]
        if not path.is_file():
            raise MissingInputError(f"{pointer} names {path}, which is missing; use --force")
        return path

    def save(self, payload: dict[str, Any], name: str, best: bool = False) -> Path:
        """Write a resumable checkpoint and point ``resume.json`` at it.

        Raises:
            BadInputError: the weights hold NaN or Inf (never written).
        """
        if not all_finite(payload["model"]):
            raise BadInputError(f"refusing to write checkpoint {name}: non-finite weights")
        path = self.checkpoints / name
        save_atomic(payload, path)
        if best:
            _link_or_copy(path, self.checkpoints / "best.pt")
        atomic_write_text(self.checkpoints / "resume.json", json.dumps({"checkpoint": name}) + "\n")
        for old in self.checkpoints.glob("step-*.pt"):
            if old.name != name:
                old.unlink()
        return path

    def finish(self, dest: Path) -> None:
        """Move the outputs into ``dest`` (the stage's temporary directory) and clean up."""
        for stale in ("resume.json", *(p.name for p in self.checkpoints.glob("step-*.pt"))):
            (self.checkpoints / stale).unlink(missing_ok=True)
        for entry in sorted(self.path.iterdir()):
            if entry.name != "work.json":
                entry.rename(dest / entry.name)
        shutil.rmtree(self.path)


def _link_or_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    tmp.replace(dst)


@dataclass(frozen=True)
class ModelInfo:
    """What a trained model needs beyond its weights (everything in ``model.pt`` but them).

    Attributes:
        spec: the model spec (``ModelSpec.to_dict()``).
        model_config: the resolved constructor arguments.
        feat_dim, num_senones, tree_id, frame_shift: the input and output contract.
        feature_mean, feature_var: the training split's statistics.
        train_config: the training settings.
        best_epoch, dev_frame_acc: the epoch the weights come from and its dev accuracy.
    """

    spec: dict[str, Any]
    model_config: dict[str, Any]
    feat_dim: int
    num_senones: int
    tree_id: str
    frame_shift: float
    feature_mean: list[float]
    feature_var: list[float]
    train_config: dict[str, Any] = field(default_factory=dict)
    best_epoch: int = 0
    dev_frame_acc: float = float("nan")

    @property
    def normalizer(self) -> FeatureNormalizer:
        return FeatureNormalizer(self.feature_mean, self.feature_var)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def save_model(path: Path, info: ModelInfo, state_dict: dict[str, torch.Tensor]) -> None:
    """Write ``model.pt``: the :class:`ModelInfo` fields plus ``state_dict``."""
    if not all_finite(state_dict):
        raise BadInputError(f"refusing to write {path}: non-finite weights")
    save_atomic({**info.to_dict(), "state_dict": state_dict}, path)


def load_model(
    path: Path | str,
    device: str | torch.device = "cpu",
    builder: ModelBuilder = registry_builder,
) -> tuple[torch.nn.Module, ModelInfo]:
    """Rebuild a trained model from ``model.pt`` (or the training directory holding it).

    Returns:
        The model in eval mode on ``device``, and its :class:`ModelInfo`.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise MissingInputError(f"{path} does not exist: run the 'train' stage first")
    doc = load_file(path)
    fields = ModelInfo.__dataclass_fields__
    required = [k for k, f in fields.items() if f.default is f.default_factory is MISSING]
    missing = [k for k in ("state_dict", *required) if not isinstance(doc, dict) or k not in doc]
    if missing:
        raise BadInputError(
            f"{path} is a torch file but no asr-kd model (no {', '.join(missing)}): 'train' "
            "writes model.pt; a model of your own is a plug-in teacher (README, 'Your own "
            "model')"
        )
    state_dict = doc.pop("state_dict")
    info = ModelInfo(**{k: v for k, v in doc.items() if k in fields})
    model, _, _ = builder(
        resolved_spec(info.spec, info.model_config), info.feat_dim, info.num_senones
    )
    load_weights(model, state_dict, path, "train")
    return model.to(device).eval(), info


def check_compatible(info: ModelInfo, num_senones: int, tree_id: str, data: str) -> None:
    """Refuse data whose senone inventory is not the model's.

    Raises:
        BadInputError: naming both inventories.
    """
    if info.num_senones != num_senones or info.tree_id != tree_id:
        raise BadInputError(
            f"the model predicts {info.num_senones} senones of tree {info.tree_id} but {data} "
            f"holds targets for {num_senones} senones of tree {tree_id}; use targets made "
            "with the model's tree ('senone-targets')"
        )
