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
(:func:`asr_kd.align.shard.run_shard`) on an executor; ``train-tri`` and ``align``
reuse it and this module's EM loop (:func:`em_iterations`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kaldi_hmm_gmm as khg
import numpy as np
from lhotse import CutSet
from lhotse.cut import Cut

from asr_kd.align.mixup import mix_up
from asr_kd.align.shard import (
    GmmStats,
    ShardJob,
    ShardResult,
    ViterbiOptions,
    run_shard,
    shards,
    topology,
)
from asr_kd.config import to_dict
from asr_kd.data.features import FeatureStats, load_stats
from asr_kd.data.gmm_features import gmm_features
from asr_kd.data.manifests import find_cut_manifests, load_cuts
from asr_kd.errors import AsrKdError, BadInputError, MissingInputError
from asr_kd.lang import Lang
from asr_kd.parallel import map_progress
from asr_kd.stage import require_done, stage_output

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
        topo = topology(lang.topo_text)
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
