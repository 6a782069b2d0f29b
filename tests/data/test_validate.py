from pathlib import Path

import pytest
from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.utils import fastcopy

from asr_kd.data.validate import (
    MAX_LISTED,
    audio_file_problem,
    check_vocabulary,
    validate_corpus,
)
from asr_kd.errors import BadInputError
from asr_kd.testing.fake_corpora import corrupt_file, write_tone

STAGE = "prepare test"


def make_corpus(tmp_path: Path, n: int = 3, sampling_rate: int = 16000):
    recs, sups = [], []
    for i in range(n):
        path = write_tone(tmp_path / f"utt{i}.flac", 0.5, sampling_rate=sampling_rate, seed=i)
        rec = Recording.from_file(path, recording_id=f"utt{i}")
        recs.append(rec)
        sups.append(
            SupervisionSegment(
                id=f"utt{i}", recording_id=rec.id, start=0, duration=rec.duration, text="HELLO"
            )
        )
    return RecordingSet.from_recordings(recs), SupervisionSet.from_segments(sups)


def test_valid_corpus_passes(tmp_path):
    recs, sups = make_corpus(tmp_path)
    validate_corpus(recs, sups, sampling_rate=16000, stage=STAGE)


@pytest.mark.parametrize("how", ["truncate", "garbage"])
def test_corrupt_audio_is_named(tmp_path, how):
    recs, sups = make_corpus(tmp_path)
    corrupt_file(tmp_path / "utt1.flac", how)
    assert audio_file_problem(tmp_path / "utt0.flac") is None
    assert audio_file_problem(tmp_path / "utt1.flac")
    with pytest.raises(BadInputError) as e:
        validate_corpus(recs, sups, sampling_rate=16000, stage=STAGE)
    msg = str(e.value)
    assert msg.startswith(f"{STAGE}: recording utt1 ({tmp_path / 'utt1.flac'}): cannot be read")
    assert "utt0" not in msg and "utt2" not in msg
    # Without the audio check the manifests alone look fine.
    validate_corpus(recs, sups, sampling_rate=16000, stage=STAGE, check_audio=False)


def test_missing_file(tmp_path):
    recs, sups = make_corpus(tmp_path, n=1)
    (tmp_path / "utt0.flac").unlink()
    with pytest.raises(BadInputError, match="utt0.*does not exist"):
        validate_corpus(recs, sups, sampling_rate=16000, stage=STAGE)


def test_sampling_rate_mismatch(tmp_path):
    recs, sups = make_corpus(tmp_path, n=1, sampling_rate=8000)
    with pytest.raises(BadInputError, match=r"utt0 .*sampling rate is 8000 Hz, expected 16000"):
        validate_corpus(recs, sups, sampling_rate=16000, stage=STAGE)


@pytest.mark.parametrize("text", ["", "   \t", None])
def test_empty_transcript(tmp_path, text):
    recs, sups = make_corpus(tmp_path, n=2)
    sups = SupervisionSet.from_segments(
        fastcopy(s, text=text) if s.id == "utt1" else s for s in sups
    )
    with pytest.raises(BadInputError, match=r"^prepare test: utterance utt1 \(.*\): empty"):
        validate_corpus(recs, sups, sampling_rate=16000, stage=STAGE)


def test_supervision_without_recording_and_overhang(tmp_path):
    recs, sups = make_corpus(tmp_path, n=2)
    bad = [
        SupervisionSegment(id="orphan", recording_id="nope", start=0, duration=1, text="HI"),
        SupervisionSegment(id="long", recording_id="utt0", start=0.2, duration=1.0, text="HI"),
    ]
    sups = SupervisionSet.from_segments(list(sups) + bad)
    with pytest.raises(BadInputError) as e:
        validate_corpus(recs, sups, sampling_rate=16000, stage=STAGE)
    msg = str(e.value)
    assert msg.splitlines()[0] == f"{STAGE}: 2 problems in the corpus:"
    assert "utterance orphan: its recording nope is not in the recordings" in msg
    assert "utterance long" in msg and "0.200-1.200 s" in msg and "lasts 0.500 s" in msg


def test_many_problems_are_counted_in_one_message(tmp_path):
    recs, sups = make_corpus(tmp_path, n=MAX_LISTED + 3, sampling_rate=8000)
    with pytest.raises(BadInputError) as e:
        validate_corpus(recs, sups, sampling_rate=16000, stage=STAGE)
    lines = str(e.value).splitlines()
    assert lines[0] == f"{STAGE}: {MAX_LISTED + 3} problems in the corpus:"
    assert len(lines) == 1 + MAX_LISTED + 1
    assert lines[-1].strip() == "... and 3 more"


def test_check_vocabulary(tmp_path):
    sups = SupervisionSet.from_segments(
        SupervisionSegment(id=f"u{i}", recording_id=f"u{i}", start=0, duration=1, text=t)
        for i, t in enumerate(["A ZORK B", "ZORK ZORK", "QUUX A", "A B"])
    )
    check_vocabulary(sups, {"A", "B", "ZORK", "QUUX"}, STAGE)
    with pytest.raises(BadInputError) as e:
        check_vocabulary(sups, {"A", "B"}, STAGE)
    lines = str(e.value).splitlines()
    assert (
        lines[0] == f"{STAGE}: 2 words are not in the vocabulary (4 occurrences in 3 utterances):"
    )
    assert lines[1] == "  ZORK: 3 times, e.g. in u0, u1"  # most frequent first
    assert lines[2] == "  QUUX: 1 time, e.g. in u2"
    # A predicate works as well as a set.
    with pytest.raises(BadInputError, match="QUUX"):
        check_vocabulary(sups, lambda w: w != "QUUX", STAGE)


def _corrupt_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 200] = bytes(200)
    path.write_bytes(bytes(data))


def test_audio_damaged_in_the_middle_is_named(tmp_path):
    path = write_tone(tmp_path / "long.flac", 4.0, sampling_rate=16000, seed=0)
    assert audio_file_problem(path) is None
    _corrupt_middle(path)
    problem = audio_file_problem(path)
    assert problem is not None and problem.startswith("decoding failed at")


def test_audio_disagreeing_with_its_manifest_is_named(tmp_path):
    recs, sups = make_corpus(tmp_path, n=2)
    bad = fastcopy(recs["utt1"], num_samples=recs["utt1"].num_samples * 2)
    bad = fastcopy(bad, duration=bad.num_samples / 16000)
    recs = RecordingSet.from_recordings([recs["utt0"], bad])
    with pytest.raises(
        BadInputError, match=r"utt1 \(.*utt1.flac\).*holds 8000 samples .*says 16000"
    ):
        validate_corpus(recs, sups, sampling_rate=16000, stage=STAGE)


def _cuts_with_array(tmp_path: Path):
    import numpy as np
    from lhotse import CutSet, NumpyHdf5Writer

    recs, sups = make_corpus(tmp_path, n=2)
    cuts = CutSet.from_manifests(recordings=recs, supervisions=sups)
    out = []
    with NumpyHdf5Writer(tmp_path / "ali.h5") as writer:
        for cut in cuts:
            labels = np.arange(50, dtype=np.int32)
            ta = writer.store_array(cut.id, labels, frame_shift=0.01, temporal_dim=0)
            out.append(cut.with_custom("ali", ta))
    CutSet.from_cuts(out).to_file(tmp_path / "cuts.jsonl.gz")
    return CutSet.from_file(tmp_path / "cuts.jsonl.gz").to_eager()


def test_validate_cuts_works_around_lhotse_shape_bug(tmp_path):
    from lhotse.qa import validate

    from asr_kd.data.validate import validate_cuts

    cuts = _cuts_with_array(tmp_path)
    with pytest.raises(AssertionError):  # the Lhotse 1.33 bug this works around
        validate(cuts, read_data=True)
    validate_cuts(cuts, STAGE, read_data=True)
    # a real mismatch still fails, naming the cut
    cut = cuts[0]
    ta = cut.custom["ali"]
    wrong = fastcopy(ta, array=fastcopy(ta.array, shape=[60]))
    bad = [fastcopy(cut, custom={"ali": wrong}), *list(cuts)[1:]]
    with pytest.raises(BadInputError, match=rf"{STAGE}: cut {cut.id}"):
        validate_cuts(bad, STAGE, read_data=True)
