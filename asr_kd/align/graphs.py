"""Per-utterance training graphs from a tri-phone tree, and Viterbi alignment through them.

kaldi-hmm-gmm 1.1.4 can only build monophone context dependencies (no tree building,
no ``ContextDependency`` from an event map), so its ``TrainingGraphCompiler`` cannot
compile graphs for our tree. This module compiles them the way the ``make-graph``
stage builds HCLG, with the utterance's word sequence as G (``compile-train-graphs``)::

    LG   = min(det(L o W))                W: the transcript, built directly
                                          (:func:`word_sequence_fst`)
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

import math
from collections.abc import Sequence
from dataclasses import dataclass

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np

from asr_kd.align.shard import ViterbiOptions
from asr_kd.errors import BadInputError
from asr_kd.graph import fst_ops
from asr_kd.graph.h import HmmLabels, HmmTopo, build_h
from asr_kd.graph.hclg import add_self_loops, compose_clg, compose_hclga
from asr_kd.lang import Lang
from asr_kd.stage import read_marker
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


def word_sequence_fst(
    prons: Sequence[Sequence[tuple[int, ...]]],
    word_ids: Sequence[int],
    sil_phone: int,
    sil_prob: float,
    inter_word_silence: bool,
) -> kaldifst.StdVectorFst:
    """L o W for one transcript: its words' pronunciations in order, optional silence.

    The same paths and weights as the lang's L composed with the transcript: silence
    with probability ``sil_prob`` at the start, after each word and at the end;
    without ``inter_word_silence`` only at the start and the end (for speech known
    to run on without pauses). Acyclic, so it needs no disambiguation symbols.

    Args:
        prons: per word, its pronunciations (phone ids).
        word_ids: per word, its id (the output label on its first phone).
        sil_phone: the optional-silence phone.
        sil_prob: the lang's optional-silence probability, in ``[0, 1)``.
        inter_word_silence: allow silence between words.
    """
    rows: list[tuple[int, int, int, int, float]] = []  # src, dst, ilabel, olabel, cost
    num_states = 1

    def new_state() -> int:
        nonlocal num_states
        num_states += 1
        return num_states - 1

    def optional_silence(src: int, prob: float) -> int:
        dst = new_state()
        if prob <= 0.0:
            rows.append((src, dst, 0, 0, 0.0))
            return dst
        rows.append((src, dst, 0, 0, -math.log1p(-prob)))
        rows.append((src, dst, sil_phone, 0, -math.log(prob)))
        return dst

    state = optional_silence(0, sil_prob)
    for i, (alternatives, word) in enumerate(zip(prons, word_ids, strict=True)):
        end = new_state()
        for pron in alternatives:
            src = state
            for j, phone in enumerate(pron):
                dst = end if j == len(pron) - 1 else new_state()
                rows.append((src, dst, phone, word if j == 0 else 0, 0.0))
                src = dst
        last = i == len(prons) - 1
        state = optional_silence(end, sil_prob if inter_word_silence or last else 0.0)
    final = np.full(num_states, np.inf, np.float32)
    final[state] = 0.0
    a = np.array([r[:4] for r in rows], np.int32).reshape(-1, 4)
    cost = np.array([r[4] for r in rows], np.float32)
    fst = fst_ops.to_fst(fst_ops.Arcs(0, final, a[:, 0], a[:, 2], a[:, 3], cost, a[:, 1]))
    kaldifst.determinize_star(fst, use_log=True)
    kaldifst.minimize_encoded(fst)
    kaldifst.arcsort(fst, sort_type="ilabel")
    return fst


class GraphCompiler:
    """Compiles training graphs for one lang directory, tree and HMM topologies.

    Args:
        lang: the lang directory (its ``L_disambig.fst`` is read once).
        tree: maps tri-phone HMM states to senones.
        topos: phone -> HMM topology with the transition probabilities to use.
        transition_scale, self_loop_scale: as in ``compile-train-graphs`` (1.0, 0.1).
        sil_prob: optional-silence probability (see :func:`word_sequence_fst`);
            ``None``: the lang directory's.
        inter_word_silence: allow optional silence between words, not only at the
            start and end.
    """

    def __init__(
        self,
        lang: Lang,
        tree: ContextTree,
        topos: dict[int, HmmTopo],
        transition_scale: float = 1.0,
        self_loop_scale: float = 0.1,
        sil_prob: float | None = None,
        inter_word_silence: bool = True,
    ) -> None:
        self.lang = lang
        if sil_prob is None:
            sil_prob = read_marker(lang.dir).get("config", {}).get("sil_prob", 0.5)
        self.sil_prob = sil_prob
        self.inter_word_silence = inter_word_silence
        self.prons = {
            lang.words[w]: [tuple(lang.phones[p] for p in pron) for pron in prons]
            for w, prons in lang.lexicon.items()
        }
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
        LG = word_sequence_fst([self.prons[w] for w in word_ids], word_ids,
                               self.lang.optional_silence, self.sil_prob,
                               self.inter_word_silence)  # fmt: skip
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


def beam_failure(opts: ViterbiOptions) -> str:
    """Why an utterance did not align (for ``failed_<split>.txt``)."""
    return f"no alignment within beam {opts.beam} or retry beam {opts.retry_beam}"


class GmmScorer:
    """Log-likelihoods of frames under the pdfs of an ``AmDiagGmm``.

    kaldi-hmm-gmm gives each Gaussian's log-likelihood (``DiagGmm.log_likelihoods_matrix``,
    weights included); the log-sum-exp over each pdf's Gaussians is one vectorised step
    for all pdfs at once.
    """

    def __init__(self, am: khg.AmDiagGmm) -> None:
        self.am = am
        self.sizes = np.array([am.num_gauss_in_pdf(p) for p in range(am.num_pdfs)], np.int64)

    def __call__(self, feats: np.ndarray, pdfs: np.ndarray) -> np.ndarray:
        """``[T, len(pdfs)]`` float64 log-likelihood of each frame under each pdf."""
        pdfs = np.asarray(pdfs, np.int64)
        if len(pdfs) and (pdfs.min() < 0 or pdfs.max() >= len(self.sizes)):
            raise BadInputError(
                f"pdf {int(pdfs.max())} asked for, but the model has {len(self.sizes)}: "
                "model and tree come from different stages"
            )
        x = np.ascontiguousarray(feats, dtype=np.float32)
        sizes = self.sizes[pdfs]
        starts = np.cumsum(sizes) - sizes
        ll = np.empty((len(x), int(sizes.sum())), np.float64)
        for p, a, n in zip(pdfs.tolist(), starts.tolist(), sizes.tolist(), strict=True):
            ll[:, a : a + n] = self.am.get_pdf(p).log_likelihoods_matrix(x)
        top = np.maximum.reduceat(ll, starts, axis=1)
        total = np.add.reduceat(np.exp(ll - np.repeat(top, sizes, axis=1)), starts, axis=1)
        return top + np.log(total)

    def label_scores(self, feats: np.ndarray, labels: HmmLabels, scale: float) -> np.ndarray:
        """``[T, N]`` scaled log-likelihoods of a graph's labels (each senone once)."""
        senones, column = np.unique(labels.senone, return_inverse=True)
        return scale * self(feats, senones)[:, column.reshape(-1)]
