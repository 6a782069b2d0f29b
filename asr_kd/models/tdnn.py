"""Kaldi-style time-delay neural network (TDNN, Peddinti et al. 2015).

Each layer splices its input at a set of frame offsets, e.g. ``(-1, 2)`` for frames
``t - 1`` and ``t + 2`` (a dilated 1-D convolution), then applies an affine transform,
ReLU and batch normalisation (Kaldi's ``relu-batchnorm-layer``). As in Kaldi, the input
is extended once by the network's total context, replicating the first and last frame,
and every layer is a "valid" convolution, so each output frame depends on input frames
``t - left .. t + right`` only and the output keeps the input frame rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from asr_kd.models.registry import AcousticModel, masked_batch_norm, pad_edges

__all__ = ["TDNN", "TDNN_PRESETS", "TdnnConfig"]

Offsets = tuple[int, ...]


@dataclass(frozen=True)
class TdnnConfig:
    """Config of :class:`TDNN` (defaults: the ``small`` preset).

    ``feat_dim`` and ``num_senones`` come from the data and are filled by ``build_model``.
    """

    feat_dim: int = 0
    num_senones: int = 0
    contexts: tuple[Offsets, ...] = ((-2, -1, 0, 1, 2), (-1, 2), (-3, 3), (-3, 3), (0,))
    hidden_dim: int = 256
    dropout: float = 0.0


TDNN_PRESETS: dict[str, TdnnConfig] = {
    # Kaldi swbd tdnn_7b-like layout: 7 layers, 13 frames of context either side.
    "medium": TdnnConfig(
        contexts=(
            (-2, -1, 0, 1, 2),
            (-1, 0, 1),
            (-1, 0, 1),
            (-3, 0, 3),
            (-3, 0, 3),
            (-3, 0, 3),
            (0,),
        ),
        hidden_dim=1024,
    ),
    # Peddinti et al. (2015)-like sub-sampled offsets: 9 frames left, 10 right.
    "small": TdnnConfig(),
    "tiny": TdnnConfig(contexts=((-1, 0, 1), (-2, 2)), hidden_dim=64),
}


class TDNN(AcousticModel):
    """Stack of spliced affine + ReLU + BatchNorm layers and a senone output layer.

    Args:
        feat_dim: input feature dimension F.
        num_senones: output dimension S.
        contexts: per layer, strictly increasing frame offsets with ``min <= 0 <= max``.
        hidden_dim: units per layer.
        dropout: dropout probability after each layer.
    """

    def __init__(
        self,
        feat_dim: int,
        num_senones: int,
        contexts: tuple[Offsets, ...] = TdnnConfig.contexts,
        hidden_dim: int = 256,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if feat_dim < 1 or num_senones < 1 or hidden_dim < 1:
            raise ValueError(
                f"feat_dim, num_senones and hidden_dim must be positive, got {feat_dim}, "
                f"{num_senones} and {hidden_dim}"
            )
        if not contexts:
            raise ValueError("contexts must list at least one layer's offsets, e.g. [[-1, 0, 1]]")
        for offsets in contexts:
            ok = all(isinstance(o, int) for o in offsets) and len(offsets) > 0
            if (
                not ok
                or list(offsets) != sorted(set(offsets))
                or not offsets[0] <= 0 <= offsets[-1]
            ):
                raise ValueError(
                    f"each layer's context must be strictly increasing integer offsets with "
                    f"min <= 0 <= max, e.g. [-3, 0, 3] or [-1, 2]; got {list(offsets)}"
                )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.feat_dim = feat_dim
        self.num_senones = num_senones
        self.contexts = tuple(tuple(o) for o in contexts)
        self.frame_context = (
            sum(-o[0] for o in self.contexts),
            sum(o[-1] for o in self.contexts),
        )
        self.dropout = dropout
        dims = [feat_dim] + [hidden_dim] * len(contexts)
        self.affines = nn.ModuleList(
            nn.Linear(len(offsets) * d_in, d_out)
            for offsets, d_in, d_out in zip(self.contexts, dims[:-1], dims[1:], strict=True)
        )
        self.norms = nn.ModuleList(nn.BatchNorm1d(hidden_dim) for _ in contexts)
        self.output = nn.Linear(hidden_dim, num_senones)

    def forward(
        self, feats: Tensor, lengths: Tensor, windows: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Compute senone logits.

        Args:
            feats: ``[B, T, F]`` features, padded after each sequence's end; with
                ``windows``, ``[N, K, F]`` windows (see :meth:`forward_windows`).
            lengths: ``[B]`` int64 valid frames per sequence (ignored with ``windows``).
            windows: ``feats`` are one window per frame (the frame-level training
                path, :mod:`asr_kd.train.frames`); a keyword so that DDP and
                ``torch.compile`` wrappers pass it through.

        Returns:
            ``(logits [B, T, S], lengths [B])``. Context before frame 0 and past the last
            valid frame is that frame replicated, so padding never changes a sequence's
            logits (in training mode, BatchNorm statistics skip padding too). With
            ``windows``: ``(logits [N, 1, S], ones [N])``.
        """
        if windows:
            return self.forward_windows(feats)[:, None], torch.ones_like(lengths)
        self.check_inputs(feats, lengths)
        left, right = self.frame_context
        x = pad_edges(feats, lengths, left, right)  # [B, left + T + right, F]
        positions = torch.arange(x.size(1), device=x.device)
        ends = lengths.to(x.device)

        def valid(frames: int, start: int, right: int) -> Tensor:
            # Frames inside the edge-extended sequence count for BatchNorm statistics.
            return positions[:frames].unsqueeze(0) + start < (ends + right).unsqueeze(1)

        return self._layers(x, -left, right, valid), lengths

    def forward_windows(self, windows: Tensor) -> Tensor:
        """Senone logits of the centre frames of windows of the network's whole context.

        Every layer runs as a "valid" convolution over the window, so the window of
        ``K = left + 1 + right`` frames (``frame_context``) shrinks to its centre frame:
        a TDNN layer's outputs are recomputed for every window they reach (about
        ``sum of the layers' output frames per window`` times the per-frame cost of
        :meth:`forward`, the price of shuffling single frames). In training mode the
        BatchNorm statistics run over all those frames of all windows.

        Args:
            windows: ``[N, K, F]``, the target frame at position ``left``.

        Returns:
            ``[N, S]`` logits, equal to :meth:`forward`'s for those frames in eval mode.
        """
        self.check_windows(windows)
        left, right = self.frame_context
        return self._layers(windows, -left, right, None)[:, 0]

    def _layers(self, x: Tensor, start: int, right: int, valid) -> Tensor:
        """Run the layers on ``x`` ``[B, L, F]`` (input frame ``start`` at ``x[:, 0]``,
        ``right`` frames of context after the last output frame); ``valid(frames, start,
        right)`` masks the BatchNorm statistics (``None``: every frame counts)."""
        for offsets, affine, norm in zip(self.contexts, self.affines, self.norms, strict=True):
            span = offsets[-1] - offsets[0]
            frames = x.size(1) - span
            x = torch.cat([x[:, o - offsets[0] : o - offsets[0] + frames] for o in offsets], -1)
            start -= offsets[0]
            right -= offsets[-1]
            x = F.relu(affine(x))
            mask = None if valid is None else valid(frames, start, right)
            if mask is None:
                x = norm(x.reshape(-1, x.size(-1))).view_as(x)
            else:
                x = masked_batch_norm(norm, x, mask)
            x = F.dropout(x, self.dropout, self.training)
        return self.output(x)

    def flops_per_frame(self) -> int:
        """2 x the multiply-adds of the matrix products for one frame (biases excluded)."""
        return 2 * sum(m.in_features * m.out_features for m in [*self.affines, self.output])
