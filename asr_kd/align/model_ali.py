"""Forced alignment with any acoustic model (Kaldi's ``steps/nnet3/align.sh``).

A DNN, an ensemble, a plug-in teacher or stored posteriors (anything
:func:`asr_kd.teachers.load` takes) aligns every utterance through the per-utterance
training graphs of the senone tree it predicts (:mod:`asr_kd.align.graphs`), scoring
label ``k`` with the pseudo log-likelihood ``log p(s|x) - log p(s)`` of its senone,
times the acoustic scale, as ``align.sh`` does with ``--acoustic-scale 0.1``. The
transition probabilities are the lang topology's (a network has no transition model).

The output has the layout of every alignment stage (:mod:`asr_kd.align.align`); its
cuts are the model's input feature cuts, each with the ``mono_ali`` (phone, state)
array.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lhotse.cut import Cut

from asr_kd.align.graphs import GraphCompiler, beam_failure, viterbi_path
from asr_kd.align.shard import (
    ShardResult,
    ViterbiOptions,
    load_lang_fst,
    min_lengths,
    transcript_ids,
)
from asr_kd.errors import BadInputError
from asr_kd.graph.h import parse_topology
from asr_kd.stage import MARKER, require_done, require_file
from asr_kd.tree import ContextTree
from asr_kd.tree.context_tree import tree_id
from asr_kd.tree.priors import read_priors

TARGETS_STAGE = "senone-targets"


@dataclass(frozen=True)
class AlignmentModel:
    """What a shard needs to align with a model (picklable: the model loads in the worker).

    Attributes:
        spec: the teacher spec (``exp/baseline``, ``ensemble:...``, a teacher file).
        tree_json: the tree the model's senones come from.
        tree_id: its digest (what the model records, :func:`tree_id`).
        log_priors: ``[S]`` decoder log-priors of the senones.
        topo_text: the lang's HMM topology.
        phones: the lang's phone table.
        device: where a network runs.
    """

    spec: str
    tree_json: str
    tree_id: str
    log_priors: np.ndarray
    topo_text: str
    phones: dict[str, int]
    device: str = "cpu"

    @classmethod
    def from_senone_dir(
        cls, spec: str, senone_dir: Path, topo_text: str, phones: dict[str, int], device: str
    ) -> AlignmentModel:
        """The model with the tree and priors of the ``senone-targets`` output it learnt.

        Raises:
            MissingInputError: ``senone_dir`` is not a finished ``senone-targets`` output.
        """
        from asr_kd.decode.base import decoder_log_priors

        senone_dir = require_done(senone_dir, TARGETS_STAGE)
        tree_path = require_file(senone_dir / "tree.json", TARGETS_STAGE)
        counts = read_priors(require_file(senone_dir / "priors.json", TARGETS_STAGE))
        return cls(spec, tree_path.read_text(), tree_id(tree_path), decoder_log_priors(counts),
                   topo_text, dict(phones), device)  # fmt: skip

    @functools.cached_property
    def tree(self) -> ContextTree:
        return ContextTree._from_doc(json.loads(self.tree_json))


@functools.lru_cache(maxsize=2)
def _teacher(spec: str, tree: str, num_senones: int, frame_shift: float | None, device: str):
    """The loaded model, once per worker process."""
    from asr_kd.teachers import load

    return load(spec, tree, num_senones, frame_shift, device)


@dataclass(frozen=True)
class ModelShardJob:
    """One shard of cuts to align with a model (see :func:`run_model_shard`)."""

    cuts: list[Cut]
    model: AlignmentModel
    lang_dir: str
    viterbi: ViterbiOptions = ViterbiOptions()
    oov: str = "skip"
    inter_word_silence: bool = True


def run_model_shard(job: ModelShardJob) -> ShardResult:
    """Align a shard's cuts with the model; ``alignments`` are ``[T, 2]`` (phone, state).

    ``log_like`` sums the pseudo log-likelihoods along the alignments.

    Raises:
        BadInputError: the model's outputs disagree with the cut's length or the tree.
    """
    model, v = job.model, job.viterbi
    lang, _ = load_lang_fst(job.lang_dir, os.stat(Path(job.lang_dir) / MARKER).st_mtime_ns)
    tree = model.tree
    shift = job.cuts[0].frame_shift if job.cuts else None
    teacher = _teacher(model.spec, model.tree_id, tree.num_senones, shift, model.device)
    compiler = GraphCompiler(lang, tree, parse_topology(model.topo_text), v.transition_scale,
                             v.self_loop_scale, None, job.inter_word_silence)  # fmt: skip
    min_len = min_lengths(lang)
    failed: dict[str, str] = {}
    alignments: dict[str, np.ndarray] = {}
    log_like, frames = 0.0, 0
    for cut in job.cuts:
        ids, why = transcript_ids(cut, lang, min_len, job.oov)
        if why is None:
            try:
                graph = compiler.compile(ids)
            except BadInputError as e:
                why = f"no training graph: {e}"
        if why is not None:
            failed[cut.id] = why
            continue
        log_likes = np.asarray(teacher.log_probs(cut), np.float64) - model.log_priors
        if log_likes.shape != (cut.num_frames, tree.num_senones):
            raise BadInputError(
                f"cut {cut.id}: the model gives scores of shape {list(log_likes.shape)}, "
                f"expected [{cut.num_frames}, {tree.num_senones}] (frames, senones)"
            )
        scores = v.acoustic_scale * log_likes[:, graph.labels.senone]
        path = viterbi_path(graph, scores, cut.id, v)
        if path is None:
            failed[cut.id] = beam_failure(v)
            continue
        ali, senones = graph.frame_labels(path)
        alignments[cut.id] = ali
        log_like += float(log_likes[np.arange(len(senones)), senones].sum())
        frames += len(senones)
    return ShardResult(alignments, failed, log_like, frames, None, np.zeros(0))


def check_tree(model: AlignmentModel, phones: dict[str, int]) -> None:
    """Refuse a tree built with another phone table than the lang directory's."""
    real = {p: i for p, i in model.tree.phones.items() if not p.startswith("#")}
    if real != {p: i for p, i in phones.items() if not p.startswith("#")}:
        raise BadInputError(
            "the model's tree was built with another phones.txt than the lang directory; "
            "align with the lang directory the tree was built with"
        )
