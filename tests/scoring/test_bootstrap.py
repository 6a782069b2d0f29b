"""Bootstrap WER intervals and paired comparisons on hand-made examples."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from asr_kd.errors import BadInputError
from asr_kd.scoring import compute_wer, format_errs
from asr_kd.scoring.bootstrap import (
    UttCounts,
    bootstrap_wer,
    counts_from_csid,
    paired_bootstrap,
    read_utt_counts,
)


def _counts(errors, words=None):
    errors = np.asarray(errors, dtype=np.int64)
    words = np.full_like(errors, 10) if words is None else np.asarray(words, dtype=np.int64)
    return UttCounts(tuple(f"u{i:03d}" for i in range(len(errors))), words, errors)


def test_interval_of_a_constant_set_is_a_point():
    # Every utterance has 1 error in 10 words: every resample has WER 10%.
    res = bootstrap_wer(_counts([1] * 50), replications=500)
    assert res.wer == pytest.approx(10.0)
    assert res.low == pytest.approx(10.0) and res.high == pytest.approx(10.0)


def test_interval_matches_the_binomial_width_by_hand():
    # 100 utterances of 10 words, half with 2 errors, half with 0: WER 10%.
    # Per-utterance error share x has mean 0.1 and sd 0.1; the WER of a resample of
    # n = 100 has sd 0.1 / sqrt(100) = 1 point, so the 95% interval is ~10 ± 1.96.
    res = bootstrap_wer(_counts([2, 0] * 50), replications=20_000, seed=1)
    assert res.wer == pytest.approx(10.0)
    assert res.low == pytest.approx(10.0 - 1.96, abs=0.25)
    assert res.high == pytest.approx(10.0 + 1.96, abs=0.25)
    normal = bootstrap_wer(_counts([2, 0] * 50), replications=20_000, seed=1, method="normal")
    assert normal.high - normal.low == pytest.approx(2 * 1.96, abs=0.2)


def test_same_seed_same_interval():
    c = _counts(np.arange(40) % 4)
    assert bootstrap_wer(c, 1000, seed=3) == bootstrap_wer(c, 1000, seed=3)


def test_paired_comparison_sees_a_consistent_small_gain():
    # B fixes one error in every 5th utterance of A: a 0.4-point gain that an unpaired
    # look at two overlapping intervals would miss, but every resample sees it.
    a = _counts([3, 0, 1, 5, 2] * 40)
    b = _counts([2, 0, 1, 5, 2] * 40)
    p = paired_bootstrap(a, b, replications=2000)
    assert p.delta == pytest.approx(-2.0)  # 40 fewer errors in 2000 words
    assert p.high < 0 and p.significant
    assert p.p_improve == 1.0
    ia, ib = bootstrap_wer(a, 2000), bootstrap_wer(b, 2000)
    assert ib.high > ia.low  # the unpaired intervals overlap


def test_paired_comparison_of_identical_systems_is_not_significant():
    a = _counts([3, 0, 1, 5, 2] * 40)
    p = paired_bootstrap(a, a, replications=500)
    assert p.delta == 0 and not p.significant and p.p_improve == 0.0


def test_paired_comparison_refuses_different_sets():
    a = _counts([1, 2, 3])
    b = UttCounts(("x", "y", "z"), a.words, a.errors)
    with pytest.raises(BadInputError, match="different utterances"):
        paired_bootstrap(a, b)
    c = UttCounts(a.ids, a.words + 1, a.errors)
    with pytest.raises(BadInputError, match="references differ"):
        paired_bootstrap(a, c)


def _decode_dir(tmp_path, name, hyps):
    refs = {"a": "the cat sat", "b": "a dog ran home", "c": "yes"}
    d = tmp_path / name
    d.mkdir()
    (d / "errs.txt").write_text(format_errs(compute_wer(refs, hyps)))
    return d


def test_counts_read_back_from_errs_txt(tmp_path):
    d = _decode_dir(tmp_path, "sys", {"a": "the cat", "b": "a dog ran home now", "c": "no"})
    c = read_utt_counts(d)
    assert c.ids == ("a", "b", "c")
    assert c.words.tolist() == [3, 4, 1]
    assert c.errors.tolist() == [1, 1, 1]  # 1 del, 1 ins, 1 sub
    same = counts_from_csid({"a": (2, 0, 0, 1), "b": (4, 0, 1, 0), "c": (0, 1, 0, 0)})
    assert same.ids == c.ids and same.words.tolist() == c.words.tolist()
    assert same.errors.tolist() == c.errors.tolist()


def test_bad_errs_txt_is_named(tmp_path):
    with pytest.raises(BadInputError, match="errs.txt is missing"):
        read_utt_counts(tmp_path)
    (tmp_path / "errs.txt").write_text("a #csid 1 2 x 0\n")
    with pytest.raises(BadInputError, match=r"errs.txt:1: expected"):
        read_utt_counts(tmp_path)


def test_cli_compares_two_decode_dirs(tmp_path):
    from asr_kd.cli.main import cli

    a = _decode_dir(tmp_path, "a", {"a": "the cat", "b": "a dog ran", "c": "no"})
    b = _decode_dir(tmp_path, "b", {"a": "the cat sat", "b": "a dog ran home", "c": "no"})
    res = CliRunner().invoke(
        cli, ["compare-wer", "--json", "--replications", "200", str(a), str(b)]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output[res.output.index("{") :])
    assert doc["systems"][str(a)]["wer"] == pytest.approx(37.5)
    assert doc["paired"][str(b)]["delta"] == pytest.approx(-25.0)
