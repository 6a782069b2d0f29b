"""data/lang passes Kaldi's validate_lang.pl checks; lexicon files, <UNK>, given ARPA LMs."""

import gzip
import json
import os
import shutil

import pytest
from kaldi_validate_lang import validate_lang

from asr_kd.errors import BadInputError
from asr_kd.lang import Lang, prepare_lang, train_lm
from asr_kd.lang.lm import import_lm
from asr_kd.lang.phone_classes import arpabet_phone_sets
from asr_kd.tree.questions import make_questions

# RED and READ (past tense) share R EH D: homophones need #1, #2 in L_disambig.
VOCAB = "THE RED READ CAT A AN SAT ON MAT".split()
LM_TEXT = ["THE CAT SAT ON THE MAT", "A RED CAT SAT", "THE CAT READ", "AN CAT SAT ON A MAT"]


@pytest.fixture(scope="module")
def lang_and_lm(tmp_path_factory):
    root = tmp_path_factory.mktemp("validate")
    lang = prepare_lang(VOCAB * 2, root / "lang")
    (root / "lm.txt").write_text("\n".join(LM_TEXT) + "\n")
    lm = train_lm(root / "lm.txt", lang, root / "lm")
    return lang, lm


def test_lang_dir_passes_validate_lang(lang_and_lm):
    lang, lm = lang_and_lm
    errors, warnings = validate_lang(lang, lm / "G.fst")
    assert errors == []
    assert warnings == []
    assert (lang / "phones/context_indep.csl").read_text() == "1:2\n"  # SIL:SPN
    assert (lang / "phones/roots.txt").read_text().splitlines()[:3] == [
        "not-shared not-split SIL",
        "not-shared not-split SPN",
        "not-shared split AA",
    ]
    assert (lang / "phones/wdisambig.txt").read_text() == "#0\n"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: (d / "phones/context_indep.csl").unlink(), "context_indep.csl does not exist"),
        (lambda d: _drop_line(d / "phones/roots.txt", d / "phones/roots.int", 5), "all silence"),
        (lambda d: _drop_line(d / "phones/sets.int", None, 1), "sets.int doesn't correspond"),
        (lambda d: (d / "phones/extra_questions.int").unlink(), "extra_questions"),
        (lambda d: (d / "phones/disambig.csl").write_text("1:2\n"), "disambig.csl doesn't"),
        (lambda d: (d / "phones/wdisambig_words.int").write_text("3\n"), "wdisambig files"),
    ],
)
def test_validator_catches_broken_lang_dirs(lang_and_lm, tmp_path, mutate, expected):
    lang, _ = lang_and_lm
    broken = tmp_path / "lang"
    shutil.copytree(lang, broken)
    mutate(broken)
    errors, _ = validate_lang(broken)
    assert any(expected in e for e in errors), errors


def _drop_line(path, twin, n):
    for p in (path, twin):
        if p is not None:
            lines = p.read_text().splitlines(keepends=True)
            p.write_text("".join(lines[: n - 1] + lines[n:]))


def test_the_phone_sets_are_the_tree_questions(lang_and_lm):
    """sets.txt + extra_questions.txt are exactly the question sets build-tree asks."""
    lang = Lang.load(lang_and_lm[0])
    silence = tuple(lang.silence_phones)
    tree_sets = {
        q.values
        for q in make_questions(arpabet_phone_sets(lang.phones, silence), [])
        if q.key == "left"
    }
    # The tree also asks "is it the utterance edge (phone 0)?", alone and with silence.
    tree_sets = {tuple(v for v in s if v != 0) for s in tree_sets} - {()}
    written = set()
    for name in ("sets", "extra_questions"):
        for line in (lang.dir / f"phones/{name}.int").read_text().splitlines():
            written.add(tuple(sorted(int(x) for x in line.split())))
    assert written == tree_sets


def test_lexicon_file_and_unknown_words(tmp_path):
    lexicon = tmp_path / "librispeech-lexicon.txt"
    lexicon.write_text(
        "!SIL\tSIL\n<UNK>\tSPN\nTHE\tDH AH0\nTHE\tDH IY1\nCAT\tK AE1 T\nSAT 1.0 S AE1 T\n"
    )
    words = ["THE", "CAT", "SAT", "ZYZZY", "ZYZZY", "QWERTY", "THE"]
    with pytest.raises(BadInputError, match=f"2 words are not in {lexicon}"):
        prepare_lang(words, tmp_path / "refused", lexicon_file=lexicon)
    out = prepare_lang(words, tmp_path / "lang", map_oov=True, lexicon_file=lexicon)
    lang = Lang.load(out)
    assert lang.lexicon == {
        "<UNK>": [("SPN",)],
        "CAT": [("K", "AE", "T")],
        "SAT": [("S", "AE", "T")],
        "THE": [("DH", "AH"), ("DH", "IY")],
    }
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lexicon"] == str(lexicon)
    assert (summary["oov_words"], summary["oov_tokens"], summary["tokens"]) == (2, 3, 7)
    assert summary["oov_examples"] == {"ZYZZY": 2, "QWERTY": 1}
    assert lang.word_ids("THE ZYZZY", "u1", map_oov=True) == [
        lang.words["THE"],
        lang.words["<UNK>"],
    ]
    assert validate_lang(out) == ([], [])


def test_bad_lexicon_file_names_the_line(tmp_path):
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("THE DH AH0\nCAT K AE1 TQ\nSAT\n")
    with pytest.raises(BadInputError) as e:
        prepare_lang(["THE"], tmp_path / "lang", lexicon_file=lexicon)
    msg = str(e.value)
    assert f"{lexicon}:2: word CAT: phones outside ARPAbet: TQ" in msg
    assert f"{lexicon}:3: word SAT: no pronunciation" in msg
    assert not (tmp_path / "lang").exists()


ARPA = """
\\data\\
ngram 1=6
ngram 2=4

\\1-grams:
-99 <s> -0.5
-0.6 THE -0.3
-0.7 CAT -0.3
-0.8 SAT -0.3
-0.9 ZEBRA -0.3
-0.5 </s>

\\2-grams:
-0.2 <s> THE
-0.3 THE CAT
-0.3 CAT SAT
-0.2 SAT </s>

\\end\\
"""


def test_given_arpa_lm(lang_and_lm, tmp_path):
    lang, _ = lang_and_lm
    arpa = tmp_path / "3-gram.arpa.gz"
    with gzip.open(arpa, "wt") as f:
        f.write(ARPA)
    (tmp_path / "dev.txt").write_text("THE CAT SAT\n")
    out = import_lm(arpa, lang, tmp_path / "lm", dev_text=tmp_path / "dev.txt")
    assert (out / "lm.arpa").read_text() == ARPA
    stats = json.loads((out / "perplexity.json").read_text())
    assert stats["ngrams"] == {"1": 6, "2": 4}
    assert stats["arpa_words_not_in_lang"] == 1  # ZEBRA
    assert stats["vocabulary_words_not_in_lm"] == len(set(VOCAB) - {"THE", "CAT", "SAT"})
    # log10 p = -0.2 (THE|<s>) - 0.3 (CAT|THE) - 0.3 (SAT|CAT) - 0.2 (</s>|SAT), 4 tokens.
    assert stats["ppl"] == pytest.approx(10 ** (1.0 / 4))
    assert validate_lang(lang, out / "G.fst") == ([], [])


def test_lm_on_transcripts_plus_lm_text(lang_and_lm, tmp_path):
    lang, _ = lang_and_lm
    (tmp_path / "train.txt").write_text("utt-1 THE CAT SAT\nutt-2 A RED CAT\n")
    with gzip.open(tmp_path / "lm-norm.txt.gz", "wt") as f:
        f.write("\n".join(LM_TEXT) + "\n")
    out = train_lm(
        tmp_path / "train.txt", lang, tmp_path / "lm", extra_texts=[tmp_path / "lm-norm.txt.gz"]
    )
    stats = json.loads((out / "perplexity.json").read_text())
    assert stats["lm_sentences"] == 2 + len(LM_TEXT)
    assert stats["lm_words"] == 6 + sum(len(s.split()) for s in LM_TEXT)
    with pytest.raises(BadInputError, match="is an LM text; hold it out"):
        train_lm(
            tmp_path / "train.txt",
            lang,
            tmp_path / "lm2",
            dev_text=tmp_path / "lm-norm.txt.gz",
            extra_texts=[tmp_path / "lm-norm.txt.gz"],
        )


def test_whole_lexicon_is_the_vocabulary(tmp_path):
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("THE DH AH0\nCAT K AE1 T\nSAT S AE1 T\n")
    out = prepare_lang(
        ["THE", "DOG"], tmp_path / "lang", map_oov=True, lexicon_file=lexicon, whole_lexicon=True
    )
    lang = Lang.load(out)
    assert sorted(lang.lexicon) == ["<UNK>", "CAT", "SAT", "THE"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["oov_words"], summary["oov_tokens"], summary["tokens"]) == (1, 1, 2)


@pytest.mark.skipif(
    not (os.environ.get("KALDI_UTILS") and shutil.which("perl") and shutil.which("fstinfo")),
    reason="Kaldi's own validator: set KALDI_UTILS to a Kaldi checkout's egs/wsj/s5/utils "
    "and install Perl and OpenFst's tools (Debian: libfst-tools)",
)
def test_kaldis_own_validate_lang(lang_and_lm, tmp_path):
    """Kaldi's utils/validate_lang.pl itself (its determinisation checks need Kaldi's binaries)."""
    import subprocess

    lang, lm = lang_and_lm
    shutil.copytree(lang, tmp_path / "lang")
    shutil.copy(lm / "G.fst", tmp_path / "lang" / "G.fst")
    (tmp_path / "path.sh").write_text("")
    (tmp_path / "utils").symlink_to(os.environ["KALDI_UTILS"])
    cmd = ["perl", "utils/validate_lang.pl", "--skip-determinization-check", "lang"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "SUCCESS [validating lang directory lang]" in proc.stdout, proc.stdout[-3000:]
