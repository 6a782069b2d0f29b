"""Phonetic decision tree: tri-phone HMM states -> senones (tied states), Kaldi-style.

Typical use::

    stats = accumulate_stats((ali, feats) for ali, feats in utterances)
    tree = build_tree(stats, phones, TreeConfig(num_leaves=500))
    tree.save("exp/tree/tree.json")
    targets = tree.senones_for_alignment(ali)          # [T] int32
    write_priors("exp/tree/priors.json", senone_priors(all_targets, tree.num_senones))
"""

from asr_kd.lang.phone_classes import ARPABET_CLASSES
from asr_kd.tree.build import TreeConfig, build_tree, variance_floor
from asr_kd.tree.context_tree import ContextTree, UnknownContextError
from asr_kd.tree.priors import log_priors, read_priors, senone_priors, write_priors
from asr_kd.tree.questions import Question
from asr_kd.tree.stats import TreeStats, accumulate_stats, frame_contexts

__all__ = [
    "ARPABET_CLASSES",
    "ContextTree",
    "Question",
    "TreeConfig",
    "TreeStats",
    "UnknownContextError",
    "accumulate_stats",
    "build_tree",
    "frame_contexts",
    "log_priors",
    "read_priors",
    "senone_priors",
    "variance_floor",
    "write_priors",
]
