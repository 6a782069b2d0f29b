"""Kneser-Ney n-gram LM (ARPA and G.fst) and its perplexity on held-out text.

:func:`train_lm` trains on exactly the file it is given and nothing else. The LM
must never see dev or test transcripts: pass only the LM corpus (and, for the
perplexity, the dev transcripts as ``dev_text``, which is only scored).

Words of the LM text outside the lang directory's vocabulary are mapped to
``<UNK>`` (and counted), so G's symbols are exactly words.txt; vocabulary words
that never occur in the LM text get no unigram, so G cannot produce them (they are
counted and logged).

Perplexity follows SRILM's ``ngram -ppl`` convention: every word and ``</s>`` is
scored with back-off; dev words the LM has no unigram for are OOVs, excluded from
the log-probability and the count; ``ppl = 10 ** (-logprob / (words - oovs + sentences))``.
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from asr_kd.errors import AsrKdError, BadInputError, MissingInputError
from asr_kd.lang.lang_dir import Lang
from asr_kd.lang.texts import TextFormat, read_texts
from asr_kd.stage import file_digest, read_marker, stage_output

logger = logging.getLogger(__name__)

STAGE = "train-lm"
BOS, EOS = "<s>", "</s>"


def kaldingram_executable() -> str:
    """The ``kaldingram`` CLI: next to this Python interpreter, else on ``PATH``."""
    local = Path(sys.executable).parent / "kaldingram"
    if local.is_file():
        return str(local)
    found = shutil.which("kaldingram")
    if found is None:
        raise MissingInputError(
            "the 'kaldingram' command is not installed (pip install kaldingram==0.1.2)"
        )
    return found


def map_to_vocabulary(
    sentences: Iterable[str], vocabulary: set[str] | dict[str, object], oov_word: str
) -> tuple[list[str], Counter[str]]:
    """Replace words outside ``vocabulary`` with ``oov_word``; returns the counts replaced."""
    oovs: Counter[str] = Counter()
    out = []
    for sentence in sentences:
        tokens = sentence.split()
        for w in tokens:
            if w not in vocabulary:
                oovs[w] += 1
        out.append(" ".join(w if w in vocabulary else oov_word for w in tokens))
    return out, oovs


def run_kaldingram_train(text: Path, arpa: Path, order: int) -> None:
    """``kaldingram train``: back-off Kneser-Ney, as SRILM's ``-ukndiscount``."""
    cmd = [kaldingram_executable(), "train", "--ngram-order", str(order)]
    cmd += ["--text", str(text), "--lm", str(arpa)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not arpa.is_file():
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise AsrKdError(f"{STAGE}: kaldingram train failed (exit {proc.returncode}):\n{tail}")


@dataclass(frozen=True)
class Perplexity:
    """SRILM-style perplexity of an LM on a set of sentences."""

    ppl: float | None
    logprob: float  # log10, summed over scored words and </s>
    sentences: int
    words: int
    oovs: int


def arpa_ngram_counts(arpa: Path) -> dict[int, int]:
    """The ``ngram N=count`` lines of an ARPA file's header."""
    counts = {}
    with open(arpa, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("ngram ") and "=" in line:
                n, c = line[6:].split("=")
                counts[int(n)] = int(c)
            elif line.startswith("\\1-grams:"):
                break
    return counts


def arpa_perplexity(arpa: Path, sentences: Sequence[str]) -> Perplexity:
    """Score ``sentences`` with a back-off ARPA LM (SRILM convention, see the module doc).

    Reads only the n-grams the sentences can query, so a large ARPA costs one pass.
    """
    padded = [[BOS, *s.split(), EOS] for s in sentences]
    order = max(arpa_ngram_counts(arpa), default=1)
    wanted = {
        " ".join(toks[i:j])
        for toks in padded
        for j in range(1, len(toks) + 1)
        for i in range(max(0, j - order), j)
    }
    logp: dict[str, float] = {}
    bow: dict[str, float] = {}
    unigrams: set[str] = set()
    n = 0
    with open(arpa, encoding="utf-8") as f:
        for line in f:
            if line.startswith("\\"):
                stripped = line.strip()
                n = int(stripped[1]) if stripped.endswith("-grams:") else 0
                continue
            fields = line.split()
            if n == 0 or len(fields) < n + 1:
                continue
            key = " ".join(fields[1 : n + 1])
            if n == 1:
                unigrams.add(key)
            if key in wanted:
                logp[key] = float(fields[0])
                if len(fields) > n + 1:
                    bow[key] = float(fields[n + 1])

    total, words, oovs = 0.0, 0, 0
    for toks in padded:
        words += len(toks) - 2
        for j in range(1, len(toks)):
            if toks[j] not in unigrams:
                oovs += 1
                continue
            total += _backoff_logprob(toks[max(0, j - order + 1) : j + 1], logp, bow)
    denominator = words - oovs + len(padded)
    ppl = 10 ** (-total / denominator) if denominator > 0 else None
    return Perplexity(ppl=ppl, logprob=total, sentences=len(padded), words=words, oovs=oovs)


def _backoff_logprob(ngram: list[str], logp: dict[str, float], bow: dict[str, float]) -> float:
    """log10 p(w | h) of ``ngram = h + [w]``, backing off to shorter histories."""
    penalty = 0.0
    for i in range(len(ngram)):
        key = " ".join(ngram[i:])
        if key in logp:
            return penalty + logp[key]
        penalty += bow.get(" ".join(ngram[i:-1]), 0.0)
    raise AssertionError(f"unigram {ngram[-1]!r} not found")  # callers skip OOVs


@dataclass(frozen=True)
class LmConfig:
    """The ``lm`` section of a recipe config (``asr-kd train-lm --config``).

    Args:
        order: n-gram order (1-5) of the Kneser-Ney LM (Kaldi's recipes: 3, or 4 for
            rescoring).
    """

    order: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.order <= 5:
            raise ValueError(f"order must be 1..5, got {self.order}")


def train_lm(
    lm_text: Path | str,
    lang_dir: Path | str,
    out_dir: Path | str,
    order: int = 3,
    dev_text: Path | str | None = None,
    force: bool = False,
    text_format: TextFormat = "auto",
    extra_texts: Sequence[Path | str] = (),
) -> Path:
    """Train a Kneser-Ney n-gram LM and write ``lm.arpa``, ``G.fst`` and ``perplexity.json``.

    The LM is trained on ``lm_text`` and ``extra_texts`` only (e.g. the training
    transcripts plus a corpus's LM text; never pass dev or test transcripts there);
    ``dev_text`` is only scored.

    Args:
        lm_text: the LM corpus: plain text, Kaldi ``text`` or a Lhotse manifest.
        lang_dir: a lang directory from ``prepare-lang``; its words.txt is G's symbol table.
        out_dir: where to write (atomically).
        order: n-gram order (1-5).
        dev_text: held-out transcripts for the perplexity (any format of ``lm_text``).
        force: redo the stage even if ``out_dir`` is finished.
        text_format: the format of every text (see :func:`read_texts`; ``.gz`` is read).
        extra_texts: more LM training texts, appended to ``lm_text``.

    Returns:
        ``out_dir``. ``perplexity.json`` holds ``order``, ``ppl`` (``null`` without
        dev text), ``dev_sentences``, ``dev_words``, ``oovs``, ``ngrams`` ({order: count})
        and the LM text's ``lm_sentences``, ``lm_words``, ``lm_oovs`` (mapped to <UNK>).
    """
    if not 1 <= order <= 5:
        raise BadInputError(f"{STAGE}: --order must be 1..5, got {order}")
    lm_text, out_dir = Path(lm_text), Path(out_dir)
    texts = [lm_text, *map(Path, extra_texts)]
    lang = Lang.load(lang_dir)
    _check_held_out(dev_text, texts)
    config = {
        "lm_text": str(lm_text),
        "lm_text_sha256": file_digest(lm_text),
        "lang_dir": str(lang.dir),
        "lang_config": read_marker(lang.dir).get("config"),
        "order": order,
        "dev_text": None if dev_text is None else str(dev_text),
        "dev_text_sha256": None if dev_text is None else file_digest(dev_text),
        "text_format": text_format,
    }
    if extra_texts:
        config["extra_texts"] = {str(p): file_digest(p) for p in texts[1:]}
    with stage_output(out_dir, STAGE, config, force=force) as tmp:
        if tmp is None:
            return out_dir
        start = time.time()
        stats = _train(texts, lang, tmp, order, text_format)
        _write_perplexity(tmp, stats, dev_text, text_format)
    _log_summary(out_dir, stats, start)
    return out_dir


def _check_held_out(dev_text: Path | str | None, texts: Sequence[Path]) -> None:
    if dev_text is not None and Path(dev_text).resolve() in {t.resolve() for t in texts}:
        raise BadInputError(f"{STAGE}: the dev text {dev_text} is an LM text; hold it out")


def _write_perplexity(
    out: Path, stats: dict, dev_text, text_format: TextFormat, stage: str = STAGE
) -> None:
    """Score ``dev_text`` with ``out/lm.arpa`` into ``stats``; write ``perplexity.json``."""
    if dev_text is not None:
        dev = read_texts(dev_text, text_format)
        if not dev:
            raise BadInputError(f"{stage}: the dev text {dev_text} holds no sentences")
        result = arpa_perplexity(out / "lm.arpa", dev)
        stats.update(
            ppl=result.ppl,
            dev_sentences=result.sentences,
            dev_words=result.words,
            oovs=result.oovs,
        )
    (out / "perplexity.json").write_text(json.dumps(stats, indent=2) + "\n")


def _log_summary(out_dir: Path, stats: dict, start: float, stage: str = STAGE) -> None:
    logger.info(
        "%s: wrote %s (%s n-grams; dev perplexity %s, %d OOVs) in %.1f s",
        stage,
        out_dir,
        "+".join(str(c) for c in stats["ngrams"].values()),
        "n/a" if stats["ppl"] is None else f"{stats['ppl']:.2f}",
        stats["oovs"],
        time.time() - start,
    )


def _train(
    texts: Sequence[Path], lang: Lang, out: Path, order: int, text_format: TextFormat
) -> dict:
    raw = []
    for path in texts:
        lines = read_texts(path, text_format)
        if not lines:
            raise BadInputError(f"{STAGE}: the LM text {path} holds no sentences")
        raw += lines
    sentences, lm_oovs = map_to_vocabulary(raw, lang.lexicon, lang.oov_word)
    if lm_oovs:
        logger.warning(
            "%s: %d LM-text tokens (%d distinct words) are not in %s/words.txt; mapped to %s "
            "(most frequent: %s)",
            STAGE,
            lm_oovs.total(),
            len(lm_oovs),
            lang.dir,
            lang.oov_word,
            ", ".join(w for w, _ in lm_oovs.most_common(10)),
        )
    seen = {w for s in sentences for w in s.split()}
    unseen = sorted(set(lang.lexicon) - seen - {lang.oov_word})
    if unseen:
        logger.warning(
            "%s: %d vocabulary words never occur in the LM text, so G cannot output them (e.g. %s)",
            STAGE,
            len(unseen),
            ", ".join(unseen[:10]),
        )
    text_file = out / "lm_text.txt"
    text_file.write_text("".join(s + "\n" for s in sentences))
    arpa = out / "lm.arpa"
    run_kaldingram_train(text_file, arpa, order)
    text_file.unlink()
    arpa_to_g(arpa, lang, out / "G.fst")
    return {
        "order": order,
        "ppl": None,
        "dev_sentences": 0,
        "dev_words": 0,
        "oovs": 0,
        "ngrams": arpa_ngram_counts(arpa),
        "lm_sentences": len(sentences),
        "lm_words": sum(len(s.split()) for s in sentences),
        "lm_oovs": lm_oovs.total(),
        "vocabulary_words_not_in_lm": len(unseen),
    }


def arpa_to_g(arpa: Path, lang: Lang, g_fst: Path) -> None:
    """G.fst over the lang directory's words.txt from an ARPA file (kaldilm's arpa2fst).

    N-grams with words outside words.txt are skipped (kaldilm warns), as Kaldi's
    ``arpa2fst --read-symbol-table`` does.
    """
    import kaldilm

    # arpa2fst returns the whole FST as text too; discard it.
    kaldilm.arpa2fst(
        str(arpa),
        str(g_fst),
        disambig_symbol="#0",
        read_symbol_table=str(lang.dir / "words.txt"),
        max_arpa_warnings=0,
    )
    if not g_fst.is_file():
        raise AsrKdError(f"{STAGE}: kaldilm.arpa2fst wrote no G.fst from {arpa}")


def arpa_unigrams(arpa: Path) -> set[str]:
    """The words of an ARPA file's 1-gram section."""
    words: set[str] = set()
    with open(arpa, encoding="utf-8") as f:
        inside = False
        for line in f:
            if line.startswith("\\"):
                inside = line.strip() == "\\1-grams:"
                continue
            fields = line.split()
            if inside and len(fields) >= 2:
                words.add(fields[1])
    return words


IMPORT_STAGE = "import-lm"


def import_lm(
    arpa: Path | str,
    lang_dir: Path | str,
    out_dir: Path | str,
    dev_text: Path | str | None = None,
    force: bool = False,
    text_format: TextFormat = "auto",
) -> Path:
    """Use a given ARPA LM (e.g. LibriSpeech's published 3-gram): the outputs of :func:`train_lm`.

    Writes ``lm.arpa`` (a plain copy; ``.gz`` input is decompressed), ``G.fst`` over the
    lang directory's words.txt and ``perplexity.json`` (with ``lm_sentences`` and
    ``lm_words`` null, ``arpa_words_not_in_lang``: unigrams G leaves out, and
    ``vocabulary_words_not_in_lm``: lang words G cannot output).

    Args:
        arpa: the ARPA file (``.arpa`` or ``.arpa.gz``).
        lang_dir: a lang directory from ``prepare-lang``.
        out_dir: where to write (atomically).
        dev_text: held-out transcripts for the perplexity.
        force: redo the stage even if ``out_dir`` is finished.
        text_format: the format of ``dev_text``.
    """
    arpa, out_dir = Path(arpa), Path(out_dir)
    if not arpa.is_file():
        raise MissingInputError(f"{IMPORT_STAGE}: ARPA file {arpa} does not exist")
    lang = Lang.load(lang_dir)
    config = {
        "arpa": str(arpa),
        "arpa_sha256": file_digest(arpa),
        "lang_dir": str(lang.dir),
        "lang_config": read_marker(lang.dir).get("config"),
        "dev_text": None if dev_text is None else str(dev_text),
        "dev_text_sha256": None if dev_text is None else file_digest(dev_text),
        "text_format": text_format,
    }
    with stage_output(out_dir, IMPORT_STAGE, config, force=force) as tmp:
        if tmp is None:
            return out_dir
        start = time.time()
        opener = gzip.open if arpa.suffix == ".gz" else open
        with opener(arpa, "rb") as src, open(tmp / "lm.arpa", "wb") as dst:
            shutil.copyfileobj(src, dst)
        counts = arpa_ngram_counts(tmp / "lm.arpa")
        if not counts:
            raise BadInputError(f"{IMPORT_STAGE}: {arpa} has no ARPA \\data\\ header")
        unigrams = arpa_unigrams(tmp / "lm.arpa")
        arpa_to_g(tmp / "lm.arpa", lang, tmp / "G.fst")
        vocabulary = set(lang.lexicon) - {lang.oov_word}
        stats = {
            "order": max(counts),
            "ppl": None,
            "dev_sentences": 0,
            "dev_words": 0,
            "oovs": 0,
            "ngrams": counts,
            "lm_sentences": None,
            "lm_words": None,
            "lm_oovs": None,
            "arpa": str(arpa),
            "arpa_words_not_in_lang": len(unigrams - set(lang.words) - {BOS, EOS}),
            "vocabulary_words_not_in_lm": len(vocabulary - unigrams),
        }
        _write_perplexity(tmp, stats, dev_text, text_format, IMPORT_STAGE)
    _log_summary(out_dir, stats, start, IMPORT_STAGE)
    return out_dir
