"""Training of hybrid acoustic models: data, loop, checkpoints, evaluation, DDP.

Typical use::

    config = load_section("conf/small.yaml", "teacher", TrainConfig)
    train_model("data/senones", "data/fbank", "exp/teacher1", config)
    model, info = load_model("exp/teacher1", device="cuda")
    logp = log_posteriors(model, cut, info.normalizer)      # [T, S]

See :mod:`asr_kd.train.pipeline` for the output contract and :mod:`asr_kd.train.loop`
for the trainer (N models, resuming, data parallelism).
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
from asr_kd.train.evaluate import (
    evaluate_frame_accuracy,
    frame_accuracy,
    frame_scores,
    log_posteriors,
)
from asr_kd.train.loop import Trainer
from asr_kd.train.members import (
    LossFn,
    Member,
    NonFiniteLossError,
    Objective,
    StepCallback,
    cross_entropy,
)
from asr_kd.train.pipeline import STAGE, train_model, train_models

__all__ = [
    "PAD_TARGET",
    "STAGE",
    "CollateHook",
    "FeatureNormalizer",
    "LossFn",
    "Member",
    "ModelInfo",
    "NonFiniteLossError",
    "Objective",
    "SenoneDataset",
    "StepCallback",
    "TrainConfig",
    "Trainer",
    "check_compatible",
    "cross_entropy",
    "evaluate_frame_accuracy",
    "frame_accuracy",
    "frame_scores",
    "load_model",
    "load_training_data",
    "log_posteriors",
    "make_sampler",
    "select_subset",
    "train_model",
    "train_models",
]
