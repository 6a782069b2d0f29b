"""Kaldi-compatible log-mel filterbank and MFCC features with Lhotse's own extractors.

Features are stored with Lhotse's lilcom chunky writer next to the cut manifests
that reference them, and mean/variance statistics are written for later stages::

    <out_dir>/<corpus>_cuts_<split>.jsonl.gz       cuts with features
    <out_dir>/<corpus>_<kind>_<split>.lca           lilcom archives (one per job)
    <out_dir>/stats/global.json                     train-split mean/var per dimension
    <out_dir>/stats/speakers.json                   per-speaker mean/var (every split)
    <out_dir>/summary.json                          cuts in and out per split, drops
    <out_dir>/dropped.txt                           "<split> <cut> <reason>" per dropped cut

No cut is lost without a word: a cut whose audio cannot be decoded is dropped by
Lhotse's extraction (with a suppressed warning); the stage counts the cuts it got
back and stops, naming each lost cut, its file and the reason, unless the config's
``max_dropped`` (a fraction of a split's cuts, default 0) allows that many.

Extraction is batched on a GPU when one is present (``device: auto``) and fans out
over worker processes (or a Dask cluster's executor) on a CPU.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lhotse import (
    AudioSource,
    CutSet,
    Fbank,
    FbankConfig,
    LilcomChunkyWriter,
    Mfcc,
    MfccConfig,
    Recording,
)
from lhotse.features.base import FeatureExtractor
from lhotse.utils import fastcopy

from asr_kd.checked import load_features, read_json
from asr_kd.config import to_dict
from asr_kd.data.manifests import CLEAN_KEY, find_cut_manifests, load_cuts, relocate_storage
from asr_kd.data.validate import MAX_LISTED, validate_corpus
from asr_kd.errors import BadInputError, first_few
from asr_kd.parallel import make_executor
from asr_kd.stage import require_done, stage_output

logger = logging.getLogger(__name__)

STAGE = "compute-features"
AUDIO_SOURCES = ("recorded", "clean")


@dataclass(frozen=True)
class FeatureConfig:
    """Feature extraction settings (Kaldi's fbank.conf / mfcc.conf).

    Attributes:
        kind: ``"fbank"`` (log-mel filterbank) or ``"mfcc"``.
        num_mel_bins: mel filters (fbank output dimension; MFCC's filterbank size).
        num_ceps: cepstra kept by MFCC (ignored for fbank).
        sampling_rate: expected audio rate; other rates are refused.
        frame_shift, frame_length: seconds.
        dither: Kaldi's dither (0 keeps extraction deterministic).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        batch_duration: seconds of audio per batch on the GPU path.
        max_dropped: the fraction of a split's cuts that may be dropped (unreadable
            audio); each is listed in ``dropped.txt``. 0: any drop stops the stage.
        audio: ``"recorded"`` (the cuts' recordings) or ``"clean"``: each cut's clean
            copy (the supervision's ``clean_audio``, ``corpus.clean_copies``), of the
            same length, so that the GMM stages align the utterance as it was before
            its noise and room, and the models train on the noisy one with those
            alignments (Kaldi's recipes for reverberated and far-field data).
    """

    kind: str = "fbank"
    num_mel_bins: int = 80
    num_ceps: int = 13
    sampling_rate: int = 16000
    frame_shift: float = 0.01
    frame_length: float = 0.025
    dither: float = 0.0
    device: str = "auto"
    batch_duration: float = 600.0
    max_dropped: float = 0.0
    audio: str = "recorded"

    def __post_init__(self) -> None:
        if self.audio not in AUDIO_SOURCES:
            raise ValueError(f"audio must be one of {', '.join(AUDIO_SOURCES)}, got {self.audio!r}")
        if not 0.0 <= self.max_dropped < 1.0:
            raise ValueError(f"max_dropped must be a fraction in [0, 1), got {self.max_dropped}")
        if self.kind not in ("fbank", "mfcc"):
            raise ValueError(f"kind must be 'fbank' or 'mfcc', got {self.kind!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")


def resolve_device(device: str) -> str:
    """``"auto"`` becomes ``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def make_extractor(config: FeatureConfig, device: str = "cpu") -> FeatureExtractor:
    """The Lhotse extractor for a config, on ``device``."""
    common = dict(
        sampling_rate=config.sampling_rate,
        frame_shift=config.frame_shift,
        frame_length=config.frame_length,
        dither=config.dither,
        device=device,
    )
    if config.kind == "fbank":
        return Fbank(FbankConfig(num_filters=config.num_mel_bins, **common))
    return Mfcc(MfccConfig(num_filters=config.num_mel_bins, num_ceps=config.num_ceps, **common))


@dataclass
class FeatureStats:
    """Count, mean and variance per feature dimension."""

    count: int
    mean: np.ndarray
    var: np.ndarray

    def to_json(self) -> dict:
        return {"count": self.count, "mean": self.mean.tolist(), "var": self.var.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> FeatureStats:
        return cls(d["count"], np.asarray(d["mean"]), np.asarray(d["var"]))


class _Accumulator:
    def __init__(self) -> None:
        self.n, self.s, self.ss = 0, 0.0, 0.0

    def add(self, feats: np.ndarray) -> None:
        f = feats.astype(np.float64)
        self.n += len(f)
        self.s = self.s + f.sum(axis=0)
        self.ss = self.ss + (f * f).sum(axis=0)

    def result(self) -> FeatureStats:
        mean = self.s / self.n
        return FeatureStats(self.n, mean, np.maximum(self.ss / self.n - mean * mean, 1e-10))


def feature_stats(cuts: CutSet) -> tuple[FeatureStats, dict[str, FeatureStats]]:
    """Global and per-speaker statistics of the cuts' features."""
    total, per_spk = _Accumulator(), {}
    for cut in cuts:
        feats = load_features(cut)
        total.add(feats)
        speaker = cut.supervisions[0].speaker if cut.supervisions else None
        per_spk.setdefault(speaker or cut.recording_id, _Accumulator()).add(feats)
    return total.result(), {k: v.result() for k, v in sorted(per_spk.items())}


def load_stats(feature_dir: Path | str) -> tuple[FeatureStats, dict[str, FeatureStats]]:
    """Read the statistics written by :func:`compute_features`."""
    stats = Path(feature_dir) / "stats"
    glob = FeatureStats.from_json(read_json(stats / "global.json", STAGE))
    spk = read_json(stats / "speakers.json", STAGE)
    return glob, {k: FeatureStats.from_json(v) for k, v in spk.items()}


def dropped_cuts(before: CutSet, after: CutSet) -> dict[str, str]:
    """Cuts of ``before`` that extraction lost or left without frames: id -> reason."""
    from asr_kd.data.validate import audio_file_problem

    got = {cut.id: cut for cut in after}
    out = {}
    for cut in before:
        done = got.get(cut.id)
        if done is not None and done.features is not None and (done.num_frames or 0) > 0:
            continue
        files = (
            [s.source for s in cut.recording.sources if s.type == "file"]
            if cut.has_recording
            else []
        )
        why = next((p for p in (audio_file_problem(f) for f in files) if p), None)
        where = f" ({', '.join(files)})" if files else ""
        out[cut.id] = f"{where.strip()} {why or 'no feature frames came out'}".strip()
    return out


def _check_dropped(dropped: dict[str, str], total: int, split: str, config: FeatureConfig) -> None:
    if not dropped or len(dropped) <= config.max_dropped * total:
        return
    lines = [f"  cut {cut} {why}" for cut, why in list(dropped.items())[:MAX_LISTED]]
    if len(dropped) > MAX_LISTED:
        lines.append(f"  ... and {len(dropped) - MAX_LISTED} more")
    allow = max(0.01, len(dropped) / total)
    raise BadInputError(
        "\n".join(
            [f"{STAGE}: {len(dropped)} of {total} cuts of split {split} got no features "
             f"(max_dropped={config.max_dropped:g}):", *lines,
             "Fix or remove their audio and rerun 'prepare', or allow the drops with "
             f"--set max_dropped={allow:.2g} (they are then listed in dropped.txt)"]
        )
    )  # fmt: skip


def _extract_split(
    cuts: CutSet,
    storage: Path,
    config: FeatureConfig,
    device: str,
    num_jobs: int,
    executor: Executor | None,
) -> CutSet:
    extractor = make_extractor(config, device)
    if device == "cuda":
        return cuts.compute_and_store_features_batch(
            extractor,
            storage_path=storage,
            batch_duration=config.batch_duration,
            num_workers=max(num_jobs, 1),
            storage_type=LilcomChunkyWriter,
        )
    return cuts.compute_and_store_features(
        extractor,
        storage_path=storage,
        num_jobs=num_jobs,
        executor=executor,
        storage_type=LilcomChunkyWriter,
    )


def clean_copies(cuts: CutSet, manifest: Path) -> CutSet:
    """The cuts with each recording replaced by its clean copy (same id and length)."""
    out, missing = [], []
    for cut in cuts:
        sup = cut.supervisions[0] if cut.supervisions else None
        path = (sup.custom or {}).get(CLEAN_KEY) if sup is not None else None
        if path is None:
            missing.append(cut.id)
            continue
        rec = cut.recording
        clean = Recording(
            id=rec.id, sources=[AudioSource(type="file", channels=[0], source=path)],
            sampling_rate=rec.sampling_rate, num_samples=rec.num_samples, duration=rec.duration,
        )  # fmt: skip
        out.append(fastcopy(cut, recording=clean))
    if missing:
        raise BadInputError(
            f"{STAGE}: audio: clean, but {len(missing)} of {len(cuts)} cuts of {manifest} have "
            f"no clean copy ({first_few(missing, MAX_LISTED)}): synthesise the corpus with "
            "corpus.clean_copies: true, or set audio: recorded for a corpus without clean "
            "recordings"
        )
    return CutSet.from_cuts(out)


def _local(num_jobs: int, executor: Executor | None, device: str):
    """One pool of CPU workers for every split (Lhotse would start one per call)."""
    if executor is not None or num_jobs <= 1 or device == "cuda":
        return contextlib.nullcontext(executor)
    return make_executor(num_jobs)


def compute_features(
    manifest_dir: Path | str,
    out_dir: Path | str,
    config: FeatureConfig,
    num_jobs: int = 1,
    executor: Executor | None = None,
    force: bool = False,
    stats_split: str = "train",
) -> dict[str, Path]:
    """Extract features for every ``<corpus>_cuts_<split>`` manifest in ``manifest_dir``.

    Args:
        manifest_dir: a finished manifest preparation output (``prepare ...``).
        out_dir: the feature directory to write (atomic).
        config: extractor settings.
        num_jobs: parallel CPU jobs (ignored on the GPU path).
        executor: optional executor (e.g. Dask's) for the CPU path.
        force: redo a finished output.
        stats_split: the split whose statistics are the global ones.

    Returns:
        split -> path of the cut manifest with features.
    """
    require_done(manifest_dir, "prepare")
    manifests = find_cut_manifests(manifest_dir, "prepare")
    device = resolve_device(config.device)
    out_dir = Path(out_dir).resolve()
    out = {split: out_dir / path.name for split, (_, path) in manifests.items()}
    stage_config = {"manifest_dir": str(Path(manifest_dir).resolve()), **to_dict(config)}
    with (
        stage_output(out_dir, STAGE, stage_config, force) as tmp,
        _local(num_jobs, executor, device) as ex,
    ):
        if tmp is None:
            return out
        all_cuts = []
        dropped: list[str] = []
        summary: dict[str, dict[str, int]] = {}
        for split, (corpus, path) in manifests.items():
            start = time.time()
            cuts = load_cuts(path, "prepare")
            if config.audio == "clean":
                cuts = clean_copies(cuts, path)
            recordings, supervisions, _ = cuts.decompose()
            validate_corpus(  # audio is checked by extraction (dropped_cuts)
                recordings, supervisions, sampling_rate=config.sampling_rate, stage=STAGE,
                check_audio=False,
            )  # fmt: skip
            storage = tmp / f"{corpus}_{config.kind}_{split}"
            before = cuts
            cuts = _extract_split(cuts, storage, config, device, num_jobs, ex)
            lost = dropped_cuts(before, cuts)
            _check_dropped(lost, len(before), split, config)
            if lost:
                cuts = CutSet.from_cuts(c for c in cuts if c.id not in lost)
                dropped.extend(f"{split} {cut} {why}\n" for cut, why in lost.items())
                logger.warning("%s: %s: dropped %d cuts (see dropped.txt)", STAGE, split, len(lost))
            summary[split] = {"cuts": len(before), "features": len(cuts), "dropped": len(lost)}
            relocate_storage(cuts, tmp, out_dir).to_file(tmp / path.name)
            all_cuts.append((split, cuts))
            audio = sum(c.duration for c in cuts)
            wall = time.time() - start
            logger.info(
                "%s: %s %s: %d cuts, %.2f h in %.1f s on %s (%.0fx real time)",
                STAGE, config.kind, split, len(cuts), audio / 3600, wall, device, audio / wall,
            )  # fmt: skip
        _write_stats(tmp, all_cuts, stats_split)
        doc = {"splits": summary, "dropped": len(dropped)}
        (tmp / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")
        if dropped:
            (tmp / "dropped.txt").write_text("".join(dropped))
    return out


def _write_stats(tmp: Path, all_cuts: list[tuple[str, CutSet]], stats_split: str) -> None:
    splits = dict(all_cuts)
    key = stats_split if stats_split in splits else next(iter(splits))
    glob, _ = feature_stats(splits[key])
    per_spk: dict[str, FeatureStats] = {}
    for _, cuts in all_cuts:
        per_spk.update(feature_stats(cuts)[1])
    (tmp / "stats").mkdir()
    (tmp / "stats" / "global.json").write_text(json.dumps({"split": key, **glob.to_json()}) + "\n")
    (tmp / "stats" / "speakers.json").write_text(
        json.dumps({k: v.to_json() for k, v in per_spk.items()}) + "\n"
    )
