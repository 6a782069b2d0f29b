"""Conformer acoustic model at the full frame rate (no subsampling).

A linear projection to ``d_model``, the layers of ``torchaudio.models.Conformer`` and a
linear senone layer. Hybrid models predict one senone per alignment frame, so there is
no convolutional subsampling. The forward pass walks torchaudio's layers itself (the
parameters and their names are torchaudio's) to zero the padding before each depthwise
convolution: torchaudio masks padding only in self-attention, so its convolutions would
otherwise mix padding into the last frames of shorter sequences in a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torchaudio
from torch import Tensor, nn

from asr_kd.models.registry import AcousticModel, lengths_to_mask, masked_batch_norm

__all__ = ["ConformerConfig", "Conformer", "CONFORMER_PRESETS"]


@dataclass(frozen=True)
class ConformerConfig:
    """Config of :class:`Conformer` (defaults: the ``small`` preset).

    ``feat_dim`` and ``num_senones`` come from the data and are filled by ``build_model``.
    """

    feat_dim: int = 0
    num_senones: int = 0
    d_model: int = 144
    num_heads: int = 4
    ffn_dim: int = 576
    num_layers: int = 6
    kernel_size: int = 31
    dropout: float = 0.1


CONFORMER_PRESETS: dict[str, ConformerConfig] = {
    "medium": ConformerConfig(d_model=256, ffn_dim=1024, num_layers=12),
    "small": ConformerConfig(),
    "tiny": ConformerConfig(d_model=32, num_heads=2, ffn_dim=64, num_layers=2, kernel_size=7),
}


class Conformer(AcousticModel):
    """Conformer encoder (torchaudio) between an input and an output projection.

    Args:
        feat_dim: input feature dimension F.
        num_senones: output dimension S.
        d_model: model dimension (divisible by ``num_heads``).
        num_heads: attention heads per layer.
        ffn_dim: hidden units of each feed-forward module.
        num_layers: conformer layers.
        kernel_size: odd kernel size of the depthwise convolutions.
        dropout: dropout probability inside the layers.
    """

    def __init__(
        self,
        feat_dim: int,
        num_senones: int,
        d_model: int = 144,
        num_heads: int = 4,
        ffn_dim: int = 576,
        num_layers: int = 6,
        kernel_size: int = 31,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if min(feat_dim, num_senones, d_model, num_heads, ffn_dim, num_layers) < 1:
            raise ValueError(
                "feat_dim, num_senones, d_model, num_heads, ffn_dim and num_layers must be "
                f"positive, got {feat_dim}, {num_senones}, {d_model}, {num_heads}, {ffn_dim}, "
                f"{num_layers}"
            )
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.feat_dim = feat_dim
        self.num_senones = num_senones
        self.input = nn.Linear(feat_dim, d_model)
        self.encoder = torchaudio.models.Conformer(
            input_dim=d_model,
            num_heads=num_heads,
            ffn_dim=ffn_dim,
            num_layers=num_layers,
            depthwise_conv_kernel_size=kernel_size,
            dropout=dropout,
        )
        self.output = nn.Linear(d_model, num_senones)

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Compute senone logits.

        Args:
            feats: ``[B, T, F]`` features, padded after each sequence's end.
            lengths: ``[B]`` int64 valid frames per sequence.

        Returns:
            ``(logits [B, T, S], lengths [B])``. Attention ignores padded keys and the
            convolutions see zeros past each sequence's end, as for the sequence alone.
        """
        self.check_inputs(feats, lengths)
        valid = lengths_to_mask(lengths.to(feats.device), feats.size(1))  # [B, T]
        x = self.input(feats).transpose(0, 1)  # [T, B, D]
        for layer in self.encoder.conformer_layers:
            x = _layer_forward(layer, x, valid)
        return self.output(x.transpose(0, 1)), lengths

    def flops_per_frame(self, seq_len: int = 500) -> int:
        """Approximate FLOPs of one frame, for utterances of ``seq_len`` frames (attention).

        Counts the matrix products (2 x multiply-adds): per layer two feed-forward modules,
        the attention projections, attention scores and weighted sums over ``seq_len``
        frames, and the convolution module; norms and activations are left out.
        """
        d = self.input.out_features
        macs = self.input.in_features * d + d * self.num_senones
        for layer in self.encoder.conformer_layers:
            ffn = layer.ffn1.sequential[1].out_features
            kernel = layer.conv_module.sequential[2].kernel_size[0]
            macs += 2 * 2 * d * ffn  # two feed-forward modules
            macs += 4 * d * d + 2 * seq_len * d  # q, k, v, out; scores and weighted sum
            macs += 3 * d * d + d * kernel  # pointwise (d -> 2d), depthwise, pointwise
        return 2 * macs


def _layer_forward(layer: nn.Module, x: Tensor, valid: Tensor) -> Tensor:
    """torchaudio's ``ConformerLayer.forward`` with padding-aware convolution.

    Args:
        layer: a ``torchaudio.models.conformer.ConformerLayer``.
        x: ``[T, B, D]``.
        valid: ``[B, T]`` bool, true at valid frames.

    Returns:
        ``[T, B, D]``.
    """
    x = x + 0.5 * layer.ffn1(x)
    if layer.convolution_first:
        x = x + _conv_forward(layer.conv_module, x, valid)
    y = layer.self_attn_layer_norm(x)
    y, _ = layer.self_attn(y, y, y, key_padding_mask=~valid, need_weights=False)
    x = x + layer.self_attn_dropout(y)
    if not layer.convolution_first:
        x = x + _conv_forward(layer.conv_module, x, valid)
    x = x + 0.5 * layer.ffn2(x)
    return layer.final_layer_norm(x)


def _conv_forward(module: nn.Module, x: Tensor, valid: Tensor) -> Tensor:
    """torchaudio's convolution module, zeroing padding before the depthwise convolution.

    Args:
        module: a ``torchaudio.models.conformer._ConvolutionModule``.
        x: ``[T, B, D]``.
        valid: ``[B, T]`` bool.

    Returns:
        ``[T, B, D]``, the module's output (without the residual).
    """
    pointwise_in, glu, depthwise, norm, activation, pointwise_out, dropout = module.sequential
    y = module.layer_norm(x.transpose(0, 1)).transpose(1, 2)  # [B, D, T]
    y = glu(pointwise_in(y)).masked_fill(~valid.unsqueeze(1), 0.0)
    y = depthwise(y).transpose(1, 2)  # [B, T, D]
    y = masked_batch_norm(norm, y, valid)  # built with BatchNorm (use_group_norm=False)
    y = dropout(pointwise_out(activation(y).transpose(1, 2)))  # [B, D, T]
    return y.permute(2, 0, 1)
