import math

import kaldifst
import pytest

from asr_kd.errors import AsrKdError, BadInputError, MissingInputError
from asr_kd.lang import Lang, prepare_lang
from asr_kd.lang.lexicon import CMU_PHONES, OOV_WORD
from asr_kd.lang.lexicon_fst import make_lexicon_fst

VOCAB = "THE RED READ CAT A AN SAT".split()


@pytest.fixture(scope="module")
def lang(tmp_path_factory) -> Lang:
    out = tmp_path_factory.mktemp("lang") / "lang"
    return Lang.load(prepare_lang(VOCAB * 3, out))


def word_sequences(lang: Lang, fst: kaldifst.StdVectorFst, phones: str) -> dict[str, float]:
    """Every word sequence L outputs for a phone sequence, with its best cost."""
    acceptor = kaldifst.make_linear_acceptor([lang.phones[p] for p in phones.split()])
    kaldifst.arcsort(acceptor, sort_type="olabel")
    composed = kaldifst.compose(acceptor, fst)
    if composed.num_states == 0:
        return {}
    id_to_word = lang.id_to_word
    out: dict[str, float] = {}
    for path in kaldifst.convert_nbest_to_vector(kaldifst.shortest_path(composed, n=50)):
        ok, _, olabels, weight = kaldifst.get_linear_symbol_sequence(path)
        assert ok
        words = " ".join(id_to_word[i] for i in olabels)
        out[words] = min(out.get(words, math.inf), weight.value)
    return out


def test_symbol_tables(lang):
    phones = list(lang.phones)
    assert phones[:3] == ["<eps>", "SIL", "SPN"]
    assert phones[3:42] == sorted(CMU_PHONES)
    # RED/READ homophones need #1, #2; A (AH) is a prefix of AN (AH N); + silence #3.
    assert phones[42:] == ["#0", "#1", "#2", "#3"]
    assert list(lang.phones.values()) == list(range(len(phones)))
    words = list(lang.words)
    assert words == ["<eps>", OOV_WORD, *sorted(VOCAB), "#0", "<s>", "</s>"]
    assert lang.silence_phones == [1, 2] and lang.optional_silence == 1
    assert len(lang.nonsilence_phones) == 39
    assert lang.disambig_phones == [42, 43, 44, 45]
    assert lang.oov_word == OOV_WORD
    assert (lang.dir / "oov.int").read_text().strip() == str(lang.words[OOV_WORD])
    assert (lang.dir / "phones/optional_silence.txt").read_text() == "SIL\n"
    assert lang.lexicon["READ"] == [("R", "EH", "D"), ("R", "IY", "D")]
    disambig = (lang.dir / "lexiconp_disambig.txt").read_text().splitlines()
    assert "READ 1.0 R EH D #1" in disambig and "RED 1.0 R EH D #2" in disambig


def test_topology_loads_in_kaldi(lang):
    khg = pytest.importorskip("kaldi_hmm_gmm")
    topo = khg.HmmTopology()
    topo.read(lang.topo_text)
    assert topo.phones == list(range(1, 42))
    num_pdf_classes = topo.get_phone_to_num_pdf_classes()
    assert num_pdf_classes[lang.phones["SIL"]] == 5 and num_pdf_classes[lang.phones["K"]] == 3


def test_L_spells_pronunciations_with_optional_silence(lang):
    L = lang.L()
    assert L.is_olabel_sorted
    assert word_sequences(lang, L, "K AE T") == {"CAT": pytest.approx(2 * math.log(2))}
    assert set(word_sequences(lang, L, "R EH D")) == {"RED", "READ"}
    assert set(word_sequences(lang, L, "R IY D")) == {"READ"}
    # optional silence at the start, between words and at the end; never twice in a row
    for phones in ("DH AH K AE T", "SIL DH AH SIL K AE T SIL", "DH IY SIL K AE T"):
        assert set(word_sequences(lang, L, phones)) == {"THE CAT"}, phones
    assert word_sequences(lang, L, "DH AH SIL SIL K AE T") == {}
    assert word_sequences(lang, L, "K AE") == {}
    # AH N is AN, or A followed by... nothing else: N alone is no word
    assert set(word_sequences(lang, L, "AH N")) == {"AN"}
    # each word boundary costs -log(1 - sil_prob) without silence, -log(sil_prob) with
    assert word_sequences(lang, L, "DH AH K AE T")["THE CAT"] == pytest.approx(3 * math.log(2))


def test_sil_prob_sets_the_costs(tmp_path):
    lang = Lang.load(prepare_lang(["CAT"], tmp_path / "lang", sil_prob=0.2))
    L = lang.L()
    assert word_sequences(lang, L, "K AE T")["CAT"] == pytest.approx(-2 * math.log(0.8))
    cost = word_sequences(lang, L, "SIL K AE T SIL")["CAT"]
    assert cost == pytest.approx(-2 * math.log(0.2))
    no_sil = make_lexicon_fst([("CAT", ("K", "AE", "T"))], lang.phones, lang.words, 0.0)
    assert word_sequences(lang, no_sil, "K AE T") == {"CAT": pytest.approx(0.0)}
    assert word_sequences(lang, no_sil, "SIL K AE T") == {}


def test_L_disambig_has_disambig_symbols_and_word_loop(lang):
    L = lang.L_disambig()
    assert L.is_olabel_sorted
    assert word_sequences(lang, L, "R EH D #1") == {"READ": pytest.approx(2 * math.log(2))}
    assert set(word_sequences(lang, L, "R EH D #2")) == {"RED"}
    assert word_sequences(lang, L, "R EH D") == {}  # a homophone needs its symbol
    assert set(word_sequences(lang, L, "AH #1 K AE T")) == {"A CAT"}
    assert set(word_sequences(lang, L, "SIL #3 K AE T SIL #3")) == {"CAT"}
    # G's back-off symbol #0 passes through between words, as #0:#0
    assert set(word_sequences(lang, L, "DH AH #0 #0 K AE T")) == {"THE #0 #0 CAT"}
    loops = [
        (s, a.ilabel, a.olabel)
        for s in kaldifst.StateIterator(L)
        for a in kaldifst.ArcIterator(L, s)
        if a.nextstate == s and a.ilabel in lang.disambig_phones
    ]
    assert loops == [(1, lang.phones["#0"], lang.words["#0"])]


def test_L_works_with_the_training_graph_compiler(lang):
    khg = pytest.importorskip("kaldi_hmm_gmm")
    topo = khg.HmmTopology()
    topo.read(lang.topo_text)
    ctx = khg.monophone_context_dependency(topo.phones, topo.get_phone_to_num_pdf_classes())
    tm = khg.TransitionModel(ctx, topo)
    opts = khg.TrainingGraphCompilerOptions()
    for L in (lang.L(), lang.L_disambig()):
        compiler = khg.TrainingGraphCompiler(tm, ctx, L, lang.disambig_phones, opts)
        graph = compiler.compile_graph_from_text(lang.word_ids("THE RED CAT", "u1"))
        assert graph.num_states > 3 * 3


def test_word_ids(lang):
    assert lang.word_ids("THE CAT", "u1") == [lang.words["THE"], lang.words["CAT"]]
    with pytest.raises(BadInputError) as e:
        lang.word_ids("THE DOG SAT ON", "utt-007")
    assert "utt-007" in str(e.value) and "DOG, ON" in str(e.value)
    unk = lang.words[OOV_WORD]
    assert lang.word_ids("THE DOG", "u1", map_oov=True) == [lang.words["THE"], unk]
    with pytest.raises(BadInputError):
        lang.word_ids("<s> CAT", "u1")


def test_map_oov_lists_missing_words(tmp_path):
    with pytest.raises(BadInputError, match="XQZTL"):
        prepare_lang(["CAT", "XQZTL"], tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    lang = Lang.load(prepare_lang(["CAT", "XQZTL"], tmp_path / "lang", map_oov=True))
    assert "XQZTL" not in lang.words
    assert (lang.dir / "missing_words.txt").read_text() == "XQZTL 1\n"


def test_load_refuses_missing_or_incomplete_dirs(tmp_path, lang):
    with pytest.raises(MissingInputError, match="'prepare-lang'"):
        Lang.load(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    with pytest.raises(MissingInputError, match="incomplete.*'prepare-lang'"):
        Lang.load(tmp_path / "half")
    out = prepare_lang(["CAT"], tmp_path / "lang")
    (out / "L.fst").unlink()
    with pytest.raises(MissingInputError, match="L.fst"):
        Lang.load(out)


def test_rerun_skips_and_other_vocabulary_refuses(tmp_path):
    out = prepare_lang(["CAT"], tmp_path / "lang")
    mtime = (out / "L.fst").stat().st_mtime_ns
    prepare_lang(["CAT", "CAT"], out)  # same vocabulary: skipped
    assert (out / "L.fst").stat().st_mtime_ns == mtime
    with pytest.raises(AsrKdError, match="--force"):
        prepare_lang(["CAT", "SAT"], out)
    prepare_lang(["CAT", "SAT"], out, force=True)
    assert "SAT" in Lang.load(out).words
