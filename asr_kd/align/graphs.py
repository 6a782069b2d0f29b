"""Per-utterance training graphs from a tri-phone tree, and Viterbi alignment through them.

kaldi-hmm-gmm 1.1.4 can only build monophone context dependencies (no tree building,
no ``ContextDependency`` from an event map), so its ``TrainingGraphCompiler`` cannot
compile graphs for our tree. This module compiles them the way the ``make-graph``
stage builds HCLG, with the utterance's word sequence as G (``compile-train-graphs``)::

    LG   = det(min(L_disambig o W))       W: linear acceptor of the transcript
    CLG  = compose_context(#N, 3, 1, LG)
    HCLG = add_self_loops(min(rmsymbols(det(Ha o CLG))))

Input labels are the graph's own (phone, HMM state, senone) labels
(:class:`asr_kd.graph.h.HmmLabels`), so an alignment gives each frame its phone, HMM
state and senone. Viterbi alignment is kaldi-hmm-gmm's ``align_utterance_wrapper``
(``gmm-align-compiled``'s beams and retry) over ``DecodableCtc`` with a score per label:
any acoustic model's scaled senone log-likelihoods (a GMM's, or a DNN's posteriors
divided by the priors) align through the same graphs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np

from asr_kd.align.mono import ViterbiOptions
from asr_kd.errors import BadInputError
from asr_kd.graph import fst_ops
from asr_kd.graph.h import HmmLabels, HmmTopo, build_h
from asr_kd.graph.hclg import add_self_loops, compose_clg, compose_hclga, compose_lg
from asr_kd.lang import Lang
from asr_kd.tree import ContextTree


@dataclass
class UttGraph:
    """One utterance's training graph (self-loops and transition weights included).

    Attributes:
        fst: the graph; input label ``k`` is ``labels`` entry ``k - 1``.
        labels: (phone, HMM state, senone) of each input label.
    """

    fst: kaldifst.StdVectorFst
    labels: HmmLabels

    def frame_labels(self, path: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``([T, 2] (phone, state) int32, [T] senone int32)`` of a label path."""
        i = np.asarray(path, np.int64) - 1
        ali = np.stack([self.labels.phone[i], self.labels.state[i]], axis=1).astype(np.int32)
        return ali, self.labels.senone[i].astype(np.int32)


def linear_acceptor(word_ids: Sequence[int]) -> kaldifst.StdVectorFst:
    """The FST accepting exactly ``word_ids`` (input = output labels)."""
    n = len(word_ids)
    ids = np.asarray(word_ids, np.int32)
    final = np.full(n + 1, np.inf, np.float32)
    final[n] = 0.0
    states = np.arange(n, dtype=np.int32)
    arcs = fst_ops.Arcs(0, final, states, ids, ids.copy(), np.zeros(n, np.float32), states + 1)
    return fst_ops.to_fst(arcs)


class GraphCompiler:
    """Compiles training graphs for one lang directory, tree and HMM topologies.

    Args:
        lang: the lang directory (its ``L_disambig.fst`` is read once).
        tree: maps tri-phone HMM states to senones.
        topos: phone -> HMM topology with the transition probabilities to use.
        transition_scale, self_loop_scale: as in ``compile-train-graphs`` (1.0, 0.1).
    """

    def __init__(
        self,
        lang: Lang,
        tree: ContextTree,
        topos: dict[int, HmmTopo],
        transition_scale: float = 1.0,
        self_loop_scale: float = 0.1,
    ) -> None:
        self.lang = lang
        self.L = lang.L_disambig()
        self.tree = tree
        self.topos = topos
        self.transition_scale = transition_scale
        self.self_loop_scale = self_loop_scale

    def compile(self, word_ids: Sequence[int]) -> UttGraph:
        """The training graph of a word sequence.

        Raises:
            BadInputError: no pronunciation of the words can be built with the tree's
                senones (the message says why).
        """
        LG = compose_lg(self.L, linear_acceptor(word_ids))
        CLG, ilabels = compose_clg(LG, list(self.lang.disambig_phones))
        H = build_h(ilabels, self.tree, self.topos, self.lang.disambig_phones,
                    self.transition_scale)  # fmt: skip
        HCLGa = compose_hclga(H, CLG)
        return UttGraph(add_self_loops(HCLGa, H.labels, self.self_loop_scale), H.labels)


def viterbi_path(
    graph: UttGraph, label_scores: np.ndarray, utt_id: str, opts: ViterbiOptions
) -> np.ndarray | None:
    """Forced alignment: the graph label of each frame, or ``None`` when both beams fail.

    Args:
        graph: the utterance's training graph.
        label_scores: ``[T, N]`` scaled log-likelihoods, column ``k - 1`` for label ``k``.
        utt_id: named in kaldi's log.
        opts: beams (the scales are already in the graph and the scores).
    """
    scores = np.ascontiguousarray(label_scores, dtype=np.float32)
    decodable = khg.DecodableCtc(scores)
    config = khg.AlignConfig(beam=opts.beam, retry_beam=opts.retry_beam, careful=False)
    counters = (0, 0, 0, 0.0, 0)
    out = khg.align_utterance_wrapper(
        config, utt_id, opts.acoustic_scale, graph.fst, decodable, *counters
    )
    path = np.asarray(out[5], np.int32)
    return path if len(path) == len(scores) else None


def gmm_log_likelihoods(am: khg.AmDiagGmm, feats: np.ndarray, pdfs: np.ndarray) -> np.ndarray:
    """``[T, len(pdfs)]`` float64 log-likelihood of each frame under each pdf's GMM."""
    x = np.ascontiguousarray(feats, dtype=np.float32)
    out = np.empty((len(x), len(pdfs)))
    for j, p in enumerate(np.asarray(pdfs).tolist()):
        ll = am.get_pdf(int(p)).log_likelihoods_matrix(x).astype(np.float64)
        top = ll.max(axis=1)
        out[:, j] = top + np.log(np.exp(ll - top[:, None]).sum(axis=1))
    return out


def gmm_label_scores(
    am: khg.AmDiagGmm, feats: np.ndarray, labels: HmmLabels, acoustic_scale: float
) -> np.ndarray:
    """``[T, N]`` scaled GMM log-likelihoods of a graph's labels (each senone once)."""
    senones, column = np.unique(labels.senone, return_inverse=True)
    if len(senones) and senones[-1] >= am.num_pdfs:
        raise BadInputError(
            f"the graph uses senone {senones[-1]} but the model has {am.num_pdfs}: "
            "model and tree come from different stages"
        )
    return acoustic_scale * gmm_log_likelihoods(am, feats, senones)[:, column.reshape(-1)]
