"""The LDA stage of the second tri-phone pass (Kaldi's ``acc-lda`` + ``est-lda`` in
``steps/train_lda_mllt.sh``).

``asr-kd estimate-lda`` splices the normalised MFCCs of the aligned training
utterances and estimates the LDA with the alignment's senones (on the tree the
alignment's model used) as classes; silence frames get weight 0, as Kaldi's
``weight-silence-post 0.0``. Output (one directory written atomically)::

    <out_dir>/transform.npz   matrix [dim, num_ceps * (2 * splice + 1)], splice, cmvn,
                              norm_vars (:class:`asr_kd.align.lda_mllt.FeatureTransform`)
    <out_dir>/info.json       dimensions, classes seen, frames, leading eigenvalues

``build-tree --transform`` and ``train-tri --transform`` read it.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lhotse.cut import Cut

from asr_kd.align.lda_mllt import LdaStats, estimate_lda
from asr_kd.config import to_dict
from asr_kd.data.features import FeatureStats, load_stats
from asr_kd.data.gmm_features import LDA_STAGE as STAGE
from asr_kd.data.gmm_features import FeatureTransform, normalised_mfcc, splice_frames
from asr_kd.data.manifests import ALI_KEY, find_cut_manifests, load_cuts
from asr_kd.errors import BadInputError, MissingInputError
from asr_kd.lang import Lang
from asr_kd.parallel import map_progress
from asr_kd.stage import require_done, require_file, stage_output
from asr_kd.tree import ContextTree, UnknownContextError
from asr_kd.tree.context_tree import tree_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LdaConfig:
    """LDA settings (``train_lda_mllt.sh``'s ``--splice-opts`` and ``--dim``).

    Attributes:
        splice: frames of context either side (Kaldi's default is 3; 4 gives 117 inputs).
        dim: output dimension.
        cmvn, norm_vars: the normalisation before splicing; the tri-phone section that
            uses the transform must have the same.
        split: the alignment directory's split to estimate on.
    """

    splice: int = 4
    dim: int = 40
    cmvn: str = "speaker"
    norm_vars: bool = False
    split: str = "train"

    def __post_init__(self) -> None:
        if self.splice < 0 or self.dim < 1:
            raise ValueError("splice must be >= 0 and dim >= 1")
        if self.cmvn not in ("speaker", "utterance"):
            raise ValueError(f"cmvn must be 'speaker' or 'utterance', got {self.cmvn!r}")


@dataclass(frozen=True)
class _LdaJob:
    cuts: list[Cut]
    tree_json: str
    silence: tuple[int, ...]
    speaker_stats: dict[str, FeatureStats] | None
    config: LdaConfig


def _lda_shard(job: _LdaJob) -> tuple[LdaStats | None, int]:
    """LDA statistics of a shard's non-silence frames, and how many cuts were skipped."""
    tree = ContextTree._from_doc(json.loads(job.tree_json))
    stats, skipped = None, 0
    speaker_stats = job.speaker_stats if job.config.cmvn == "speaker" else None
    for cut in job.cuts:
        ali = np.rint(cut.load_custom(ALI_KEY)).astype(np.int32)
        try:
            classes = tree.senones_for_alignment(ali)
        except UnknownContextError as e:
            logger.debug("%s: %s: the tree cannot label its alignment: %s", STAGE, cut.id, e)
            skipped += 1
            continue
        x = splice_frames(normalised_mfcc(cut, speaker_stats, job.config.norm_vars),
                          job.config.splice)  # fmt: skip
        if len(x) != len(ali):
            raise BadInputError(
                f"cut {cut.id}: {len(x)} feature frames but {len(ali)} aligned frames; "
                "align again with these features ('align --force')"
            )
        speech = ~np.isin(ali[:, 0], job.silence)
        if stats is None:
            stats = LdaStats.zeros(tree.num_senones, x.shape[1])
        stats.add(x[speech], classes[speech])
    return stats, skipped


def estimate_lda_stage(
    ali_dir: Path | str,
    feature_dir: Path | str,
    lang_dir: Path | str,
    tree_dir: Path | str,
    out_dir: Path | str,
    config: LdaConfig = LdaConfig(),
    num_jobs: int = 1,
    executor: Executor | None = None,
    force: bool = False,
) -> Path:
    """Estimate the LDA of spliced MFCCs on an alignment's senones (``asr-kd estimate-lda``).

    Args:
        ali_dir: a finished ``align`` output (Kaldi: tri1's).
        feature_dir: the MFCC ``compute-features`` output the alignment used.
        lang_dir: the ``prepare-lang`` output (its silence phones get weight 0).
        tree_dir: the ``build-tree`` output whose senones are the classes.
        out_dir: the transform directory to write (atomic; layout in the module doc).
        config: splice, dimension and normalisation.
        num_jobs: shards for ``executor``.
        executor: runs the accumulation; ``None`` works in-process.
        force: redo a finished output.

    Raises:
        MissingInputError: ``ali_dir`` has no ``config.split`` alignments.
        ValueError: the statistics cannot give an LDA of ``config.dim`` dimensions.
    """
    ali_dir = require_done(Path(ali_dir).resolve(), "align")
    feature_dir = require_done(Path(feature_dir).resolve(), "compute-features")
    tree_dir = require_done(Path(tree_dir).resolve(), "build-tree")
    tree_path = require_file(tree_dir / "tree.json", "build-tree")
    lang = Lang.load(lang_dir)
    out_dir = Path(out_dir).resolve()
    stage_config = {"ali_dir": str(ali_dir), "feature_dir": str(feature_dir),
                    "tree_id": tree_id(tree_path), **to_dict(config)}  # fmt: skip
    with stage_output(out_dir, STAGE, stage_config, force) as tmp:
        if tmp is None:
            return out_dir
        start = time.time()
        manifests = find_cut_manifests(ali_dir, "align")
        if config.split not in manifests:
            raise MissingInputError(
                f"{ali_dir} has no '{config.split}' alignments (found: {', '.join(manifests)})"
            )
        cuts = sorted(load_cuts(manifests[config.split][1], "align"), key=lambda c: c.id)
        speaker_stats = load_stats(feature_dir)[1] if config.cmvn == "speaker" else None
        n = max(num_jobs, 1)
        jobs = [_LdaJob(cuts[i::n], tree_path.read_text(), tuple(lang.silence_phones),
                        speaker_stats, config) for i in range(n)]  # fmt: skip
        results = map_progress(_lda_shard, jobs, executor, STAGE)
        parts = [s for s, _ in results if s is not None]
        if not parts:
            raise BadInputError(f"{ali_dir}: no '{config.split}' utterance gave LDA statistics")
        stats = functools.reduce(LdaStats.merge, parts)
        matrix, eigenvalues = estimate_lda(stats, config.dim)
        transform = FeatureTransform(matrix, config.splice, config.cmvn, config.norm_vars)
        np.savez(tmp / "transform.npz", **transform.to_npz())
        info = {
            "input_dim": int(matrix.shape[1]),
            "dim": config.dim,
            "classes_seen": int((stats.count > 0).sum()),
            "frames": int(stats.count.sum()),
            "skipped_utterances": sum(k for _, k in results),
            "eigenvalues": [round(float(v), 4) for v in eigenvalues[: config.dim]],
            "tree_id": stage_config["tree_id"],
        }
        (tmp / "info.json").write_text(json.dumps(info, indent=1) + "\n")
        logger.info(
            "%s: wrote %s: %d -> %d dimensions from %d frames of %d senones, in %.1f s",
            STAGE, out_dir, info["input_dim"], config.dim, info["frames"],
            info["classes_seen"], time.time() - start,
        )  # fmt: skip
    return out_dir
