"""Forced alignment of every split with a GMM-HMM (Kaldi's ``align_si.sh``).

The model is a monophone (``train-mono``: kaldi-hmm-gmm's training graphs) or a
tri-phone one (``train-tri``: per-utterance graphs from its tree, :mod:`asr_kd.align.graphs`;
a tri2 model carries its LDA+MLLT feature transform and applies it, as Kaldi's
``align_si.sh`` does with ``final.mat``).

Output (``asr-kd align``, one directory written atomically), the contract the
decision-tree and senone-target stages read::

    <out_dir>/<corpus>_cuts_<split>.jsonl.gz   the MFCC cuts that aligned, each with the
                                               custom TemporalArray "mono_ali": int32
                                               [T, 2] = (phone id, HMM state) per frame
    <out_dir>/mono_ali_<split>.h5              those arrays (lhotse NumpyHdf5Writer, exact)
    <out_dir>/failed_<split>.txt               "<utt-id> <reason>" per utterance not aligned
    <out_dir>/summary.json                     per split: counts, log-likelihood per frame,
                                               word-boundary accuracy against reference
                                               word timings when the supervisions have them

Word boundaries come from the aligned phone sequence: phone instances are matched
left to right against the transcript's pronunciations, skipping optional silence
between words. A word starts at its first phone's first frame and ends after its
last phone's last frame, so silence after a word is not part of it. (The synthetic
corpus's reference end of a word is the next word's start, which includes any pause;
``summary.json`` also reports the end measured up to the next word, see
:func:`boundary_errors`.)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import kaldi_hmm_gmm as khg
import numpy as np
from lhotse import CutSet, NumpyHdf5Writer
from lhotse.cut import Cut

from asr_kd.align.model_ali import AlignmentModel, ModelShardJob, check_tree, run_model_shard
from asr_kd.align.mono import STAGE as TRAIN_STAGE
from asr_kd.align.mono import MonoModel
from asr_kd.align.shard import ShardJob, ViterbiOptions, run_shard, shards
from asr_kd.align.tri import STAGE as TRI_STAGE
from asr_kd.align.tri import TriModel, TriShardJob, run_tri_shard
from asr_kd.config import to_dict
from asr_kd.data.features import load_stats
from asr_kd.data.manifests import ALI_KEY, find_cut_manifests, load_cuts, relocate_storage
from asr_kd.errors import AsrKdError, BadInputError
from asr_kd.lang import Lang
from asr_kd.parallel import map_progress
from asr_kd.stage import MARKER, read_marker, require_done, stage_output

logger = logging.getLogger(__name__)

STAGE = "align"


@dataclass(frozen=True)
class AlignConfig:
    """Forced-alignment settings (``align_si.sh``'s options).

    Attributes:
        beam, retry_beam: Viterbi beams; an utterance failing both is listed as failed.
        transition_scale, self_loop_scale, acoustic_scale, boost_silence: as in training.
        inter_word_silence: tri-phone and other models' graphs allow optional silence
            between words (the monophone's come from the lang's L, which always does).
        oov: ``"skip"`` utterances with words outside the lexicon (listed as failed),
            ``"map"`` those words to ``<UNK>`` or raise (``"error"``).
        max_failed_share: fail the stage when a split loses more utterances.
        tolerances: word-boundary tolerances (seconds) reported in ``summary.json``.
    """

    beam: float = 10.0
    retry_beam: float = 40.0
    transition_scale: float = 1.0
    self_loop_scale: float = 0.1
    acoustic_scale: float = 0.1
    boost_silence: float = 1.0
    inter_word_silence: bool = True
    oov: str = "skip"
    max_failed_share: float = 0.05
    tolerances: tuple[float, ...] = (0.02, 0.05)

    def __post_init__(self) -> None:
        if self.oov not in ("map", "skip", "error"):
            raise ValueError(f"oov must be 'map', 'skip' or 'error', got {self.oov!r}")
        if not 0.0 <= self.max_failed_share <= 1.0:
            raise ValueError("max_failed_share must lie in [0, 1]")


def align(
    feature_dir: Path | str,
    lang_dir: Path | str,
    model_dir: Path | str,
    out_dir: Path | str,
    config: AlignConfig = AlignConfig(),
    num_jobs: int = 1,
    executor: Executor | None = None,
    force: bool = False,
    model_spec: str | None = None,
    device: str = "cpu",
) -> Path:
    """Align every split of ``feature_dir`` with a GMM or any model (``asr-kd align``).

    Args:
        feature_dir: the MFCC ``compute-features`` output the GMM was trained on; with
            ``model_spec``, the model's input features (fbank).
        lang_dir: the ``prepare-lang`` output the model was trained with.
        model_dir: a finished ``train-mono`` or ``train-tri`` output; with
            ``model_spec``, the ``senone-targets`` output the model was trained on (its
            tree and priors).
        out_dir: the alignment directory to write (atomic; layout in the module doc).
        config: alignment settings.
        num_jobs: a split's utterances go out in ``2 * num_jobs`` shards when
            ``executor`` is given.
        executor: runs the shards; ``None`` works in-process.
        force: redo a finished output.
        model_spec: align with this model instead (:func:`asr_kd.teachers.load`'s
            spec: a training directory, ``ensemble:...``, a teacher file), through
            training graphs of its tree (:mod:`asr_kd.align.model_ali`).
        device: where a network runs (``cpu``, ``cuda``, ``auto``).

    Returns:
        ``out_dir``.

    Raises:
        AsrKdError: a split lost more than ``config.max_failed_share`` of its utterances.
        BadInputError: a cut's features disagree with its manifest, the model's phones
            with the lang directory's, or an OOV word with ``oov: error``.
    """
    feature_dir = require_done(Path(feature_dir).resolve(), "compute-features")
    lang_dir = require_done(Path(lang_dir).resolve(), "prepare-lang")
    model_dir = Path(model_dir).resolve()
    out_dir = Path(out_dir).resolve()
    manifests = find_cut_manifests(feature_dir, "compute-features")
    stage_config = {
        "feature_dir": str(feature_dir),
        "lang_dir": str(lang_dir),
        "model_dir": str(model_dir),
        **({"model": model_spec} if model_spec else {}),
        **to_dict(config),
    }
    with stage_output(out_dir, STAGE, stage_config, force) as tmp:
        if tmp is None:
            return out_dir
        start = time.time()
        lang = Lang.load(lang_dir)
        if model_spec:
            model = AlignmentModel.from_senone_dir(model_spec, model_dir, lang.topo_text,
                                                   lang.phones, device)  # fmt: skip
            check_tree(model, lang.phones)
        else:
            model = load_gmm(model_dir)
        if model.phones != lang.phones:
            raise BadInputError(
                f"{model_dir}/final.mdl was trained with another phone set than {lang_dir}; "
                "align with the lang directory it was trained with"
            )
        cmvn = getattr(model, "cmvn", None)
        speaker_stats = load_stats(feature_dir)[1] if cmvn == "speaker" else None
        splits = _Splits(tmp, out_dir, lang, model, speaker_stats, config, num_jobs, executor)
        summary = {
            split: splits.align(load_cuts(path, "compute-features"), split, corpus)
            for split, (corpus, path) in manifests.items()
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        _check_failures(summary, config.max_failed_share, tmp)
        done = ", ".join(f"{s} {v['aligned']}/{v['utterances']}" for s, v in summary.items())
        logger.info("%s: wrote %s: %s in %.1f s", STAGE, out_dir, done, time.time() - start)
    return out_dir


def load_gmm(model_dir: Path) -> MonoModel | TriModel:
    """The ``final.mdl`` of a finished ``train-mono`` or ``train-tri`` output."""
    marker = (model_dir / MARKER).is_file()
    stage = read_marker(model_dir).get("stage") if marker else None
    if stage == TRI_STAGE:
        require_done(model_dir, TRI_STAGE)
        return TriModel.load(model_dir / "final.mdl")
    require_done(model_dir, TRAIN_STAGE)
    return MonoModel.load(model_dir / "final.mdl")


@dataclass
class _Splits:
    """What aligning one split needs besides its cuts."""

    tmp: Path
    out_dir: Path
    lang: Lang
    model: MonoModel | TriModel | AlignmentModel
    speaker_stats: dict | None
    config: AlignConfig
    num_jobs: int
    executor: Executor | None

    def _jobs(self, parts: list[list[Cut]], viterbi: ViterbiOptions) -> tuple:
        """The shard function for the model and its jobs."""
        lang_dir, oov, sil = str(self.lang.dir), self.config.oov, self.config.inter_word_silence
        if isinstance(self.model, AlignmentModel):
            jobs = [ModelShardJob(p, self.model, lang_dir, viterbi, oov, sil) for p in parts]
            return run_model_shard, jobs
        common = (self.model, lang_dir, self.speaker_stats, "viterbi", viterbi)
        if isinstance(self.model, TriModel):
            options = {"accumulate": False, "oov": oov, "inter_word_silence": sil}
            return run_tri_shard, [TriShardJob(p, *common, **options) for p in parts]
        return run_shard, [ShardJob(p, *common, accumulate=False, oov=oov) for p in parts]

    def align(self, cuts: CutSet, split: str, corpus: str) -> dict:
        """Align a split, write its manifest, arrays and failures; its summary entry."""
        start = time.time()
        cuts = cuts.to_eager()
        viterbi = ViterbiOptions.of(self.config)
        parts = shards(list(cuts), 1 if self.executor is None else 2 * self.num_jobs)
        work, jobs = self._jobs(parts, viterbi)
        results = map_progress(work, jobs, self.executor, f"{STAGE} {split}")
        found = {u: a for r in results for u, a in r.alignments.items()}
        failed = {u: why for r in results for u, why in r.failed.items()}
        if isinstance(self.model, MonoModel):  # transition ids -> (phone, state)
            table = self.model.frame_labels()
            found = {u: table[tids] for u, tids in found.items()}
        aligned = []
        with NumpyHdf5Writer(self.tmp / f"{ALI_KEY}_{split}.h5") as writer:
            for cut in cuts:
                if cut.id in found:
                    aligned.append(_attach(cut, found[cut.id], writer))
        manifest = self.tmp / f"{corpus}_cuts_{split}.jsonl.gz"
        relocate_storage(CutSet.from_cuts(aligned), self.tmp, self.out_dir).to_file(manifest)
        lines = "".join(f"{u} {why}\n" for u, why in sorted(failed.items()))
        (self.tmp / f"failed_{split}.txt").write_text(lines)
        frames = sum(r.frames for r in results)
        out = {
            "utterances": len(cuts),
            "aligned": len(aligned),
            "failed": len(failed),
            "failed_share": round(len(failed) / max(len(cuts), 1), 4),
            "frames": frames,
            "log_likelihood_per_frame": round(sum(r.log_like for r in results) / max(frames, 1), 4),
        }
        boundaries = word_boundary_accuracy(aligned, self.lang, self.model.topo_text, self.config)
        if boundaries is not None:
            out["word_boundaries"] = boundaries
        logger.info(
            "%s: %s: %d of %d utterances aligned (%d failed), log-likelihood per frame %.2f%s, "
            "%.1f s",
            STAGE, split, len(aligned), len(cuts), len(failed), out["log_likelihood_per_frame"],
            _boundary_text(boundaries), time.time() - start,
        )  # fmt: skip
        return out


def alignment_accuracy(exp_dir: Path | str, split: str = "dev") -> dict[str, float | None]:
    """Word starts within 20 ms of the reference, per finished alignment under ``exp_dir``.

    Returns:
        ``{"mono_ali": 0.80, "tri1_ali": 0.84, ...}`` from each ``*_ali/summary.json``
        (``None`` where the split has no reference word timings).
    """
    out: dict[str, float | None] = {}
    for d in sorted(Path(exp_dir).glob("*_ali")):
        if not (d / MARKER).is_file() or not (d / "summary.json").is_file():
            continue
        entry = json.loads((d / "summary.json").read_text()).get(split) or {}
        out[d.name] = (entry.get("word_boundaries") or {}).get("start_within_20ms")
    return out


def _attach(cut: Cut, labels: np.ndarray, writer: NumpyHdf5Writer) -> Cut:
    """The cut with its (phone, state) array stored and attached as ``mono_ali``."""
    if len(labels) != cut.num_frames:
        raise BadInputError(
            f"cut {cut.id}: alignment has {len(labels)} frames but the features "
            f"{cut.num_frames}; recompute the features ('compute-features --force')"
        )
    shift = cut.features.frame_shift
    array = writer.store_array(cut.id, labels.astype(np.int32), frame_shift=shift, temporal_dim=0)
    return cut.with_custom(ALI_KEY, array)


def _boundary_text(b: dict | None) -> str:
    if not b:
        return ""
    keys = [k for k in b if k.startswith("start_within_")]
    tols = "/".join(k.removeprefix("start_within_").removesuffix("ms") for k in keys)
    starts = "/".join(f"{b[k]:.1%}" for k in keys)
    ends = "/".join(f"{b[k.replace('start', 'end', 1)]:.1%}" for k in keys)
    return f", word starts within {tols} ms {starts}, ends {ends}"


def is_subset_split(split: str, splits) -> bool:
    """``test_piper`` is a subset of ``test`` when ``test`` is among ``splits``."""
    return any(split != p and split.startswith(p + "_") for p in splits)


def _check_failures(summary: dict, max_share: float, tmp: Path) -> None:
    """Log every utterance not aligned; fail when a split lost more than ``max_share``.

    A subset of another split (``test_piper`` of ``test``: the per-engine subsets that
    ``prepare synth`` writes) is not held to the limit on its own: its failures count
    in its parent split, and a subset of 25 utterances would fail on two.
    """
    bad = []
    for split, v in summary.items():
        lines = (tmp / f"failed_{split}.txt").read_text().splitlines()
        for line in lines:
            logger.warning("%s: %s: not aligned: %s", STAGE, split, line)
        if is_subset_split(split, summary):
            continue
        if v["failed"] > max_share * v["utterances"]:
            bad.append(f"{split}: {v['failed']} of {v['utterances']} (e.g. {'; '.join(lines[:3])})")
    if bad:
        raise AsrKdError(
            f"{STAGE}: too many utterances failed to align (limit {max_share:.0%} per split): "
            + " | ".join(bad)
            + "; see the warnings above, or raise max_failed_share"
        )


# --------------------------------------------------------------------------------------
# Word boundaries.


def phone_segments(labels: np.ndarray, last_state: dict[int, int]) -> list[tuple[int, int, int]]:
    """Phone instances of a frame alignment: ``(phone, first frame, end frame)``.

    A new instance starts where the phone changes, or where the same phone re-enters
    after its last emitting state (two identical phones in a row).

    Args:
        labels: ``[T, 2]`` (phone, HMM state) per frame.
        last_state: phone -> index of its last emitting HMM state.
    """
    segments: list[list[int]] = []
    prev_phone, prev_state = -1, -1
    for t, (phone, state) in enumerate(labels.tolist()):
        new = phone != prev_phone or (state < prev_state and prev_state == last_state[phone])
        if new:
            segments.append([phone, t, t + 1])
        else:
            segments[-1][2] = t + 1
        prev_phone, prev_state = phone, state
    return [tuple(s) for s in segments]


def word_segments(
    segments: Sequence[tuple[int, int, int]],
    words: Sequence[str],
    prons: dict[str, list[tuple[int, ...]]],
    optional_silence: int,
) -> list[tuple[str, int, int, int]] | None:
    """Match phone instances to the transcript: ``(word, start, end, next start)`` frames.

    Optional silence may precede, separate and follow words. ``next start`` is the
    first frame of the next word (the last word's own end). ``None`` when the phones
    do not spell the transcript with any of its pronunciations.
    """
    phones = tuple(s[0] for s in segments)

    @cache
    def match(i: int, j: int) -> tuple[tuple[str, int, int], ...] | None:
        while j < len(phones) and phones[j] == optional_silence:
            j += 1
        if i == len(words):
            return () if j == len(phones) else None
        for pron in prons[words[i]]:
            k = j + len(pron)
            if phones[j:k] == pron:
                rest = match(i + 1, k)
                if rest is not None:
                    return ((words[i], segments[j][1], segments[k - 1][2]), *rest)
        return None

    found = match(0, 0)
    if found is None:
        return None
    nexts = [s for _, s, _ in found[1:]] + [found[-1][2]] if found else []
    return [(w, s, e, n) for (w, s, e), n in zip(found, nexts, strict=True)]


def boundary_errors(
    cut: Cut, labels: np.ndarray, lang: Lang, last_state: dict[int, int], oov_map: bool
) -> np.ndarray | None:
    """Signed errors (seconds) of each word's start, end and end-to-next-word.

    Returns ``[num_words, 3]`` against ``supervision.alignment["word"]``, or ``None``
    when the cut has no reference timings or its alignment cannot be split into the
    transcript's words.
    """
    sup = cut.supervisions[0] if cut.supervisions else None
    ref = (sup.alignment or {}).get("word") if sup is not None else None
    if not ref:
        return None
    words = [w if w in lang.lexicon or not oov_map else lang.oov_word for w in sup.text.split()]
    if len(words) != len(ref) or any(w not in lang.lexicon for w in words):
        return None
    prons = {w: [tuple(lang.phones[p] for p in pron) for pron in lang.lexicon[w]] for w in words}
    found = word_segments(phone_segments(labels, last_state), words, prons, lang.optional_silence)
    if found is None:
        return None
    shift = cut.features.frame_shift
    hyp = np.asarray([(s, e, n) for _, s, e, n in found], np.float64) * shift
    ref_start = np.asarray([r.start for r in ref])  # cut-relative, like sup.start
    ref_end = ref_start + np.asarray([r.duration for r in ref])
    return hyp - np.stack([ref_start, ref_end, ref_end], axis=1)


def word_boundary_accuracy(
    cuts: Sequence[Cut], lang: Lang, topo_text: str, config: AlignConfig
) -> dict | None:
    """Share of word boundaries within each tolerance of the reference word timings.

    With cuts from several voice engines (the supervisions' ``engine``), ``by_engine``
    gives the same figures per engine: their reference timings are not equally exact
    (espeak's come from its own word events, piper's from its duration predictor).
    """
    topo = khg.HmmTopology()
    topo.read(topo_text)
    # the last emitting state of each phone's HMM (2 for 3-state phones, 4 for SIL)
    last_state = {p: n - 1 for p, n in enumerate(topo.get_phone_to_num_pdf_classes()) if n > 0}
    errors: dict[str, list[np.ndarray]] = {}
    with_ref: dict[str, int] = {}
    unmatched: dict[str, int] = {}
    for cut in cuts:
        labels = cut.load_custom(ALI_KEY)
        err = boundary_errors(cut, labels, lang, last_state, config.oov == "map")
        sup = cut.supervisions[0] if cut.supervisions else None
        if sup is None or not (sup.alignment or {}).get("word"):
            continue
        engine = str((sup.custom or {}).get("engine", ""))
        with_ref[engine] = with_ref.get(engine, 0) + 1
        unmatched[engine] = unmatched.get(engine, 0) + (err is None)
        if err is not None:
            errors.setdefault(engine, []).append(err)
    if not errors:
        return None
    out = _boundary_shares(
        [e for errs in errors.values() for e in errs],
        sum(with_ref.values()) - sum(unmatched.values()), sum(unmatched.values()), config,
    )  # fmt: skip
    if len(with_ref) > 1:
        out["by_engine"] = {
            engine: _boundary_shares(
                errors.get(engine, []),
                with_ref[engine] - unmatched[engine],
                unmatched[engine],
                config,
            )  # fmt: skip
            for engine in sorted(with_ref)
        }
    return out


def _boundary_shares(
    errors: list[np.ndarray], matched: int, unmatched: int, config: AlignConfig
) -> dict:
    out: dict = {"utterances": matched, "unmatched_utterances": unmatched}
    if not errors:
        out["words"] = 0
        return out
    err = np.abs(np.concatenate(errors))
    out["words"] = len(err)
    for col, name in enumerate(("start", "end", "end_to_next_word")):
        for tol in config.tolerances:
            share = float((err[:, col] <= tol).mean())
            out[f"{name}_within_{round(tol * 1000)}ms"] = round(share, 4)
        out[f"{name}_median_abs_error_ms"] = round(float(np.median(err[:, col])) * 1000, 1)
    return out
