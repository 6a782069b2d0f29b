"""A learnable toy task in the senone-target directory contract, and a stand-in model.

The toy data: every frame's senone follows a sticky Markov chain (runs of a few
frames, like real senones) and its features are a per-senone prototype plus noise,
shifted and scaled so that normalisation matters. A per-frame MLP learns it to
well above chance in a few epochs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from lhotse import CutSet, Features, MonoCut, NumpyHdf5Writer

from asr_kd.train import TrainConfig

FRAME_SHIFT = 0.01


def toy_train_config(**changes) -> TrainConfig:
    """Training settings for :class:`ToyModel` on the toy task (3 quick epochs)."""
    base = dict(
        model={"arch": "toy", "options": {"hidden": 32}},
        max_epochs=3,
        max_duration=3.0,
        lr=0.1,
        num_workers=0,
        log_interval=4,
    )
    return TrainConfig(**{**base, **changes})


class Kill(RuntimeError):
    """Stands in for SIGKILL in the middle of a training."""


def kill_at(step: int):
    """A step callback that raises :class:`Kill` at optimiser step ``step``."""

    def callback(s: int, info: dict) -> None:
        if s == step:
            raise Kill(f"killed at step {s}")

    return callback


class ToyModel(torch.nn.Module):
    """Per-frame MLP: ``[B, T, F] -> [B, T, S]`` (stand-in for ``asr_kd.models``)."""

    def __init__(self, feat_dim: int, num_senones: int, hidden: int = 32, dropout: float = 0.0):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(feat_dim, hidden),
            torch.nn.ReLU(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(hidden, num_senones),
        )

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor):
        return self.net(feats), lengths

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_frame(self) -> int:
        return 2 * sum(m.weight.numel() for m in self.net if isinstance(m, torch.nn.Linear))


def toy_builder(spec: dict, feat_dim: int, num_senones: int):
    """A :data:`asr_kd.train.checkpoint.ModelBuilder` for :class:`ToyModel`."""
    options = dict(spec.get("options") or {})
    out = options.pop("force_outputs", num_senones)  # to test a mismatching model
    model = ToyModel(feat_dim, out, **options)
    return model, dict(spec), {"feat_dim": feat_dim, "num_senones": out, **options}


def _marker(path: Path, stage: str) -> None:
    (path / ".done.json").write_text(json.dumps({"stage": stage, "config": {}}) + "\n")


def _chain(rng: np.random.Generator, num_frames: int, num_senones: int) -> np.ndarray:
    labels = np.empty(num_frames, dtype=np.int32)
    labels[0] = rng.integers(num_senones)
    for t in range(1, num_frames):
        labels[t] = labels[t - 1] if rng.random() < 0.8 else rng.integers(num_senones)
    return labels


def make_toy_data(
    root: Path,
    num_senones: int = 8,
    feat_dim: int = 6,
    num_train: int = 24,
    num_dev: int = 8,
    seed: int = 0,
    tree_id: str = "toytree00000000",
    short_targets: str | None = None,
    nan_cut: str | None = None,
    bad_senone_cut: str | None = None,
) -> tuple[Path, Path]:
    """Write ``<root>/targets`` (senone-targets contract) and ``<root>/fbank`` (stats).

    Args:
        short_targets: this cut's targets get 3 frames fewer than its features.
        nan_cut: this cut's features hold NaN.
        bad_senone_cut: this cut's targets hold the id ``num_senones``.

    Returns:
        ``(data_dir, feature_dir)``.
    """
    rng = np.random.default_rng(seed)
    protos = np.random.default_rng(1234).normal(size=(num_senones, feat_dim)) * 1.5
    data_dir, feature_dir = root / "targets", root / "fbank"
    data_dir.mkdir(parents=True)
    (feature_dir / "stats").mkdir(parents=True)
    all_train = []
    for split, count in (("train", num_train), ("dev", num_dev)):
        cuts = []
        feats_path, sen_path = data_dir / f"feats_{split}.h5", data_dir / f"senones_{split}.h5"
        with NumpyHdf5Writer(feats_path) as fw, NumpyHdf5Writer(sen_path) as sw:
            for i in range(count):
                cid = f"{split}-{i:03d}"
                num_frames = int(rng.integers(40, 120))
                labels = _chain(rng, num_frames, num_senones)
                noise = rng.normal(size=(num_frames, feat_dim))
                feats = ((protos[labels] + 0.8 * noise) * 3.0 + 5.0).astype(np.float32)
                if cid == nan_cut:
                    feats[5] = np.nan
                if cid == bad_senone_cut:
                    labels[0] = num_senones
                if cid == short_targets:
                    labels = labels[:-3]
                if split == "train" and cid != nan_cut:
                    all_train.append(feats)
                key = fw.write(cid, feats)
                features = Features(
                    type="fbank", num_frames=num_frames, num_features=feat_dim,
                    frame_shift=FRAME_SHIFT, sampling_rate=16000, start=0.0,
                    duration=num_frames * FRAME_SHIFT, storage_type=fw.name,
                    storage_path=str(feats_path), storage_key=key,
                )  # fmt: skip
                senones = sw.store_array(cid, labels, frame_shift=FRAME_SHIFT, temporal_dim=0)
                cuts.append(
                    MonoCut(
                        id=cid,
                        start=0.0,
                        duration=num_frames * FRAME_SHIFT,
                        channel=0,
                        features=features,
                        custom={"senones": senones},
                    )  # fmt: skip
                )
        CutSet.from_cuts(cuts).to_file(data_dir / f"toy_cuts_{split}.jsonl.gz")
    info = {"num_senones": num_senones, "tree_id": tree_id}
    (data_dir / "info.json").write_text(json.dumps(info) + "\n")
    _marker(data_dir, "senone-targets")
    stacked = np.concatenate(all_train).astype(np.float64)
    stats = {"split": "train", "count": len(stacked), "mean": stacked.mean(0).tolist(),
             "var": stacked.var(0).tolist()}  # fmt: skip
    (feature_dir / "stats" / "global.json").write_text(json.dumps(stats) + "\n")
    (feature_dir / "stats" / "speakers.json").write_text("{}\n")
    _marker(feature_dir, "compute-features")
    return data_dir, feature_dir


def state_dicts_equal(a: dict, b: dict) -> bool:
    """Exact (bitwise) equality of two (nested) state dicts."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(state_dicts_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(state_dicts_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b
