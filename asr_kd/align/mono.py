"""Monophone GMM-HMM training from a flat start, after Kaldi's ``steps/train_mono.sh``.

Iteration 0 gives every pdf one Gaussian at the global mean and variance
(``gmm-init-mono``), aligns each utterance evenly along its training graph
(``align-equal-compiled``) and re-estimates. Later iterations re-align with Viterbi
on the realignment iterations (``gmm-align-compiled``), accumulate statistics along
the alignments (``gmm-acc-stats-ali``), re-estimate transitions and Gaussians and mix
up a little each time towards the total number of Gaussians (``gmm-est --mix-up``).

Output (``asr-kd train-mono``, one directory written atomically)::

    <out_dir>/final.mdl              pickled dict: topology text, context dependency,
                                     transition model, AmDiagGmm, phones, CMVN settings
    <out_dir>/log_likelihood.json    average log-likelihood per frame of each iteration
    <out_dir>/phones.txt             the lang directory's phones.txt
    <out_dir>/info.json              pdfs, Gaussians, frames, utterances, failures

The per-utterance work (graphs, alignment, statistics) runs in shards
(:func:`run_shard`) on an executor; the ``align`` stage reuses it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import pickle
import shutil
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np
from lhotse import CutSet
from lhotse.cut import Cut

from asr_kd.align.mixup import mix_up
from asr_kd.config import to_dict
from asr_kd.data.features import FeatureStats, load_stats
from asr_kd.data.gmm_features import gmm_features
from asr_kd.data.manifests import find_cut_manifests, load_cuts
from asr_kd.errors import AsrKdError, BadInputError, MissingInputError
from asr_kd.lang import Lang
from asr_kd.parallel import map_progress
from asr_kd.stage import MARKER, require_done, stage_output

logger = logging.getLogger(__name__)

STAGE = "train-mono"
KALDI_REALIGN_ITERS = (*range(1, 11), 12, 14, 16, 18, 20, 23, 26, 29, 32, 35, 38)
"""``train_mono.sh``'s realignment iterations for its 40 iterations."""
MODEL_FORMAT = "asr-kd mono 1"
"""The custom field of an aligned cut: int32 ``[T, 2]`` (phone id, HMM state) per frame."""


def check_training_config(config: Any) -> None:
    """The checks a GMM training config's shared options get (``ValueError``)."""
    if config.num_iters < 2:
        raise ValueError(f"num_iters must be at least 2, got {config.num_iters}")
    if config.cmvn not in ("speaker", "utterance"):
        raise ValueError(f"cmvn must be 'speaker' or 'utterance', got {config.cmvn!r}")
    if config.oov not in ("map", "skip", "error"):
        raise ValueError(f"oov must be 'map', 'skip' or 'error', got {config.oov!r}")
    if not 0.0 <= config.max_failed_share <= 1.0:
        raise ValueError("max_failed_share must lie in [0, 1]")


@dataclass(frozen=True)
class MonoConfig:
    """Monophone training settings (the options of Kaldi's ``train_mono.sh``).

    Attributes:
        num_iters: training passes (Kaldi: 40).
        total_gaussians: Gaussians at the end of mixing up.
        realign_iters: iterations that re-align with Viterbi; empty gives Kaldi's
            schedule scaled from 40 iterations to ``num_iters``.
        max_utterances: train on the shortest N utterances (``subset_data_dir.sh
            --shortest``); 0 uses all.
        split: the feature directory's split to train on.
        beam, retry_beam: Viterbi beams (``--careful=false``).
        transition_scale, self_loop_scale, acoustic_scale: Kaldi's scale options.
        power: exponent of the occupancy when allocating Gaussians to pdfs.
        perturb_factor: mean perturbation (in standard deviations) when splitting.
        min_gaussian_occupancy: Gaussians with less occupancy are not updated
            (the first update uses 3, as ``train_mono.sh``).
        min_count: minimum occupancy per Gaussian when mixing up.
        boost_silence: factor on silence-phone Gaussian weights while aligning.
        cmvn: ``"speaker"`` (per-speaker statistics of compute-features, Kaldi's
            default) or ``"utterance"``.
        norm_vars: also normalise the variance.
        oov: ``"map"`` words outside the lexicon to ``<UNK>`` (Kaldi's training),
            ``"skip"`` their utterances or raise (``"error"``).
        max_failed_share: fail when the last alignment loses more of the utterances.
        seed: seed of the random equal alignment and of the mixing-up perturbations.
    """

    num_iters: int = 25
    total_gaussians: int = 1000
    realign_iters: tuple[int, ...] = ()
    max_utterances: int = 1000
    split: str = "train"
    beam: float = 6.0
    retry_beam: float = 40.0
    transition_scale: float = 1.0
    self_loop_scale: float = 0.1
    acoustic_scale: float = 0.1
    power: float = 0.25
    perturb_factor: float = 0.01
    min_gaussian_occupancy: float = 10.0
    min_count: float = 20.0
    boost_silence: float = 1.0
    cmvn: str = "speaker"
    norm_vars: bool = False
    oov: str = "map"
    max_failed_share: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        check_training_config(self)

    def schedule(self) -> list[int]:
        """The realignment iterations (iteration 0 is the equal alignment)."""
        if self.realign_iters:
            return sorted(i for i in set(self.realign_iters) if 0 < i < self.num_iters)
        scaled = {max(1, round(i * self.num_iters / 40)) for i in KALDI_REALIGN_ITERS}
        return sorted(i for i in scaled if i < self.num_iters)


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


@dataclass
class MonoModel:
    """A monophone GMM-HMM and the feature normalisation it was trained with."""

    topo_text: str
    ctx_dep: khg.ContextDependency
    trans_model: khg.TransitionModel
    am: khg.AmDiagGmm
    phones: dict[str, int]
    cmvn: str = "speaker"
    norm_vars: bool = False

    @classmethod
    def flat_start(
        cls, lang: Lang, mean: np.ndarray, var: np.ndarray, cmvn: str, norm_vars: bool
    ) -> MonoModel:
        """One Gaussian per pdf at the global mean and variance (``gmm-init-mono``)."""
        topo = _topology(lang.topo_text)
        ctx_dep = khg.monophone_context_dependency(topo.phones, topo.get_phone_to_num_pdf_classes())
        gmm = khg.DiagGmm(1, len(mean))
        gmm.set_weights(np.ones(1, np.float32))
        gmm.set_means(mean[None].astype(np.float32))
        gmm.set_invvars((1.0 / var)[None].astype(np.float32))
        gmm.compute_gconsts()
        am = khg.AmDiagGmm()
        for _ in range(ctx_dep.num_pdfs):
            am.add_pdf(gmm)
        tm = khg.TransitionModel(ctx_dep, topo)
        return cls(lang.topo_text, ctx_dep, tm, am, dict(lang.phones), cmvn, norm_vars)

    def save(self, path: Path | str) -> None:
        state = {"format": MODEL_FORMAT, **dataclasses.asdict(self)}
        Path(path).write_bytes(pickle.dumps(state))

    @classmethod
    def load(cls, path: Path | str) -> MonoModel:
        """Read a ``final.mdl`` written by ``train-mono``."""
        return cls(**load_model_state(path, MODEL_FORMAT, STAGE))

    def features(self, cut: Cut, speaker_stats: dict[str, FeatureStats] | None) -> np.ndarray:
        """The cut's GMM features, normalised as in training (see :func:`gmm_features`)."""
        stats = speaker_stats if self.cmvn == "speaker" else None
        return gmm_features(cut, stats, norm_vars=self.norm_vars)

    def frame_labels(self) -> np.ndarray:
        """``[num_tids + 1, 2]`` int32: (phone, HMM state) of each transition id."""
        tm = self.trans_model
        table = np.zeros((tm.num_transition_ids + 1, 2), np.int32)
        for tid in range(1, tm.num_transition_ids + 1):
            # TransitionModelTuple has no attributes; its state is
            # (phone, hmm_state, forward_pdf, self_loop_pdf).
            phone, hmm_state, _, _ = tm.tuples[tm.id2state[tid] - 1].__getstate__()
            table[tid] = (phone, hmm_state)
        return table


def load_model_state(path: Path | str, model_format: str, stage: str) -> dict[str, Any]:
    """The pickled state of a ``final.mdl`` of ``model_format``, written by ``stage``.

    Raises:
        MissingInputError: no such file.
        BadInputError: it is not such a model.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path} does not exist: run the '{stage}' stage first")
    try:
        state = pickle.loads(path.read_bytes())
    except Exception as e:  # any unpickling failure means an unusable file
        raise BadInputError(f"{path} is not a readable '{stage}' model: {e}") from None
    if not isinstance(state, dict) or state.pop("format", None) != model_format:
        raise BadInputError(f"{path} is not a model written by '{stage}'")
    return state


def _topology(text: str) -> khg.HmmTopology:
    topo = khg.HmmTopology()
    topo.read(text)
    return topo


# --------------------------------------------------------------------------------------
# Per-shard work: graphs, alignments and statistics of a list of cuts.


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
class ShardJob:
    """One shard of utterances and what to do with them (picklable).

    ``mode`` is ``"equal"`` (flat-start alignment), ``"viterbi"`` (re-align) or
    ``"given"`` (accumulate along ``alignments``).
    """

    cuts: list[Cut]
    model: MonoModel
    lang_dir: str
    speaker_stats: dict[str, FeatureStats] | None
    mode: str
    viterbi: ViterbiOptions = ViterbiOptions()
    alignments: dict[str, np.ndarray] = field(default_factory=dict)
    accumulate: bool = True
    oov: str = "skip"
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
def _load_lang(lang_dir: str, stamp: int) -> tuple[Lang, kaldifst.StdVectorFst]:
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
    topo = _topology(lang.topo_text)
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
    lang, L = _load_lang(job.lang_dir, os.stat(Path(job.lang_dir) / MARKER).st_mtime_ns)
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


# --------------------------------------------------------------------------------------
# Training.


def train_mono(
    feature_dir: Path | str,
    lang_dir: Path | str,
    out_dir: Path | str,
    config: MonoConfig = MonoConfig(),
    num_jobs: int = 1,
    executor: Executor | None = None,
    force: bool = False,
) -> Path:
    """Train a monophone GMM-HMM on MFCC features (``asr-kd train-mono``).

    Args:
        feature_dir: a finished ``compute-features`` output with ``kind: mfcc``.
        lang_dir: a finished ``prepare-lang`` output.
        out_dir: the model directory to write (atomic; layout in the module doc).
        config: training settings.
        num_jobs: an iteration's utterances go out in ``2 * num_jobs`` shards when
            ``executor`` is given.
        executor: runs the shards (local processes or a Dask cluster); ``None``
            works in-process.
        force: redo a finished output.

    Returns:
        ``out_dir``.

    Raises:
        AsrKdError: the last alignment lost more than ``config.max_failed_share``.
    """
    feature_dir = require_done(Path(feature_dir).resolve(), "compute-features")
    lang_dir = require_done(Path(lang_dir).resolve(), "prepare-lang")
    out_dir = Path(out_dir)
    stage_config = {"feature_dir": str(feature_dir), "lang_dir": str(lang_dir), **to_dict(config)}
    with stage_output(out_dir, STAGE, stage_config, force) as tmp:
        if tmp is None:
            return out_dir
        start = time.time()
        lang = Lang.load(lang_dir)
        cuts = _training_cuts(feature_dir, config)
        speaker_stats = load_stats(feature_dir)[1] if config.cmvn == "speaker" else None
        mean, var = _global_stats(cuts, speaker_stats, config)
        model = MonoModel.flat_start(lang, mean, var, config.cmvn, config.norm_vars)
        history = _train(model, cuts, lang_dir, speaker_stats, config, num_jobs, executor)
        model.save(tmp / "final.mdl")
        shutil.copy(lang_dir / "phones.txt", tmp / "phones.txt")
        (tmp / "log_likelihood.json").write_text(json.dumps(history.pop("log_like")) + "\n")
        info = {
            "num_pdfs": model.am.num_pdfs,
            "num_gaussians": model.am.num_gauss,
            "feature_dim": model.am.dim,
            "cmvn": config.cmvn,
            "norm_vars": config.norm_vars,
            "utterances": len(cuts),
            **history,
        }
        (tmp / "info.json").write_text(json.dumps(info, indent=1) + "\n")
        ll = json.loads((tmp / "log_likelihood.json").read_text())
        logger.info(
            "%s: wrote %s: %d pdfs, %d Gaussians from %d utterances (%d frames), "
            "log-likelihood per frame %.2f -> %.2f, in %.1f s",
            STAGE, out_dir, model.am.num_pdfs, model.am.num_gauss, history["utterances_aligned"],
            history["frames"], ll[0], ll[-1], time.time() - start,
        )  # fmt: skip
    return out_dir


def _training_cuts(feature_dir: Path, config: MonoConfig) -> CutSet:
    """The split's shortest ``max_utterances`` cuts (``subset_data_dir.sh --shortest``)."""
    manifests = find_cut_manifests(feature_dir, "compute-features")
    if config.split not in manifests:
        raise MissingInputError(
            f"{feature_dir} has no '{config.split}' cuts (found: {', '.join(manifests)}); "
            "set 'split' or run 'compute-features' on that split"
        )
    cuts = load_cuts(manifests[config.split][1], "compute-features")
    kinds = {c.features.type for c in cuts if c.features is not None}
    if kinds - {"kaldi-mfcc", "mfcc"}:
        logger.warning("%s: features are %s, not MFCC as Kaldi's GMMs expect", STAGE, kinds)
    ordered = sorted(cuts, key=lambda c: (c.duration, c.id))
    if config.max_utterances:
        ordered = ordered[: config.max_utterances]
    return CutSet.from_cuts(ordered)


def _global_stats(cuts: CutSet, speaker_stats, config: MonoConfig) -> tuple[np.ndarray, ...]:
    """Mean and variance of the GMM features of (up to 100 of) the training cuts."""
    stats = speaker_stats if config.cmvn == "speaker" else None
    first = cuts.subset(first=min(100, len(cuts)))
    x = np.concatenate([gmm_features(c, stats, norm_vars=config.norm_vars) for c in first])
    return x.mean(axis=0), np.maximum(x.var(axis=0), 1e-5)


def _train(
    model: MonoModel,
    cuts: CutSet,
    lang_dir: Path,
    speaker_stats: dict[str, FeatureStats] | None,
    config: MonoConfig,
    num_jobs: int,
    executor: Executor | None,
) -> dict[str, Any]:
    """The EM iterations; updates ``model`` in place and returns what info.json needs."""
    common = {
        "lang_dir": str(lang_dir),
        "speaker_stats": speaker_stats,
        "viterbi": ViterbiOptions.of(config),
        "oov": config.oov,
        "seed": config.seed,
    }
    rng = np.random.default_rng(config.seed)  # the mixing-up perturbations

    def update(it: int, r: ShardResult, num_gauss: int) -> None:
        min_occ = 3.0 if it == 0 else config.min_gaussian_occupancy
        _update(model, r.stats, r.trans_stats, min_occ, num_gauss, config, rng)

    return em_iterations(
        model,
        list(cuts),
        config,
        first_mode="equal",
        realign=set(config.schedule()),
        max_iter_inc=max(1, round(config.num_iters * 0.75)),  # train_mono.sh: 30 of 40
        num_gauss=model.am.num_gauss,
        make_job=lambda part, mode, ali, _it: ShardJob(
            part, model, mode=mode, alignments=ali, **common
        ),  # fmt: skip
        run=run_shard,
        update=update,
        stage=STAGE,
        num_jobs=num_jobs,
        executor=executor,
    )


def em_iterations(
    model: Any,
    cuts: list[Cut],
    config: Any,
    *,
    first_mode: str | None,
    realign: set[int],
    max_iter_inc: int,
    num_gauss: int,
    make_job: Callable[[list[Cut], str, dict[str, np.ndarray], int], Any],
    run: Callable[[Any], Any],
    update: Callable[[int, ShardResult, int], None],
    stage: str,
    num_jobs: int,
    executor: Executor | None,
    alignments: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Kaldi's GMM-HMM training loop (``train_mono.sh``, ``train_deltas.sh``), shared by
    the monophone and tri-phone stages: per iteration, accumulate statistics over the
    shards (aligning anew on ``realign`` iterations and on the first, ``first_mode``),
    re-estimate (``update(it, result, num_gauss)``) and raise the Gaussian target
    towards ``config.total_gaussians`` until ``max_iter_inc``.

    Args:
        model: the model; ``make_job(part, mode, alignments, it)`` builds a shard's
            job for ``run`` (``alignments``: the part's, for mode ``given``) at
            iteration ``it``.
        config: ``num_iters``, ``total_gaussians`` and ``max_failed_share``.
        alignments: the alignments before the first iteration (tri-phone training
            starts from the monophone ones).

    Returns:
        What ``info.json`` needs: log-likelihood and seconds per iteration, how many
        utterances aligned, the frames, the failures.
    """
    parts = shards(cuts, 1 if executor is None else 2 * num_jobs)
    inc_gauss = max(0, (config.total_gaussians - num_gauss) // max_iter_inc)
    alignments = dict(alignments or {})
    failed: dict[str, str] = {}
    log_like, seconds = [], []
    for it in range(config.num_iters):
        t0 = time.time()
        mode = "viterbi" if it in realign else "given"
        if it == 0 and first_mode:
            mode = first_mode
        jobs = [make_job(part, mode, _subset(alignments, part) if mode == "given" else {}, it)
                for part in parts]  # fmt: skip
        r = ShardResult.merge(map_progress(run, jobs, executor, f"{stage} {it}"), model)
        if mode != "given":
            alignments, failed = r.alignments, r.failed
            for utt, reason in sorted(failed.items()):
                logger.debug("%s: iteration %d: %s not aligned: %s", stage, it, utt, reason)
            if not alignments:
                _check_failures(failed, len(cuts), 0.0, it, stage)
        update(it, r, num_gauss)
        if 0 < it <= max_iter_inc:
            num_gauss += inc_gauss
        log_like.append(round(r.log_like / max(r.frames, 1), 4))
        seconds.append(round(time.time() - t0, 2))
        logger.info(
            "%s: iteration %d (%s): log-likelihood per frame %.3f over %d frames, "
            "%d Gaussians, %d utterances not aligned, %.1f s",
            stage, it, mode, log_like[-1], r.frames, model.am.num_gauss, len(failed), seconds[-1],
        )  # fmt: skip
    _check_failures(failed, len(cuts), config.max_failed_share, config.num_iters - 1, stage)
    return {
        "log_like": log_like,
        "utterances_aligned": len(alignments),
        "frames": r.frames,
        "failed": failed,
        "seconds_per_iteration": seconds,
    }


def _subset(alignments: dict[str, np.ndarray], part: list[Cut]) -> dict[str, np.ndarray]:
    return {c.id: alignments[c.id] for c in part if c.id in alignments}


def _update(
    model: MonoModel,
    stats: GmmStats,
    trans: np.ndarray,
    min_occupancy: float,
    target: int,
    config: MonoConfig,
    rng: np.random.Generator,
) -> None:
    """Re-estimate transitions and Gaussians, then mix up (``gmm-est --mix-up``).

    Mixing up draws its perturbations from ``rng``, not kaldi-hmm-gmm's
    ``split_by_count`` (seeded from ``std::random_device``: never reproducible).
    """
    model.trans_model.mle_update(trans, khg.MleTransitionUpdateConfig())
    update_gmms(model.am, stats, min_occupancy, target, config, rng)


def update_gmms(
    am: khg.AmDiagGmm,
    stats: GmmStats,
    min_occupancy: float,
    target: int,
    config: Any,
    rng: np.random.Generator,
) -> None:
    """ML re-estimation of every pdf's GMM, then mixing up towards ``target`` Gaussians.

    ``config`` gives ``perturb_factor``, ``power`` and ``min_count`` (a training config).
    """
    opts = khg.MleDiagGmmOptions(min_gaussian_occupancy=min_occupancy)
    flags = int(khg.GmmUpdateFlags.kGmmAll)
    khg.mle_am_diag_gmm_update(opts, stats.to_kaldi(am), flags, am)
    if target > am.num_gauss:
        occs = np.asarray([o.sum() for o in stats.occ], np.float32)
        mix_up(am, occs, target, config.perturb_factor, config.power, config.min_count, rng)


def _check_failures(
    failed: dict[str, str], total: int, max_share: float, it: int, stage: str = STAGE
) -> None:
    """Log the utterances left out; fail when they are all or more than ``max_share``.

    Early realignments often lose utterances to the beam while the model is poor, as
    in Kaldi; only the last alignment counts against ``max_share``.
    """
    for utt, reason in sorted(failed.items()):
        logger.warning("%s: iteration %d: %s not aligned: %s", stage, it, utt, reason)
    if (failed and len(failed) >= total) or len(failed) > max_share * total:
        shown = "; ".join(f"{u}: {r}" for u, r in sorted(failed.items())[:5])
        raise AsrKdError(
            f"{stage}: {len(failed)} of {total} training utterances could not be aligned "
            f"at iteration {it} (limit {max_share:.0%}), e.g. {shown}"
        )
