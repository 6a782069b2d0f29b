"""Test helpers for teachers and ensembles: toy data, tiny trained teachers, a user model.

``TinyNet`` stands for a user's own acoustic model, plugged in as the teacher class
``teacher_toy:TinyNet`` (this directory is on ``sys.path`` under pytest).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent / "train"))
from train_toy import make_toy_data  # noqa: E402

from asr_kd.train import TrainConfig  # noqa: E402

NUM_SENONES = 8
FEAT_DIM = 6
TREE_ID = "toytree00000000"
DNN = {"arch": "dnn", "options": {"num_layers": 1, "hidden_dim": 16, "left_context": 1,
                                  "right_context": 1}}  # fmt: skip

_CACHE: dict[str, object] = {}


class TinyNet(torch.nn.Module):
    """A user's model: ``forward(feats [B, T, F], lengths [B]) -> (logits [B, T, S], lengths)``."""

    def __init__(self, feat_dim: int, num_senones: int, hidden: int = 12):
        super().__init__()
        self.inp = torch.nn.Linear(feat_dim, hidden)
        self.out = torch.nn.Linear(hidden, num_senones)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor):
        return self.out(torch.tanh(self.inp(feats))), lengths


def toy_config(**changes) -> TrainConfig:
    """Fast CPU training settings for the toy task (a small DNN, 3 epochs)."""
    base = dict(model=DNN, max_epochs=3, max_duration=3.0, lr=0.1, num_workers=0,
                log_interval=4, amp="off")  # fmt: skip
    return TrainConfig(**{**base, **changes})


def cached(key: str, tmp_path_factory, make):
    """``make(fresh_dir)`` once per test session (shared by every test module)."""
    if key not in _CACHE:
        _CACHE[key] = make(tmp_path_factory.mktemp(key))
    return _CACHE[key]


def toy_data(tmp_path_factory) -> tuple[Path, Path]:
    """``(data_dir, feature_dir)``: the toy senone-target task (8 senones, 6-dim features)."""
    return cached("toy", tmp_path_factory, make_toy_data)


def toy_teachers(tmp_path_factory, num: int = 3) -> list[Path]:
    """Three DNN teachers trained separately on the toy task (seeds 1..3): their dirs."""
    from asr_kd.ensemble import EnsembleConfig, train_ensemble

    data_dir, feature_dir = toy_data(tmp_path_factory)

    def make(root: Path) -> list[Path]:
        ens = EnsembleConfig(num_teachers=num)
        return train_ensemble(data_dir, feature_dir, root, ens, toy_config(), device="cpu")

    return cached(f"teachers{num}", tmp_path_factory, make)
