"""The per-utterance work of the GMM stages, in shards: training graphs, alignments and
statistics of a list of cuts.

A :class:`ShardJob` (picklable) names a shard's cuts, the model and what to do:
align evenly (the flat start), re-align with Viterbi or take given alignments; then
accumulate the GMM statistics (:class:`GmmStats`) along the alignments.
:func:`run_shard` runs one on an executor's worker; ``train-mono``
(:mod:`asr_kd.align.mono`), ``train-tri`` (:mod:`asr_kd.align.tri`) and ``align``
(:mod:`asr_kd.align.align`) share it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np
from lhotse.cut import Cut

from asr_kd.data.features import FeatureStats
from asr_kd.errors import BadInputError
from asr_kd.lang import Lang
from asr_kd.stage import MARKER

if TYPE_CHECKING:
    from asr_kd.align.mono import MonoModel


@dataclass(frozen=True)
class ViterbiOptions:
    """``gmm-align-compiled``'s options, as a shard needs them."""

    beam: float = 10.0
    retry_beam: float = 40.0
    transition_scale: float = 1.0
    self_loop_scale: float = 0.1
    acoustic_scale: float = 0.1
    boost_silence: float = 1.0

    @classmethod
    def of(cls, config: Any) -> ViterbiOptions:
        """The options of a config with the same attribute names (training or align)."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})


def topology(text: str) -> khg.HmmTopology:
    """The HMM topology of a lang directory's ``topo`` text."""
    topo = khg.HmmTopology()
    topo.read(text)
    return topo


@dataclass
class GmmStats:
    """Zeroth, first and second order statistics per pdf and Gaussian (float64).

    ``xx`` (full second-order statistics ``[g, D, D]`` per pdf) is kept only where
    asked for: the MLLT estimation needs it (:mod:`asr_kd.align.lda_mllt`).
    """

    occ: list[np.ndarray]
    x: list[np.ndarray]
    x2: list[np.ndarray]
    xx: list[np.ndarray] | None = None

    @classmethod
    def zeros(cls, am: khg.AmDiagGmm, full: bool = False) -> GmmStats:
        sizes = [am.num_gauss_in_pdf(p) for p in range(am.num_pdfs)]
        return cls(
            [np.zeros(g) for g in sizes],
            [np.zeros((g, am.dim)) for g in sizes],
            [np.zeros((g, am.dim)) for g in sizes],
            [np.zeros((g, am.dim, am.dim)) for g in sizes] if full else None,
        )

    def add(self, other: GmmStats) -> None:
        if self.xx is None and other.xx is not None:
            self.xx = [np.zeros_like(xx) for xx in other.xx]
        for p in range(len(self.occ)):
            self.occ[p] += other.occ[p]
            self.x[p] += other.x[p]
            self.x2[p] += other.x2[p]
            if other.xx is not None:
                self.xx[p] += other.xx[p]

    def to_kaldi(self, am: khg.AmDiagGmm) -> khg.AccumAmDiagGmm:
        """Kaldi accumulators holding these statistics.

        ``AccumAmDiagGmm`` does not pickle and ``get_acc`` returns a copy, so the
        statistics cannot be written into it directly. Each Gaussian's are replayed
        as two weighted points ``mean +/- stddev``, which have the same count, sum
        and sum of squares (float32 rounding aside).
        """
        accs = khg.AccumAmDiagGmm()
        accs.init(am, khg.GmmUpdateFlags.kGmmAll)
        for p, occ in enumerate(self.occ):
            for g in np.nonzero(occ > 0)[0]:
                mean = self.x[p][g] / occ[g]
                std = np.sqrt(np.maximum(self.x2[p][g] / occ[g] - mean * mean, 0.0))
                weight = np.zeros(len(occ), np.float32)
                weight[g] = occ[g] / 2
                accs.accumulate_from_posteriors(am, (mean + std).astype(np.float32), p, weight)
                accs.accumulate_from_posteriors(am, (mean - std).astype(np.float32), p, weight)
        return accs


@dataclass(frozen=True)
class ShardWork:
    """One shard of utterances and what to do with them (picklable): the fields the
    monophone (:class:`ShardJob`) and tri-phone (``align.tri.TriShardJob``) jobs share.

    ``mode``: ``"viterbi"`` (align with ``model``) or ``"given"`` (accumulate along
    ``alignments``); the monophone job also has ``"equal"`` (flat start).
    """

    cuts: list[Cut]
    model: Any  # the subclass's GMM-HMM
    lang_dir: str
    speaker_stats: dict[str, FeatureStats] | None
    mode: str
    viterbi: ViterbiOptions = ViterbiOptions()
    alignments: dict[str, np.ndarray] = field(default_factory=dict)
    accumulate: bool = True
    oov: str = "skip"


@dataclass(frozen=True)
class ShardJob(ShardWork):
    """A monophone shard: ``mode`` ``"equal"`` (flat-start alignment), ``"viterbi"``
    (re-align) or ``"given"`` (accumulate along ``alignments``)."""

    model: MonoModel
    seed: int = 0


@dataclass
class ShardResult:
    """Transition ids per aligned utterance, failures with reasons, and statistics."""

    alignments: dict[str, np.ndarray]
    failed: dict[str, str]
    log_like: float
    frames: int
    stats: GmmStats | None
    trans_stats: np.ndarray

    @classmethod
    def merge(cls, results: Sequence[ShardResult], model: MonoModel) -> ShardResult:
        out = cls({}, {}, 0.0, 0, GmmStats.zeros(model.am), 0.0)
        for r in results:
            out.alignments.update(r.alignments)
            out.failed.update(r.failed)
            out.log_like += r.log_like
            out.frames += r.frames
            out.trans_stats = out.trans_stats + r.trans_stats
            if r.stats is not None:
                out.stats.add(r.stats)
        return out


@functools.lru_cache(maxsize=2)
def load_lang_fst(lang_dir: str, stamp: int) -> tuple[Lang, kaldifst.StdVectorFst]:
    """The lang directory and its L.fst, once per worker process (and lang version)."""
    lang = Lang.load(lang_dir)
    return lang, lang.L()


def transcript_ids(
    cut: Cut, lang: Lang, min_len: dict[str, int], oov: str
) -> tuple[list[int] | None, str | None]:
    """The cut's word ids for its training graph, or why it has none.

    Args:
        min_len: phone -> fewest frames its HMM can emit (a transcript needing more
            frames than the cut has cannot align).
        oov: ``"map"`` unknown words to the OOV word, ``"skip"`` the cut or raise
            (``"error"``).
    """
    text = " ".join(s.text or "" for s in cut.supervisions).strip()
    if not text:
        return None, "no transcript"
    unknown = [w for w in text.split() if w not in lang.lexicon]
    if unknown and oov != "map":
        if oov == "error":
            lang.word_ids(text, cut.id)  # raises BadInputError naming the words
        return None, "out-of-vocabulary words: " + " ".join(dict.fromkeys(unknown))
    words = [w if w in lang.lexicon else lang.oov_word for w in text.split()]
    needed = sum(min(sum(min_len[p] for p in pron) for pron in lang.lexicon[w]) for w in words)
    if cut.num_frames < needed:
        return None, (
            f"transcript longer than audio can align ({cut.num_frames} frames < {needed} needed)"
        )
    return lang.word_ids(text, cut.id, map_oov=True), None


def min_lengths(lang: Lang) -> dict[str, int]:
    """Phone symbol -> the fewest frames its HMM can emit."""
    topo = topology(lang.topo_text)
    return {p: topo.min_length(i) for p, i in lang.phones.items() if i in topo.phones}


def _graph(cut: Cut, lang: Lang, compiler, min_len: dict[str, int], oov: str):
    """The cut's training graph (``compile-train-graphs``), or why there is none."""
    ids, why = transcript_ids(cut, lang, min_len, oov)
    return (None, why) if ids is None else (compiler.compile_graph_from_text(ids), None)


def _equal_align(graph: kaldifst.StdVectorFst, num_frames: int, seed: int) -> np.ndarray | None:
    ok, path = kaldifst.equal_align(graph, num_frames, seed, 10)
    if not ok:
        return None
    ok, tids, _, _ = kaldifst.get_linear_symbol_sequence(path)
    tids = np.asarray([t for t in tids if t != 0], np.int32)
    return tids if ok and len(tids) == num_frames else None


def _silence_boosted(model: MonoModel, phones: Sequence[int], boost: float) -> khg.AmDiagGmm:
    """The acoustic model with silence Gaussians' weights scaled (``gmm-boost-silence``)."""
    if boost == 1.0:
        return model.am
    am = khg.AmDiagGmm()
    am.copy_from_am_diag_gmm(model.am)
    for pdf in khg.get_pdfs_for_phones(model.trans_model, sorted(phones))[1]:
        gmm = am.get_pdf(pdf)  # a live reference
        gmm.set_weights(gmm.weights * boost)
        gmm.compute_gconsts()
    return am


def viterbi_align(
    model: MonoModel,
    am: khg.AmDiagGmm,
    graph: kaldifst.StdVectorFst,
    feats: np.ndarray,
    utt_id: str,
    opts: ViterbiOptions,
) -> np.ndarray | None:
    """Forced alignment (transition ids per frame), or ``None`` when both beams fail.

    The graph gets its transition probabilities added in place.
    """
    tm = model.trans_model
    khg.add_transition_probs(tm, [], opts.transition_scale, opts.self_loop_scale, graph)
    decodable = khg.DecodableAmDiagGmmScaled(am, tm, feats, opts.acoustic_scale)
    config = khg.AlignConfig(beam=opts.beam, retry_beam=opts.retry_beam, careful=False)
    counters = (0, 0, 0, 0.0, 0)  # num_done, num_error, num_retried, tot_like, frames
    out = khg.align_utterance_wrapper(
        config, utt_id, opts.acoustic_scale, graph, decodable, *counters
    )
    tids = np.asarray(out[5], np.int32)
    return tids if len(tids) == len(feats) else None


def accumulate(
    am: khg.AmDiagGmm,
    feats: list[np.ndarray],
    pdfs: list[np.ndarray],
    with_stats: bool = True,
    full: bool = False,
) -> tuple[float, GmmStats | None]:
    """Total log-likelihood of the frames given their pdfs, and the GMM statistics.

    Frames of all utterances are grouped by pdf, so that each GMM is evaluated once
    per shard on a matrix (``gmm-acc-stats-ali``, vectorised). ``full`` also keeps
    each Gaussian's full second-order statistics (``GmmStats.xx``).
    """
    x = np.concatenate(feats).astype(np.float32)
    pdf = np.concatenate(pdfs)
    stats = GmmStats.zeros(am, full) if with_stats else None
    order = np.argsort(pdf, kind="stable")
    bounds = np.searchsorted(pdf[order], np.arange(am.num_pdfs + 1))
    total = 0.0
    for p in np.nonzero(np.diff(bounds))[0]:
        xp = x[order[bounds[p] : bounds[p + 1]]]
        ll = am.get_pdf(int(p)).log_likelihoods_matrix(xp).astype(np.float64)
        top = ll.max(axis=1, keepdims=True)
        frame_ll = top[:, 0] + np.log(np.exp(ll - top).sum(axis=1))
        total += frame_ll.sum()
        if stats is not None:
            post = np.exp(ll - frame_ll[:, None])
            x64 = xp.astype(np.float64)
            stats.occ[p] += post.sum(axis=0)
            # einsum, not post.T @ x: OpenBLAS threads made these small products ~50x
            # slower when the cores are busy (worker processes, other jobs).
            stats.x[p] += np.einsum("ng,nd->gd", post, x64)
            stats.x2[p] += np.einsum("ng,nd->gd", post, x64 * x64)
            if stats.xx is not None:
                stats.xx[p] += np.einsum("ng,nd,ne->gde", post, x64, x64)
    return float(total), stats


def run_shard(job: ShardJob) -> ShardResult:
    """Align (or take the alignments of) a shard's cuts and accumulate statistics.

    Raises:
        BadInputError: a cut's features disagree with its manifest's frame count,
            or it has out-of-vocabulary words with ``oov="error"``.
    """
    model, tm = job.model, job.model.trans_model
    lang, L = load_lang_fst(job.lang_dir, os.stat(Path(job.lang_dir) / MARKER).st_mtime_ns)
    opts = khg.TrainingGraphCompilerOptions(transition_scale=0.0, self_loop_scale=0.0)
    compiler = khg.TrainingGraphCompiler(tm, model.ctx_dep, L, lang.disambig_phones, opts)
    min_len = min_lengths(lang)
    am = _silence_boosted(model, lang.silence_phones, job.viterbi.boost_silence)
    failed: dict[str, str] = {}
    alignments: dict[str, np.ndarray] = {}
    feats: list[np.ndarray] = []
    for cut in job.cuts:
        if job.mode == "given":
            if cut.id not in job.alignments:
                continue
            graph, why = None, None
        else:
            graph, why = _graph(cut, lang, compiler, min_len, job.oov)
        if why is not None:
            failed[cut.id] = why
            continue
        f = model.features(cut, job.speaker_stats)
        if len(f) != cut.num_frames:
            raise BadInputError(
                f"cut {cut.id}: its features have {len(f)} frames but the manifest says "
                f"{cut.num_frames}; recompute the features ('compute-features --force')"
            )
        if job.mode == "given":
            tids = job.alignments[cut.id]
        elif job.mode == "equal":
            # a seed per utterance, as align-equal-compiled hashes the utterance id
            tids = _equal_align(
                graph, len(f), (zlib.crc32(cut.id.encode()) ^ job.seed) & 0x7FFFFFFF
            )
        else:
            tids = viterbi_align(model, am, graph, f, cut.id, job.viterbi)
        if tids is None:
            v = job.viterbi
            failed[cut.id] = "no equal alignment" if job.mode == "equal" else (
                f"no alignment within beam {v.beam} or retry beam {v.retry_beam}"
            )  # fmt: skip
            continue
        alignments[cut.id] = tids
        feats.append(f)
    trans = np.zeros(tm.num_transition_ids + 1)
    if not alignments:
        return ShardResult({}, failed, 0.0, 0, None, trans)
    tid2pdf = np.asarray(tm.transition_id_to_pdf_array(), np.int64)
    pdfs = [tid2pdf[tids] for tids in alignments.values()]
    log_like, stats = accumulate(model.am, feats, pdfs, job.accumulate)
    for tids in alignments.values():
        trans += np.bincount(tids, minlength=len(trans))
    frames = sum(len(f) for f in feats)
    return ShardResult(alignments, failed, log_like, frames, stats, trans)


def shards(cuts: Sequence[Cut], num_shards: int) -> list[list[Cut]]:
    """Split cuts into at most ``num_shards`` contiguous, similarly sized lists."""
    n = max(1, min(num_shards, len(cuts)))
    return [list(part) for part in np.array_split(np.asarray(cuts, dtype=object), n)]
