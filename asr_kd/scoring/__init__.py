"""Word error rate and its Kaldi-style files (``hyp.txt``, ``errs.txt``, the %WER line).

Typical use::

    result = compute_wer(refs, hyps)          # both {utt_id: text}
    print(result.summary_line())              # %WER 8.21 [ 412 / 5018, 51 ins, 97 del, 264 sub ]
    Path("errs.txt").write_text(format_errs(result))
"""

from asr_kd.scoring.wer import (
    UttErrors,
    WerResult,
    compute_wer,
    format_errs,
    format_hyps,
    normalize_text,
)

__all__ = ["UttErrors", "WerResult", "compute_wer", "format_errs", "format_hyps", "normalize_text"]
