"""Read sentences from plain text, Kaldi ``text`` files and Lhotse manifests.

Three formats are read:

- plain text: one sentence per line (gzipped when the name ends in ``.gz``);
- Kaldi ``text``: ``<utt-id> WORD WORD ...`` per line;
- a Lhotse supervision or cut manifest (``.jsonl``, ``.jsonl.gz``, ``.json``,
  ``.json.gz``): the text of each supervision.

``"auto"`` tells plain from Kaldi text by the first token of each line: it is a
Kaldi ``text`` file when every line's first token is distinct and contains a digit
(utterance ids do; words in a transcript rarely all do). Pass the format explicitly
when a corpus defeats this.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path
from typing import Literal

from asr_kd.errors import BadInputError, MissingInputError

logger = logging.getLogger(__name__)

TextFormat = Literal["auto", "plain", "kaldi", "manifest"]
TEXT_FORMATS: tuple[str, ...] = ("auto", "plain", "kaldi", "manifest")
_MANIFEST_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")


def is_manifest(path: Path | str) -> bool:
    """Whether ``path`` is named like a Lhotse manifest."""
    return str(path).endswith(_MANIFEST_SUFFIXES)


def texts_from_manifest(path: Path | str) -> list[str]:
    """The non-empty supervision texts of a Lhotse supervision or cut manifest.

    Each supervision counts once, even if several cuts share it.

    Raises:
        MissingInputError: the file does not exist.
        BadInputError: it holds neither supervisions nor cuts.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(
            f"manifest {path} does not exist: run the 'prepare' stage that writes it first"
        )
    try:
        return _manifest_texts(path)
    except (ValueError, KeyError, TypeError, OSError, EOFError) as e:  # JSON, gzip, UTF-8
        lines = str(e).strip().splitlines()
        raise BadInputError(
            f"manifest {path} cannot be read ({type(e).__name__}: {lines[0] if lines else ''}):"
            " it is truncated or damaged; rewrite it (the 'prepare' stage that made it)"
        ) from None


def _manifest_texts(path: Path) -> list[str]:
    from lhotse import CutSet, SupervisionSet
    from lhotse.serialization import load_manifest_lazy_or_eager

    manifest = load_manifest_lazy_or_eager(path)
    if isinstance(manifest, SupervisionSet):
        supervisions = iter(manifest)
    elif isinstance(manifest, CutSet):
        supervisions = (s for cut in manifest for s in cut.supervisions)
    else:
        raise BadInputError(
            f"{path} is a {type(manifest).__name__}, not a supervision or cut manifest: "
            "it holds no transcripts"
        )
    seen: set[str] = set()
    texts = []
    for s in supervisions:
        if s.id in seen:
            continue
        seen.add(s.id)
        text = " ".join((s.text or "").split())
        if text:
            texts.append(text)
    return texts


def read_texts(path: Path | str, text_format: TextFormat = "auto") -> list[str]:
    """The non-empty sentences of a text file or manifest, whitespace-normalised.

    Args:
        path: plain text, Kaldi ``text`` or a Lhotse supervision/cut manifest.
        text_format: ``"auto"`` (manifest by file name, else see the module doc),
            ``"plain"``, ``"kaldi"`` or ``"manifest"``.
    """
    path = Path(path)
    if text_format == "manifest" or (text_format == "auto" and is_manifest(path)):
        return texts_from_manifest(path)
    if text_format not in TEXT_FORMATS:
        raise ValueError(f"text_format must be one of {TEXT_FORMATS}, got {text_format!r}")
    if not path.is_file():
        raise MissingInputError(
            f"text file {path} does not exist (the corpus's LM text, a Kaldi 'text' or a "
            "manifest: run the stage that writes it first)"
        )
    opener = gzip.open if path.suffix == ".gz" else open  # e.g. librispeech-lm-norm.txt.gz
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            lines = [line.split() for line in f]
    except (UnicodeDecodeError, OSError, EOFError) as e:  # not UTF-8, a damaged gzip
        raise BadInputError(
            f"text file {path} cannot be read ({type(e).__name__}: {e}); give UTF-8 text "
            "(plain, Kaldi 'text' or gzipped)"
        ) from None
    lines = [fields for fields in lines if fields]
    if text_format == "auto":
        text_format = "kaldi" if _looks_like_kaldi_text(lines) else "plain"
        logger.debug("%s: read as %s text", path, text_format)
    if text_format == "kaldi":
        return [" ".join(fields[1:]) for fields in lines if len(fields) > 1]
    return [" ".join(fields) for fields in lines]


def _looks_like_kaldi_text(lines: list[list[str]]) -> bool:
    firsts = [fields[0] for fields in lines]
    return (
        bool(firsts)
        and len(set(firsts)) == len(firsts)
        and all(any(c.isdigit() for c in t) for t in firsts)
    )
