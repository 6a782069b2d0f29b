"""Acoustic models: frame-level senone classifiers, tensors in and tensors out.

Every model maps features ``[B, T, F]`` and lengths ``[B]`` to senone logits
``[B, T, S]`` at the input frame rate::

    from asr_kd.models import ModelSpec, build_model

    model = build_model(ModelSpec("dnn", preset="paper"), feat_dim=40, num_senones=14000)
    logits, lengths = model(feats, lengths)

``available_models()`` lists the architectures and their presets. The registry is
filled here, explicitly, one ``register_model`` call per architecture.
"""

from asr_kd.models.conformer import CONFORMER_PRESETS, Conformer, ConformerConfig
from asr_kd.models.dnn import DNN, DNN_PRESETS, DnnConfig, splice_frames
from asr_kd.models.lstm import LSTM, LSTM_PRESETS, LstmConfig
from asr_kd.models.registry import (
    AcousticModel,
    ModelConfigError,
    ModelSpec,
    available_models,
    build_model,
    model_config,
    register_model,
)
from asr_kd.models.tdnn import TDNN, TDNN_PRESETS, TdnnConfig

register_model("dnn", DnnConfig, DNN, DNN_PRESETS)
register_model("tdnn", TdnnConfig, TDNN, TDNN_PRESETS)
register_model("lstm", LstmConfig, LSTM, LSTM_PRESETS)
register_model("conformer", ConformerConfig, Conformer, CONFORMER_PRESETS)

__all__ = [
    "DNN",
    "LSTM",
    "TDNN",
    "AcousticModel",
    "Conformer",
    "ConformerConfig",
    "DnnConfig",
    "LstmConfig",
    "ModelConfigError",
    "ModelSpec",
    "TdnnConfig",
    "available_models",
    "build_model",
    "model_config",
    "register_model",
    "splice_frames",
]
