"""The shared form of an error's id list: the first few distinct ids and how many more."""

from asr_kd.errors import first_few


def test_first_few_lists_distinct_ids_and_counts_the_rest():
    ids = [f"utt{i}" for i in range(12)] + ["utt0", "utt1"]  # a frame batch repeats cuts
    assert first_few(ids, 3) == "utt0, utt1, utt2 and 9 more"


def test_first_few_lists_everything_when_few():
    assert first_few(["a", "b"], 5) == "a, b"
    assert first_few([], 5) == ""
