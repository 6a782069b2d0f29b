"""WER counts, the Kaldi summary line, errs.txt and hyp.txt."""

from __future__ import annotations

import logging

from asr_kd.scoring import WerResult, compute_wer, format_errs, format_hyps, normalize_text


def test_counts_match_a_hand_computation():
    result = compute_wer({"u1": "A B C D"}, {"u1": "A X C D E"})
    assert (result.subs, result.ins, result.dels, result.words) == (1, 1, 0, 4)
    assert result.summary_line() == "%WER 50.00 [ 2 / 4, 1 ins, 0 del, 1 sub ]"
    assert result.sentence_errors == 1


def test_summary_line_has_kaldis_exact_format():
    line = WerResult(words=5018, ins=51, dels=97, subs=264, num_utts=1).summary_line()
    assert line == "%WER 8.21 [ 412 / 5018, 51 ins, 97 del, 264 sub ]"


def test_text_is_normalised_on_both_sides():
    assert normalize_text("  hello\tWorld  again ") == "HELLO WORLD AGAIN"
    result = compute_wer({"u": "hello   world"}, {"u": " HELLO world "})
    assert result.errors == 0 and result.wer == 0.0


def test_empty_and_missing_hypotheses_are_deletions(caplog):
    refs = {"u1": "A B", "u2": "C D E", "u3": "F"}
    with caplog.at_level(logging.WARNING, logger="asr_kd.scoring.wer"):
        result = compute_wer(refs, {"u1": "", "u3": "F"})
    assert (result.dels, result.ins, result.subs, result.words) == (5, 0, 0, 6)
    assert result.missing == ("u2",)
    assert "have no hypothesis" in caplog.text and "u2" in caplog.text
    assert result.to_dict()["missing_hyps"] == 1


def test_unk_in_a_hypothesis_is_an_error():
    result = compute_wer({"u": "THE CAT SAT"}, {"u": "THE <UNK> SAT"})
    assert result.subs == 1 and result.errors == 1


def test_errs_txt_aligns_ref_hyp_and_ops():
    result = compute_wer({"u1": "A B C D", "u2": "HELLO"}, {"u1": "A X C D E", "u2": ""})
    assert format_errs(result) == (
        "u1 ref A B C D ***\n"
        "u1 hyp A X C D E\n"
        "u1 op  C S C C I\n"
        "u1 #csid 3 1 1 0\n"
        "u2 ref HELLO\n"
        "u2 hyp ***\n"
        "u2 op  D\n"
        "u2 #csid 0 0 0 1\n"
    )


def test_errs_txt_pads_columns_to_the_longer_word():
    result = compute_wer({"u": "THE ELEPHANT"}, {"u": "A ELEPHANT"})
    assert format_errs(result).splitlines()[:3] == [
        "u ref THE ELEPHANT",
        "u hyp A   ELEPHANT",
        "u op  S   C",
    ]


def test_hyp_txt_is_sorted_and_normalised():
    assert format_hyps({"b": "two  words", "a": "", "c": "x"}) == "a\nb TWO WORDS\nc X\n"


def test_no_reference_words():
    assert compute_wer({"u": ""}, {"u": ""}).wer == 0.0
    assert compute_wer({"u": ""}, {"u": "A"}).wer == float("inf")
    assert compute_wer({}, {}).num_utts == 0
