"""Fixtures: one toy senone-target directory per test session."""

from __future__ import annotations

import pytest
from train_toy import make_toy_data


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory):
    """``(data_dir, feature_dir)`` of the learnable toy task (read-only: share it)."""
    return make_toy_data(tmp_path_factory.mktemp("toy"))
