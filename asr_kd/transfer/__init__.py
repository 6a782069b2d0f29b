"""Knowledge that reaches the student without labels: an omitted phone, untranscribed audio.

- :mod:`asr_kd.transfer.omit`: the phone left out of the transfer set
  (``TrainConfig.omit_phone``), scored on its frames and the rest, with and without a
  bias correction (``asr-kd eval-omitted-phone``);
- :mod:`asr_kd.transfer.unlabelled`: untranscribed audio in the transfer set
  (``asr-kd synth-unlabelled``, ``asr-kd unlabelled-set``);
- :mod:`asr_kd.tree.phones`: which senones belong to which phone.
"""

from asr_kd.transfer.config import TransferConfig
from asr_kd.transfer.omit import add_bias, evaluate_omitted_phone, read_omitted_phone
from asr_kd.transfer.unlabelled import (
    make_unlabelled_set,
    strip_transcript,
    unlabelled_corpus_config,
    unlabelled_info,
)
from asr_kd.tree.phones import phone_senones, senone_owners, senone_phone_mask

__all__ = [
    "TransferConfig",
    "add_bias",
    "evaluate_omitted_phone",
    "make_unlabelled_set",
    "phone_senones",
    "read_omitted_phone",
    "senone_owners",
    "senone_phone_mask",
    "strip_transcript",
    "unlabelled_corpus_config",
    "unlabelled_info",
]
