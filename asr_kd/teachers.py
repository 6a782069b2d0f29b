"""Teachers: anything that gives per-frame senone log-probabilities for a cut.

A teacher is one of three kinds, all behind the :class:`Teacher` protocol::

    load_teacher("exp/teacher1/model.pt")        # a model trained by 'asr-kd train'
    load_teacher("conf/my_teacher.yaml")         # a user's nn.Module, or posteriors on disk
    load_teacher({"posteriors": "post/dev.scp", "domain": "log",
                  "tree_id": "3f2a...", "num_senones": 2000})

A teacher file (YAML or JSON; relative paths are relative to the file) is one of::

    # your own nn.Module: forward(feats [B, T, F], lengths [B]) -> (logits [B, T, S], lengths)
    class: mypkg.models:MyModel         # importable module:Class
    kwargs: {feat_dim: 80, num_senones: 2000}
    checkpoint: my_model.pt             # its state_dict (torch.save)
    state_dict_key: null                # or the key holding it, e.g. "model"
    tree_id: 3f2a...                    # the senone inventory it predicts
    num_senones: 2000
    frame_shift: 0.01                   # seconds; the input features' frame shift
    feature_stats: ../data/fbank        # compute-features dir, stats JSON, {mean, var} or null

    # precomputed posteriors, one [T, S] matrix per cut id
    posteriors: post/dev.scp            # Kaldi .scp or .ark (kaldiio), or a dir of <cut_id>.npy
    domain: log                         # log: log-probabilities; prob: probabilities
    tree_id: 3f2a...
    num_senones: 2000
    frame_shift: 0.01

    # a checkpoint, named
    model: ../exp/teacher1/model.pt

``log_probs(cut, T)`` returns ``log_softmax(z / T)`` for a network and the renormalised
``p ** (1 / T)`` for posteriors (the same thing, since ``log p = z`` up to a constant).
"""

from __future__ import annotations

import importlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from lhotse.cut import Cut

from asr_kd.errors import BadInputError, ConfigError, MissingInputError
from asr_kd.stage import file_digest
from asr_kd.train.checkpoint import MODEL_FILE, load_model
from asr_kd.train.config import resolve_amp
from asr_kd.train.dataset import FeatureNormalizer
from asr_kd.train.distributed import resolve_device
from asr_kd.train.evaluate import forward_logits

__all__ = [
    "NeuralTeacher",
    "PosteriorTeacher",
    "Teacher",
    "check_teacher",
    "load_teacher",
    "teacher_from_config",
]

logger = logging.getLogger(__name__)

TEACHER_FILE_SUFFIXES = (".yaml", ".yml", ".json")
MODULE_KEYS = {"kind", "name", "class", "kwargs", "checkpoint", "state_dict_key", "tree_id",
               "num_senones", "frame_shift", "feature_stats"}  # fmt: skip
POSTERIOR_KEYS = {"kind", "name", "posteriors", "format", "domain", "tree_id", "num_senones",
                  "frame_shift"}  # fmt: skip
CHECKPOINT_KEYS = {"kind", "name", "model"}
DEFAULT_FRAME_SHIFT = 0.01


@runtime_checkable
class Teacher(Protocol):
    """Per-frame senone log-probabilities of cuts.

    Attributes:
        name: a short name for tables and logs (``teacher1``).
        source: what makes the scores (paths and file digests), for provenance.
        num_senones, tree_id: the senone inventory the outputs index.
        frame_shift: seconds per output frame (the input features' frame shift).
        needs_features: whether it reads the cuts' features (a network does, stored
            posteriors do not).
    """

    name: str
    source: str
    num_senones: int
    tree_id: str
    frame_shift: float
    needs_features: bool

    def log_probs(self, cut: Cut, temperature: float = 1.0) -> np.ndarray:
        """``[T, S]`` float32 log-probabilities of a cut at ``temperature``; rows sum to 1."""
        ...

    def log_probs_batch(
        self,
        cuts: Sequence[Cut],
        temperature: float = 1.0,
        feats: Sequence[np.ndarray] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities of a batch: ``([B, T, S] float32, lengths [B])``.

        Padding frames hold the uniform distribution (finite, so combinations stay
        finite). ``feats``: the cuts' raw features if already loaded (the caller loads
        them once for several teachers). The result lives on the teacher's device.
        """
        ...


def _check_temperature(temperature: float) -> None:
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be positive and finite, got {temperature}")


def pad_log_probs(
    rows: Sequence[torch.Tensor], num_senones: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad ``[T_i, S]`` log-probabilities to ``[B, T_max, S]`` with uniform rows."""
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.int64)
    device = rows[0].device
    out = torch.full(
        (len(rows), int(lengths.max()), num_senones), -math.log(num_senones), device=device
    )
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out, lengths


def _cut_frame_shift(cut: Cut) -> float | None:
    return cut.features.frame_shift if cut.features is not None else None


class NeuralTeacher:
    """A network with its feature normalisation: a registry checkpoint or a user's module.

    Args:
        model: ``forward(feats [B, T, F], lengths [B]) -> (logits [B, T, S], lengths)``,
            one output per input frame; moved to ``device`` and put in eval mode.
        normalizer: the input normalisation (``None``: features as they are).
        num_senones, tree_id, frame_shift: its senone inventory and frame rate.
        name, source: see :class:`Teacher`.
        device: where it runs.
        amp: ``auto`` (bf16 autocast on CUDA), ``bf16`` or ``off``.
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
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.normalizer = normalizer
        self.num_senones, self.tree_id, self.frame_shift = num_senones, tree_id, frame_shift
        self.name, self.source = name, source
        self.amp = resolve_amp(amp, self.device)
        self.needs_features = True

    def _features(self, cut: Cut, raw: np.ndarray | None) -> np.ndarray:
        feats = cut.load_features() if raw is None else raw
        shift = _cut_frame_shift(cut)
        if shift is not None and abs(shift - self.frame_shift) > 1e-6:
            raise BadInputError(
                f"cut {cut.id}: features at a frame shift of {shift} s but teacher {self.name} "
                f"works at {self.frame_shift} s"
            )
        if self.normalizer is None:
            return np.asarray(feats, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.normalizer.dim:
            raise BadInputError(
                f"cut {cut.id}: features of shape {feats.shape}, but teacher {self.name} "
                f"takes [T, {self.normalizer.dim}] (its feature statistics)"
            )
        return self.normalizer(feats)

    def input_batch(
        self, cuts: Sequence[Cut], feats: Sequence[np.ndarray] | None = None
    ) -> dict[str, torch.Tensor]:
        """The cuts' normalised, padded features: ``{"feats": [B, T, F], "lengths": [B]}``
        (networks with this teacher's normaliser can share it)."""
        arrays = [
            self._features(c, None if feats is None else feats[i]) for i, c in enumerate(cuts)
        ]
        lengths = torch.tensor([len(a) for a in arrays], dtype=torch.int64)
        padded = torch.zeros(len(arrays), int(lengths.max()), arrays[0].shape[1])
        for i, a in enumerate(arrays):
            padded[i, : len(a)] = torch.from_numpy(a)
        return {"feats": padded, "lengths": lengths}

    @torch.no_grad()
    def log_probs_of(
        self, batch: dict[str, torch.Tensor], temperature: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`log_probs_batch` of an :meth:`input_batch`."""
        _check_temperature(temperature)
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

    def log_probs(self, cut: Cut, temperature: float = 1.0) -> np.ndarray:
        out, _ = self.log_probs_batch([cut], temperature)
        return out[0].cpu().numpy()


class PosteriorTeacher:
    """Posteriors computed elsewhere, one ``[T, S]`` matrix per cut id.

    Args:
        path: a Kaldi ``.scp`` or ``.ark`` (read with kaldiio; relative paths inside an
            scp are relative to the working directory, as in Kaldi), or a directory of
            ``<cut_id>.npy`` files.
        domain: ``log`` (log-probabilities, e.g. Kaldi's ``nnet3-compute`` output) or
            ``prob`` (probabilities); rows are renormalised either way.
        num_senones, tree_id, frame_shift: the declared senone inventory and frame rate.
        name: see :class:`Teacher`.
    """

    def __init__(
        self,
        path: Path | str,
        domain: str,
        num_senones: int,
        tree_id: str,
        frame_shift: float = DEFAULT_FRAME_SHIFT,
        name: str | None = None,
    ):
        self.path = Path(path)
        if domain not in ("log", "prob"):
            raise ConfigError(
                f"posteriors {self.path}: domain must be 'log' or 'prob', got {domain!r}"
            )
        if not self.path.exists():
            raise MissingInputError(f"posteriors {self.path} do not exist")
        if not self.path.is_dir() and self.path.suffix not in (".scp", ".ark"):
            raise ConfigError(
                f"posteriors {self.path}: give a Kaldi .scp or .ark file or a directory of "
                "<cut_id>.npy files"
            )
        self.domain = domain
        self.num_senones, self.tree_id, self.frame_shift = num_senones, tree_id, frame_shift
        self.name = name or self.path.stem
        self.source = f"posteriors:{self.path.resolve()}"
        self.needs_features = False
        self._table: Any = None

    def _lookup(self, cut_id: str) -> np.ndarray | None:
        if self.path.is_dir():
            f = self.path / f"{cut_id}.npy"
            return np.load(f) if f.is_file() else None
        if self._table is None:
            self._table = _open_kaldi(self.path)
        if cut_id not in self._table:
            return None
        value = self._table[cut_id]
        return value if isinstance(value, np.ndarray) else _load_ark_entry(self.path, value)

    def _matrix(self, cut: Cut) -> np.ndarray:
        post = self._lookup(cut.id)
        if post is None:
            raise BadInputError(
                f"cut {cut.id} has no posteriors in {self.path} (teacher {self.name}); compute "
                "them for every cut of the set"
            )
        post = np.asarray(post)
        if post.ndim != 2 or post.shape[1] != self.num_senones:
            raise BadInputError(
                f"cut {cut.id}: posteriors of shape {post.shape} in {self.path}, expected "
                f"[frames, {self.num_senones}]"
            )
        if cut.features is not None and cut.num_frames and len(post) != cut.num_frames:
            raise BadInputError(
                f"cut {cut.id}: {len(post)} frames of posteriors in {self.path} but "
                f"{cut.num_frames} feature frames; were they computed at another frame rate?"
            )
        return post

    def _log(self, cut: Cut, post: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(post.astype(np.float32))
        if self.domain == "prob":
            if bool((x < 0).any()):
                raise BadInputError(
                    f"cut {cut.id}: negative probabilities in {self.path}; are these "
                    "log-probabilities (domain: log)?"
                )
            return torch.log(x)
        if bool((x > 1e-3).any()):
            raise BadInputError(
                f"cut {cut.id}: positive values in {self.path} cannot be log-probabilities; "
                "are these probabilities (domain: prob)?"
            )
        return x

    def log_probs_batch(
        self,
        cuts: Sequence[Cut],
        temperature: float = 1.0,
        feats: Sequence[np.ndarray] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _check_temperature(temperature)
        rows = [torch.log_softmax(self._log(c, self._matrix(c)) / temperature, -1) for c in cuts]
        return pad_log_probs(rows, self.num_senones)

    def log_probs(self, cut: Cut, temperature: float = 1.0) -> np.ndarray:
        out, _ = self.log_probs_batch([cut], temperature)
        return out[0].numpy()


def _open_kaldi(path: Path) -> Mapping[str, Any]:
    """An scp as kaldiio's lazy table, or an ark as ``{key: byte offset}`` (one scan)."""
    import kaldiio
    from kaldiio.matio import read_kaldi, read_token

    if path.suffix == ".scp":
        return kaldiio.load_scp(str(path))
    index: dict[str, int] = {}
    with open(path, "rb") as fd:
        while (key := read_token(fd)) is not None:
            index[key] = fd.tell()
            read_kaldi(fd)
    return index


def _load_ark_entry(path: Path, offset: int) -> np.ndarray:
    import kaldiio

    return kaldiio.load_mat(f"{path}:{offset}")


def check_teacher(
    teacher: Teacher,
    tree_id: str | None = None,
    num_senones: int | None = None,
    frame_shift: float | None = None,
    what: str = "the data",
) -> None:
    """Refuse a teacher for another senone inventory or frame rate.

    Raises:
        BadInputError: naming the teacher's and the expected values.
    """
    if (tree_id is not None and teacher.tree_id != tree_id) or (
        num_senones is not None and teacher.num_senones != num_senones
    ):
        raise BadInputError(
            f"teacher {teacher.name} ({teacher.source}) predicts {teacher.num_senones} senones "
            f"of tree {teacher.tree_id} but {what} uses {num_senones} senones of tree "
            f"{tree_id}; use a teacher built on the same tree ('senone-targets')"
        )
    if frame_shift is not None and abs(teacher.frame_shift - frame_shift) > 1e-6:
        raise BadInputError(
            f"teacher {teacher.name} ({teacher.source}) works at a frame shift of "
            f"{teacher.frame_shift} s but {what} at {frame_shift} s"
        )


def load_teacher(
    spec: str | Path | Mapping[str, Any],
    expect_tree_id: str | None = None,
    expect_num_senones: int | None = None,
    expect_frame_shift: float | None = None,
    device: str | torch.device = "auto",
    amp: str = "auto",
) -> Teacher:
    """Load a teacher from a spec (see the module docstring) and check its inventory.

    Args:
        spec: a ``model.pt`` or the training directory holding it; a
            ``train-specialists`` output (the generalist and specialists combined); a teacher file
            (``.yaml``/``.yml``/``.json``); or the teacher file's mapping (its paths
            relative to the working directory).
        expect_tree_id, expect_num_senones, expect_frame_shift: refuse a teacher built
            for another tree or frame rate (``None``: not checked).
        device: where networks run (``auto``: the GPU if any).
        amp: ``auto`` (bf16 autocast on CUDA), ``bf16`` or ``off``.

    Raises:
        BadInputError: a teacher for another tree, senone count or frame shift.
        ConfigError: a malformed teacher file.
        MissingInputError: a file it names does not exist.
    """
    dev = resolve_device(device)
    if isinstance(spec, Mapping):
        teacher = teacher_from_config(spec, Path.cwd(), dev, amp)
    else:
        path = Path(spec)
        from asr_kd.specialists.system import is_specialist_dir, load_specialist_system

        if is_specialist_dir(path):  # a generalist and its specialists, as one teacher
            teacher = load_specialist_system(path, dev, amp)
        elif path.suffix in TEACHER_FILE_SUFFIXES:
            teacher = teacher_from_config(_read_teacher_file(path), path.parent, dev, amp, path)
        else:
            teacher = _checkpoint_teacher(path, dev, amp)
    check_teacher(teacher, expect_tree_id, expect_num_senones, expect_frame_shift)
    logger.info("teacher %s: %d senones of tree %s from %s", teacher.name, teacher.num_senones,
                teacher.tree_id, teacher.source)  # fmt: skip
    return teacher


def _read_teacher_file(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise MissingInputError(f"teacher file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
    except yaml.YAMLError as e:
        raise ConfigError(f"teacher file {path} is not valid YAML/JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"teacher file {path} must hold a mapping")
    return data


def _kind(config: Mapping[str, Any], where: str) -> str:
    kinds = {"class": "module", "posteriors": "posteriors", "model": "checkpoint"}
    found = [kind for key, kind in kinds.items() if key in config]
    if len(found) != 1 or config.get("kind", found[0]) != found[0]:
        hint = ""
        if config.get("kind") == "ensemble":
            hint = "; an ensemble file is read by asr_kd.ensemble.load_system (decode --model)"
        raise ConfigError(
            f"teacher {where}: say what it is with exactly one of 'class' (your nn.Module), "
            f"'posteriors' (precomputed) or 'model' (a model.pt){hint}"
        )
    return found[0]


def teacher_from_config(
    config: Mapping[str, Any],
    base_dir: Path,
    device: torch.device,
    amp: str = "auto",
    where: Path | None = None,
) -> Teacher:
    """Build a teacher from a teacher file's mapping; paths are relative to ``base_dir``."""
    label = str(where) if where else "config"
    kind = _kind(config, label)
    allowed = {"module": MODULE_KEYS, "posteriors": POSTERIOR_KEYS, "checkpoint": CHECKPOINT_KEYS}
    unknown = sorted(set(config) - allowed[kind])
    if unknown:
        raise ConfigError(
            f"teacher {label}: unknown key(s) {', '.join(unknown)} for a {kind} teacher; "
            f"known: {', '.join(sorted(allowed[kind]))}"
        )
    name = config.get("name") or (where.stem if where else None)
    if kind == "checkpoint":
        teacher = _checkpoint_teacher(base_dir / str(config["model"]), device, amp)
        if name:
            teacher.name = name
        return teacher
    tree_id, num_senones = _declared(config, label)
    frame_shift = float(config.get("frame_shift", DEFAULT_FRAME_SHIFT))
    if kind == "posteriors":
        fmt = config.get("format")
        path = base_dir / str(config["posteriors"])
        if fmt is not None and fmt not in ("kaldi", "npy"):
            raise ConfigError(f"teacher {label}: format must be 'kaldi' or 'npy', got {fmt!r}")
        if fmt is not None and (fmt == "npy") != path.is_dir():
            raise ConfigError(
                f"teacher {label}: format {fmt} needs "
                + ("a directory of .npy files" if fmt == "npy" else "a .scp or .ark file")
            )
        domain = config.get("domain", "log")
        return PosteriorTeacher(path, domain, num_senones, tree_id, frame_shift, name)
    return _module_teacher(config, base_dir, device, amp, label, name, tree_id, num_senones,
                           frame_shift)  # fmt: skip


def _declared(config: Mapping[str, Any], label: str) -> tuple[str, int]:
    missing = [k for k in ("tree_id", "num_senones") if config.get(k) in (None, "")]
    if missing:
        raise ConfigError(
            f"teacher {label}: declare its senone inventory ({', '.join(missing)} missing): "
            "the tree id and senone count in the senone-targets info.json it was trained on"
        )
    return str(config["tree_id"]), int(config["num_senones"])


def _checkpoint_teacher(path: Path, device: torch.device, amp: str) -> NeuralTeacher:
    file = path / MODEL_FILE if path.is_dir() else path
    model, info = load_model(file, device)
    name = file.parent.name if file.name == MODEL_FILE else file.stem
    return NeuralTeacher(
        model, info.normalizer, info.num_senones, info.tree_id, info.frame_shift, name,
        f"model:{file.resolve()}@{file_digest(file)}", device, amp,
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
    cls = getattr(module, attr, None)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ConfigError(f"teacher {label}: {target} is not an torch.nn.Module class")
    return cls


def _module_teacher(config, base_dir, device, amp, label, name, tree_id, num_senones,
                    frame_shift) -> NeuralTeacher:  # fmt: skip
    cls = _import_class(config["class"], label)
    kwargs = dict(config.get("kwargs") or {})
    try:
        model = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"teacher {label}: {config['class']}(**{kwargs}) failed: {e}") from None
    if "checkpoint" not in config:
        raise ConfigError(f"teacher {label}: name the state_dict file with 'checkpoint'")
    ckpt = base_dir / str(config["checkpoint"])
    if not ckpt.is_file():
        raise MissingInputError(f"teacher {label}: checkpoint {ckpt} does not exist")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    key = config.get("state_dict_key")
    if key is not None:
        if not isinstance(state, Mapping) or key not in state:
            raise BadInputError(f"teacher {label}: {ckpt} has no entry {key!r}")
        state = state[key]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as e:
        raise BadInputError(
            f"teacher {label}: {ckpt} does not fit {config['class']}: {e}"
        ) from None
    normalizer = _normalizer(config.get("feature_stats"), base_dir, label)
    source = f"module:{config['class']}:{ckpt.resolve()}@{file_digest(ckpt)}"
    return NeuralTeacher(
        model, normalizer, num_senones, tree_id, frame_shift, name or cls.__name__, source,
        device, amp,
    )  # fmt: skip


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
