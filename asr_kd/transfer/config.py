"""The ``transfer:`` config section: the two transfer-set experiments beyond the paper."""

from __future__ import annotations

from dataclasses import dataclass

from asr_kd.transfer.omit import BIAS_GRID


@dataclass(frozen=True)
class TransferConfig:
    """What the omitted-phone and untranscribed-audio experiments use (section ``transfer``).

    Attributes:
        enabled: the recipe runs the transfer stages (``--transfer auto``).
        omit_phone: the phone left out of the transfer set (a base phone name of the
            lang's phone set). Default ``EH``, a vowel of middling frequency: 2.7% of the
            synth grammar's phones, in 63% of its sentences (CMUdict's first
            pronunciations of 2,000 sentences), so both WER groups are large; ``AH``
            (9.4%, in 95% of the sentences) leaves almost no utterance without it.
        bias_grid: the biases tried for the omitted phone's senones (chosen on dev).
        unlabelled_factor: untranscribed audio to synthesise, relative to the
            transcribed training set (its utterances per training speaker).
        unlabelled_seed: the untranscribed corpus's seed (other speakers, other
            sentences than the corpus's ``seed``).
    """

    enabled: bool = False
    omit_phone: str = "EH"
    bias_grid: tuple[float, ...] = BIAS_GRID
    unlabelled_factor: float = 1.0
    unlabelled_seed: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "bias_grid", tuple(float(b) for b in self.bias_grid))
        if not self.omit_phone.strip():
            raise ValueError("omit_phone must name a phone, e.g. AH")
        if not self.unlabelled_factor > 0:
            raise ValueError(f"unlabelled_factor must be positive, got {self.unlabelled_factor}")
        if not self.bias_grid:
            raise ValueError("bias_grid must hold at least one bias")
