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


def train_lm(
    lm_text: Path | str,
    lang_dir: Path | str,
    out_dir: Path | str,
    order: int = 3,
    dev_text: Path | str | None = None,
    force: bool = False,
    text_format: TextFormat = "auto",
) -> Path:
    """Train a Kneser-Ney n-gram LM and write ``lm.arpa``, ``G.fst`` and ``perplexity.json``.

    The LM is trained on ``lm_text`` only (never pass dev or test transcripts there);
    ``dev_text`` is only scored.

    Args:
        lm_text: the LM corpus: plain text, Kaldi ``text`` or a Lhotse manifest.
        lang_dir: a lang directory from ``prepare-lang``; its words.txt is G's symbol table.
        out_dir: where to write (atomically).
        order: n-gram order (1-5).
        dev_text: held-out transcripts for the perplexity (any format of ``lm_text``).
        force: redo the stage even if ``out_dir`` is finished.
        text_format: the format of both texts (see :func:`read_texts`).

    Returns:
        ``out_dir``. ``perplexity.json`` holds ``order``, ``ppl`` (``null`` without
        dev text), ``dev_sentences``, ``dev_words``, ``oovs``, ``ngrams`` ({order: count})
        and the LM text's ``lm_sentences``, ``lm_words``, ``lm_oovs`` (mapped to <UNK>).
    """
    if not 1 <= order <= 5:
        raise BadInputError(f"{STAGE}: --order must be 1..5, got {order}")
    lm_text, out_dir = Path(lm_text), Path(out_dir)
    lang = Lang.load(lang_dir)
    if dev_text is not None and Path(dev_text).resolve() == lm_text.resolve():
        raise BadInputError(f"{STAGE}: the dev text {dev_text} is the LM text; hold it out")
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
    with stage_output(out_dir, STAGE, config, force=force) as tmp:
        if tmp is None:
            return out_dir
        start = time.time()
        stats = _train(lm_text, lang, tmp, order, text_format)
        if dev_text is not None:
            dev = read_texts(dev_text, text_format)
            if not dev:
                raise BadInputError(f"{STAGE}: the dev text {dev_text} holds no sentences")
            result = arpa_perplexity(tmp / "lm.arpa", dev)
            stats.update(
                ppl=result.ppl,
                dev_sentences=result.sentences,
                dev_words=result.words,
                oovs=result.oovs,
            )
        (tmp / "perplexity.json").write_text(json.dumps(stats, indent=2) + "\n")
    logger.info(
        "%s: wrote %s (%s n-grams; dev perplexity %s, %d OOVs) in %.1f s",
        STAGE,
        out_dir,
        "+".join(str(c) for c in stats["ngrams"].values()),
        "n/a" if stats["ppl"] is None else f"{stats['ppl']:.2f}",
        stats["oovs"],
        time.time() - start,
    )
    return out_dir


def _train(lm_text: Path, lang: Lang, out: Path, order: int, text_format: TextFormat) -> dict:
    import kaldilm

    raw = read_texts(lm_text, text_format)
    if not raw:
        raise BadInputError(f"{STAGE}: the LM text {lm_text} holds no sentences")
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
    # arpa2fst returns the whole FST as text too; discard it. Words missing from the
    # symbol table would be skipped with a warning, hence the mapping above.
    kaldilm.arpa2fst(
        str(arpa),
        str(out / "G.fst"),
        disambig_symbol="#0",
        read_symbol_table=str(lang.dir / "words.txt"),
    )
    if not (out / "G.fst").is_file():
        raise AsrKdError(f"{STAGE}: kaldilm.arpa2fst wrote no G.fst from {arpa}")
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
