"""The build-tree and senone-target stages on a real (tiny) alignment."""

import pytest

from asr_kd.errors import MissingInputError
from asr_kd.tree.build import TreeConfig
from asr_kd.tree.targets import build_tree_stage, senone_targets_stage


def test_missing_alignment_names_the_stage(tmp_path):
    with pytest.raises(MissingInputError, match="run the 'align' stage first"):
        build_tree_stage(tmp_path / "ali", tmp_path / "mfcc", tmp_path / "lang",
                         tmp_path / "tree", TreeConfig())  # fmt: skip
    with pytest.raises(MissingInputError, match="run the 'align' stage first"):
        senone_targets_stage(tmp_path / "ali", tmp_path / "fbank", tmp_path / "tree",
                             tmp_path / "out")  # fmt: skip
