"""Ensembles of teachers: training them and scoring them.

Typical use::

    train_ensemble("data/senones", "data/fbank", "exp", EnsembleConfig(num_teachers=4,
                   fused=True), load_section("conf/small.yaml", "teacher", TrainConfig))
    teachers, combos = load_systems(["exp/teacher1", "exp/teacher2"])
    evaluate_systems(teachers, "data/senones", ["dev"], ["arithmetic", "geometric"])

An ensemble as a teacher (``asr_kd.teachers.EnsembleTeacher``, loaded by
``asr_kd.teachers.load("ensemble:exp/teacher1,exp/teacher2")``) and the combination
arithmetic (``asr_kd.teachers.combine_log_probs``) live in :mod:`asr_kd.teachers`.
"""

from asr_kd.ensemble.evaluate import (
    Combo,
    batch_targets,
    cut_targets,
    evaluate_systems,
    format_table,
    load_systems,
    teacher_name,
)
from asr_kd.ensemble.fused import EnsembleConfig, seeded_builder, train_ensemble, train_fused

__all__ = [
    "Combo",
    "EnsembleConfig",
    "batch_targets",
    "cut_targets",
    "evaluate_systems",
    "format_table",
    "load_systems",
    "seeded_builder",
    "teacher_name",
    "train_ensemble",
    "train_fused",
]
