"""Knowledge distillation: the loss, soft targets (on the fly or cached top-k), the stage.

Typical use::

    config = load_section("conf/small.yaml", "distill", DistillConfig)
    train = load_section("conf/small.yaml", "student", TrainConfig)
    cache_soft_targets("data/senones", "data/fbank", "exp/soft_targets", config)
    distill("data/senones", "data/fbank", "exp/student", config, train)

See :mod:`asr_kd.distill.loss` for the loss, :mod:`asr_kd.distill.cache` for the cache
contract, :mod:`asr_kd.distill.train` for the stage; the teachers (one
``asr_kd.teachers.EnsembleTeacher``) come from :func:`asr_kd.teachers.load`.
"""

from asr_kd.distill.cache import (
    CACHE_STAGE,
    CachedSoftTargets,
    cache_soft_targets,
    check_cache,
    read_cache_info,
    top_k,
)
from asr_kd.distill.loss import SparseTargets, kd_loss
from asr_kd.distill.train import (
    DistillConfig,
    DistillLoss,
    distill,
    student_builder,
    student_spec,
)

__all__ = [
    "CACHE_STAGE",
    "CachedSoftTargets",
    "DistillConfig",
    "DistillLoss",
    "SparseTargets",
    "cache_soft_targets",
    "check_cache",
    "distill",
    "kd_loss",
    "read_cache_info",
    "student_builder",
    "student_spec",
    "top_k",
]
