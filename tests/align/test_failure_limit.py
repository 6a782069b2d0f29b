"""The alignment stage's failure limit: per split, subsets counted in their parent."""

import pytest

from asr_kd.align.align import _check_failures, is_subset_split
from asr_kd.errors import AsrKdError


def _summary(tmp_path, **splits):
    for split, (failed, _total) in splits.items():
        (tmp_path / f"failed_{split}.txt").write_text(
            "".join(f"u{i} no path\n" for i in range(failed))
        )
    return {s: {"failed": f, "utterances": n} for s, (f, n) in splits.items()}


def test_subsets_are_recognised_by_their_parent():
    assert is_subset_split("test_piper", ["train", "test", "test_piper"])
    assert not is_subset_split("test_piper", ["train", "test_piper"])
    assert not is_subset_split("dev-clean", ["dev", "dev-clean"])
    assert not is_subset_split("test", ["test", "test_piper"])


def test_a_subset_over_the_limit_passes_when_its_parent_is_under_it(tmp_path):
    # 2 of 25 hibari utterances (8%) but 2 of 150 in test (1.3%): within 5%
    summary = _summary(tmp_path, train=(0, 100), test=(2, 150), test_hibari=(2, 25))
    _check_failures(summary, 0.05, tmp_path)


def test_a_split_over_the_limit_fails_naming_it(tmp_path):
    summary = _summary(tmp_path, train=(0, 100), test=(9, 150), test_hibari=(2, 25))
    with pytest.raises(AsrKdError, match=r"test: 9 of 150") as e:
        _check_failures(summary, 0.05, tmp_path)
    assert "test_hibari" not in str(e.value)
