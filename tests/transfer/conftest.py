"""Fixtures: the toy task with a tree, its teachers and the omitted-phone systems."""

from __future__ import annotations

import pytest
from transfer_toy import make_world, train_config

from asr_kd.distill import distill
from asr_kd.train import train_model


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("transfer"))


@pytest.fixture(scope="session")
def omitted(world):
    """The hard-target control and the student trained without AH, and the full student."""
    root, data, feats = world["root"], world["data"], world["feats"]
    train_model(data, feats, root / "exp" / "omit_control", train_config(omit_phone="AH"),
                device="cpu")  # fmt: skip
    distill(data, feats, root / "exp" / "omit_student", world["kd"],
            train_config(seed=7, omit_phone="ah"), device="cpu")  # fmt: skip
    distill(data, feats, root / "exp" / "student", world["kd"], train_config(seed=7),
            device="cpu")  # fmt: skip
    return root / "exp"
