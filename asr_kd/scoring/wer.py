"""Word error rate and Kaldi-style scoring files.

Alignment and counts come from jiwer (a minimum edit distance; when several
alignments tie, the split into insertions, deletions and substitutions can differ
from Kaldi's ``compute-wer``, the total cannot). Text is normalised the same way on
both sides: upper case, whitespace collapsed. ``<UNK>`` in a hypothesis is an
ordinary word, so it always counts as an error. Utterances without a hypothesis count
as all deletions (with a warning), as Kaldi's ``compute-wer --mode=present`` would not.

Files (as in Kaldi's ``scoring_kaldi/``):

* ``hyp.txt``: ``<utt-id> WORDS`` per line, sorted by utterance id;
* ``errs.txt``: per utterance, the aligned ``ref``/``hyp`` lines (``***`` for gaps),
  the ``op`` line (``C`` correct, ``S`` substitution, ``I`` insertion, ``D`` deletion)
  and ``#csid`` counts, columns padded to line up (``wer_per_utt_details.pl``);
* the summary line ``%WER 8.21 [ 412 / 5018, 51 ins, 97 del, 264 sub ]``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import jiwer

logger = logging.getLogger(__name__)

GAP = "***"


def normalize_text(text: str) -> str:
    """Upper case, whitespace collapsed to single spaces, no leading/trailing space."""
    return " ".join(text.upper().split())


@dataclass(frozen=True)
class UttErrors:
    """One utterance's alignment: equal-length ``ref``/``hyp`` columns and their ops."""

    ref: tuple[str, ...]
    hyp: tuple[str, ...]
    ops: tuple[str, ...]

    def count(self, op: str) -> int:
        return self.ops.count(op)


@dataclass(frozen=True)
class WerResult:
    """Corpus-level counts and per-utterance alignments."""

    words: int
    ins: int
    dels: int
    subs: int
    num_utts: int
    sentence_errors: int = 0
    missing: tuple[str, ...] = ()
    per_utt: dict[str, UttErrors] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.subs

    @property
    def wer(self) -> float:
        """Percent; 0 with no reference words and no errors, infinite with errors."""
        if self.words == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return 100.0 * self.errors / self.words

    def summary_line(self) -> str:
        """Kaldi's ``compute-wer`` line: ``%WER 8.21 [ 412 / 5018, 51 ins, 97 del, 264 sub ]``."""
        return (
            f"%WER {self.wer:.2f} [ {self.errors} / {self.words}, {self.ins} ins, "
            f"{self.dels} del, {self.subs} sub ]"
        )

    def to_dict(self) -> dict[str, float | int]:
        return {
            "wer": round(self.wer, 4),
            "words": self.words,
            "errors": self.errors,
            "ins": self.ins,
            "del": self.dels,
            "sub": self.subs,
            "num_utts": self.num_utts,
            "sentence_errors": self.sentence_errors,
            "missing_hyps": len(self.missing),
        }


def compute_wer(
    refs: Mapping[str, str], hyps: Mapping[str, str], alignments: bool = True
) -> WerResult:
    """Score hypotheses against references, both keyed by utterance id.

    Args:
        refs: reference transcripts (every utterance scored).
        hyps: hypotheses; a missing one counts as empty (all deletions, with a warning);
            hypotheses without a reference are ignored with a warning.
        alignments: also keep per-utterance alignments (for ``errs.txt``).
    """
    ids = sorted(refs)
    missing = tuple(u for u in ids if u not in hyps)
    if missing:
        logger.warning(
            "%d of %d utterances have no hypothesis and count as deletions (e.g. %s)",
            len(missing), len(ids), ", ".join(missing[:3]),
        )  # fmt: skip
    extra = sorted(set(hyps) - set(refs))
    if extra:
        logger.warning("%d hypotheses have no reference and are ignored (e.g. %s)",
                       len(extra), ", ".join(extra[:3]))  # fmt: skip
    if not ids:
        return WerResult(0, 0, 0, 0, 0, missing=missing)
    ref_texts = [normalize_text(refs[u]) for u in ids]
    hyp_texts = [normalize_text(hyps.get(u, "")) for u in ids]
    out = jiwer.process_words(ref_texts, hyp_texts)
    per_utt = {}
    if alignments:
        rows = zip(ids, out.references, out.hypotheses, out.alignments, strict=True)
        per_utt = {u: _align(r, h, chunks) for u, r, h, chunks in rows}
    return WerResult(
        words=sum(len(r) for r in out.references),
        ins=out.insertions,
        dels=out.deletions,
        subs=out.substitutions,
        num_utts=len(ids),
        sentence_errors=sum(any(c.type != "equal" for c in a) for a in out.alignments),
        missing=missing,
        per_utt=per_utt,
    )


def _align(ref: list[str], hyp: list[str], chunks: list) -> UttErrors:
    r_out: list[str] = []
    h_out: list[str] = []
    ops: list[str] = []
    for c in chunks:
        r, h = ref[c.ref_start_idx : c.ref_end_idx], hyp[c.hyp_start_idx : c.hyp_end_idx]
        if c.type == "insert":
            r_out += [GAP] * len(h)
            h_out += h
            ops += ["I"] * len(h)
        elif c.type == "delete":
            r_out += r
            h_out += [GAP] * len(r)
            ops += ["D"] * len(r)
        else:
            r_out += r
            h_out += h
            ops += ["C" if c.type == "equal" else "S"] * len(r)
    return UttErrors(tuple(r_out), tuple(h_out), tuple(ops))


def format_errs(result: WerResult) -> str:
    """``errs.txt``: aligned ref/hyp/op lines and ``#csid`` counts per utterance."""
    lines = []
    for utt, e in sorted(result.per_utt.items()):
        widths = [max(len(r), len(h)) for r, h in zip(e.ref, e.hyp, strict=True)]
        for tag, cells in (("ref", e.ref), ("hyp", e.hyp), ("op", e.ops)):
            padded = " ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
            lines.append(f"{utt} {tag:<3} {padded}".rstrip())
        counts = " ".join(str(e.count(op)) for op in "CSID")
        lines.append(f"{utt} #csid {counts}")
    return "\n".join(lines) + ("\n" if lines else "")


def format_hyps(hyps: Mapping[str, str]) -> str:
    """``hyp.txt``: ``<utt-id> WORDS`` per line (normalised), sorted by utterance id."""
    return "".join(f"{u} {normalize_text(t)}".rstrip() + "\n" for u, t in sorted(hyps.items()))
