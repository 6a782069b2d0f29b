"""Feed-forward DNN over spliced frames: the acoustic model of Hinton et al. (2015).

The paper's baseline: 8 hidden layers of 2560 ReLUs on a window of 26 frames of 40
log-mel filterbank coefficients (the target at the 21st), a softmax over 14,000
senones; about 85M parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from asr_kd.models.registry import AcousticModel, pad_edges

__all__ = ["DNN", "DNN_PRESETS", "DnnConfig", "splice_frames"]


def splice_frames(feats: Tensor, lengths: Tensor, left_context: int, right_context: int) -> Tensor:
    """Stack each frame with its neighbours, replicating edge frames (Kaldi's splicing).

    Args:
        feats: ``[B, T, F]``, padded after each sequence's end.
        lengths: ``[B]`` valid frames per sequence.
        left_context: frames before the target in each window.
        right_context: frames after the target in each window.

    Returns:
        ``[B, T, K * F]`` with ``K = left_context + 1 + right_context``: window ``t`` holds
        frames ``t - left_context .. t + right_context`` in order, so the target is window
        position ``left_context``. Frames before 0 are copies of frame 0 and frames at or
        past ``lengths[b]`` are copies of frame ``lengths[b] - 1`` (never padding).
    """
    batch, frames, dim = feats.shape
    width = left_context + 1 + right_context
    padded = pad_edges(feats, lengths, left_context, right_context)  # [B, T + K - 1, F]
    windows = padded.unfold(1, width, 1)  # [B, T, F, K]
    return windows.transpose(2, 3).reshape(batch, frames, width * dim)


@dataclass(frozen=True)
class DnnConfig:
    """Config of :class:`DNN` (defaults: the ``small`` preset).

    ``feat_dim`` and ``num_senones`` come from the data and are filled by ``build_model``.
    """

    feat_dim: int = 0
    num_senones: int = 0
    num_layers: int = 4
    hidden_dim: int = 512
    left_context: int = 5
    right_context: int = 5
    dropout: float = 0.0


DNN_PRESETS: dict[str, DnnConfig] = {
    # Hinton et al. (2015): 8 x 2560 ReLU, 26-frame window, target at the 21st.
    "paper": DnnConfig(num_layers=8, hidden_dim=2560, left_context=20, right_context=5),
    "medium": DnnConfig(num_layers=6, hidden_dim=1024, left_context=5, right_context=5),
    "small": DnnConfig(num_layers=4, hidden_dim=512, left_context=5, right_context=5),
    "tiny": DnnConfig(num_layers=2, hidden_dim=128, left_context=2, right_context=2),
}


class DNN(AcousticModel):
    """Fully-connected ReLU network over a window of spliced frames.

    Args:
        feat_dim: input feature dimension F.
        num_senones: output dimension S.
        num_layers: hidden layers (0: a linear model on the window).
        hidden_dim: units per hidden layer.
        left_context: frames before the target in the input window.
        right_context: frames after the target in the input window.
        dropout: dropout probability after each hidden layer.
    """

    def __init__(
        self,
        feat_dim: int,
        num_senones: int,
        num_layers: int = 4,
        hidden_dim: int = 512,
        left_context: int = 5,
        right_context: int = 5,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if feat_dim < 1 or num_senones < 1:
            raise ValueError(
                f"feat_dim and num_senones must be positive, got {feat_dim} and {num_senones}"
            )
        if num_layers < 0 or hidden_dim < 1:
            raise ValueError(
                f"need num_layers >= 0 and hidden_dim >= 1, got {num_layers} and {hidden_dim}"
            )
        if left_context < 0 or right_context < 0:
            raise ValueError(
                f"left_context and right_context are frame counts (>= 0), got "
                f"{left_context} and {right_context}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.feat_dim = feat_dim
        self.num_senones = num_senones
        self.left_context = left_context
        self.right_context = right_context
        self.frame_context = (left_context, right_context)
        self.dropout = dropout
        in_dim = (left_context + 1 + right_context) * feat_dim
        dims = [in_dim] + [hidden_dim] * num_layers
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        self.output = nn.Linear(dims[-1], num_senones)

    def forward(
        self, feats: Tensor, lengths: Tensor, windows: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Compute senone logits frame by frame.

        Args:
            feats: ``[B, T, F]`` features, padded after each sequence's end; with
                ``windows``, ``[N, K, F]`` spliced windows (see :meth:`forward_windows`).
            lengths: ``[B]`` int64 valid frames per sequence (ignored with ``windows``).
            windows: ``feats`` are one window per frame (the frame-level training
                path, :mod:`asr_kd.train.frames`); a keyword so that DDP and
                ``torch.compile`` wrappers pass it through.

        Returns:
            ``(logits [B, T, S], lengths [B])``. The window of frame ``t`` is frames
            ``t - left_context .. t + right_context`` with edge frames replicated (see
            :func:`splice_frames`), so padding never changes a sequence's logits. With
            ``windows``: ``(logits [N, 1, S], ones [N])``.
        """
        if windows:
            return self.forward_windows(feats)[:, None], torch.ones_like(lengths)
        self.check_inputs(feats, lengths)
        return self._mlp(
            splice_frames(feats, lengths, self.left_context, self.right_context)
        ), lengths

    def forward_windows(self, windows: Tensor) -> Tensor:
        """Senone logits of the centre frames of spliced windows (no splicing here).

        Args:
            windows: ``[N, K, F]``, ``K = left_context + 1 + right_context`` frames per
                window, the target frame at position ``left_context`` (as
                :func:`splice_frames` orders them).

        Returns:
            ``[N, S]`` logits, equal to :meth:`forward`'s for those frames.
        """
        self.check_windows(windows)
        return self._mlp(windows.flatten(1))

    def _mlp(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = F.dropout(F.relu(layer(x)), self.dropout, self.training)
        return self.output(x)

    def flops_per_frame(self) -> int:
        """2 x the multiply-adds of the matrix products for one frame (biases excluded)."""
        return 2 * sum(m.in_features * m.out_features for m in [*self.layers, self.output])
