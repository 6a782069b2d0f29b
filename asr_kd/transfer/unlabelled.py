"""Untranscribed audio as transfer set (the paper: the transfer set need not be labelled).

``asr-kd synth-unlabelled`` synthesises more audio than the transcribed training set:
the corpus config with another seed (other speakers and sentences) and
``unlabelled_factor`` times the training utterances per speaker; its ``train`` split is
the untranscribed audio (``prepare synth`` and ``compute-features`` as for any corpus).
On any corpus, untranscribed audio is a cut manifest with features and no transcript.

``asr-kd unlabelled-set`` writes a directory in the ``senone-targets`` contract whose
training split is the transcribed cuts plus the untranscribed ones, the latter without
supervision text and flagged ``unlabelled: true`` (no senone targets: their frames get
``UNLABELLED_TARGET``, so only the soft term trains on them, :mod:`asr_kd.distill.loss`);
dev and test are the transcribed set's. An untranscribed cut whose text is a dev or test
sentence is left out (the synthesiser draws sentences per seed)::

    <out>/<corpus>_cuts_<split>.jsonl.gz   train: both kinds; other splits as given
    <out>/tree.json, priors.json           the transcribed set's
    <out>/info.json                        its info, plus "unlabelled": {"cuts", "hours",
                                           "labelled_hours", "left_out_eval_text"}

Cache the ensemble's soft targets of its training split (``cache-soft-targets``) and
distil a student on it (``distill``) as on the transcribed set.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from lhotse import CutSet
from lhotse.cut import Cut
from lhotse.utils import fastcopy

from asr_kd.data.manifests import find_cut_manifests, load_cuts
from asr_kd.errors import BadInputError
from asr_kd.scoring.wer import normalize_text
from asr_kd.stage import require_done, stage_output
from asr_kd.train.dataset import TARGETS_STAGE, UNLABELLED_KEY, read_targets_info

logger = logging.getLogger(__name__)

STAGE = "unlabelled-set"
PREFIX = "unlab-"


def unlabelled_corpus_config(corpus: Any, factor: float, seed: int) -> Any:
    """The corpus config of the untranscribed audio: ``seed``, ``factor`` x the training
    utterances per speaker, one dev and test speaker of one utterance (unused) and no LM
    text."""
    utts = max(1, round(factor * corpus.train_utts_per_speaker))
    return dataclasses.replace(
        corpus, seed=seed, train_utts_per_speaker=utts, dev_speakers=1, test_speakers=1,
        eval_utts_per_speaker=1, lm_sentences=0,
    )  # fmt: skip


def strip_transcript(cut: Cut) -> Cut:
    """The cut as untranscribed audio: supervisions without text, ``unlabelled: true``,
    no senone targets; its id, recording id and speaker prefixed ``unlab-`` (another
    corpus's ids may repeat the transcribed set's: the synthesiser names the utterances of
    every corpus it writes alike)."""
    sups = [fastcopy(s, text=None, id=PREFIX + s.id, recording_id=PREFIX + s.recording_id,
                     speaker=PREFIX + s.speaker if s.speaker else None)
            for s in cut.supervisions]  # fmt: skip
    custom = {k: v for k, v in (cut.custom or {}).items() if k != "senones"}
    changes: dict = {}
    if cut.recording is not None:
        changes["recording"] = fastcopy(cut.recording, id=PREFIX + cut.recording.id)
    if cut.features is not None and cut.features.recording_id:
        changes["features"] = fastcopy(
            cut.features, recording_id=PREFIX + cut.features.recording_id
        )
    return fastcopy(
        cut, id=PREFIX + cut.id, supervisions=sups, custom={**custom, UNLABELLED_KEY: True},
        **changes,
    )  # fmt: skip


def make_unlabelled_set(
    labelled_dir: Path | str,
    unlabelled_fbank: Path | str,
    out_dir: Path | str,
    *,
    unlabelled_split: str = "train",
    train_split: str = "train",
    force: bool = False,
) -> Path:
    """Transcribed + untranscribed training cuts in one target directory (module doc).

    Args:
        labelled_dir: a ``senone-targets`` output (transcribed cuts with targets).
        unlabelled_fbank: a ``compute-features`` output of the untranscribed audio.
        out_dir: the directory to write.
        unlabelled_split: its split that is the untranscribed audio.
        train_split: the transcribed training split they join.

    Raises:
        BadInputError: feature dimensions that differ, or no untranscribed cut left.
    """
    labelled_dir = require_done(Path(labelled_dir).resolve(), TARGETS_STAGE)
    unlabelled_fbank = require_done(Path(unlabelled_fbank).resolve(), "compute-features")
    info = read_targets_info(labelled_dir)
    config = {"labelled_dir": str(labelled_dir), "unlabelled_fbank": str(unlabelled_fbank),
              "unlabelled_split": unlabelled_split, "train_split": train_split}  # fmt: skip
    out_dir = Path(out_dir).resolve()
    with stage_output(out_dir, STAGE, config, force) as tmp:
        if tmp is None:
            return out_dir
        labelled = find_cut_manifests(labelled_dir, TARGETS_STAGE)
        extra = find_cut_manifests(unlabelled_fbank, "compute-features")
        if unlabelled_split not in extra or train_split not in labelled:
            raise BadInputError(
                f"{STAGE}: need split '{unlabelled_split}' in {unlabelled_fbank} and "
                f"'{train_split}' in {labelled_dir}"
            )
        eval_text = set()
        for split, (_, path) in labelled.items():
            if split != train_split:
                eval_text |= {normalize_text(s.text) for c in load_cuts(path, TARGETS_STAGE)
                              for s in c.supervisions if s.text}  # fmt: skip
        train = list(load_cuts(labelled[train_split][1], TARGETS_STAGE))
        dim = train[0].num_features
        kept, left_out = [], 0
        for cut in load_cuts(extra[unlabelled_split][1], "compute-features"):
            if cut.num_features != dim:
                raise BadInputError(
                    f"{STAGE}: cut {cut.id} in {unlabelled_fbank} has {cut.num_features}-dim "
                    f"features, the transcribed cuts {dim}: compute both with one config"
                )
            if any(normalize_text(s.text or "") in eval_text for s in cut.supervisions):
                left_out += 1
                continue
            kept.append(strip_transcript(cut))
        if not kept:
            raise BadInputError(f"{STAGE}: no untranscribed cut left in {unlabelled_fbank}")
        for split, (_, path) in labelled.items():
            cuts = train + kept if split == train_split else load_cuts(path, TARGETS_STAGE)
            CutSet.from_cuts(cuts).to_file(tmp / path.name)
        for name in ("tree.json", "priors.json"):
            if (labelled_dir / name).is_file():
                shutil.copy(labelled_dir / name, tmp / name)
        hours = sum(c.duration for c in kept) / 3600
        info = {**info, "unlabelled": {
            "cuts": len(kept), "hours": round(hours, 4),
            "labelled_hours": round(sum(c.duration for c in train) / 3600, 4),
            "left_out_eval_text": left_out, "source": str(unlabelled_fbank)}}  # fmt: skip
        (tmp / "info.json").write_text(json.dumps(info, indent=2) + "\n")
        logger.info("%s: %d transcribed + %d untranscribed training cuts (%.2f h untranscribed; "
                    "%d left out: a dev/test sentence)", STAGE, len(train), len(kept), hours,
                    left_out)  # fmt: skip
    return out_dir


def unlabelled_info(data_dir: Path | str) -> dict[str, Any] | None:
    """The ``unlabelled`` entry of a target directory's ``info.json`` (``None``: none)."""
    path = Path(data_dir) / "info.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("unlabelled")
