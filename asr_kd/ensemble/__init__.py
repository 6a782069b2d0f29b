"""Ensembles of teachers: training them, combining their posteriors, scoring them.

Typical use::

    train_ensemble("data/senones", "data/fbank", "exp", EnsembleConfig(num_teachers=4,
                   fused=True), load_section("conf/small.yaml", "teacher", TrainConfig))
    ens = load_system("ensemble:exp/teacher1,exp/teacher2,exp/teacher3,exp/teacher4")
    evaluate_systems({"ensemble": ens}, "data/senones", ["dev"])
    soft = combine_log_probs(torch.stack(per_teacher_log_softmax_at_T), "arithmetic")
"""

from asr_kd.ensemble.combine import METHODS, combine_log_probs, normalise_weights
from asr_kd.ensemble.evaluate import (
    Combo,
    EnsembleTeacher,
    evaluate_systems,
    format_table,
    load_system,
    parse_ensemble_spec,
    teacher_name,
)
from asr_kd.ensemble.fused import EnsembleConfig, seeded_builder, train_ensemble, train_fused

__all__ = [
    "METHODS",
    "Combo",
    "EnsembleConfig",
    "EnsembleTeacher",
    "combine_log_probs",
    "evaluate_systems",
    "format_table",
    "load_system",
    "normalise_weights",
    "parse_ensemble_spec",
    "seeded_builder",
    "teacher_name",
    "train_ensemble",
    "train_fused",
]
