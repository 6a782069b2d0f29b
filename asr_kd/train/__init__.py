"""Training of hybrid acoustic models: data, loop, checkpoints, evaluation, DDP.

Typical use::

    config = load_section("conf/small.yaml", "teacher", TrainConfig)
    train_model("data/senones", "data/fbank", "exp/teacher1", config)
    model, info = load_model("exp/teacher1", device="cuda")
    logp = log_posteriors(model, cut, info.normalizer)      # [T, S]

See :mod:`asr_kd.train.loop` for the output contract, resuming and data parallelism.
"""

from asr_kd.train.checkpoint import ModelInfo, check_compatible, load_model
from asr_kd.train.config import TrainConfig
from asr_kd.train.dataset import (
    PAD_TARGET,
    CollateHook,
    FeatureNormalizer,
    SenoneDataset,
    load_training_data,
    make_sampler,
    select_subset,
)
from asr_kd.train.evaluate import evaluate_frame_accuracy, frame_accuracy, log_posteriors
from asr_kd.train.loop import (
    STAGE,
    LossFn,
    NonFiniteLossError,
    StepCallback,
    Trainer,
    cross_entropy,
    train_model,
)

__all__ = [
    "PAD_TARGET",
    "STAGE",
    "CollateHook",
    "FeatureNormalizer",
    "LossFn",
    "ModelInfo",
    "NonFiniteLossError",
    "SenoneDataset",
    "StepCallback",
    "TrainConfig",
    "Trainer",
    "check_compatible",
    "cross_entropy",
    "evaluate_frame_accuracy",
    "frame_accuracy",
    "load_model",
    "load_training_data",
    "log_posteriors",
    "make_sampler",
    "select_subset",
    "train_model",
]
