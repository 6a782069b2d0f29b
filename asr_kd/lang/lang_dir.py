"""The Kaldi-compatible lang directory (``data/lang``) and its loader.

Contract (every later stage reads only these files)::

    <lang>/phones.txt          <eps> 0, SIL 1, SPN 2, the 39 CMUdict phones sorted, #0 ... #K
    <lang>/words.txt           <eps> 0, words sorted (with <UNK>), #0, <s>, </s>
    <lang>/lexicon.txt         WORD PH PH ...            (one line per pronunciation)
    <lang>/lexiconp.txt        WORD 1.0 PH PH ...
    <lang>/lexiconp_disambig.txt  WORD 1.0 PH PH ... [#N]
    <lang>/L.fst               phones -> words with optional silence, olabel-sorted
    <lang>/L_disambig.fst      the same with #N symbols, #K after optional silence and a
                               #0:#0 self-loop on the word-loop state, olabel-sorted
    <lang>/phones/{silence,nonsilence,optional_silence,disambig,context_indep}.{txt,int,csl}
    <lang>/phones/{sets,roots,extra_questions}.{txt,int}, wdisambig*: the tree's roots and
                               questions and G's #0, as Kaldi's prepare_lang.sh writes
                               them (:mod:`asr_kd.lang.phone_sets`)
    <lang>/oov.txt, oov.int    <UNK> and its id
    <lang>/topo                HMM topology: 3 emitting states for nonsilence phones,
                               Kaldi's 5-state ergodic-start topology for SIL and SPN
    <lang>/missing_words.txt   WORD COUNT: vocabulary words without a pronunciation,
                               left out with --map-oov (empty otherwise)
    <lang>/summary.json        the lexicon used, word and pronunciation counts, and the
                               out-of-lexicon words and tokens mapped to <UNK>

Pronunciations come from CMUdict or from a user's Kaldi-format lexicon file (e.g.
LibriSpeech's ``librispeech-lexicon.txt``); with ``map_oov`` the words neither has are
left out of the lexicon, so later stages map them to ``<UNK>`` (pronounced ``SPN``,
spoken noise, as Kaldi's recipes do), and counted.

The directory passes the checks of Kaldi's ``utils/validate_lang.pl`` (re-implemented
in ``tests/lang/kaldi_validate_lang.py``).

``#K`` (the highest disambiguation symbol) is the silence disambiguation symbol
of L_disambig, as in Kaldi's ``prepare_lang.sh``; ``#1 ... #K-1`` come from
homophones and prefixes (:func:`add_disambig_symbols`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import kaldifst

from asr_kd.errors import BadInputError
from asr_kd.lang.lexicon import (
    CMU_PHONES,
    OOV_WORD,
    SIL_PHONE,
    SPN_PHONE,
    Lexicon,
    add_disambig_symbols,
    build_lexicon,
    lexicon_entries,
    read_lexicon,
    read_pronunciation_file,
    write_lexicon,
)
from asr_kd.lang.lexicon_fst import make_lexicon_fst
from asr_kd.lang.phone_sets import write_phone_sets
from asr_kd.stage import file_digest, require_done, require_file, stage_output

logger = logging.getLogger(__name__)

STAGE = "prepare-lang"
REQUIRED_FILES = (
    "phones.txt",
    "words.txt",
    "lexicon.txt",
    "L.fst",
    "L_disambig.fst",
    "topo",
    "oov.txt",
    "phones/silence.int",
    "phones/nonsilence.int",
    "phones/optional_silence.int",
    "phones/disambig.int",
)


def make_topo(nonsilence: Iterable[int], silence: Iterable[int]) -> str:
    """Kaldi HmmTopology text (as ``utils/gen_topo.pl`` writes it with 3 and 5 states).

    Nonsilence phones: 3 emitting left-to-right states with self-loops (0.75 stay).
    Silence phones: 5 emitting states; states 0-3 are fully connected among 1-3 so
    silence can last long or be short, state 4 exits.
    """
    lines = ["<Topology>", "<TopologyEntry>", "<ForPhones>", " ".join(map(str, nonsilence))]
    lines.append("</ForPhones>")
    for s in range(3):
        lines.append(
            f"<State> {s} <PdfClass> {s} <Transition> {s} 0.75 <Transition> {s + 1} 0.25 </State>"
        )
    lines += ["<State> 3 </State>", "</TopologyEntry>"]
    lines += ["<TopologyEntry>", "<ForPhones>", " ".join(map(str, silence)), "</ForPhones>"]
    lines.append(
        "<State> 0 <PdfClass> 0 "
        + " ".join(f"<Transition> {d} 0.25" for d in range(4))
        + " </State>"
    )
    for s in (1, 2, 3):
        transitions = " ".join(f"<Transition> {d} 0.25" for d in range(1, 5))
        lines.append(f"<State> {s} <PdfClass> {s} {transitions} </State>")
    lines.append("<State> 4 <PdfClass> 4 <Transition> 4 0.75 <Transition> 5 0.25 </State>")
    lines += ["<State> 5 </State>", "</TopologyEntry>", "</Topology>"]
    return "\n".join(lines) + "\n"


def vocabulary_digest(counts: Mapping[str, int]) -> str:
    """A short hash of the set of words, recorded in the stage's configuration."""
    return hashlib.sha256("\n".join(sorted(counts)).encode()).hexdigest()[:16]


def prepare_lang(
    words: Iterable[str],
    out_dir: Path | str,
    sil_prob: float = 0.5,
    map_oov: bool = False,
    force: bool = False,
    lexicon_file: Path | str | None = None,
    whole_lexicon: bool = False,
) -> Path:
    """Write a lang directory (see the module doc) for a vocabulary, atomically.

    Args:
        words: the vocabulary, repetitions allowed (e.g. every token of the training
            transcripts and the LM text); ``<UNK>`` is always added.
        out_dir: the lang directory to write.
        sil_prob: probability of optional silence between words, in ``[0, 1)``.
        map_oov: leave words without a pronunciation out (listed in
            ``missing_words.txt``, counted in ``summary.json``; later stages map them
            to ``<UNK>``) instead of raising :class:`BadInputError`.
        force: redo the stage even if ``out_dir`` is finished.
        lexicon_file: a Kaldi-format lexicon (``WORD PH PH ...``) to take the
            pronunciations from instead of CMUdict.
        whole_lexicon: every word of ``lexicon_file`` joins the vocabulary (Kaldi's
            LibriSpeech recipe: its 200k-word lexicon is the vocabulary of the
            published LMs), besides ``words``.

    Returns:
        ``out_dir``.
    """
    if not 0.0 <= sil_prob < 1.0:
        raise BadInputError(f"{STAGE}: --sil-prob must be in [0, 1), got {sil_prob}")
    counts = Counter(list(words))  # a mapping (e.g. a lexicon) counts its keys once
    if not counts:
        raise BadInputError(f"{STAGE}: the vocabulary is empty (no words in the given texts)")
    out_dir = Path(out_dir)
    config = {
        "sil_prob": sil_prob,
        "map_oov": map_oov,
        "vocabulary_size": len(counts),
        "vocabulary_sha256": vocabulary_digest(counts),
        "lexicon": f"cmudict {metadata.version('cmudict')}",
    }
    source, pronunciations = "CMUdict", None
    if whole_lexicon and lexicon_file is None:
        raise BadInputError(f"{STAGE}: --whole-lexicon needs --lexicon FILE")
    if lexicon_file is not None:
        source = str(lexicon_file)
        config["lexicon"] = f"{lexicon_file} sha256 {file_digest(lexicon_file)}"
        config["whole_lexicon"] = whole_lexicon
    with stage_output(out_dir, STAGE, config, force=force) as tmp:
        if tmp is None:
            return out_dir
        start = time.time()
        if lexicon_file is not None:
            pronunciations, spellings = read_pronunciation_file(lexicon_file)
            if whole_lexicon:
                counts.update({w: 0 for w in spellings - set(counts)})
        lexicon, missing = build_lexicon(counts, map_oov, pronunciations, source)
        num_disambig = write_lang_dir(tmp, lexicon, sil_prob)
        (tmp / "missing_words.txt").write_text(
            "".join(f"{w} {n}\n" for w, n in missing.most_common())
        )
        summary = {
            "lexicon": source,
            "words": len(lexicon),
            "pronunciations": sum(len(p) for p in lexicon.values()),
            "disambig_symbols": num_disambig,
            "oov_word": OOV_WORD,
            "oov_words": len(missing),
            "oov_tokens": missing.total(),
            "tokens": counts.total(),
            "oov_examples": dict(missing.most_common(20)),
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    logger.info(
        "%s: wrote %s: %d words, %d pronunciations (%s), %d disambiguation symbols; "
        "%d words (%d of %d tokens) without a pronunciation mapped to %s, in %.1f s",
        STAGE,
        out_dir,
        summary["words"],
        summary["pronunciations"],
        source,
        num_disambig,
        len(missing),
        missing.total(),
        counts.total(),
        OOV_WORD,
        time.time() - start,
    )
    return out_dir


def write_lang_dir(out: Path, lexicon: Lexicon, sil_prob: float) -> int:
    """Write every lang file for ``lexicon`` into ``out``; returns #K (the highest #N)."""
    entries = lexicon_entries(lexicon)
    disambig_entries, max_disambig = add_disambig_symbols(entries)
    num_disambig = max_disambig + 1  # one more for optional silence, as prepare_lang.sh
    disambig = [f"#{i}" for i in range(num_disambig + 1)]
    phone_list = ["<eps>", SIL_PHONE, SPN_PHONE, *CMU_PHONES, *disambig]
    word_list = ["<eps>", *sorted(lexicon), "#0", "<s>", "</s>"]
    phones = {p: i for i, p in enumerate(phone_list)}
    words = {w: i for i, w in enumerate(word_list)}
    _write_symbols(out / "phones.txt", phone_list)
    _write_symbols(out / "words.txt", word_list)
    write_lexicon(out / "lexicon.txt", entries, with_probs=False)
    write_lexicon(out / "lexiconp.txt", entries, with_probs=True)
    write_lexicon(out / "lexiconp_disambig.txt", disambig_entries, with_probs=True)

    sets = {
        "silence": [SIL_PHONE, SPN_PHONE],
        "nonsilence": list(CMU_PHONES),
        "optional_silence": [SIL_PHONE],
        "disambig": disambig,
    }
    write_phone_sets(out, phones, words, sets)
    (out / "oov.txt").write_text(f"{OOV_WORD}\n")
    (out / "oov.int").write_text(f"{words[OOV_WORD]}\n")
    (out / "topo").write_text(
        make_topo([phones[p] for p in sets["nonsilence"]], [phones[p] for p in sets["silence"]])
    )

    L = make_lexicon_fst(entries, phones, words, sil_prob, SIL_PHONE)
    L_disambig = make_lexicon_fst(
        disambig_entries,
        phones,
        words,
        sil_prob,
        SIL_PHONE,
        sil_disambig=disambig[-1],
        word_disambig="#0",
    )
    for name, fst in (("L.fst", L), ("L_disambig.fst", L_disambig)):
        if not fst.write(str(out / name)):
            raise OSError(f"could not write {out / name}")
    return num_disambig


def _write_symbols(path: Path, symbols: list[str]) -> None:
    path.write_text("".join(f"{s} {i}\n" for i, s in enumerate(symbols)))


def read_symbols(path: Path) -> dict[str, int]:
    """Read a Kaldi/OpenFst symbol table (``symbol id`` per line)."""
    table: dict[str, int] = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if len(fields) != 2 or not fields[1].isdigit():
                raise BadInputError(
                    f"{path}:{lineno}: expected 'SYMBOL ID', got {line.strip()!r}; "
                    f"rerun the '{STAGE}' stage"
                )
            table[fields[0]] = int(fields[1])
    return table


def _read_ints(path: Path) -> list[int]:
    try:
        return [int(x) for x in path.read_text().split()]
    except ValueError:
        raise BadInputError(f"{path}: expected integer ids; rerun the '{STAGE}' stage") from None


@dataclass(frozen=True)
class Lang:
    """A loaded lang directory (see the module doc for the files)."""

    dir: Path
    phones: dict[str, int]
    words: dict[str, int]
    silence_phones: list[int]
    nonsilence_phones: list[int]
    optional_silence: int
    disambig_phones: list[int]
    oov_word: str
    lexicon: dict[str, list[tuple[str, ...]]]
    topo_text: str

    @classmethod
    def load(cls, lang_dir: Path | str) -> Lang:
        """Load a finished lang directory written by ``asr-kd prepare-lang``.

        Raises:
            MissingInputError: the directory is missing or unfinished.
            BadInputError: a file of the contract is missing or malformed.
        """
        lang_dir = require_done(lang_dir, STAGE)
        for name in REQUIRED_FILES:  # present, non-empty, as prepare-lang wrote it
            require_file(lang_dir / name, STAGE)
        words = read_symbols(lang_dir / "words.txt")
        oov_word = (lang_dir / "oov.txt").read_text().strip()
        if oov_word not in words:
            raise BadInputError(f"{lang_dir}/oov.txt names {oov_word!r}, which is not in words.txt")
        optional = _read_ints(lang_dir / "phones/optional_silence.int")
        if len(optional) != 1:
            raise BadInputError(f"{lang_dir}/phones/optional_silence.int must hold one phone id")
        return cls(
            dir=lang_dir,
            phones=read_symbols(lang_dir / "phones.txt"),
            words=words,
            silence_phones=_read_ints(lang_dir / "phones/silence.int"),
            nonsilence_phones=_read_ints(lang_dir / "phones/nonsilence.int"),
            optional_silence=optional[0],
            disambig_phones=_read_ints(lang_dir / "phones/disambig.int"),
            oov_word=oov_word,
            lexicon=read_lexicon(lang_dir / "lexicon.txt"),
            topo_text=(lang_dir / "topo").read_text(),
        )

    def L(self) -> kaldifst.StdVectorFst:
        """The lexicon FST without disambiguation symbols (olabel-sorted)."""
        return self._read_fst("L.fst")

    def L_disambig(self) -> kaldifst.StdVectorFst:
        """The lexicon FST with disambiguation symbols and the #0 loop (olabel-sorted)."""
        return self._read_fst("L_disambig.fst")

    def _read_fst(self, name: str) -> kaldifst.StdVectorFst:
        from asr_kd.checked import open_fst

        return open_fst(self.dir / name, STAGE)

    @functools.cached_property
    def id_to_word(self) -> dict[int, str]:
        """words.txt inverted: id -> word."""
        return {i: w for w, i in self.words.items()}

    def word_ids(self, text: str, utt_id: str, map_oov: bool = False) -> list[int]:
        """The word ids of a transcript.

        Args:
            text: whitespace-separated words.
            utt_id: the utterance, named in the error.
            map_oov: map words outside words.txt to the OOV word instead of raising.

        Raises:
            BadInputError: naming the utterance and its unknown words (unless ``map_oov``).
        """
        tokens = text.split()
        unknown = [w for w in tokens if w not in self.lexicon]
        if unknown and not map_oov:
            shown = ", ".join(dict.fromkeys(unknown))
            raise BadInputError(
                f"utterance {utt_id}: words not in {self.dir}/words.txt: {shown} "
                f"(map them to {self.oov_word} or add them to the '{STAGE}' vocabulary)"
            )
        oov = self.words[self.oov_word]
        return [self.words[w] if w in self.lexicon else oov for w in tokens]
