import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet

from asr_kd.data.features import FeatureConfig, compute_features, load_stats
from asr_kd.errors import BadInputError, MissingInputError


@pytest.fixture(scope="module")
def fbank_dir(tiny_manifests, tmp_path_factory):
    out = tmp_path_factory.mktemp("feats") / "fbank"
    compute_features(tiny_manifests, out, FeatureConfig(device="cpu"), num_jobs=2)
    return out


def test_fbank_shapes_and_location(fbank_dir):
    for split in ("train", "dev", "test"):
        cuts = CutSet.from_file(fbank_dir / f"synth_cuts_{split}.jsonl.gz")
        for cut in cuts:
            feats = cut.load_features()
            assert feats.shape == (cut.num_frames, 80)
            # snip_edges=False: one frame per 10 ms of audio
            assert abs(cut.num_frames - round(cut.duration / 0.01)) <= 1
            assert np.isfinite(feats).all()
            assert ".tmp-" not in cut.features.storage_path
            assert cut.features.storage_path.startswith(str(fbank_dir))
    assert not list(fbank_dir.parent.glob("*.tmp-*"))


def test_stats_global_and_per_speaker(fbank_dir):
    glob, spk = load_stats(fbank_dir)
    train = CutSet.from_file(fbank_dir / "synth_cuts_train.jsonl.gz")
    feats = np.concatenate([c.load_features() for c in train])
    assert glob.count == len(feats)
    np.testing.assert_allclose(glob.mean, feats.mean(axis=0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(glob.var, feats.var(axis=0), rtol=1e-3, atol=1e-3)
    speakers = set()
    for split in ("train", "dev", "test"):
        for cut in CutSet.from_file(fbank_dir / f"synth_cuts_{split}.jsonl.gz"):
            speakers.add(cut.supervisions[0].speaker)
    assert set(spk) == speakers
    assert json.loads((fbank_dir / "stats" / "global.json").read_text())["split"] == "train"


def test_mfcc_dimension(tiny_manifests, tmp_path):
    out = tmp_path / "mfcc"
    compute_features(tiny_manifests, out, FeatureConfig(kind="mfcc", num_mel_bins=23))
    cut = next(iter(CutSet.from_file(out / "synth_cuts_dev.jsonl.gz")))
    assert cut.load_features().shape == (cut.num_frames, 13)


def test_rerun_is_skipped(fbank_dir, tiny_manifests):
    before = (fbank_dir / ".done.json").stat().st_mtime_ns
    compute_features(tiny_manifests, fbank_dir, FeatureConfig(device="cpu"), num_jobs=2)
    assert (fbank_dir / ".done.json").stat().st_mtime_ns == before


def test_missing_manifests_name_the_stage(tmp_path):
    with pytest.raises(MissingInputError, match="prepare"):
        compute_features(tmp_path / "manifests", tmp_path / "fbank", FeatureConfig())


def test_sample_rate_mismatch_is_refused(tiny_manifests, tmp_path):
    manifests = tmp_path / "manifests"
    shutil.copytree(tiny_manifests, manifests)
    (manifests / ".outputs.json").unlink()  # edited by hand, on purpose
    cuts = CutSet.from_file(manifests / "synth_cuts_dev.jsonl.gz").to_eager()
    cut = next(iter(cuts))
    path = tmp_path / "8k.flac"
    sf.write(path, np.zeros(8000, dtype=np.float32), 8000)
    source = cut.recording.sources[0]
    source.source = str(path)
    cut.recording.sampling_rate, cut.recording.num_samples = 8000, 8000
    cut.recording.duration = cut.duration = cut.supervisions[0].duration = 1.0
    cuts.to_file(manifests / "synth_cuts_dev.jsonl.gz")
    with pytest.raises(BadInputError, match=cut.id):
        compute_features(manifests, tmp_path / "fbank", FeatureConfig())
    assert not (tmp_path / "fbank").exists()


def test_empty_manifest_is_named(tiny_manifests, tmp_path):
    manifests = tmp_path / "manifests"
    shutil.copytree(tiny_manifests, manifests)
    (manifests / "synth_cuts_dev.jsonl.gz").write_bytes(b"")
    with pytest.raises(BadInputError, match="synth_cuts_dev.jsonl.gz"):
        compute_features(manifests, tmp_path / "fbank", FeatureConfig())


def _with_damaged_dev_cut(tiny_manifests, tmp_path):
    """A copy of the manifests whose first dev cut reads a FLAC damaged in the middle."""
    manifests = tmp_path / "manifests"
    shutil.copytree(tiny_manifests, manifests)
    (manifests / ".outputs.json").unlink()  # edited by hand, on purpose
    cuts = CutSet.from_file(manifests / "synth_cuts_dev.jsonl.gz").to_eager()
    cut = next(iter(cuts))
    source = cut.recording.sources[0]
    damaged = tmp_path / "damaged.flac"
    data = bytearray(Path(source.source).read_bytes())
    data[len(data) // 2 : len(data) // 2 + 200] = bytes(200)
    damaged.write_bytes(bytes(data))
    source.source = str(damaged)
    cuts.to_file(manifests / "synth_cuts_dev.jsonl.gz")
    return manifests, cut.id, damaged, len(cuts)


def test_audio_damaged_in_the_middle_stops_the_stage(tiny_manifests, tmp_path):
    manifests, cut_id, damaged, _ = _with_damaged_dev_cut(tiny_manifests, tmp_path)
    config = FeatureConfig(kind="mfcc", device="cpu")
    with pytest.raises(BadInputError) as e:
        compute_features(manifests, tmp_path / "mfcc", config)
    message = str(e.value)
    assert message.startswith("compute-features: 1 of ")
    assert f"cut {cut_id} ({damaged}) decoding failed at" in message
    assert "--set max_dropped=" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.flac", "manifests"]


def test_max_dropped_allows_listed_drops(tiny_manifests, tmp_path):
    manifests, cut_id, damaged, n_dev = _with_damaged_dev_cut(tiny_manifests, tmp_path)
    out = tmp_path / "mfcc"
    compute_features(manifests, out, FeatureConfig(kind="mfcc", device="cpu", max_dropped=0.5))
    line = (out / "dropped.txt").read_text()
    assert line.startswith(f"dev {cut_id} ({damaged}) decoding failed at")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dropped"] == 1
    assert summary["splits"]["dev"] == {"cuts": n_dev, "features": n_dev - 1, "dropped": 1}
    ids = [c.id for c in CutSet.from_file(out / "synth_cuts_dev.jsonl.gz")]
    assert cut_id not in ids and len(ids) == n_dev - 1
