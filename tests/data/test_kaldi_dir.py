"""Your own corpus: Kaldi data directories and Lhotse manifests, as LibriSpeech is read."""

import shutil

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet, load_manifest

from asr_kd.data.features import FeatureConfig, compute_features
from asr_kd.data.kaldi_dir import prepare_kaldi_dirs, wav_scp_audio
from asr_kd.data.lhotse_import import prepare_lhotse
from asr_kd.data.librispeech import prepare_librispeech
from asr_kd.errors import BadInputError, ConfigError, MissingInputError
from asr_kd.testing.fake_corpora import (
    librispeech_as_kaldi_dir,
    librispeech_as_lhotse,
    make_fake_librispeech,
    make_synth_librispeech,
    write_tone,
)
from asr_kd.testing.synth import TINY_SYNTH

PART = "train-clean-5"


@pytest.fixture(scope="module")
def synth_librispeech(tmp_path_factory):
    """The tiny synthesised corpus in LibriSpeech's layout (speech, SPEAKERS.TXT)."""
    return make_synth_librispeech(tmp_path_factory.mktemp("ls") / "download", TINY_SYNTH)


@pytest.fixture
def kaldi_dir(tmp_path):
    """A 4-utterance Kaldi data dir (tones) named train_clean; files sorted as Kaldi's."""
    corpus = make_fake_librispeech(tmp_path / "download", speakers=2, utts=2)
    return librispeech_as_kaldi_dir(corpus, "dev-clean-2", tmp_path / "data" / "train_clean")


def test_synth_librispeech_layout(synth_librispeech):
    root = synth_librispeech.parent
    assert sorted(p.name for p in synth_librispeech.iterdir()) == [
        "SPEAKERS.TXT",
        "dev-clean-2",
        "test-clean",
        "train-clean-5",
    ]
    flacs = sorted(synth_librispeech.rglob("*.flac"))
    assert len(flacs) == 13  # TINY_SYNTH: 9 train, 2 dev, 2 test
    spk, chapter, _ = flacs[0].stem.split("-")
    assert flacs[0].parent == synth_librispeech / "dev-clean-2" / spk / chapter
    assert sf.info(flacs[0]).samplerate == 16000
    trans = flacs[0].parent / f"{spk}-{chapter}.trans.txt"
    assert trans.read_text().split()[0] == flacs[0].stem
    assert "| dev-clean-2" in (synth_librispeech / "SPEAKERS.TXT").read_text()
    assert (root / "librispeech-lm-norm.txt").read_text().count("\n") == TINY_SYNTH.lm_sentences
    assert "\tAH0" in (root / "librispeech-lexicon.txt").read_text()


def _summary(cut):
    """Everything a later stage reads from a cut, with its audio."""
    s = cut.supervisions[0]
    return (
        cut.id,
        cut.start,
        cut.duration,
        cut.recording.to_dict(),
        (s.id, s.start, s.duration, s.channel, s.text, s.speaker, s.gender, s.language),
    )


def test_same_audio_three_ways_gives_identical_cuts_and_features(synth_librispeech, tmp_path):
    ls = prepare_librispeech(synth_librispeech, tmp_path / "m_ls", parts=[PART])
    data = librispeech_as_kaldi_dir(synth_librispeech, PART, tmp_path / "data" / "train_clean_5")
    kd = prepare_kaldi_dirs([data], tmp_path / "m_kaldi", corpus="mine", language="English")
    lh_dir = librispeech_as_lhotse(synth_librispeech, PART, tmp_path / "lhotse")
    lh = prepare_lhotse(lh_dir, tmp_path / "m_lhotse")
    assert list(kd) == list(lh) == [PART]
    cuts = [load_manifest(paths[PART]) for paths in (ls, kd, lh)]
    assert len(cuts[0]) == 9
    for other in cuts[1:]:
        assert [_summary(c) for c in other] == [_summary(c) for c in cuts[0]]
        assert [c.to_dict() for c in other] == [c.to_dict() for c in cuts[0]]
    assert {c.supervisions[0].gender for c in cuts[0]} <= {"m", "f"}

    config = FeatureConfig(device="cpu")
    feats = []
    for name in ("m_ls", "m_kaldi", "m_lhotse"):
        out = compute_features(tmp_path / name, tmp_path / f"fbank_{name}", config)
        feats.append({c.id: c.load_features() for c in CutSet.from_file(out[PART])})
    assert sorted(feats[0]) == sorted(c.id for c in cuts[0])
    for other in feats[1:]:
        for utt, array in feats[0].items():
            np.testing.assert_array_equal(other[utt], array)


def test_kaldi_dir_with_segments_and_flac_pipes(kaldi_dir, tmp_path):
    lines = (kaldi_dir / "wav.scp").read_text().splitlines()
    utt, path = lines[0].split()
    # Two segments of the first recording; the other recordings through decode commands.
    seconds = sf.info(path).duration
    wav = [f"rec1 {path}"]
    wav += [f"rec{i} flac -c -d -s {p.split()[1]} |" for i, p in enumerate(lines[1:3], start=2)]
    wav.append(f"rec4 sox {lines[3].split()[1]} -t wav - |")
    (kaldi_dir / "wav.scp").write_text("\n".join(wav) + "\n")
    segs = [f"{utt}a rec1 0.0 {seconds / 2:.3f}", f"{utt}b rec1 {seconds / 2:.3f} {seconds:.3f}"]
    segs += [f"{line.split()[0]} rec{i} 0 0.4" for i, line in enumerate(lines[1:], start=2)]
    (kaldi_dir / "segments").write_text("\n".join(segs) + "\n")
    texts = (kaldi_dir / "text").read_text().splitlines()
    words = texts[0].split(maxsplit=1)[1]
    texts = [f"{utt}a {words}", f"{utt}b {words}"] + texts[1:]
    (kaldi_dir / "text").write_text("\n".join(texts) + "\n")
    spk = utt.split("-")[0]
    utt2spk = (kaldi_dir / "utt2spk").read_text().splitlines()[1:]
    (kaldi_dir / "utt2spk").write_text(
        "\n".join([f"{utt}a {spk}", f"{utt}b {spk}", *utt2spk]) + "\n"
    )

    paths = prepare_kaldi_dirs([kaldi_dir], tmp_path / "m", num_jobs=2)
    assert list(paths) == ["train-clean"]  # the directory's name, '_' made '-'
    cuts = {c.id: c for c in load_manifest(paths["train-clean"])}
    assert sorted(cuts) == sorted([f"{utt}a", f"{utt}b", *(t.split()[0] for t in texts[2:])])
    a, b = cuts[f"{utt}a"], cuts[f"{utt}b"]
    assert a.recording_id == b.recording_id == "rec1"
    assert a.start == 0 and b.start == pytest.approx(round(seconds / 2, 3))
    assert b.duration == pytest.approx(seconds - round(seconds / 2, 3))
    audio, _ = sf.read(path, dtype="float32")
    start = round(b.start * 16000)
    np.testing.assert_allclose(b.load_audio()[0], audio[start : start + b.num_samples], atol=1e-4)
    for cut in cuts.values():
        assert cut.supervisions[0].start == 0 and cut.supervisions[0].gender in ("m", "f")
    assert cuts[texts[2].split()[0]].duration == pytest.approx(0.4)


@pytest.mark.parametrize(
    "line",
    [
        "flac -d FILE |",  # no -c: decodes to a file, not to the pipe
        "sox FILE -t wav -r 8000 - |",  # resamples
        "gunzip -c FILE.gz |",
        "FILE.ark:1234",
    ],
)
def test_wav_scp_commands_refused(line):
    fields = line.replace("FILE", "/x/a.flac").split()
    path, problem = wav_scp_audio(fields, "wav.scp:3", "rec")
    if line.startswith("FILE"):  # one token: a path (that will not exist)
        assert path is not None and problem is None
        return
    assert path is None
    assert problem.startswith("wav.scp:3: recording rec: the command")
    assert "not supported" in problem and "'flac -c -d -s FILE |'" in problem


def test_wav_scp_decode_commands_accepted():
    for line in (
        "flac -c -d -s A |",
        "flac -dcs A|",
        "flac --decode --stdout A |",
        "sox A -t wav - |",
    ):
        path, problem = wav_scp_audio(line.split(), "w:1", "r")
        assert problem is None and path.name == "A", line


# --- bad input: one error naming the file and line, nothing written -----------------


def _expect_error(kaldi_dir, tmp_path, match):
    with pytest.raises(BadInputError, match=match) as e:
        prepare_kaldi_dirs([kaldi_dir], tmp_path / "m")
    assert not (tmp_path / "m").exists() and not list(tmp_path.glob("m.tmp-*"))
    return str(e.value)


def _line(kaldi_dir, name, n):
    return (kaldi_dir / name).read_text().splitlines()[n - 1]


def test_missing_audio(kaldi_dir, tmp_path):
    rec, path = _line(kaldi_dir, "wav.scp", 2).split()
    sf_path = tmp_path / "gone.flac"
    shutil.move(path, sf_path)
    msg = _expect_error(kaldi_dir, tmp_path, "cannot be read as audio")
    assert msg == (
        f"prepare kaldi-dir: {kaldi_dir / 'wav.scp'}:2: recording {rec} ({path}): "
        "cannot be read as audio (does not exist)"
    )


@pytest.mark.parametrize(
    ("bad", "why"),
    [("", "empty transcript"), ("CAFÉ AU LAIT", "non-ASCII characters 'É'")],
)
def test_blank_or_non_ascii_transcript(kaldi_dir, tmp_path, bad, why):
    lines = (kaldi_dir / "text").read_text().splitlines()
    utt = lines[2].split()[0]
    lines[2] = f"{utt} {bad}"
    (kaldi_dir / "text").write_text("\n".join(lines) + "\n")
    msg = _expect_error(kaldi_dir, tmp_path, why)
    assert msg.startswith(f"prepare kaldi-dir: {kaldi_dir / 'text'}:3: utterance {utt}: {why}")


def test_blank_line_in_text(kaldi_dir, tmp_path):
    text = (kaldi_dir / "text").read_text()
    (kaldi_dir / "text").write_text(text.replace("\n", "\n\n", 1))
    msg = _expect_error(kaldi_dir, tmp_path, "blank line")
    assert msg == f"prepare kaldi-dir: {kaldi_dir / 'text'}:2: blank line"


def test_speaker_without_gender(kaldi_dir, tmp_path):
    lines = (kaldi_dir / "spk2gender").read_text().splitlines()
    spk = lines[1].split()[0]
    (kaldi_dir / "spk2gender").write_text(lines[0] + "\n")
    first = next(
        i for i, line in enumerate(_line(kaldi_dir, "utt2spk", n) for n in (1, 2, 3, 4))
        if line.split()[1] == spk
    )  # fmt: skip
    msg = _expect_error(kaldi_dir, tmp_path, "has no gender")
    assert msg.startswith(f"prepare kaldi-dir: {kaldi_dir / 'utt2spk'}:{first + 1}: speaker {spk}")
    assert str(kaldi_dir / "spk2gender") in msg


def test_duplicate_utterance_id(kaldi_dir, tmp_path):
    lines = (kaldi_dir / "text").read_text().splitlines()
    utt = lines[0].split()[0]
    (kaldi_dir / "text").write_text("\n".join([*lines, f"{utt} THE END"]) + "\n")
    msg = _expect_error(kaldi_dir, tmp_path, "listed twice")
    where = kaldi_dir / "text"
    assert msg == (
        f"prepare kaldi-dir: {where}:5: utterance {utt} is listed twice (first at {where}:1)"
    )


def test_segment_past_the_end_of_its_audio(kaldi_dir, tmp_path):
    wav = [line.split() for line in (kaldi_dir / "wav.scp").read_text().splitlines()]
    seconds = sf.info(wav[1][1]).duration
    segs = [f"{utt} {utt} 0 {sf.info(p).duration:.3f}" for utt, p in wav]
    segs[1] = f"{wav[1][0]} {wav[1][0]} 0.1 {seconds + 0.5:.3f}"
    (kaldi_dir / "segments").write_text("\n".join(segs) + "\n")
    msg = _expect_error(kaldi_dir, tmp_path, "past the end")
    assert msg == (
        f"prepare kaldi-dir: {kaldi_dir / 'segments'}:2: utterance {wav[1][0]} ends at "
        f"{seconds + 0.5:.3f} s, past the end of its recording {wav[1][0]} ({seconds:.3f} s)"
    )


def test_missing_files_and_bad_names(kaldi_dir, tmp_path):
    (kaldi_dir / "utt2spk").unlink()
    with pytest.raises(MissingInputError, match="lacks utt2spk"):
        prepare_kaldi_dirs([kaldi_dir], tmp_path / "m")
    other = tmp_path / "x" / "train_clean"
    with pytest.raises(ConfigError, match="its own split name"):
        prepare_kaldi_dirs([kaldi_dir, other], tmp_path / "m")


def test_sampling_rate_mismatch(kaldi_dir, tmp_path):
    rec, path = _line(kaldi_dir, "wav.scp", 1).split()
    write_tone(path, 0.7, sampling_rate=8000)
    _expect_error(kaldi_dir, tmp_path, rf"recording {rec} .*8000 Hz, expected 16000 Hz")


# --- Lhotse manifests ---------------------------------------------------------------


@pytest.fixture
def lhotse_dir(tmp_path):
    corpus = make_fake_librispeech(tmp_path / "download", speakers=2, utts=2)
    return librispeech_as_lhotse(corpus, "dev-clean-2", tmp_path / "lhotse", corpus="my_corpus")


def _edit_supervisions(lhotse_dir, edit):
    path = lhotse_dir / "my_corpus_supervisions_dev-clean-2.jsonl.gz"
    sups = load_manifest(path)
    from lhotse import SupervisionSet

    SupervisionSet.from_segments(edit(list(sups))).to_file(path)
    return path


def test_lhotse_from_cuts_and_from_pairs_agree(lhotse_dir, tmp_path):
    pair = prepare_lhotse(lhotse_dir, tmp_path / "a")
    assert list(pair) == ["dev-clean-2"]
    assert pair["dev-clean-2"].name == "my_corpus_cuts_dev-clean-2.jsonl.gz"
    cuts_only = tmp_path / "cuts_only"
    cuts_only.mkdir()
    shutil.copy(pair["dev-clean-2"], cuts_only / "theirs_cuts_dev_clean_2.jsonl.gz")
    from_cuts = prepare_lhotse(cuts_only, tmp_path / "b")
    assert list(from_cuts) == ["dev-clean-2"]  # '_' in the split made '-'
    want = [c.to_dict() for c in load_manifest(pair["dev-clean-2"])]
    assert [c.to_dict() for c in load_manifest(from_cuts["dev-clean-2"])] == want


def test_lhotse_bad_inputs_name_the_manifest_line(lhotse_dir, tmp_path):
    from lhotse.utils import fastcopy

    path = _edit_supervisions(lhotse_dir, lambda s: [s[0], fastcopy(s[1], text="  "), *s[2:]])
    with pytest.raises(BadInputError) as e:
        prepare_lhotse(lhotse_dir, tmp_path / "m")
    assert (
        str(e.value)
        == f"prepare lhotse: {path}:2: utterance {load_manifest(path)[1].id}: empty transcript"
    )
    assert not (tmp_path / "m").exists()

    _edit_supervisions(lhotse_dir, lambda s: [s[0], fastcopy(s[1], text="THE END"), *s[2:]])
    _edit_supervisions(lhotse_dir, lambda s: [*s[:3], fastcopy(s[3], gender=None)])
    with pytest.raises(BadInputError, match=rf"{path}:4: speaker .* has no gender"):
        prepare_lhotse(lhotse_dir, tmp_path / "m")

    _edit_supervisions(lhotse_dir, lambda s: [*s[:3], fastcopy(s[3], gender="f", duration=9.0)])
    with pytest.raises(BadInputError, match=rf"{path}:4: utterance .* past the end"):
        prepare_lhotse(lhotse_dir, tmp_path / "m")
    assert not (tmp_path / "m").exists()
