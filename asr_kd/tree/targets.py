"""The decision-tree and senone-target stages (Kaldi's ``build-tree`` and ``convert-ali``).

``asr-kd build-tree`` accumulates single-Gaussian statistics per tri-phone HMM state
from the monophone alignments of the training split and builds the tree::

    <tree_dir>/tree.json      the tree (readable; reloads identically)
    <tree_dir>/stats.npz      the statistics it was built from
    <tree_dir>/info.json      senones, frames, occupancy spread, tree id (sha256)

``asr-kd senone-targets`` maps every aligned frame to its senone and stores the
targets on the fbank cuts, the input of every acoustic model::

    <out_dir>/<corpus>_cuts_<split>.jsonl.gz   fbank cuts with the custom TemporalArray
                                               "senones": int32 [T] (same frame shift
                                               and count as the fbank features)
    <out_dir>/senones_<split>.h5               those arrays (lhotse NumpyHdf5Writer)
    <out_dir>/tree.json                        the tree the targets were made with
    <out_dir>/priors.json                      senone frame counts on the training split
    <out_dir>/info.json                        num_senones, tree id, per-split counts
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import time
from concurrent.futures import Executor
from pathlib import Path

import kaldi_hmm_gmm as khg
import numpy as np
from lhotse import CutSet, NumpyHdf5Writer
from lhotse.cut import Cut

from asr_kd.checked import read_json, read_text
from asr_kd.config import to_dict
from asr_kd.data.features import FeatureStats, load_stats
from asr_kd.data.gmm_features import FeatureTransform, gmm_features, load_transform
from asr_kd.data.manifests import ALI_KEY, find_cut_manifests, load_cuts, relocate_storage
from asr_kd.errors import BadInputError
from asr_kd.lang import Lang
from asr_kd.parallel import map_progress
from asr_kd.stage import require_done, stage_output
from asr_kd.tree.build import TreeConfig, build_tree
from asr_kd.tree.context_tree import ContextTree, tree_id
from asr_kd.tree.priors import senone_priors, write_priors
from asr_kd.tree.stats import TreeStats, accumulate_stats

logger = logging.getLogger(__name__)

TREE_STAGE = "build-tree"
TARGETS_STAGE = "senone-targets"
SENONE_KEY = "senones"


def load_alignment(cut: Cut) -> np.ndarray:
    """A cut's monophone alignment ``[T, 2]`` (phone id, HMM state) as int32."""
    if not cut.has_custom(ALI_KEY):
        raise BadInputError(f"cut {cut.id} has no '{ALI_KEY}' alignment: run 'align' first")
    return np.rint(cut.load_custom(ALI_KEY)).astype(np.int32)


def _shard_stats(
    cuts: list[Cut], speaker_stats: dict[str, FeatureStats], transform: FeatureTransform | None
) -> TreeStats:
    def features(cut: Cut) -> np.ndarray:
        if transform is not None:
            return transform.features(cut, speaker_stats)
        return gmm_features(cut, speaker_stats)

    return accumulate_stats((cut.id, load_alignment(cut), features(cut)) for cut in cuts)


def build_tree_stage(
    ali_dir: Path | str,
    feature_dir: Path | str,
    lang_dir: Path | str,
    out_dir: Path | str,
    config: TreeConfig,
    split: str = "train",
    num_jobs: int = 1,
    executor: Executor | None = None,
    force: bool = False,
    transform_dir: Path | str | None = None,
) -> Path:
    """Build the senone tree from the ``split`` alignments (``asr-kd build-tree``).

    Args:
        ali_dir: a finished ``align`` output.
        feature_dir: the MFCC ``compute-features`` output the alignment used (its
            per-speaker statistics normalise the features as in the GMM stage).
        lang_dir: the ``prepare-lang`` output (phone symbols).
        out_dir: the tree directory to write (atomic).
        config: tree size and questions.
        split: the split whose alignments give the statistics.
        num_jobs: shards for ``executor``.
        executor: runs the statistics accumulation; ``None`` works in-process.
        force: redo a finished output.
        transform_dir: an ``estimate-lda`` output: the statistics are of its LDA
            features (``train_lda_mllt.sh``'s tree), not of MFCC + deltas.
    """
    ali_dir = require_done(Path(ali_dir).resolve(), "align")
    transform = None
    if transform_dir is not None:
        transform_dir, transform = load_transform(transform_dir)
    feature_dir = require_done(Path(feature_dir).resolve(), "compute-features")
    lang = Lang.load(lang_dir)
    out_dir = Path(out_dir).resolve()
    stage_config = {"ali_dir": str(ali_dir), "split": split, **to_dict(config)}
    if transform is not None:
        stage_config["transform_dir"] = str(transform_dir)
    with stage_output(out_dir, TREE_STAGE, stage_config, force) as tmp:
        if tmp is None:
            return out_dir
        start = time.time()
        manifests = find_cut_manifests(ali_dir, "align")
        if split not in manifests:
            raise BadInputError(f"{ali_dir} has no '{split}' alignments to build the tree from")
        cuts = list(load_cuts(manifests[split][1], "align"))
        _, speaker_stats = load_stats(feature_dir)
        parts = [cuts[i :: max(num_jobs, 1)] for i in range(max(num_jobs, 1))]
        work = functools.partial(_shard_stats, speaker_stats=speaker_stats, transform=transform)
        stats = functools.reduce(TreeStats.merge, map_progress(work, parts, executor, TREE_STAGE))
        tree, added = build_tree(stats, lang.phones, config).with_all_states(num_states(lang))
        if added:
            names = {i: p for p, i in lang.phones.items()}
            logger.info(
                "%s: HMM states never seen in the alignments share the nearest state's "
                "root: %s", TREE_STAGE, ", ".join(f"{names[p]} state {s}" for p, s in added)
            )  # fmt: skip
        tree.save(tmp / "tree.json")
        stats.save(tmp / "stats.npz")
        occupancy = tree.leaf_occupancy()
        info = {
            "num_senones": tree.num_senones,
            "tree_id": tree_id(tmp / "tree.json"),
            "frames": float(stats.num_frames),
            "utterances": len(cuts),
            "contexts_seen": len(stats.count),
            "states_without_data": [[int(p), int(s)] for p, s in added],
            "occupancy": _spread(occupancy),
            "seconds": round(time.time() - start, 2),
        }
        (tmp / "info.json").write_text(json.dumps(info, indent=2) + "\n")
        logger.info(
            "%s: %d senones from %d utterances (%.0f frames); occupancy min %.0f, "
            "median %.0f, max %.0f",
            TREE_STAGE, tree.num_senones, len(cuts), stats.num_frames,
            occupancy.min(), np.median(occupancy), occupancy.max(),
        )  # fmt: skip
    return out_dir


def num_states(lang: Lang) -> dict[int, int]:
    """Phone id -> number of emitting HMM states in the lang's topology."""
    topo = khg.HmmTopology()
    topo.read(lang.topo_text)
    return {p: n for p, n in enumerate(topo.get_phone_to_num_pdf_classes()) if n > 0}


def _spread(occupancy: np.ndarray) -> dict[str, float]:
    q = np.percentile(occupancy, [0, 5, 50, 95, 100])
    return dict(zip(("min", "p5", "median", "p95", "max"), map(float, q), strict=True))


def _failed_ids(ali_dir: Path, split: str) -> dict[str, str]:
    """The align stage's ``failed_<split>.txt``: utterance id -> reason."""
    path = ali_dir / f"failed_{split}.txt"
    if not path.is_file() or path.stat().st_size == 0:  # empty: every utterance aligned
        return {}
    lines = read_text(path, "align").splitlines()
    return {u: why.strip() for u, _, why in (line.partition(" ") for line in lines) if u}


def _targets_for_split(
    fbank: CutSet,
    aligned: dict[str, Cut],
    failed: dict[str, str],
    tree: ContextTree,
    writer: NumpyHdf5Writer,
    where: str,
) -> tuple[list[Cut], list[np.ndarray], dict[str, str]]:
    out, targets, left_out = [], [], {}
    for cut in fbank:
        ali_cut = aligned.get(cut.id)
        if ali_cut is None:
            if cut.id not in failed:
                raise BadInputError(
                    f"{TARGETS_STAGE}: cut {cut.id} of the features has no alignment in "
                    f"{where} and is not among its failed utterances: the features and the "
                    "alignment come from different cut sets; rerun 'align' on these features' "
                    "cuts"
                )
            left_out[cut.id] = failed[cut.id]
            continue
        senones = tree.senones_for_alignment(load_alignment(ali_cut))
        if len(senones) != cut.num_frames:
            raise BadInputError(
                f"cut {cut.id}: the alignment has {len(senones)} frames but the fbank features "
                f"{cut.num_frames}; features and alignment must share frame shift and length "
                "(rerun 'compute-features' for both with the same settings)"
            )
        shift = cut.features.frame_shift
        array = writer.store_array(cut.id, senones, frame_shift=shift, temporal_dim=0)
        out.append(cut.with_custom(SENONE_KEY, array))
        targets.append(senones)
    return out, targets, left_out


def senone_targets_stage(
    ali_dir: Path | str,
    fbank_dir: Path | str,
    tree_dir: Path | str,
    out_dir: Path | str,
    prior_split: str = "train",
    force: bool = False,
) -> Path:
    """Store per-frame senone targets on the fbank cuts (``asr-kd senone-targets``).

    Cuts that did not align are left out (the align stage lists them with reasons).
    """
    ali_dir = require_done(Path(ali_dir).resolve(), "align")
    fbank_dir = require_done(Path(fbank_dir).resolve(), "compute-features")
    tree_dir = require_done(Path(tree_dir).resolve(), TREE_STAGE)
    out_dir = Path(out_dir).resolve()
    tree = ContextTree.load(tree_dir / "tree.json")
    stage_config = {
        "ali_dir": str(ali_dir),
        "fbank_dir": str(fbank_dir),
        "tree_id": tree_id(tree_dir / "tree.json"),
    }
    with stage_output(out_dir, TARGETS_STAGE, stage_config, force) as tmp:
        if tmp is None:
            return out_dir
        alignments = find_cut_manifests(ali_dir, "align")
        info: dict = {"num_senones": tree.num_senones, "tree_id": stage_config["tree_id"]}
        for split, (_, path) in find_cut_manifests(fbank_dir, "compute-features").items():
            if split not in alignments:
                logger.warning("%s: no alignments for split %s; skipped", TARGETS_STAGE, split)
                info.setdefault("splits_without_alignment", []).append(split)
                continue
            aligned = {c.id: c for c in load_cuts(alignments[split][1], "align")}
            fbank = load_cuts(path, "compute-features")
            failed = _failed_ids(ali_dir, split)
            where = f"{ali_dir} ({split})"
            with NumpyHdf5Writer(tmp / f"{SENONE_KEY}_{split}.h5") as writer:
                cuts, targets, left_out = _targets_for_split(
                    fbank, aligned, failed, tree, writer, where
                )
            relocate_storage(CutSet.from_cuts(cuts), tmp, out_dir).to_file(tmp / path.name)
            if left_out:  # each with the align stage's reason
                lines = "".join(f"{u} {why}\n" for u, why in sorted(left_out.items()))
                (tmp / f"left_out_{split}.txt").write_text(lines)
            info[split] = {"cuts": len(cuts), "left_out": len(fbank) - len(cuts),
                           "frames": int(sum(len(t) for t in targets))}  # fmt: skip
            if split == prior_split:
                counts = senone_priors(targets, tree.num_senones)
                write_priors(tmp / "priors.json", counts)
                info["senones_unseen_in_training"] = int((counts == 0).sum())
        if not (tmp / "priors.json").exists():
            raise BadInputError(f"{fbank_dir} has no '{prior_split}' split for the senone priors")
        shutil.copy(tree_dir / "tree.json", tmp / "tree.json")
        (tmp / "info.json").write_text(json.dumps(info, indent=2) + "\n")
        logger.info("%s: %s", TARGETS_STAGE, json.dumps(info))
    return out_dir


def read_targets_info(senone_dir: Path | str) -> dict:
    """The ``info.json`` of a ``senone-targets`` output: num_senones, tree_id, counts."""
    senone_dir = require_done(Path(senone_dir), TARGETS_STAGE)
    return read_json(senone_dir / "info.json", TARGETS_STAGE)
