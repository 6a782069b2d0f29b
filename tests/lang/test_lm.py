import gzip
import json
import math
import random
import re
import subprocess

import kaldifst
import pytest
from lhotse import CutSet, SupervisionSet
from lhotse.testing.dummies import dummy_cut, dummy_supervision

from asr_kd.errors import AsrKdError, BadInputError, MissingInputError
from asr_kd.lang import Lang, arpa_perplexity, prepare_lang, read_texts, train_lm
from asr_kd.lang.lm import kaldingram_executable
from asr_kd.lang.texts import texts_from_manifest

SUBJECTS = "THE CAT|THE DOG|A MAN|MY SISTER|THE TEACHER".split("|")
VERBS = "SAW|FOUND|LIKES|CALLED|MET".split("|")
OBJECTS = "THE BALL|A HOUSE|THE RED CAR|HER FRIEND|THE GARDEN".split("|")
ENDINGS = ["", "TODAY", "YESTERDAY", "IN THE MORNING"]


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(
            [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(ENDINGS)]
        ).strip()
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    train = sentences(400, seed=0)
    (root / "lm.txt").write_text("\n".join(train) + "\n")
    dev = sentences(50, seed=1)
    (root / "dev.txt").write_text("".join(f"dev-{i:03d} {s}\n" for i, s in enumerate(dev)))
    vocab = [w for s in train for w in s.split()]
    lang = prepare_lang(vocab, root / "lang")
    out = train_lm(root / "lm.txt", lang, root / "lm", dev_text=root / "dev.txt")
    return root, Lang.load(lang), out


def g_cost(lang: Lang, G: kaldifst.StdVectorFst, sentence: str) -> float:
    """Cost of the best path of G whose words (back-off arcs output <eps>) are ``sentence``."""
    acceptor = kaldifst.make_linear_acceptor(lang.word_ids(sentence, "test"))
    kaldifst.arcsort(acceptor, sort_type="ilabel")
    # match_side="left" (the default) needs G olabel-sorted and silently finds nothing
    # otherwise; G is ilabel-sorted, so match on the acceptor's side.
    composed = kaldifst.compose(G, acceptor, match_side="right")
    if composed.num_states == 0:
        return math.inf
    ok, _, _, weight = kaldifst.get_linear_symbol_sequence(kaldifst.shortest_path(composed))
    assert ok
    return weight.value


def test_outputs_and_perplexity_json(lm):
    root, lang, out = lm
    assert {p.name for p in out.iterdir()} >= {"lm.arpa", "G.fst", "perplexity.json"}
    assert not (out / "lm_text.txt").exists()
    stats = json.loads((out / "perplexity.json").read_text())
    assert stats["order"] == 3
    assert stats["dev_sentences"] == 50 and stats["oovs"] == 0
    assert stats["dev_words"] == sum(len(s.split()) for s in sentences(50, seed=1))
    assert 1.0 < stats["ppl"] < 20.0
    assert set(stats["ngrams"]) == {"1", "2", "3"} and stats["ngrams"]["3"] > 0
    assert stats["lm_sentences"] == 400 and stats["lm_oovs"] == 0


def test_G_accepts_training_sentences_and_backs_off(lm):
    root, lang, out = lm
    G = kaldifst.StdVectorFst.read(str(out / "G.fst"))
    assert G.is_ilabel_sorted
    arpa = out / "lm.arpa"
    for sentence in sentences(5, seed=0) + ["THE GARDEN SAW MY SISTER", "TODAY TODAY CAT"]:
        cost = g_cost(lang, G, sentence)
        assert math.isfinite(cost), sentence
        # G's best path is the ARPA's back-off probability (or a cheaper back-off path)
        expected = -arpa_perplexity(arpa, [sentence]).logprob * math.log(10)
        assert cost == pytest.approx(expected, abs=1e-3) or cost < expected, sentence
    # back-off arcs carry #0 on the input side, the word on neither
    disambig = lang.words["#0"]
    labels = [
        (a.ilabel, a.olabel) for s in kaldifst.StateIterator(G) for a in kaldifst.ArcIterator(G, s)
    ]
    assert (disambig, 0) in labels
    assert all(o in (i, 0) for i, o in labels)


def test_perplexity_lower_in_domain_than_shuffled(lm):
    root, lang, out = lm
    dev = sentences(50, seed=1)
    rng = random.Random(0)
    shuffled = [" ".join(rng.sample(s.split(), len(s.split()))) for s in dev]
    in_domain = arpa_perplexity(out / "lm.arpa", dev)
    scrambled = arpa_perplexity(out / "lm.arpa", shuffled)
    assert math.isfinite(in_domain.ppl) and math.isfinite(scrambled.ppl)
    assert in_domain.ppl * 2 < scrambled.ppl


def test_perplexity_matches_kaldingram_ppl(lm, tmp_path):
    root, lang, out = lm
    dev = sentences(50, seed=1)
    (tmp_path / "dev.txt").write_text("\n".join(dev) + "\n")
    proc = subprocess.run(
        [
            kaldingram_executable(),
            "ppl",
            "--lm",
            str(out / "lm.arpa"),
            "--text",
            str(tmp_path / "dev.txt"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    theirs = float(re.search(r"\bppl= *([0-9.]+)", proc.stdout).group(1))
    assert arpa_perplexity(out / "lm.arpa", dev).ppl == pytest.approx(theirs, rel=1e-3)


def test_oovs_counted_and_excluded(lm):
    root, lang, out = lm
    result = arpa_perplexity(out / "lm.arpa", ["THE CAT SAW THE ZEBRA", "THE DOG SAW A HOUSE"])
    assert result.oovs == 1 and result.words == 10 and result.sentences == 2
    assert math.isfinite(result.ppl)


def test_lm_text_oovs_map_to_unk(tmp_path):
    lang = prepare_lang("THE CAT SAT".split(), tmp_path / "lang")
    (tmp_path / "lm.txt").write_text("THE CAT SAT\nTHE ZEBRA SAT\nTHE CAT SAT\n")
    out = train_lm(tmp_path / "lm.txt", lang, tmp_path / "lm", order=2)
    stats = json.loads((out / "perplexity.json").read_text())
    assert stats["lm_oovs"] == 1 and stats["ppl"] is None
    assert "<UNK>" in (out / "lm.arpa").read_text()
    assert "ZEBRA" not in (out / "lm.arpa").read_text()
    assert set(stats["ngrams"]) == {"1", "2"}


def test_refuses_dev_text_that_is_the_lm_text(tmp_path):
    lang = prepare_lang("THE CAT".split(), tmp_path / "lang")
    (tmp_path / "lm.txt").write_text("THE CAT\n")
    with pytest.raises(BadInputError, match="hold it out"):
        train_lm(tmp_path / "lm.txt", lang, tmp_path / "lm", dev_text=tmp_path / "lm.txt")


def test_needs_a_finished_lang_dir(tmp_path):
    (tmp_path / "lm.txt").write_text("THE CAT\n")
    with pytest.raises(MissingInputError, match="'prepare-lang'"):
        train_lm(tmp_path / "lm.txt", tmp_path / "lang", tmp_path / "lm")
    assert not (tmp_path / "lm").exists()


def test_read_texts_formats(tmp_path):
    (tmp_path / "plain.txt").write_text("THE CAT SAT\n\n  THE   DOG \n")
    assert read_texts(tmp_path / "plain.txt") == ["THE CAT SAT", "THE DOG"]
    (tmp_path / "text").write_text("spk1-utt1 THE CAT SAT\nspk1-utt2 THE DOG\nspk2-utt1\n")
    assert read_texts(tmp_path / "text") == ["THE CAT SAT", "THE DOG"]
    assert read_texts(tmp_path / "text", "plain")[0] == "spk1-utt1 THE CAT SAT"
    # the same first word on every line: plain text
    (tmp_path / "one.txt").write_text("THE CAT\nTHE DOG\n")
    assert read_texts(tmp_path / "one.txt") == ["THE CAT", "THE DOG"]
    with pytest.raises(MissingInputError):
        read_texts(tmp_path / "missing.txt")


def test_texts_from_manifests(tmp_path):
    sups = [dummy_supervision(i, text=t) for i, t in enumerate(["HELLO WORLD", "GOOD  DAY", ""])]
    SupervisionSet.from_segments(sups).to_file(tmp_path / "sups.jsonl.gz")
    assert texts_from_manifest(tmp_path / "sups.jsonl.gz") == ["HELLO WORLD", "GOOD DAY"]
    cuts = CutSet.from_cuts(dummy_cut(i, supervisions=[sups[i]]) for i in range(2))
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    assert read_texts(tmp_path / "cuts.jsonl.gz") == ["HELLO WORLD", "GOOD DAY"]
    recs = CutSet.from_cuts([dummy_cut(0)]).decompose()[0]
    recs.to_file(tmp_path / "recs.jsonl.gz")
    with pytest.raises(BadInputError, match="no transcripts"):
        texts_from_manifest(tmp_path / "recs.jsonl.gz")
    with gzip.open(tmp_path / "sups.jsonl.gz", "rt") as f:
        assert len(f.readlines()) == 3


def test_rerun_skips_unless_an_input_changed(tmp_path):
    lang = prepare_lang("THE CAT SAT".split(), tmp_path / "lang")
    (tmp_path / "lm.txt").write_text("THE CAT SAT\n")
    out = train_lm(tmp_path / "lm.txt", lang, tmp_path / "lm", order=2)
    mtime = (out / "G.fst").stat().st_mtime_ns
    train_lm(tmp_path / "lm.txt", lang, tmp_path / "lm", order=2)
    assert (out / "G.fst").stat().st_mtime_ns == mtime
    (tmp_path / "lm.txt").write_text("THE CAT SAT\nTHE CAT\n")
    with pytest.raises(AsrKdError, match="another configuration"):
        train_lm(tmp_path / "lm.txt", lang, tmp_path / "lm", order=2)


def test_unreadable_texts_and_manifests_are_named(tmp_path):
    from asr_kd.errors import BadInputError

    binary = tmp_path / "words.txt"
    binary.write_bytes(b"HELLO WORLD\n\xff\xfe\x00 BAD\n")
    with pytest.raises(BadInputError, match=r"text file .*words.txt cannot be read \(Unicode"):
        read_texts(binary)
    manifest = tmp_path / "sups.jsonl.gz"
    with gzip.open(manifest, "wt") as f:
        f.write('{"id": "a", "recording_id": "a", "start": 0, "duration": 1, "text": "HI"}\n')
        f.write("not json\n")
    with pytest.raises(BadInputError, match=r"manifest .*sups.jsonl.gz cannot be read"):
        texts_from_manifest(manifest)
