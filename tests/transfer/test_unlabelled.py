"""Untranscribed audio in the transfer set: soft targets only, end to end on the toy task."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from lhotse import CutSet, SupervisionSegment
from lhotse.utils import fastcopy
from train_toy import _marker, make_toy_data
from transfer_toy import S, T, train_config

from asr_kd.cli.main import cli
from asr_kd.data.synth import SynthCorpusConfig
from asr_kd.distill import SparseTargets, cache_soft_targets, distill, kd_loss
from asr_kd.errors import ConfigError
from asr_kd.train import train_model
from asr_kd.train.dataset import (
    UNLABELLED_TARGET,
    SenoneDataset,
    load_split,
    load_training_data,
)
from asr_kd.train.evaluate import count_correct
from asr_kd.train.frames import frame_source
from asr_kd.transfer import unlabelled_corpus_config, unlabelled_info


def test_unlabelled_frames_get_the_soft_term_and_no_hard_term():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 5, S, generator=g, requires_grad=True)
    teacher = torch.log_softmax(torch.randn(2, 5, S, generator=g) / T, -1)
    hard = torch.randint(0, S, (2, 5), generator=g)
    hard[0, 1:3] = UNLABELLED_TARGET
    hard[1, 4] = -100  # padding
    loss, stats = kd_loss(z, teacher, hard, T, 0.5)
    labelled = hard >= 0
    want_ce = F.cross_entropy(z[labelled], hard[labelled], reduction="sum")
    assert stats["ce"].item() == pytest.approx(want_ce.item(), rel=1e-6)
    # The soft term covers the unlabelled frames (9 real frames, padding left out).
    soft_only, soft_stats = kd_loss(z, teacher, hard.clamp_min(0).masked_fill(hard == -100, -100),
                                    T, 1.0)  # fmt: skip
    assert stats["kl"].item() == pytest.approx(soft_stats["kl"].item(), rel=1e-6)
    loss.backward()
    grad = z.grad.clone()
    z.grad = None
    (0.5 * soft_only).backward()
    # On the unlabelled frames the gradient is the soft term's alone; padding gets none.
    torch.testing.assert_close(grad[0, 1:3], z.grad[0, 1:3])
    assert not grad[1, 4].any()
    # Sparse (cached) targets: the same rule.
    idx = torch.arange(S).expand(2, 5, S)
    sparse = SparseTargets(idx, teacher.exp(), torch.ones(2, 5))
    _, sparse_stats = kd_loss(z.detach(), sparse, hard, T, 0.5)
    assert sparse_stats["ce"].item() == pytest.approx(want_ce.item(), rel=1e-6)
    # Frame accuracy counts labelled frames only.
    assert count_correct(z.detach(), hard)[1].item() == int(labelled.sum())


def _untranscribed_features(root):
    """A compute-features output of other toy audio, with transcripts (one a dev text)."""
    other, _ = make_toy_data(root / "other", seed=5, num_train=6, num_dev=1)
    cuts = []
    for i, cut in enumerate(load_split(other, "train")):
        text = "A DEV SENTENCE" if i == 0 else f"SENTENCE NUMBER {i}"
        sup = SupervisionSegment(id=cut.id, recording_id=cut.id, start=0.0,
                                 duration=cut.duration, text=text, speaker="spk0001")  # fmt: skip
        cuts.append(fastcopy(cut, custom=None, supervisions=[sup]))
    out = root / "unlab_fbank"
    out.mkdir()
    CutSet.from_cuts(cuts).to_file(out / "toy_cuts_train.jsonl.gz")
    _marker(out, "compute-features")
    return out


def _with_dev_text(world, root):
    """The labelled targets with a transcript on the first dev cut."""
    labelled = root / "labelled"
    labelled.mkdir()
    for split in ("train", "dev"):
        cuts = list(load_split(world["data"], split))
        if split == "dev":
            sup = SupervisionSegment(id="d", recording_id=cuts[0].id, start=0.0,
                                     duration=cuts[0].duration, text="a dev  sentence")  # fmt: skip
            cuts[0] = fastcopy(cuts[0], supervisions=[sup])
        CutSet.from_cuts(cuts).to_file(labelled / f"toy_cuts_{split}.jsonl.gz")
    for name in ("info.json", "tree.json"):
        (labelled / name).write_text((world["data"] / name).read_text())
    _marker(labelled, "senone-targets")
    return labelled


def test_a_student_learns_from_transcribed_and_untranscribed_cuts(world, tmp_path):
    labelled = _with_dev_text(world, tmp_path)
    unlab = _untranscribed_features(tmp_path)
    out = tmp_path / "senones_unlab"
    result = CliRunner().invoke(cli, ["unlabelled-set", str(labelled), str(unlab), str(out)],
                                catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    info = unlabelled_info(out)
    # 6 untranscribed cuts, one left out: its text is a dev sentence.
    assert info["cuts"] == 5 and info["left_out_eval_text"] == 1 and info["hours"] > 0
    train = load_split(out, "train")
    extra = [c for c in train if c.id.startswith("unlab-")]
    assert len(train) == 24 + 5 and len(extra) == 5
    assert all(c.custom["unlabelled"] and not c.has_custom("senones") for c in extra)
    assert all(s.text is None and s.speaker == "unlab-spk0001" for c in extra
               for s in c.supervisions)  # fmt: skip
    assert len(load_split(out, "dev")) == len(load_split(world["data"], "dev"))

    # Their frames' targets are UNLABELLED_TARGET on both data paths.
    data = load_training_data(out, world["feats"])
    batch = SenoneDataset(data.normalizer, S)[CutSet.from_cuts(extra[:2])]
    assert (batch["targets"][batch["targets"] != -100] == UNLABELLED_TARGET).all()
    source = frame_source(data, train_config(), (1, 1))
    cut_ids = np.array(source.store.cut_ids)[source.store.cut_of]
    unlabelled = np.char.startswith(cut_ids.astype(str), "unlab-")
    targets = source.store.targets.numpy()
    assert unlabelled.any() and (targets[unlabelled] == UNLABELLED_TARGET).all()
    assert (targets[~unlabelled] >= 0).all()

    # A hard-target training has nothing to learn from them: refused, naming the set.
    with pytest.raises(ConfigError, match="untranscribed cuts"):
        train_model(out, world["feats"], tmp_path / "hard", train_config(), device="cpu")

    # The ensemble labels them; the student trains on both and scores like any model.
    kd = dataclasses.replace(world["kd"], cache_dir=str(tmp_path / "soft_unlab"))
    cache_soft_targets(out, world["feats"], kd.cache_dir, kd, device="cpu", max_duration=3.0)
    student = tmp_path / "student_unlab"
    distill(out, world["feats"], student, kd, train_config(seed=7), device="cpu")
    doc = json.loads((student / "train.json").read_text())
    assert doc["train_cuts"] == 29 and doc["best_dev_frame_acc"] > 0.5  # chance: 1/8


def test_the_untranscribed_corpus_is_another_seeds_and_factor_times_the_utterances():
    corpus = SynthCorpusConfig(seed=0, train_speakers=10, train_utts_per_speaker=10)
    extra = unlabelled_corpus_config(corpus, 3.0, 1000)
    assert extra.seed == 1000 and extra.train_utts_per_speaker == 30
    assert extra.train_speakers == 10 and extra.lm_sentences == 0
    assert unlabelled_corpus_config(corpus, 0.01, 1).train_utts_per_speaker == 1


def test_the_transfer_section_is_read_by_the_recipe(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("transfer:\n  enabled: true\n  omit_phone: IY\n  bias_grid: [0, 2]\n")
    runner = CliRunner()
    for key, want in (("enabled", "yes"), ("omit_phone", "IY"), ("bias_grid", "0.0 2.0"),
                      ("unlabelled_factor", "1.0")):  # fmt: skip
        result = runner.invoke(cli, ["transfer-config", "--config", str(conf), key])
        assert result.exit_code == 0 and result.output.strip() == want
    result = runner.invoke(cli, ["transfer-config", "--config", str(conf), "omitphone"])
    assert result.exit_code == 1 and "no 'omitphone'" in result.output


def test_synth_unlabelled_writes_factor_times_the_training_utterances(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text(
        "corpus: {seed: 3, train_speakers: 2, dev_speakers: 1, test_speakers: 1,\n"
        "         train_utts_per_speaker: 2, eval_utts_per_speaker: 1, lm_sentences: 10,\n"
        "         max_words: 6}\n"
        "transfer: {unlabelled_factor: 1.5, unlabelled_seed: 77}\n"
    )
    out = tmp_path / "corpus"
    result = CliRunner().invoke(cli, ["synth-unlabelled", "--config", str(conf), str(out)])
    assert result.exit_code == 0, result.output
    lines = (out / "train" / "text").read_text().splitlines()
    assert len(lines) == 2 * 3  # 2 speakers x round(1.5 x 2)
    assert json.loads((out / ".done.json").read_text())["config"]["seed"] == 77


def test_untranscribed_cuts_of_another_corpus_keep_their_own_recording_ids():
    """The synthesiser names every corpus's utterances alike: the untranscribed corpus's
    spk0004-train-0000 is another recording than the transcribed one's."""
    from lhotse.testing.dummies import dummy_cut, dummy_supervision
    from lhotse.utils import fastcopy

    from asr_kd.data.validate import manifest_problems
    from asr_kd.transfer.unlabelled import PREFIX, strip_transcript

    labelled = dummy_cut(0, duration=1.0, supervisions=[dummy_supervision(0, text="HELLO")])
    other = dummy_cut(0, duration=2.0, supervisions=[dummy_supervision(0, text="WORLD")])
    other = fastcopy(other, recording=fastcopy(other.recording, num_samples=32000, duration=2.0))
    assert manifest_problems([labelled, fastcopy(other, id="x")])  # same recording id, two sizes
    stripped = strip_transcript(other)
    rec = labelled.recording.id
    assert stripped.recording.id == stripped.features.recording_id == PREFIX + rec
    assert [s.recording_id for s in stripped.supervisions] == [PREFIX + rec]
    assert stripped.supervisions[0].text is None
    assert manifest_problems([labelled, stripped]) == []
