"""Network teachers: a model trained here (``model.pt``) or a user's ``module:Class``.

A network runs frozen, in eval mode, on the cut's features normalised with its own
statistics: a ``model.pt`` carries them; a plug-in module names them with
``feature_stats`` (a ``compute-features`` directory, its ``stats/global.json``, or
``{mean, var}``), or says ``feature_stats: null`` for a network that takes the
features as they are (then logged and recorded in its ``source``). A plug-in teacher
file without the key is refused: a network fed unnormalised features gives no error,
only worse posteriors.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lhotse.cut import Cut

from asr_kd.checked import load_features, load_weights
from asr_kd.errors import BadInputError, ConfigError, MissingInputError
from asr_kd.stage import file_digest
from asr_kd.teachers.base import TeacherBase, check_finite, check_temperature
from asr_kd.train.checkpoint import MODEL_FILE, all_finite, load_model
from asr_kd.train.config import resolve_amp
from asr_kd.train.dataset import FeatureNormalizer
from asr_kd.train.evaluate import forward_logits

__all__ = ["MODULE_KEYS", "NeuralTeacher", "checkpoint_teacher", "module_teacher"]

logger = logging.getLogger(__name__)

MODULE_KEYS = {"kind", "name", "class", "kwargs", "checkpoint", "state_dict_key", "tree_id",
               "num_senones", "frame_shift", "feature_stats"}  # fmt: skip
RAW_FEATURES = "raw features (feature_stats: null)"


class NeuralTeacher(TeacherBase):
    """A network with its feature normalisation: a registry checkpoint or a user's module.

    Args:
        model: ``forward(feats [B, T, F], lengths [B]) -> (logits [B, T, S], lengths)``,
            one output per input frame; moved to ``device`` and put in eval mode.
        normalizer: the input normalisation (``None``: features as they are).
        num_senones, tree_id, frame_shift: its senone inventory and frame rate.
        name, source: see :class:`~asr_kd.teachers.Teacher`.
        device: where it runs.
        amp: ``auto`` (bf16 autocast on CUDA), ``bf16`` or ``off``.

    Raises:
        BadInputError: the weights hold NaN or Inf.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        normalizer: FeatureNormalizer | None,
        num_senones: int,
        tree_id: str,
        frame_shift: float,
        name: str,
        source: str,
        device: torch.device | str = "cpu",
        amp: str = "auto",
    ):
        if not all_finite(model.state_dict()):
            raise BadInputError(
                f"teacher {name} ({source}): its weights hold NaN or Inf (a diverged "
                "training); use an earlier checkpoint or retrain it"
            )
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.normalizer = normalizer
        self.num_senones, self.tree_id, self.frame_shift = num_senones, tree_id, frame_shift
        self.name, self.source = name, source
        self.amp = resolve_amp(amp, self.device)
        self.needs_features = True

    def _features(self, cut: Cut, raw: np.ndarray | None) -> np.ndarray:
        feats = load_features(cut) if raw is None else raw
        shift = cut.features.frame_shift if cut.features is not None else None
        if shift is not None and abs(shift - self.frame_shift) > 1e-6:
            raise BadInputError(
                f"cut {cut.id}: features at a frame shift of {shift} s but teacher {self.name} "
                f"works at {self.frame_shift} s"
            )
        if not np.isfinite(feats).all():
            raise BadInputError(
                f"cut {cut.id}: its features hold NaN or Inf (teacher {self.name}); recompute "
                "them ('compute-features') or leave the cut out"
            )
        if self.normalizer is None:
            return np.asarray(feats, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.normalizer.dim:
            raise BadInputError(
                f"cut {cut.id}: features of shape {feats.shape}, but teacher {self.name} "
                f"takes [T, {self.normalizer.dim}] (its feature statistics)"
            )
        return self.normalizer(feats)

    def input_batch(self, cuts: Sequence[Cut], feats: Sequence[np.ndarray] | None = None) -> dict:
        """The cuts' normalised, padded features: ``{"feats": [B, T, F], "lengths": [B],
        "cuts": cuts}`` (networks with this teacher's normaliser can share it)."""
        arrays = [
            self._features(c, None if feats is None else feats[i]) for i, c in enumerate(cuts)
        ]
        lengths = torch.tensor([len(a) for a in arrays], dtype=torch.int64)
        padded = torch.zeros(len(arrays), int(lengths.max()), arrays[0].shape[1])
        for i, a in enumerate(arrays):
            padded[i, : len(a)] = torch.from_numpy(a)
        return {"feats": padded, "lengths": lengths, "cuts": list(cuts)}

    @torch.no_grad()
    def log_probs_of(
        self, batch: dict, temperature: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`log_probs_batch` of an :meth:`input_batch`.

        Raises:
            BadInputError: another output width than declared, another frame count
                than the input, or NaN/Inf outputs (naming the cut).
        """
        check_temperature(temperature)
        lengths = batch["lengths"]
        try:
            logits = forward_logits(self.model, batch, self.device, self.amp)
        except ValueError as e:
            raise BadInputError(f"teacher {self.name} ({self.source}): {e}") from None
        if logits.shape[-1] != self.num_senones:
            raise BadInputError(
                f"teacher {self.name} ({self.source}) outputs {logits.shape[-1]} classes but "
                f"declares {self.num_senones} senones"
            )
        out = torch.log_softmax(logits / temperature, dim=-1)
        check_finite(out, lengths, batch["cuts"], self)
        valid = torch.arange(out.shape[1], device=out.device) < lengths.to(out.device)[:, None]
        out = out.masked_fill(~valid[..., None], -math.log(self.num_senones))
        return out, lengths

    def log_probs_batch(
        self,
        cuts: Sequence[Cut],
        temperature: float = 1.0,
        feats: Sequence[np.ndarray] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.log_probs_of(self.input_batch(cuts, feats), temperature)


def checkpoint_teacher(path: Path, device: torch.device, amp: str) -> NeuralTeacher:
    """A model trained here: ``model.pt`` or the training directory holding it."""
    file = path / MODEL_FILE if path.is_dir() else path
    model, info = load_model(file, device)
    name = file.parent.name if file.name == MODEL_FILE else file.stem
    return NeuralTeacher(
        model, info.normalizer, info.num_senones, info.tree_id, info.frame_shift, name,
        f"model:{file.resolve()}@{file_digest(file)}", device, amp,
    )  # fmt: skip


def module_teacher(
    config: Mapping[str, Any],
    base_dir: Path,
    label: str,
    declared: tuple[str, int, float],
    name: str | None,
    device: torch.device,
    amp: str,
) -> NeuralTeacher:
    """A user's ``nn.Module`` from a teacher file's mapping (module docstring).

    Args:
        config: the teacher file's mapping; paths relative to ``base_dir``.
        label: the teacher file (or ``config``), named in errors.
        declared: its ``(tree_id, num_senones, frame_shift)``.
        name: the teacher's name (``None``: the class name).

    Raises:
        ConfigError: a module that cannot be imported or raises while importing, a
            class that is not an ``nn.Module`` or cannot be built, no ``checkpoint``,
            no ``feature_stats`` key.
        MissingInputError: the checkpoint or feature statistics do not exist.
        BadInputError: a checkpoint that cannot be read or does not fit the class.
    """
    cls = _import_class(config["class"], label)
    if "feature_stats" not in config:
        raise ConfigError(
            f"teacher {label}: say how its inputs are normalised: feature_stats: a "
            "compute-features dir, its stats/global.json or {mean: [...], var: [...]}; or "
            "feature_stats: null if the network takes the features as they are"
        )
    if "checkpoint" not in config:
        raise ConfigError(f"teacher {label}: name the state_dict file with 'checkpoint'")
    kwargs = dict(config.get("kwargs") or {})
    try:
        model = cls(**kwargs)
    except Exception as e:  # the user's constructor: any failure is a config problem
        raise ConfigError(
            f"teacher {label}: {config['class']}(**{kwargs}) raised {type(e).__name__}: {e}"
        ) from None
    ckpt = base_dir / str(config["checkpoint"])
    _load_weights(model, ckpt, config.get("state_dict_key"), label, config["class"])
    normalizer = _normalizer(config["feature_stats"], base_dir, label)
    source = f"module:{config['class']}:{ckpt.resolve()}@{file_digest(ckpt)}"
    if normalizer is None:
        source += f"; {RAW_FEATURES}"
        logger.info("teacher %s: its network takes the features as they are, unnormalised "
                    "(feature_stats: null)", label)  # fmt: skip
    tree_id, num_senones, frame_shift = declared
    return NeuralTeacher(
        model, normalizer, num_senones, tree_id, frame_shift, name or cls.__name__, source,
        device, amp,
    )  # fmt: skip


def _import_class(target: str, label: str) -> type:
    module_name, _, attr = str(target).partition(":")
    if not module_name or not attr:
        raise ConfigError(f"teacher {label}: class must be 'module.path:ClassName', got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(
            f"teacher {label}: cannot import {module_name} ({e}); install it or add it to "
            "PYTHONPATH"
        ) from None
    except Exception as e:  # the user's module failed while importing
        raise ConfigError(
            f"teacher {label}: importing its module {module_name} raised {type(e).__name__}: "
            f"{e}; fix the module (python -c 'import {module_name}' shows the traceback)"
        ) from None
    cls = getattr(module, attr, None)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ConfigError(f"teacher {label}: {target} is not an torch.nn.Module class")
    return cls


def _load_weights(model: torch.nn.Module, ckpt: Path, key: str | None, label: str,
                  target: str) -> None:  # fmt: skip
    if not ckpt.is_file():
        raise MissingInputError(f"teacher {label}: checkpoint {ckpt} does not exist")
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as e:
        raise BadInputError(
            f"teacher {label}: checkpoint {ckpt} cannot be read ({type(e).__name__}: {e}); is "
            "it a complete torch.save file?"
        ) from None
    if key is not None:
        if not isinstance(state, Mapping) or key not in state:
            raise BadInputError(f"teacher {label}: {ckpt} has no entry {key!r}")
        state = state[key]
    load_weights(model, state, ckpt, "your training", reader=f"teacher {label}", what=target)


def _normalizer(stats: Any, base_dir: Path, label: str) -> FeatureNormalizer | None:
    """``feature_stats``: None, {mean, var}, a stats JSON file or a compute-features dir."""
    if stats is None:
        return None
    if isinstance(stats, Mapping):
        doc = stats
    else:
        path = base_dir / str(stats)
        if path.is_dir():
            path = path / "stats" / "global.json"
        if not path.is_file():
            raise MissingInputError(
                f"teacher {label}: feature_stats {path} does not exist (give a compute-features "
                "directory, its stats/global.json, or {mean: [...], var: [...]})"
            )
        doc = json.loads(path.read_text())
    if "mean" not in doc or "var" not in doc:
        raise ConfigError(f"teacher {label}: feature_stats needs 'mean' and 'var'")
    try:
        return FeatureNormalizer(doc["mean"], doc["var"])
    except ValueError as e:
        raise ConfigError(f"teacher {label}: feature_stats: {e}") from None
