"""The acoustic-model base class, model specs and the architecture registry.

An architecture registers a frozen config dataclass, its model class and named presets
(instances of the config). A :class:`ModelSpec` names an architecture, a preset and
overrides; :func:`model_config` resolves it to a config and :func:`build_model` builds
the model::

    spec = ModelSpec("dnn", preset="small", options={"dropout": 0.1})
    model = build_model(spec, feat_dim=40, num_senones=500)
    logits, out_lengths = model(feats, lengths)       # [B, T, 500], [B]

A resolved config round-trips: ``ModelSpec(arch, options=dataclasses.asdict(config))``
rebuilds the same model whatever the presets say by then, so checkpoints store the
resolved config rather than the preset name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from asr_kd.errors import ConfigError

__all__ = [
    "AcousticModel",
    "ModelConfigError",
    "ModelSpec",
    "available_models",
    "build_model",
    "model_config",
    "register_model",
]

#: Config fields every architecture has, filled from the data rather than a preset.
DATA_FIELDS = ("feat_dim", "num_senones")


class ModelConfigError(ConfigError, ValueError):
    """An unknown architecture, preset or option, or an invalid option value.

    A ``ValueError`` for library callers and a ``ConfigError`` for the CLI, which turns
    it into a one-line message.
    """


class AcousticModel(nn.Module):
    """Base class of the frame-level acoustic models: features in, senone logits out.

    Subclasses set ``feat_dim`` and ``num_senones`` and implement :meth:`forward` and
    :meth:`flops_per_frame`. Outputs are at the input (alignment) frame rate, and the
    output for a sequence does not depend on the padding after it in a batch.

    Attributes:
        feat_dim: input feature dimension F.
        num_senones: output dimension S.
        frame_context: ``(left, right)``, the input frames either side of frame t that
            output frame t depends on, for models with a bounded receptive field (DNN,
            TDNN); ``None`` for sequence models (LSTM, conformer). A trainer that cuts
            chunks out of utterances adds this much context to each chunk and drops the
            outputs for the context frames. Such frame classifiers also implement
            ``forward_windows(windows [N, K, F]) -> [N, S]``, the logits of the centre
            frames of ``K = left + 1 + right``-frame windows, and accept
            ``forward(windows, lengths, windows=True)`` (logits ``[N, 1, S]``) for the
            frame-level training path (:mod:`asr_kd.train.frames`).
    """

    feat_dim: int
    num_senones: int
    frame_context: tuple[int, int] | None = None

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Compute senone logits.

        Args:
            feats: features, ``[B, T, F]`` float, padded after each sequence's end.
            lengths: valid frames per sequence, ``[B]`` int64, each in ``[1, T]``.

        Returns:
            ``(logits, lengths)``: unnormalised log-posteriors ``[B, T, S]`` (entries past
            a sequence's length are meaningless) and the output lengths ``[B]``, equal to
            the input lengths.
        """
        raise NotImplementedError

    def num_params(self) -> int:
        """Number of parameters (works on the meta device)."""
        return sum(p.numel() for p in self.parameters())

    def flops_per_frame(self) -> int:
        """Floating-point operations (2 x multiply-adds) of one output frame's forward pass."""
        raise NotImplementedError

    def check_inputs(self, feats: Tensor, lengths: Tensor) -> None:
        """Raise ``ValueError`` unless ``feats`` ``[B, T, feat_dim]`` and ``lengths`` fit."""
        if feats.dim() != 3 or feats.size(-1) != self.feat_dim:
            raise ValueError(
                f"{type(self).__name__} expects features of shape [batch, frames, "
                f"{self.feat_dim}], got {list(feats.shape)}; check the feature dimension "
                "the model was built with"
            )
        if lengths.shape != (feats.size(0),) or lengths.dtype.is_floating_point:
            raise ValueError(
                f"lengths must be an integer tensor of shape [{feats.size(0)}] (one per "
                f"sequence), got {lengths.dtype} {list(lengths.shape)}"
            )
        if feats.device.type != "meta" and bool(((lengths < 1) | (lengths > feats.size(1))).any()):
            raise ValueError(
                f"every length must be in [1, {feats.size(1)}] (the padded number of "
                f"frames), got {lengths.tolist()}"
            )

    def check_windows(self, windows: Tensor) -> None:
        """Raise ``ValueError`` unless ``windows`` is ``[N, left + 1 + right, feat_dim]``."""
        if self.frame_context is None:
            raise ValueError(f"{type(self).__name__} is a sequence model: it takes no windows")
        width = sum(self.frame_context) + 1
        if windows.dim() != 3 or windows.shape[1:] != (width, self.feat_dim):
            raise ValueError(
                f"{type(self).__name__} expects windows of shape [N, {width}, "
                f"{self.feat_dim}] (frame context {self.frame_context}), got "
                f"{list(windows.shape)}; build them with the model's frame_context"
            )


def lengths_to_mask(lengths: Tensor, max_len: int) -> Tensor:
    """``[B, max_len]`` bool mask, true at valid frames."""
    return torch.arange(max_len, device=lengths.device) < lengths.unsqueeze(1)


def pad_edges(feats: Tensor, lengths: Tensor, left: int, right: int) -> Tensor:
    """Extend each sequence by replicating its first and last *valid* frame (Kaldi-style).

    Args:
        feats: ``[B, T, F]``, padded after each sequence's end.
        lengths: ``[B]`` valid frames per sequence.
        left: frames to add before frame 0 (copies of frame 0).
        right: frames to add after the end (copies of frame ``lengths[b] - 1``).

    Returns:
        ``[B, left + T + right, F]``: row ``left + t`` is ``feats[b, min(t, lengths[b]-1)]``
        for ``t >= 0`` and ``feats[b, 0]`` for ``t < 0``. Padding never reaches it.
    """
    batch, frames, dim = feats.shape
    idx = torch.arange(-left, frames + right, device=feats.device).clamp(min=0)
    idx = torch.minimum(idx.unsqueeze(0), (lengths.to(feats.device) - 1).unsqueeze(1))
    return torch.gather(feats, 1, idx.unsqueeze(-1).expand(batch, -1, dim))


def masked_batch_norm(norm: nn.BatchNorm1d, x: Tensor, mask: Tensor) -> Tensor:
    """Batch-normalise ``x`` ``[B, T, C]``, with training statistics from valid frames only.

    Args:
        norm: the normalisation layer (its running statistics are updated in training).
        x: ``[B, T, C]`` activations.
        mask: ``[B, T]`` bool, true at the frames that count.

    Returns:
        ``[B, T, C]``; in training mode, zero at the masked-out frames.
    """
    if not norm.training:
        return norm(x.reshape(-1, x.size(-1))).view_as(x)
    out = torch.zeros_like(x)
    out[mask] = norm(x[mask])
    return out


@dataclass(frozen=True)
class ModelSpec:
    """What to build: an architecture, a preset and overrides of the preset's fields.

    Attributes:
        arch: registry key, e.g. ``"dnn"``, ``"tdnn"``, ``"lstm"``, ``"conformer"``.
        preset: a preset of that architecture (``"paper"``, ``"small"``, ``"tiny"``...),
            or ``None`` for the config class's defaults.
        options: field overrides, e.g. ``{"num_layers": 4, "dropout": 0.1}``.
    """

    arch: str
    preset: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A YAML/JSON-friendly dict (tuples become lists)."""
        return {"arch": self.arch, "preset": self.preset, "options": _plain(self.options)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_dict`; also reads a YAML ``model:`` section."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown or "arch" not in data:
            raise ModelConfigError(
                f"model spec {dict(data)!r}: needs 'arch' and takes only "
                f"{', '.join(sorted(known))}"
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            )
        options = data.get("options") or {}
        if not isinstance(options, Mapping):
            raise ModelConfigError(f"model spec options must be a mapping, got {options!r}")
        return cls(arch=data["arch"], preset=data.get("preset"), options=dict(options))


@dataclass(frozen=True)
class _Entry:
    config_cls: type
    model_cls: type[AcousticModel]
    presets: dict[str, Any]


_REGISTRY: dict[str, _Entry] = {}


def register_model(name: str, config_cls: type, model_cls: type, presets: dict[str, Any]) -> None:
    """Register an architecture.

    Args:
        name: registry key (``ModelSpec.arch``).
        config_cls: frozen dataclass with ``feat_dim`` and ``num_senones`` fields and
            defaults for every other field; its fields are ``model_cls``'s keyword args.
        model_cls: an :class:`AcousticModel` subclass.
        presets: preset name -> ``config_cls`` instance.
    """
    if name in _REGISTRY:
        raise ValueError(f"model architecture {name!r} is already registered")
    if not dataclasses.is_dataclass(config_cls) or not issubclass(model_cls, AcousticModel):
        raise ValueError("register_model needs a config dataclass and an AcousticModel subclass")
    names = {f.name for f in dataclasses.fields(config_cls)}
    missing = [f for f in DATA_FIELDS if f not in names]
    if missing:
        raise ValueError(f"config {config_cls.__name__} lacks the field(s) {', '.join(missing)}")
    for preset_name, preset in presets.items():
        if not isinstance(preset, config_cls):
            raise ValueError(f"preset {preset_name!r} of {name!r} is not a {config_cls.__name__}")
    _REGISTRY[name] = _Entry(config_cls, model_cls, dict(presets))


def available_models() -> dict[str, list[str]]:
    """Registered architectures and their presets."""
    return {name: list(entry.presets) for name, entry in _REGISTRY.items()}


def model_config(spec: ModelSpec, feat_dim: int, num_senones: int) -> Any:
    """Resolve a spec to its frozen config dataclass (``dataclasses.asdict`` is JSON-able).

    Raises:
        ModelConfigError: unknown architecture, preset or option, an option of the wrong
            type, or ``feat_dim``/``num_senones`` options that contradict the arguments.
    """
    entry = _REGISTRY.get(spec.arch)
    if entry is None:
        raise ModelConfigError(
            f"unknown model architecture {spec.arch!r}; known: {', '.join(sorted(_REGISTRY))}"
        )
    if spec.preset is None:
        base = entry.config_cls()
    elif spec.preset in entry.presets:
        base = entry.presets[spec.preset]
    else:
        raise ModelConfigError(
            f"unknown preset {spec.preset!r} for model {spec.arch!r}; known: "
            f"{', '.join(entry.presets)}"
        )
    fields = [f.name for f in dataclasses.fields(base)]
    unknown = sorted(set(spec.options) - set(fields))
    if unknown:
        raise ModelConfigError(
            f"unknown option(s) {', '.join(unknown)} for model {spec.arch!r}; known: "
            f"{', '.join(f for f in fields if f not in DATA_FIELDS)}"
        )
    given = {"feat_dim": feat_dim, "num_senones": num_senones}
    for name, value in given.items():
        if name in spec.options and spec.options[name] != value:
            raise ModelConfigError(
                f"model option {name}={spec.options[name]} contradicts the data ({value}); "
                f"{name} comes from the features and the tree, drop it from the options"
            )
    values = {
        name: _coerce(spec.arch, name, value, getattr(base, name))
        for name, value in spec.options.items()
        if name not in given
    }
    return dataclasses.replace(base, **values, **given)


def build_model(spec: ModelSpec, feat_dim: int, num_senones: int) -> AcousticModel:
    """Build the model a spec names, with ``feat_dim`` inputs and ``num_senones`` outputs.

    Builds on the current default device, so ``with torch.device("meta"):`` counts
    parameters of a large model without allocating it.

    Raises:
        ModelConfigError: as :func:`model_config`, or an option value the model rejects.
    """
    config = model_config(spec, feat_dim, num_senones)
    entry = _REGISTRY[spec.arch]
    kwargs = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    try:
        return entry.model_cls(**kwargs)
    except ValueError as e:
        where = f"model {spec.arch!r}" + (f" (preset {spec.preset!r})" if spec.preset else "")
        raise ModelConfigError(f"{where}: {e}") from None


def _coerce(arch: str, name: str, value: Any, default: Any) -> Any:
    """Check an option against the type of the value it overrides; lists become tuples."""
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple):
            raise ModelConfigError(f"model {arch!r} option {name} must be a list, got {value!r}")
        return _tuples(value)
    kind = type(default)
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise ModelConfigError(
            f"model {arch!r} option {name} must be {kind.__name__}, got {value!r}"
        )
    return value


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
