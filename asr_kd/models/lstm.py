"""(B)LSTM acoustic model over packed sequences, with optional output delay.

A unidirectional LSTM sees no future frames; delaying its output by a few frames
(Sak et al. 2014, "target delay") lets it look ahead: the logits for frame ``t`` are
computed at step ``t + delay``. The input is extended past each sequence's end by
replicating its last valid frame, so every frame still gets an output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr_kd.models.registry import AcousticModel, pad_edges

__all__ = ["LSTM", "LSTM_PRESETS", "LstmConfig"]


@dataclass(frozen=True)
class LstmConfig:
    """Config of :class:`LSTM` (defaults: the ``small`` preset).

    ``feat_dim`` and ``num_senones`` come from the data and are filled by ``build_model``.
    """

    feat_dim: int = 0
    num_senones: int = 0
    hidden_dim: int = 320
    num_layers: int = 3
    proj_dim: int = 0
    bidirectional: bool = False
    delay: int = 5
    dropout: float = 0.0


LSTM_PRESETS: dict[str, LstmConfig] = {
    "small": LstmConfig(),
    "small_bidir": LstmConfig(hidden_dim=256, bidirectional=True, delay=0),
    "tiny": LstmConfig(hidden_dim=32, num_layers=1, delay=2),
    "tiny_bidir": LstmConfig(hidden_dim=32, num_layers=2, bidirectional=True, delay=0),
}


class LSTM(AcousticModel):
    """Stacked (B)LSTM, optionally with LSTMP projections, and a linear senone layer.

    Args:
        feat_dim: input feature dimension F.
        num_senones: output dimension S.
        hidden_dim: cell units per direction and layer.
        num_layers: stacked LSTM layers.
        proj_dim: size of the recurrent projection (LSTMP, Sak et al. 2014); 0 for none.
        bidirectional: run a backward LSTM too (then ``delay`` must be 0).
        delay: output delay in frames for the unidirectional model.
        dropout: dropout probability between layers and before the output layer.
    """

    def __init__(
        self,
        feat_dim: int,
        num_senones: int,
        hidden_dim: int = 320,
        num_layers: int = 3,
        proj_dim: int = 0,
        bidirectional: bool = False,
        delay: int = 5,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if min(feat_dim, num_senones, hidden_dim, num_layers) < 1:
            raise ValueError(
                f"feat_dim, num_senones, hidden_dim and num_layers must be positive, got "
                f"{feat_dim}, {num_senones}, {hidden_dim} and {num_layers}"
            )
        if not 0 <= proj_dim < hidden_dim:
            raise ValueError(f"proj_dim must be 0 (none) or below hidden_dim, got {proj_dim}")
        if delay < 0 or (bidirectional and delay):
            raise ValueError(
                f"delay must be >= 0, and 0 for a bidirectional LSTM (which already sees the "
                f"future); got delay={delay}, bidirectional={bidirectional}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.feat_dim = feat_dim
        self.num_senones = num_senones
        self.delay = delay
        self.dropout = dropout
        self.lstm = nn.LSTM(
            feat_dim,
            hidden_dim,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
            proj_size=proj_dim,
        )
        out_dim = (proj_dim or hidden_dim) * (2 if bidirectional else 1)
        self.output = nn.Linear(out_dim, num_senones)

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Compute senone logits.

        Args:
            feats: ``[B, T, F]`` features, padded after each sequence's end.
            lengths: ``[B]`` int64 valid frames per sequence.

        Returns:
            ``(logits [B, T, S], lengths [B])``. Sequences are packed, so padding never
            changes a sequence's logits; with ``delay`` d, the logits of frame ``t`` depend
            on frames ``0 .. t + d`` (the last frame replicated past the end).
        """
        self.check_inputs(feats, lengths)
        frames = feats.size(1)
        if self.delay:
            feats = pad_edges(feats, lengths, 0, self.delay)
        packed = pack_padded_sequence(
            feats, (lengths + self.delay).cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.lstm(packed)
        x, _ = pad_packed_sequence(out, batch_first=True, total_length=frames + self.delay)
        x = F.dropout(x[:, self.delay :], self.dropout, self.training)
        return self.output(x), lengths

    def flops_per_frame(self) -> int:
        """2 x the multiply-adds of one frame's matrix products (gate arithmetic excluded)."""
        lstm = self.lstm
        hidden, proj = lstm.hidden_size, lstm.proj_size
        recurrent = proj or hidden
        directions = 2 if lstm.bidirectional else 1
        total = 0
        in_dim = lstm.input_size
        for _ in range(lstm.num_layers):
            per_direction = 4 * hidden * (in_dim + recurrent) + proj * hidden
            total += directions * per_direction
            in_dim = recurrent * directions
        return 2 * (total + self.output.in_features * self.output.out_features)
