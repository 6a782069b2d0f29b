"""Teachers: anything that gives per-frame senone log-probabilities for a cut.

Every kind is behind the :class:`Teacher` protocol and loaded by one function::

    load("exp/teacher1/model.pt")                 # a model trained by 'asr-kd train'
    load("conf/my_teacher.yaml")                  # a user's nn.Module, posteriors, an ensemble
    load("ensemble:exp/teacher1,exp/teacher2:geometric")
    load("exp/specialists")                       # a generalist and its specialists
    load(["exp/teacher1", "exp/teacher2"], combination="arithmetic", weights=[2, 1])
    load({"posteriors": "post/dev.scp", "domain": "log",
          "tree_id": "3f2a...", "num_senones": 2000})

A teacher file (YAML or JSON; relative paths are relative to the file) is one of::

    # your own nn.Module: forward(feats [B, T, F], lengths [B]) -> (logits [B, T, S], lengths)
    class: mypkg.models:MyModel         # importable module:Class
    kwargs: {feat_dim: 80, num_senones: 2000}
    checkpoint: my_model.pt             # its state_dict (torch.save)
    state_dict_key: null                # or the key holding it, e.g. "model"
    tree_id: 3f2a...                    # the senone inventory it predicts
    num_senones: 2000
    frame_shift: 0.01                   # seconds; the input features' frame shift
    feature_stats: ../data/fbank        # compute-features dir, stats JSON, {mean, var};
                                        # null: the network takes unnormalised features

    # precomputed posteriors, one [T, S] matrix per cut id
    posteriors: post/dev.scp            # Kaldi .scp or .ark (kaldiio), an .npz keyed by
    domain: log                         # cut id, or a dir of <cut_id>.npy;
    tree_id: 3f2a...                    # log: log-probabilities; prob: probabilities
    num_senones: 2000
    frame_shift: 0.01

    # a checkpoint, named
    model: ../exp/teacher1/model.pt

    # an ensemble
    kind: ensemble
    members: [../exp/teacher1, ../exp/teacher2, my_teacher.yaml]
    method: arithmetic                  # or geometric
    weights: [2, 1, 1]                  # optional

``log_probs(cut, T)`` returns ``log_softmax(z / T)`` for a network and the renormalised
``p ** (1 / T)`` for posteriors (the same thing, since ``log p = z`` up to a constant);
an ensemble combines its members' distributions at ``T``
(:func:`~asr_kd.teachers.combine.combine_log_probs`).

Modules: :mod:`~.base` (the protocol and shared checks), :mod:`~.neural`,
:mod:`~.posteriors`, :mod:`~.combine` and :mod:`~.ensemble`, :mod:`~.specialist_combine`
and :mod:`~.specialists` (a ``train-specialists`` output as one teacher), :mod:`~.specs`
(what a spec path names), :mod:`~.loader` (:func:`load`).
"""

from asr_kd.teachers.base import Teacher, check_finite, check_teacher, pad_log_probs
from asr_kd.teachers.combine import METHODS, combine_log_probs, normalise_weights
from asr_kd.teachers.ensemble import CUTS_KEY, EnsembleTeacher, attach_cuts, member_log_probs
from asr_kd.teachers.loader import load
from asr_kd.teachers.neural import NeuralTeacher
from asr_kd.teachers.posteriors import PosteriorTeacher
from asr_kd.teachers.specialist_combine import (
    active_specialists,
    combine_objective,
    kl_combine,
    make_specialist,
    output_layer,
)
from asr_kd.teachers.specialists import SpecialistSystem
from asr_kd.teachers.specs import (
    ENSEMBLE_PREFIX,
    SPECIALISTS_FILE,
    TEACHER_FILE_SUFFIXES,
    is_specialist_dir,
    parse_ensemble_spec,
    teacher_digests,
    teacher_file,
    teacher_model_file,
)

__all__ = [
    "CUTS_KEY",
    "ENSEMBLE_PREFIX",
    "METHODS",
    "SPECIALISTS_FILE",
    "TEACHER_FILE_SUFFIXES",
    "EnsembleTeacher",
    "NeuralTeacher",
    "PosteriorTeacher",
    "SpecialistSystem",
    "Teacher",
    "active_specialists",
    "attach_cuts",
    "check_finite",
    "check_teacher",
    "combine_log_probs",
    "combine_objective",
    "is_specialist_dir",
    "kl_combine",
    "load",
    "make_specialist",
    "member_log_probs",
    "normalise_weights",
    "output_layer",
    "pad_log_probs",
    "parse_ensemble_spec",
    "teacher_digests",
    "teacher_file",
    "teacher_model_file",
]
