"""Tri-phone GMM-HMM training on the senone tree, after Kaldi's ``steps/train_deltas.sh``.

Iteration 0 converts the monophone alignments to the tree (``convert-ali``: each frame's
(left, centre, right, state) gives its senone) and estimates one Gaussian per senone
from them (``gmm-init-model``). Each later iteration re-aligns on the realignment
iterations (``gmm-align-compiled`` through per-utterance training graphs,
:mod:`asr_kd.align.graphs`), accumulates along the alignments, re-estimates the
Gaussians and the transition probabilities and mixes up towards the total number of
Gaussians (``gmm-est --mix-up``), as ``train_deltas.sh`` does over its 35 iterations.

What kaldi-hmm-gmm does: the GMMs (``AmDiagGmm``, ``mle_am_diag_gmm_update``,
log-likelihoods) and the Viterbi search (``align_utterance_wrapper``). What is ours,
because kaldi-hmm-gmm 1.1.4 cannot represent a tri-phone tree (no tree building, no
``ContextDependency`` but the monophone ones, hence no ``TransitionModel`` or
``TrainingGraphCompiler`` for it): the training graphs (HCLG per utterance with our H),
the transition model (one set of probabilities per phone and HMM state, pooled over
senones, re-estimated by counting as ``MleUpdate`` does, floored at 0.01), the
accumulation along alignments and the seeded mixing-up (:mod:`asr_kd.align.mixup`).

With ``transform_dir`` (an ``estimate-lda`` output) this is Kaldi's
``steps/train_lda_mllt.sh`` instead: the features are spliced MFCCs projected by LDA,
and on the MLLT iterations (Kaldi's 2, 4, 6, 12 of 35, scaled) the statistics keep each
Gaussian's full scatter, a semi-tied transform is estimated from them, and the
statistics and the means are carried into the new space before the GMM update
(:mod:`asr_kd.align.lda_mllt`). The composed transform is part of ``final.mdl``, so
``align`` applies it.

Output (``asr-kd train-tri``, one directory written atomically)::

    <out_dir>/final.mdl              pickled dict: tree, topology, transition probabilities,
                                     AmDiagGmm, phones, CMVN settings
    <out_dir>/tree.json              the tree the model's pdfs are the senones of
    <out_dir>/log_likelihood.json    average log-likelihood per frame of each iteration
    <out_dir>/phones.txt             the lang directory's phones.txt
    <out_dir>/info.json              senones, Gaussians, frames, utterances, failures
    <out_dir>/transform.npz          with a transform: the final LDA+MLLT matrix
"""

from __future__ import annotations

import functools
import json
import logging
import os
import pickle
import shutil
import time
from concurrent.futures import Executor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import kaldi_hmm_gmm as khg
import numpy as np
from lhotse.cut import Cut

from asr_kd.align.graphs import GmmScorer, GraphCompiler, beam_failure, viterbi_path
from asr_kd.align.lda_mllt import estimate_mllt, gaussian_covariances
from asr_kd.align.mono import check_training_config, em_iterations, load_model_state, update_gmms
from asr_kd.align.shard import (
    GmmStats,
    ShardResult,
    ShardWork,
    ViterbiOptions,
    accumulate,
    load_lang_fst,
    min_lengths,
    transcript_ids,
)
from asr_kd.config import to_dict
from asr_kd.data.features import FeatureStats, load_stats
from asr_kd.data.gmm_features import FeatureTransform, gmm_features, load_transform
from asr_kd.data.manifests import ALI_KEY, find_cut_manifests, load_cuts
from asr_kd.errors import BadInputError, MissingInputError
from asr_kd.graph.h import HmmTopo, parse_topology
from asr_kd.lang import Lang
from asr_kd.stage import MARKER, require_done, require_file, stage_output
from asr_kd.tree import ContextTree, UnknownContextError
from asr_kd.tree.context_tree import tree_id

logger = logging.getLogger(__name__)

STAGE = "train-tri"
MODEL_FORMAT = "asr-kd tri 1"
KALDI_NUM_ITERS = 35
KALDI_REALIGN_ITERS = (10, 20, 30)
KALDI_MAX_ITER_INC = 25
KALDI_MLLT_ITERS = (2, 4, 6, 12)


@dataclass(frozen=True)
class TriConfig:
    """Tri-phone training settings (the options of Kaldi's ``train_deltas.sh``).

    Attributes:
        num_iters: training passes (Kaldi: 35).
        total_gaussians: Gaussians at the end of mixing up (Kaldi's ``totgauss``).
        realign_iters: iterations that re-align with Viterbi; empty gives Kaldi's
            10, 20, 30 of 35, scaled to ``num_iters``.
        split: the alignment directory's split to train on (all of its utterances).
        beam, retry_beam, transition_scale, self_loop_scale, acoustic_scale: as
            ``gmm-align-compiled`` (``--careful=false``).
        boost_silence: factor on the silence phones' likelihoods while aligning.
        inter_word_silence: the training graphs allow optional silence between words
            (as the lang's L); false: only at the start and end of an utterance.
        power, perturb_factor, min_count: mixing up (see ``MonoConfig``).
        min_gaussian_occupancy: Gaussians with less occupancy are not updated.
        transition_floor: smallest transition probability (Kaldi's ``--transition-floor``).
        transition_min_count: fewer visits leave a state's probabilities as they were.
        cmvn, norm_vars: feature normalisation, as the monophone stage's.
        oov: words outside the lexicon: ``"map"`` to ``<UNK>``, ``"skip"`` or ``"error"``.
        max_failed_share: fail when the last alignment loses more of the utterances.
        seed: seed of the mixing-up perturbations.
        mllt: with an LDA transform, re-estimate an MLLT on ``mllt_iters``.
        mllt_iters: iterations that re-estimate the MLLT; empty gives Kaldi's 2, 4, 6,
            12 of 35, scaled to ``num_iters``.
    """

    num_iters: int = KALDI_NUM_ITERS
    total_gaussians: int = 10000
    realign_iters: tuple[int, ...] = ()
    split: str = "train"
    beam: float = 10.0
    retry_beam: float = 40.0
    transition_scale: float = 1.0
    self_loop_scale: float = 0.1
    acoustic_scale: float = 0.1
    boost_silence: float = 1.0
    inter_word_silence: bool = True
    power: float = 0.25
    perturb_factor: float = 0.01
    min_gaussian_occupancy: float = 10.0
    min_count: float = 20.0
    transition_floor: float = 0.01
    transition_min_count: float = 5.0
    cmvn: str = "speaker"
    norm_vars: bool = False
    oov: str = "map"
    max_failed_share: float = 0.1
    seed: int = 0
    mllt: bool = True
    mllt_iters: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_training_config(self)
        if not 0.0 < self.transition_floor < 0.5:
            raise ValueError("transition_floor must lie in (0, 0.5)")

    def schedule(self) -> list[int]:
        """The realignment iterations (iteration 0 uses the converted alignments)."""
        if self.realign_iters:
            return sorted(i for i in set(self.realign_iters) if 0 < i < self.num_iters)
        scale = self.num_iters / KALDI_NUM_ITERS
        scaled = {max(1, round(i * scale)) for i in KALDI_REALIGN_ITERS}
        return sorted(i for i in scaled if i < self.num_iters)

    def mllt_schedule(self) -> list[int]:
        """The MLLT iterations (used only with an LDA transform)."""
        if not self.mllt:
            return []
        if self.mllt_iters:
            return sorted(i for i in set(self.mllt_iters) if 0 < i < self.num_iters)
        scale = self.num_iters / KALDI_NUM_ITERS
        scaled = {max(1, round(i * scale)) for i in KALDI_MLLT_ITERS}
        return sorted(i for i in scaled if i < self.num_iters)

    def max_iter_inc(self) -> int:
        """The last iteration that mixes up (Kaldi: 25 of 35)."""
        return max(1, round(self.num_iters * KALDI_MAX_ITER_INC / KALDI_NUM_ITERS))


@dataclass
class TriModel:
    """A tri-phone GMM-HMM: pdf ``s`` of ``am`` is senone ``s`` of the tree."""

    tree_json: str
    topo_text: str
    topos: dict[int, HmmTopo]
    am: khg.AmDiagGmm
    phones: dict[str, int]
    cmvn: str = "speaker"
    norm_vars: bool = False
    transform: FeatureTransform | None = None

    @functools.cached_property
    def tree(self) -> ContextTree:
        return ContextTree._from_doc(json.loads(self.tree_json))

    def save(self, path: Path | str) -> None:
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        Path(path).write_bytes(pickle.dumps({"format": MODEL_FORMAT, **state}))

    @classmethod
    def load(cls, path: Path | str) -> TriModel:
        """Read a ``final.mdl`` written by ``train-tri``."""
        return cls(**load_model_state(path, MODEL_FORMAT, STAGE))

    def features(self, cut: Cut, speaker_stats: dict[str, FeatureStats] | None) -> np.ndarray:
        """The cut's GMM features, normalised (and transformed) as in training."""
        if self.transform is not None:
            return self.transform.features(cut, speaker_stats)
        stats = speaker_stats if self.cmvn == "speaker" else None
        return gmm_features(cut, stats, norm_vars=self.norm_vars)


# --------------------------------------------------------------------------------------
# Transition probabilities: one set per (phone, HMM state).


def transition_counts(ali: np.ndarray, topos: dict[int, HmmTopo], shape: tuple) -> np.ndarray:
    """Counts ``[phone, state, destination]`` of the transitions an alignment takes.

    A frame moves to the next frame's state within a phone instance, or to the HMM's
    final state where the instance ends (the rule of
    :func:`asr_kd.align.align.phone_segments`).
    """
    counts = np.zeros(shape)
    if len(ali) == 0:
        return counts
    phone, state = ali[:, 0].astype(np.int64), ali[:, 1].astype(np.int64)
    last = np.zeros(shape[0], np.int64)
    final = np.zeros(shape[0], np.int64)
    for p, topo in topos.items():
        last[p], final[p] = topo.num_emitting - 1, topo.final
    new = (phone[1:] != phone[:-1]) | ((state[1:] < state[:-1]) & (state[:-1] == last[phone[:-1]]))
    dst = np.append(np.where(new, final[phone[:-1]], state[1:]), final[phone[-1]])
    np.add.at(counts, (phone, state, dst), 1.0)
    return counts


def update_topos(
    topos: dict[int, HmmTopo], counts: np.ndarray, floor: float, min_count: float
) -> dict[int, HmmTopo]:
    """Re-estimated transition probabilities (Kaldi's ``MleUpdate``, per phone and state).

    A state's allowed transitions get probabilities proportional to their counts,
    floored at ``floor`` and renormalised; a state seen fewer than ``min_count`` times
    keeps its probabilities.
    """
    out = {}
    for p, topo in topos.items():
        rows = []
        for h, arcs in enumerate(topo.transitions):
            dsts = [d for d, _ in arcs]
            c = counts[p, h, dsts] if p < len(counts) else np.zeros(len(dsts))
            if c.sum() < min_count:
                rows.append(arcs)
                continue
            prob = np.maximum(c / c.sum(), floor)
            prob /= prob.sum()
            rows.append(tuple((d, float(q)) for d, q in zip(dsts, prob, strict=True)))
        out[p] = HmmTopo(topo.num_emitting, topo.final, tuple(rows))
    return out


def _counts_shape(topos: dict[int, HmmTopo]) -> tuple[int, int, int]:
    size = max(t.final for t in topos.values()) + 1
    return (max(topos) + 1, size, size)


# --------------------------------------------------------------------------------------
# Per-shard work.


@dataclass(frozen=True)
class TriShardJob(ShardWork):
    """A tri-phone shard: ``mode`` ``"viterbi"`` (align) or ``"given"`` (accumulate
    along ``alignments``, ``[T, 2]`` (phone, state) per utterance)."""

    model: TriModel
    inter_word_silence: bool = True
    full_stats: bool = False


def run_tri_shard(job: TriShardJob) -> ShardResult:
    """Align (or take the alignments of) a shard's cuts and accumulate statistics.

    The result's ``alignments`` are ``[T, 2]`` (phone, state) per utterance and its
    ``trans_stats`` the :func:`transition_counts`.

    Raises:
        BadInputError: a cut's features disagree with its manifest's frame count,
            or it has out-of-vocabulary words with ``oov="error"``.
    """
    model, v = job.model, job.viterbi
    lang, _ = load_lang_fst(job.lang_dir, os.stat(Path(job.lang_dir) / MARKER).st_mtime_ns)
    compiler = scorer = None
    if job.mode == "viterbi":
        compiler = GraphCompiler(lang, model.tree, model.topos, v.transition_scale,
                                 v.self_loop_scale, None, job.inter_word_silence)  # fmt: skip
        scorer = GmmScorer(model.am)
    min_len = min_lengths(lang)
    silence = np.asarray(lang.silence_phones)
    failed: dict[str, str] = {}
    alignments: dict[str, np.ndarray] = {}
    feats, pdfs = [], []
    for cut in job.cuts:
        if job.mode == "given" and cut.id not in job.alignments:
            continue
        ids, why = (None, None) if job.mode == "given" else transcript_ids(
            cut, lang, min_len, job.oov
        )  # fmt: skip
        if why is not None:
            failed[cut.id] = why
            continue
        f = model.features(cut, job.speaker_stats)
        if len(f) != cut.num_frames:
            raise BadInputError(
                f"cut {cut.id}: its features have {len(f)} frames but the manifest says "
                f"{cut.num_frames}; recompute the features ('compute-features --force')"
            )
        if compiler is None:
            ali = job.alignments[cut.id]
            try:
                senones = model.tree.senones_for_alignment(ali)
            except UnknownContextError as e:
                failed[cut.id] = f"the tree cannot label its alignment: {e}"
                continue
        else:
            try:
                graph = compiler.compile(ids)
            except BadInputError as e:
                failed[cut.id] = f"no training graph: {e}"
                continue
            scores = scorer.label_scores(f, graph.labels, v.acoustic_scale)
            if v.boost_silence != 1.0:
                is_sil = np.isin(graph.labels.phone, silence)
                scores[:, is_sil] += v.acoustic_scale * np.log(v.boost_silence)
            path = viterbi_path(graph, scores, cut.id, v)
            if path is None:
                failed[cut.id] = beam_failure(v)
                continue
            ali, senones = graph.frame_labels(path)
        alignments[cut.id] = ali
        feats.append(f)
        pdfs.append(senones)
    shape = _counts_shape(model.topos)
    trans = np.zeros(shape)
    if not alignments:
        return ShardResult({}, failed, 0.0, 0, None, trans)
    log_like, stats = accumulate(model.am, feats, pdfs, job.accumulate, job.full_stats)
    for ali in alignments.values():
        trans += transition_counts(ali, model.topos, shape)
    return ShardResult(alignments, failed, log_like, sum(len(f) for f in feats), stats, trans)


# --------------------------------------------------------------------------------------
# Training.


def train_tri(
    ali_dir: Path | str,
    feature_dir: Path | str,
    lang_dir: Path | str,
    tree_dir: Path | str,
    out_dir: Path | str,
    config: TriConfig = TriConfig(),
    num_jobs: int = 1,
    executor: Executor | None = None,
    force: bool = False,
    transform_dir: Path | str | None = None,
) -> Path:
    """Train a tri-phone GMM-HMM on a tree from alignments (``asr-kd train-tri``).

    Args:
        ali_dir: a finished ``align`` output (monophone or tri-phone); its
            ``config.split`` utterances are the training set and their alignments
            the starting point.
        feature_dir: the MFCC ``compute-features`` output the alignment used.
        lang_dir: the ``prepare-lang`` output.
        tree_dir: a finished ``build-tree`` output: the model's pdfs are its senones.
        out_dir: the model directory to write (atomic; layout in the module doc).
        config: training settings.
        num_jobs: an iteration's utterances go out in ``2 * num_jobs`` shards when
            ``executor`` is given.
        executor: runs the shards; ``None`` works in-process.
        force: redo a finished output.
        transform_dir: an ``estimate-lda`` output: train on its LDA features, with MLLT
            (``train_lda_mllt.sh``); ``None``: MFCC + deltas (``train_deltas.sh``).

    Raises:
        AsrKdError: the last alignment lost more than ``config.max_failed_share``.
        BadInputError: the tree was built with another phone set than the lang
            directory, or the transform with another normalisation than ``config``'s.
    """
    ali_dir = require_done(Path(ali_dir).resolve(), "align")
    feature_dir = require_done(Path(feature_dir).resolve(), "compute-features")
    lang_dir = require_done(Path(lang_dir).resolve(), "prepare-lang")
    tree_dir = require_done(Path(tree_dir).resolve(), "build-tree")
    tree_path = require_file(tree_dir / "tree.json", "build-tree")
    out_dir = Path(out_dir)
    transform = None
    if transform_dir is not None:
        transform_dir, transform = load_transform(transform_dir)
        _check_transform(transform, config, transform_dir)
    stage_config = {
        "ali_dir": str(ali_dir),
        "feature_dir": str(feature_dir),
        "lang_dir": str(lang_dir),
        "tree_id": tree_id(tree_path),
        **({"transform_dir": str(transform_dir)} if transform is not None else {}),
        **to_dict(config),
    }
    with stage_output(out_dir, STAGE, stage_config, force) as tmp:
        if tmp is None:
            return out_dir
        start = time.time()
        lang = Lang.load(lang_dir)
        tree_json = tree_path.read_text()
        model = _init_model(lang, tree_json, config)
        model.transform = transform
        cuts, alignments = _training_alignments(ali_dir, config.split)
        speaker_stats = load_stats(feature_dir)[1] if config.cmvn == "speaker" else None
        _set_global_gaussian(model, cuts, speaker_stats)
        history = _train(model, cuts, alignments, lang_dir, speaker_stats, config, num_jobs,
                         executor)  # fmt: skip
        model.save(tmp / "final.mdl")
        shutil.copy(tree_path, tmp / "tree.json")
        shutil.copy(lang_dir / "phones.txt", tmp / "phones.txt")
        ll = history.pop("log_like")
        (tmp / "log_likelihood.json").write_text(json.dumps(ll) + "\n")
        if model.transform is not None:
            np.savez(tmp / "transform.npz", **model.transform.to_npz())
        info = {
            "num_pdfs": model.am.num_pdfs,
            "num_gaussians": model.am.num_gauss,
            "feature_dim": model.am.dim,
            "tree_id": stage_config["tree_id"],
            "cmvn": config.cmvn,
            "feature_transform": "deltas" if transform is None else "lda_mllt",
            "utterances": len(cuts),
            **history,
            "seconds": round(time.time() - start, 1),
        }
        (tmp / "info.json").write_text(json.dumps(info, indent=1) + "\n")
        logger.info(
            "%s: wrote %s: %d senones, %d Gaussians from %d utterances (%d frames), "
            "log-likelihood per frame %.2f -> %.2f, in %.1f s",
            STAGE, out_dir, model.am.num_pdfs, model.am.num_gauss, history["utterances_aligned"],
            history["frames"], ll[0], ll[-1], time.time() - start,
        )  # fmt: skip
    return out_dir


def _init_model(lang: Lang, tree_json: str, config: TriConfig) -> TriModel:
    """One Gaussian per senone (placeholders until :func:`_set_global_gaussian`)."""
    model = TriModel(tree_json, lang.topo_text, parse_topology(lang.topo_text), khg.AmDiagGmm(),
                     dict(lang.phones), config.cmvn, config.norm_vars)  # fmt: skip
    real = {p: i for p, i in model.tree.phones.items() if not p.startswith("#")}
    if real != {p: i for p, i in lang.phones.items() if not p.startswith("#")}:
        raise BadInputError(
            f"the tree was built with another phones.txt than {lang.dir}/phones.txt; "
            "rebuild the tree ('build-tree') with this lang directory"
        )
    return model


def _set_global_gaussian(model: TriModel, cuts: list[Cut], speaker_stats) -> None:
    """Every senone's GMM: one Gaussian at the mean and variance of (up to 100) cuts.

    Iteration 0 then re-estimates each from its own frames (``gmm-init-model``).
    """
    x = np.concatenate([model.features(c, speaker_stats) for c in cuts[:100]])
    mean, var = x.mean(axis=0), np.maximum(x.var(axis=0), 1e-5)
    gmm = khg.DiagGmm(1, len(mean))
    gmm.set_weights(np.ones(1, np.float32))
    gmm.set_means(mean[None].astype(np.float32))
    gmm.set_invvars((1.0 / var)[None].astype(np.float32))
    gmm.compute_gconsts()
    for _ in range(model.tree.num_senones):
        model.am.add_pdf(gmm)


def _training_alignments(ali_dir: Path, split: str) -> tuple[list[Cut], dict[str, np.ndarray]]:
    """The split's aligned cuts (sorted by id) and their (phone, state) alignments."""
    manifests = find_cut_manifests(ali_dir, "align")
    if split not in manifests:
        raise MissingInputError(
            f"{ali_dir} has no '{split}' alignments (found: {', '.join(manifests)}); "
            "set 'split' or run 'align' on that split"
        )
    cuts = sorted(load_cuts(manifests[split][1], "align"), key=lambda c: c.id)
    if not cuts:
        raise BadInputError(f"{ali_dir}: no '{split}' utterance was aligned")
    alignments = {c.id: np.rint(c.load_custom(ALI_KEY)).astype(np.int32) for c in cuts}
    return cuts, alignments


def _train(
    model: TriModel,
    cuts: list[Cut],
    alignments: dict[str, np.ndarray],
    lang_dir: Path,
    speaker_stats: dict[str, FeatureStats] | None,
    config: TriConfig,
    num_jobs: int,
    executor: Executor | None,
) -> dict[str, Any]:
    """The EM iterations; updates ``model`` in place and returns what info.json needs."""
    viterbi = ViterbiOptions.of(config)
    realign = set(config.schedule())
    mllt = set(config.mllt_schedule()) if model.transform is not None else set()
    mllt_gains: dict[int, float] = {}
    rng = np.random.default_rng(config.seed)

    def make_job(part: list[Cut], mode: str, ali: dict[str, np.ndarray], it: int) -> TriShardJob:
        return TriShardJob(
            part, model, str(lang_dir), speaker_stats, mode, viterbi, ali,
            oov=config.oov, inter_word_silence=config.inter_word_silence, full_stats=it in mllt,
        )  # fmt: skip

    def update(it: int, r: ShardResult, num_gauss: int) -> None:
        if it in mllt:
            mllt_gains[it] = apply_mllt(model, r.stats)
        _update(model, r.stats, r.trans_stats, 3.0 if it == 0 else None, num_gauss, config, rng)

    result = em_iterations(
        model,
        cuts,
        config,
        first_mode=None,
        realign=realign,
        max_iter_inc=config.max_iter_inc(),
        num_gauss=model.am.num_pdfs,
        make_job=make_job,
        run=run_tri_shard,
        update=update,
        stage=STAGE,
        num_jobs=num_jobs,
        executor=executor,
        alignments=alignments,
    )
    extra = {"mllt_iters": sorted(mllt), "mllt_gain_per_frame": mllt_gains} if mllt else {}
    return {**result, "realign_iters": sorted(realign), **extra}


def apply_mllt(model: TriModel, stats: GmmStats) -> float:
    """Estimate an MLLT from full statistics and move model, statistics and transform.

    The semi-tied transform ``A`` (:func:`estimate_mllt`) is composed into the model's
    feature transform; the statistics become those of ``A x`` (so the ML update that
    follows is in the new space) and every Gaussian's mean ``A mu`` with variance
    ``diag(A diag(var) A^T)`` (``gmm-transform-means``; Gaussians the update skips keep
    these).

    Returns:
        The log-likelihood gain per frame the transform gives the statistics' Gaussians.
    """
    occ = np.concatenate(stats.occ)
    cov = gaussian_covariances(occ, np.concatenate(stats.x), np.concatenate(stats.xx))
    a, history = estimate_mllt(occ, cov)
    for p in range(len(stats.occ)):
        stats.x[p] = stats.x[p] @ a.T
        stats.xx[p] = np.einsum("ij,gjk,lk->gil", a, stats.xx[p], a)
        stats.x2[p] = np.einsum("gii->gi", stats.xx[p]).copy()
        gmm = model.am.get_pdf(p)  # a live reference
        means = np.asarray(gmm.means, np.float64) @ a.T
        var = (1.0 / np.asarray(gmm.inv_vars, np.float64)) @ (a * a).T
        gmm.set_invvars_and_means((1.0 / var).astype(np.float32), means.astype(np.float32))
        gmm.compute_gconsts()
    stats.xx = None
    model.transform = model.transform.then(a)
    gain = (history[-1] - history[0]) / max(float(occ.sum()), 1.0)
    logger.info("%s: MLLT: log-likelihood per frame +%.3f", STAGE, gain)
    return round(gain, 4)


def _check_transform(transform: FeatureTransform, config: TriConfig, where: Path) -> None:
    """Refuse a transform estimated on features normalised otherwise than ``config``."""
    if (transform.cmvn, transform.norm_vars) != (config.cmvn, config.norm_vars):
        raise BadInputError(
            f"{where}: the LDA was estimated with cmvn={transform.cmvn!r}, "
            f"norm_vars={transform.norm_vars}, but this training section has "
            f"cmvn={config.cmvn!r}, norm_vars={config.norm_vars}; make them agree"
        )


def _update(
    model: TriModel,
    stats: GmmStats,
    trans: np.ndarray,
    min_occupancy: float | None,
    target: int,
    config: TriConfig,
    rng: np.random.Generator,
) -> None:
    """Re-estimate transitions and Gaussians, then mix up (``gmm-est --mix-up``)."""
    model.topos = update_topos(model.topos, trans, config.transition_floor,
                               config.transition_min_count)  # fmt: skip
    min_occ = config.min_gaussian_occupancy if min_occupancy is None else min_occupancy
    update_gmms(model.am, stats, min_occ, target, config, rng)
