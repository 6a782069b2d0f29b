import json
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet, SupervisionSet
from lhotse.qa import validate

from asr_kd.config import load_section
from asr_kd.data.synth import SPLITS, SynthCorpusConfig, plan_corpus, split_speakers
from asr_kd.data.text import check_in_cmudict
from asr_kd.testing.synth import TINY_SYNTH as TINY

RECIPE_CONF = "recipes/synth/conf"


def test_default_config_has_40_disjoint_speakers():
    cfg = load_section(f"{RECIPE_CONF}/small.yaml", "corpus", SynthCorpusConfig)
    speakers = split_speakers(cfg)
    ids = {s: {p.speaker_id for p in speakers[s]} for s in SPLITS}
    assert sum(len(v) for v in ids.values()) >= 40
    assert not ids["train"] & ids["dev"] and not ids["train"] & ids["test"]
    assert not ids["dev"] & ids["test"]
    profiles = [p for s in SPLITS for p in speakers[s]]
    assert len({_settings(p) for p in profiles}) == len(profiles), "two speakers share settings"


def test_plan_is_deterministic_and_keeps_dev_test_out_of_lm_text():
    jobs, lm = plan_corpus(TINY)
    jobs2, lm2 = plan_corpus(TINY)
    assert jobs == jobs2 and lm == lm2
    other, _ = plan_corpus(replace(TINY, seed=4))
    assert [j.text for j in other] != [j.text for j in jobs]
    held_out = {j.text for j in jobs if j.split != "train"}
    assert held_out and not held_out & set(lm)
    assert len({j.text for j in jobs}) == len(jobs)


def test_condition_shares_follow_config():
    cfg = replace(TINY, train_utts_per_speaker=200, noise_prob=0.3, reverb_prob=0.6)
    jobs, _ = plan_corpus(cfg)
    noisy = np.mean(["noise" in j.condition for j in jobs])
    reverb = np.mean(["rt60" in j.condition for j in jobs])
    assert abs(noisy - 0.3) < 0.06 and abs(reverb - 0.6) < 0.06
    snrs = [j.condition["snr_db"] for j in jobs if "snr_db" in j.condition]
    assert min(snrs) >= 0 and max(snrs) <= 20


def test_corpus_files(tiny_corpus):
    assert json.loads((tiny_corpus / ".done.json").read_text())["stage"] == "synth-corpus"
    lm = (tiny_corpus / "lm" / "lm_text.txt").read_text().splitlines()
    assert len(lm) == TINY.lm_sentences
    for split in SPLITS:
        rows = [json.loads(x) for x in (tiny_corpus / split / "utterances.jsonl").open()]
        assert len(rows) == getattr(TINY, f"{split}_speakers") * (
            TINY.train_utts_per_speaker if split == "train" else TINY.eval_utts_per_speaker
        )
        for row in rows:
            audio, sr = sf.read(tiny_corpus / row["audio"])
            assert sr == 16000 and len(audio) == row["num_samples"]
            assert np.abs(audio).max() < 1.0
            duration = len(audio) / sr
            words = row["words"]
            assert [w for w, _, _ in words] == row["text"].split()
            starts = [s for _, s, _ in words]
            assert starts == sorted(starts)
            assert all(0 <= s < e <= duration for _, s, e in words)
            assert words[0][1] >= row["condition"]["lead_silence"] - 0.01


def test_manifests_are_valid_and_in_cmudict(tiny_manifests):
    speakers = {}
    for split in SPLITS:
        cuts = CutSet.from_file(tiny_manifests / f"synth_cuts_{split}.jsonl.gz")
        validate(cuts, read_data=True)
        sups = SupervisionSet.from_file(tiny_manifests / f"synth_supervisions_{split}.jsonl.gz")
        assert len(cuts) == len(sups) > 0
        words = {w for s in sups for w in s.text.split()}
        assert check_in_cmudict(words) == []
        assert all(len(s.alignment["word"]) == len(s.text.split()) for s in sups)
        speakers[split] = {s.speaker for s in sups}
    assert not speakers["train"] & (speakers["dev"] | speakers["test"])


@pytest.mark.parametrize("split", ["dev"])
def test_prepare_refuses_corrupt_audio_without_half_output(tiny_corpus, tmp_path, split):
    import shutil

    from asr_kd.data.synth_prepare import prepare_synth
    from asr_kd.errors import BadInputError

    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    row = json.loads((corpus / split / "utterances.jsonl").open().readline())
    (corpus / row["audio"]).write_bytes(b"fLaC" + b"\0" * 100)
    with pytest.raises(BadInputError, match=row["id"]):
        prepare_synth(corpus, tmp_path / "manifests")
    assert not (tmp_path / "manifests").exists()
    assert list(tmp_path.iterdir()) == [corpus]


def test_prepare_refuses_empty_transcript(tiny_corpus, tmp_path):
    import shutil

    from asr_kd.data.synth_prepare import prepare_synth
    from asr_kd.errors import BadInputError

    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    path = corpus / "test" / "utterances.jsonl"
    rows = [json.loads(x) for x in path.open()]
    rows[0]["text"], rows[0]["words"] = "  ", []
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(BadInputError, match=rows[0]["id"]):
        prepare_synth(corpus, tmp_path / "manifests")


def test_prepare_without_corpus_names_the_stage(tmp_path):
    from asr_kd.data.synth_prepare import prepare_synth
    from asr_kd.errors import MissingInputError

    with pytest.raises(MissingInputError, match="synth-corpus"):
        prepare_synth(tmp_path / "corpus", tmp_path / "manifests")


def _settings(speaker) -> tuple:
    """A speaker's voice settings, without its id."""
    from dataclasses import astuple

    return astuple(speaker)[1:]


def test_mixed_voices_follow_the_shares_in_every_split_with_disjoint_settings():
    from collections import Counter

    from asr_kd.data.synth import engine_counts, heldout_speakers

    cfg = load_section(f"{RECIPE_CONF}/small.yaml", "corpus", SynthCorpusConfig)
    speakers = split_speakers(cfg)
    for split in SPLITS:
        counts = Counter(p.engine for p in speakers[split])
        assert counts == engine_counts(cfg.voices, len(speakers[split]))
    assert Counter(p.engine for p in speakers["train"]) == {"espeak": 20, "piper": 12, "hibari": 8}
    settings = {s: {_settings(p) for p in speakers[s]} for s in SPLITS}
    assert sum(len(v) for v in settings.values()) == cfg.num_speakers  # all distinct
    held = heldout_speakers(cfg)
    assert len(held) == cfg.heldout_speakers
    assert {p.engine for p in held} == {"espeak", "piper", "hibari"}
    assert not {_settings(p) for p in held} & set().union(*settings.values())
    trained = {(p.voice, p.variant) for s in SPLITS for p in speakers[s] if p.engine == "espeak"}
    assert not {(p.voice, p.variant) for p in held if p.engine == "espeak"} & trained


def test_engine_counts_use_largest_remainders():
    from asr_kd.data.synth import engine_counts

    assert engine_counts({"espeak": 0.5, "piper": 0.3, "hibari": 0.2}, 6) == {
        "espeak": 3,
        "piper": 2,
        "hibari": 1,
    }
    assert engine_counts({"espeak": 1.0, "piper": 0.0}, 4) == {"espeak": 4}
    with pytest.raises(ValueError, match="voices"):
        replace(TINY, voices={"festival": 1.0})


def test_heldout_plan_reads_the_test_sentences():
    from asr_kd.data.synth import plan_heldout
    from asr_kd.testing.synth import MIXED_SYNTH

    jobs, _ = plan_corpus(MIXED_SYNTH)
    held = plan_heldout(MIXED_SYNTH)
    assert held == plan_heldout(MIXED_SYNTH)
    assert {j.text for j in held} <= {j.text for j in jobs if j.split == "test"}
    assert {j.split for j in held} == {"heldout"}


@pytest.fixture(scope="module")
def mixed_manifests(tmp_path_factory):
    from asr_kd.data.synth import synthesize_corpus
    from asr_kd.data.synth_prepare import prepare_synth
    from asr_kd.testing.synth import MIXED_SYNTH

    root = tmp_path_factory.mktemp("mixed")
    corpus = synthesize_corpus(root / "corpus", MIXED_SYNTH)
    held = synthesize_corpus(root / "heldout", MIXED_SYNTH, heldout=True)
    return corpus, prepare_synth(corpus, root / "manifests"), prepare_synth(held, root / "held")


def test_mixed_corpus_writes_per_engine_test_splits(mixed_manifests):
    corpus, out, held = mixed_manifests
    assert set(out) == {"train", "dev", "test", "test_espeak", "test_piper", "test_hibari"}
    assert set(held) == {"heldout", "heldout_espeak", "heldout_piper", "heldout_hibari"}
    test = CutSet.from_file(out["test"])
    validate(test, read_data=True)
    by_engine = {e: CutSet.from_file(out[f"test_{e}"]) for e in ("espeak", "piper", "hibari")}
    assert sorted(c.id for cs in by_engine.values() for c in cs) == sorted(c.id for c in test)
    for engine, cuts in by_engine.items():
        sups = [c.supervisions[0] for c in cuts]
        assert {s.custom["engine"] for s in sups} == {engine}
        timed = [s for s in sups if s.alignment]
        if engine == "hibari":
            assert not timed
        for s in timed:
            assert [w.symbol for w in s.alignment["word"]] == s.text.split()
    rows = [json.loads(x) for x in (corpus / "train" / "utterances.jsonl").open()]
    assert {r["engine"] for r in rows} == {"espeak", "piper", "hibari"}
    assert any(
        "rir" in r["condition"]
        for r in rows + [json.loads(x) for x in (corpus / "test" / "utterances.jsonl").open()]
    )


def test_per_engine_splits_get_features_and_divide_the_decoded_sets(mixed_manifests, tmp_path):
    """compute-features finds test_<engine> and heldout_<engine> beside test and heldout;
    the report's voice subsets are those splits' cut ids, together the whole set."""
    from asr_kd.data.features import FeatureConfig, compute_features
    from asr_kd.report.voices import subset_ids

    _, out, held = mixed_manifests
    manifests, held_dir = out["test"].parent, held["heldout"].parent
    fbank = compute_features(held_dir, tmp_path / "fbank_heldout", FeatureConfig())
    assert set(fbank) == {"heldout", "heldout_espeak", "heldout_piper", "heldout_hibari"}
    for split, path in fbank.items():
        cuts = CutSet.from_file(path)
        assert len(cuts) and all(c.has_features and c.num_frames > 0 for c in cuts), split
    subsets = subset_ids([manifests, held_dir])
    engines = ("espeak", "piper", "hibari")
    assert set(subsets) == {f"{s}_{e}" for s in ("test", "heldout") for e in engines}
    for split, paths in (("test", out), ("heldout", held)):
        whole = {c.id for c in CutSet.from_file(paths[split])}
        parts = [subsets[f"{split}_{e}"] for e in engines]
        assert set().union(*parts) == whole and sum(map(len, parts)) == len(whole)


def test_clean_copy_is_the_utterance_before_its_room_and_noise():
    """The clean copy takes nothing from the utterance's random streams: the noisy audio
    is bit-identical with and without it, and the copy lines up sample for sample."""
    from asr_kd.data.synth import render_utterance, render_with_clean_copy

    config = replace(TINY, noise_prob=1.0, reverb_prob=1.0, snr_db=(5.0, 5.0))
    job = plan_corpus(config)[0][0]
    assert "noise" in job.condition and ("rt60" in job.condition or "rir" in job.condition)
    noisy, words, _ = render_utterance(job, config)
    again, clean, words_again, _ = render_with_clean_copy(job, config)
    assert np.array_equal(noisy, again) and words == words_again
    assert clean.shape == noisy.shape and clean.dtype == np.float32
    assert np.isclose(np.abs(clean).max(), np.abs(noisy).max(), rtol=1e-4)  # same peak level
    # before the speech (the leading silence) only the faint floor, 45 dB under the speech,
    # against 5 dB for the noise
    lead = int(job.condition["lead_silence"] * config.sample_rate) - 160
    assert np.sqrt(np.mean(clean[:lead] ** 2)) < 0.03 * np.sqrt(np.mean(noisy[:lead] ** 2))


@pytest.fixture(scope="module")
def clean_copy_corpus(tmp_path_factory):
    from asr_kd.data.synth import synthesize_corpus
    from asr_kd.data.synth_prepare import prepare_synth

    root = tmp_path_factory.mktemp("clean_copies")
    config = replace(TINY, clean_copies=True)
    corpus = synthesize_corpus(root / "corpus", config)
    return corpus, prepare_synth(corpus, root / "manifests")


def test_mfcc_from_clean_copies_align_frame_for_frame(clean_copy_corpus, tmp_path):
    from asr_kd.data.features import FeatureConfig, compute_features

    corpus, manifests = clean_copy_corpus
    rows = [json.loads(x) for x in (corpus / "train" / "utterances.jsonl").open()]
    assert all((corpus / r["clean_audio"]).is_file() for r in rows)
    recorded = compute_features(manifests["train"].parent, tmp_path / "a", FeatureConfig("mfcc"))
    clean = compute_features(
        manifests["train"].parent, tmp_path / "b", FeatureConfig("mfcc", audio="clean")
    )
    for split in ("train", "dev", "test"):
        a = {c.id: c for c in CutSet.from_file(recorded[split])}
        b = {c.id: c for c in CutSet.from_file(clean[split])}
        assert a.keys() == b.keys()
        for cut_id, cut in b.items():
            speaker = cut.supervisions[0].speaker
            assert cut.recording.sources[0].source.endswith(f"/clean/{speaker}/{cut_id}.flac")
            assert cut.num_frames == a[cut_id].num_frames
    noisy = next(r["id"] for r in rows if "noise" in r["condition"])
    a = CutSet.from_file(recorded["train"]).to_eager()[noisy].load_features()
    b = CutSet.from_file(clean["train"]).to_eager()[noisy].load_features()
    assert np.abs(a - b).mean() > 0.5  # the noise is gone from the clean copy's cepstra


def test_clean_audio_without_clean_copies_is_refused(tiny_manifests, tmp_path):
    from asr_kd.data.features import FeatureConfig, compute_features
    from asr_kd.errors import BadInputError

    with pytest.raises(BadInputError, match=r"no clean copy .*corpus.clean_copies: true"):
        compute_features(tiny_manifests, tmp_path / "mfcc", FeatureConfig("mfcc", audio="clean"))
    assert not list(tmp_path.iterdir())


def test_prepare_refuses_a_truncated_clean_copy(clean_copy_corpus, tmp_path):
    import shutil

    from asr_kd.data.synth_prepare import prepare_synth
    from asr_kd.errors import BadInputError

    corpus = tmp_path / "corpus"
    shutil.copytree(clean_copy_corpus[0], corpus)
    row = json.loads((corpus / "dev" / "utterances.jsonl").open().readline())
    audio, rate = sf.read(corpus / row["clean_audio"], dtype="float32")
    sf.write(corpus / row["clean_audio"], audio[: len(audio) // 2], rate, format="FLAC")
    with pytest.raises(BadInputError, match=rf"utterance {row['id']}: clean copy .* samples"):
        prepare_synth(corpus, tmp_path / "manifests")
    assert not (tmp_path / "manifests").exists()


@pytest.mark.parametrize(
    "damage, message",
    [
        ("no_num_samples", r"utterances.jsonl:1 \(utterance .*\): field\(s\) num_samples missing"),
        ("a_list", r"utterances.jsonl:1 is a JSON list, not an utterance object"),
        ("duplicate", r"utterances.jsonl:2: utterance id .* repeats line 1"),
        ("empty", r"utterances.jsonl holds no utterances"),
    ],
)
def test_prepare_refuses_malformed_utterance_rows(tiny_corpus, tmp_path, damage, message):
    import shutil

    from asr_kd.data.synth_prepare import prepare_synth
    from asr_kd.errors import BadInputError

    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    path = corpus / "dev" / "utterances.jsonl"
    rows = [json.loads(x) for x in path.open()]
    if damage == "no_num_samples":
        del rows[0]["num_samples"]
    lines = [json.dumps(r) for r in rows]
    if damage == "a_list":
        lines[0] = json.dumps(list(rows[0].values()))
    elif damage == "duplicate":
        lines[1] = lines[0]
    elif damage == "empty":
        lines = []
    path.write_text("".join(x + "\n" for x in lines))
    with pytest.raises(BadInputError, match=message):
        prepare_synth(corpus, tmp_path / "manifests")
    assert not (tmp_path / "manifests").exists()
