import gzip
import json

import pytest
import soundfile as sf
from lhotse import load_manifest

from asr_kd.data.librispeech import LIBRISPEECH_PARTS, download_librispeech, prepare_librispeech
from asr_kd.errors import AsrKdError, BadInputError, ConfigError, MissingInputError
from asr_kd.stage import is_done
from asr_kd.testing.fake_corpora import corrupt_file, make_fake_librispeech, write_tone


@pytest.fixture
def corpus(tmp_path):
    return make_fake_librispeech(tmp_path / "download", speakers=2, chapters=1, utts=2)


def expected(corpus, part):
    """Utterance id -> (text, seconds) read straight from the fake corpus files."""
    out = {}
    for trans in (corpus / part).rglob("*.trans.txt"):
        for line in trans.read_text().splitlines():
            utt, text = line.split(maxsplit=1)
            flac = trans.parent / f"{utt}.flac"
            audio, sr = sf.read(flac)
            out[utt] = (text, len(audio) / sr)
    return out


def test_prepare_gives_the_corpus(corpus, tmp_path):
    out = tmp_path / "manifests"
    paths = prepare_librispeech(corpus, out)
    assert set(paths) == {"dev-clean-2"}
    assert is_done(out)
    for kind in ("recordings", "supervisions", "cuts"):
        assert (out / f"librispeech_{kind}_dev-clean-2.jsonl.gz").is_file()
    cuts = load_manifest(paths["dev-clean-2"])
    want = expected(corpus, "dev-clean-2")
    assert len(want) == 4
    assert sorted(c.id for c in cuts) == sorted(want)
    for cut in cuts:
        text, seconds = want[cut.id]
        assert len(cut.supervisions) == 1
        assert cut.supervisions[0].text == text
        assert cut.supervisions[0].speaker == cut.id.split("-")[0]
        assert cut.duration == pytest.approx(seconds)
        assert cut.sampling_rate == 16000
        assert cut.load_audio().shape == (1, round(seconds * 16000))
    assert len(load_manifest(out / "librispeech_recordings_dev-clean-2.jsonl.gz")) == 4
    assert len(load_manifest(out / "librispeech_supervisions_dev-clean-2.jsonl.gz")) == 4


def test_rerun_is_skipped_and_force_redoes(corpus, tmp_path):
    out = tmp_path / "manifests"
    prepare_librispeech(corpus, out)
    marker = (out / ".done.json").stat().st_mtime_ns
    corrupt_file(next(corpus.rglob("*.flac")))  # would fail if the audio were read again
    prepare_librispeech(corpus, out)
    assert (out / ".done.json").stat().st_mtime_ns == marker
    with pytest.raises(BadInputError):
        prepare_librispeech(corpus, out, force=True)
    assert is_done(out)  # the failed redo left the finished output alone


def test_two_parts_and_part_selection(tmp_path):
    corpus = make_fake_librispeech(tmp_path, parts=("dev-clean-2", "train-clean-5"), utts=3)
    paths = prepare_librispeech(corpus, tmp_path / "all", num_jobs=2)
    assert list(paths) == ["dev-clean-2", "train-clean-5"]
    dev, train = (load_manifest(paths[p]) for p in paths)
    assert len(dev) == len(train) == 6
    assert not {c.supervisions[0].speaker for c in dev} & {c.supervisions[0].speaker for c in train}
    paths = prepare_librispeech(corpus, tmp_path / "train", parts=["train-clean-5"])
    assert list(paths) == ["train-clean-5"]
    assert not (tmp_path / "train" / "librispeech_cuts_dev-clean-2.jsonl.gz").exists()
    # Another configuration in the same directory is refused rather than mixed.
    with pytest.raises(AsrKdError, match="another configuration"):
        prepare_librispeech(corpus, tmp_path / "train", parts=["dev-clean-2"])


def test_audio_paths_are_absolute(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(corpus.parent)
    paths = prepare_librispeech("LibriSpeech", tmp_path / "m")
    with gzip.open(tmp_path / "m" / "librispeech_recordings_dev-clean-2.jsonl.gz", "rt") as f:
        source = json.loads(f.readline())["sources"][0]["source"]
    assert source.startswith(str(corpus))
    assert load_manifest(paths["dev-clean-2"])[0].load_audio().size > 0


def test_missing_corpus_dir(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(MissingInputError, match=str(missing)):
        prepare_librispeech(missing, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_no_parts_present_names_the_parts(tmp_path):
    make_fake_librispeech(tmp_path)
    with pytest.raises(MissingInputError) as e:
        prepare_librispeech(tmp_path, tmp_path / "m")  # the parent of LibriSpeech/
    msg = str(e.value)
    assert "dev-clean-2" in msg and "train-clean-100" in msg
    assert f"did you mean {tmp_path / 'LibriSpeech'}" in msg


def test_missing_or_unknown_part(corpus, tmp_path):
    with pytest.raises(MissingInputError, match=str(corpus / "test-clean")):
        prepare_librispeech(corpus, tmp_path / "m", parts=["test-clean"])
    with pytest.raises(ConfigError, match="dev-clean-3"):
        prepare_librispeech(corpus, tmp_path / "m", parts=["dev-clean-3"])
    assert "dev-clean-2" in LIBRISPEECH_PARTS and "train-clean-100" in LIBRISPEECH_PARTS


@pytest.mark.parametrize("how", ["truncate", "garbage"])
def test_corrupt_flac_names_the_utterance_and_leaves_nothing(corpus, tmp_path, how):
    flacs = sorted(corpus.rglob("*.flac"))
    corrupt_file(flacs[1], how)
    out = tmp_path / "m"
    with pytest.raises(BadInputError) as e:
        prepare_librispeech(corpus, out)
    msg = str(e.value)
    utt = flacs[1].stem
    assert msg.startswith(f"prepare librispeech: recording {utt} ({flacs[1]}): cannot be read")
    assert flacs[0].stem not in msg
    assert not out.exists()
    assert list(tmp_path.glob("m.tmp-*")) == []


def test_sampling_rate_mismatch(corpus, tmp_path):
    flac = sorted(corpus.rglob("*.flac"))[0]
    write_tone(flac, 0.7, sampling_rate=8000)
    with pytest.raises(BadInputError, match=rf"{flac.stem} .*8000 Hz, expected 16000 Hz"):
        prepare_librispeech(corpus, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_empty_transcript(corpus, tmp_path):
    trans = sorted(corpus.rglob("*.trans.txt"))[0]
    lines = trans.read_text().splitlines()
    utt = lines[1].split()[0]
    trans.write_text(f"{lines[0]}\n{utt}   \n")
    with pytest.raises(BadInputError) as e:
        prepare_librispeech(corpus, tmp_path / "m")
    assert str(e.value) == f"prepare librispeech: utterance {utt} ({trans}:2): empty transcript"
    assert not (tmp_path / "m").exists()


def test_missing_flac_is_an_error_not_a_dropped_utterance(corpus, tmp_path):
    flac = sorted(corpus.rglob("*.flac"))[0]
    flac.unlink()
    with pytest.raises(BadInputError, match=rf"{flac.stem} \({flac}\): audio file does not exist"):
        prepare_librispeech(corpus, tmp_path / "m")


# --- download: a local OpenSLR mirror on 127.0.0.1 ---------------------------------


@pytest.fixture
def openslr(tmp_path):
    """An HTTP server on 127.0.0.1 laid out like OpenSLR (12/ LibriSpeech, 31/ mini).

    Serves ``<part>.tar.gz`` archives of a fake corpus; yields (base URL, requested paths).
    """
    import functools
    import http.server
    import tarfile
    import threading

    from asr_kd.data.librispeech import MINI_LIBRISPEECH_PARTS

    parts = (*MINI_LIBRISPEECH_PARTS, "dev-clean")
    corpus = make_fake_librispeech(tmp_path / "src", parts=parts, speakers=1, utts=1)
    root = tmp_path / "www"
    for part in parts:
        folder = root / ("31" if part in MINI_LIBRISPEECH_PARTS else "12")
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(folder / f"{part}.tar.gz", "w:gz") as tar:
            tar.add(corpus / part, arcname=f"LibriSpeech/{part}")
    requested = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requested.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requested
    server.shutdown()
    server.server_close()


def _run_cli(*args):
    from click.testing import CliRunner

    from asr_kd.cli.main import cli

    return CliRunner().invoke(cli, list(args))


def test_download_fetches_only_the_parts_named(openslr, tmp_path):
    url, requested = openslr
    result = _run_cli(
        "download", "librispeech", "--part", "dev-clean", "--base-url", url, str(tmp_path / "dl")
    )
    assert result.exit_code == 0, result.output
    assert requested == ["/12/dev-clean.tar.gz"]
    corpus = tmp_path / "dl" / "LibriSpeech"
    assert sorted(p.name for p in corpus.iterdir()) == ["dev-clean"]
    assert (corpus / "dev-clean" / ".completed").is_file()
    paths = prepare_librispeech(corpus, tmp_path / "m")  # the download is a usable corpus
    assert list(paths) == ["dev-clean"]
    # Finished parts are not fetched again.
    assert (
        _run_cli(
            "download",
            "librispeech",
            "--part",
            "dev-clean",
            "--base-url",
            url,
            str(tmp_path / "dl"),
        ).exit_code
        == 0
    )
    assert requested == ["/12/dev-clean.tar.gz"]


def test_download_default_is_mini_librispeech(openslr, tmp_path):
    url, requested = openslr
    result = _run_cli("download", "librispeech", "--base-url", url, str(tmp_path / "dl"))
    assert result.exit_code == 0, result.output
    assert sorted(requested) == ["/31/dev-clean-2.tar.gz", "/31/train-clean-5.tar.gz"]
    paths = prepare_librispeech(tmp_path / "dl" / "LibriSpeech", tmp_path / "m")
    assert sorted(paths) == ["dev-clean-2", "train-clean-5"]


def test_download_refuses_bad_part_names_with_the_list(openslr, tmp_path):
    url, requested = openslr
    result = _run_cli(
        "download",
        "librispeech",
        "--part",
        "dev-clean",
        "--part",
        "train-clean-101",
        "--base-url",
        url,
        str(tmp_path / "dl"),
    )
    assert result.exit_code != 0
    assert "unknown LibriSpeech part(s) train-clean-101" in result.output
    assert "known parts: dev-clean, dev-other, test-clean" in result.output
    assert "train-clean-5" in result.output
    assert requested == []  # nothing fetched, not even the good part
    assert not (tmp_path / "dl").exists()


def test_download_failure_names_the_part_and_address(openslr, tmp_path):
    url, _ = openslr
    with pytest.raises(
        AsrKdError, match=rf"downloading test-clean from {url} into {tmp_path / 'dl'} failed"
    ):
        download_librispeech(tmp_path / "dl", ["test-clean"], base_url=url)  # not served: 404


# --- SPEAKERS.TXT and more bad transcripts ------------------------------------------


def test_genders_come_from_speakers_txt(corpus, tmp_path):
    paths = prepare_librispeech(corpus, tmp_path / "m")
    genders = {
        c.supervisions[0].speaker: c.supervisions[0].gender
        for c in load_manifest(paths["dev-clean-2"])
    }
    assert genders == {"1000": "m", "1001": "f"}  # as make_fake_librispeech writes them


def test_speaker_missing_from_speakers_txt(corpus, tmp_path):
    speakers = corpus / "SPEAKERS.TXT"
    speakers.write_text(
        "".join(
            line + "\n" for line in speakers.read_text().splitlines() if not line.startswith("1001")
        )
    )
    trans = sorted(corpus.rglob("1001-*.trans.txt"))[0]
    with pytest.raises(BadInputError) as e:
        prepare_librispeech(corpus, tmp_path / "m")
    utt = trans.read_text().split()[0]
    assert str(e.value) == (
        f"prepare librispeech: {trans}:1: speaker 1001 (utterance {utt}) has no gender: "
        f"it is not in {speakers}"
    )
    assert not (tmp_path / "m").exists()


def test_non_ascii_transcript(corpus, tmp_path):
    trans = sorted(corpus.rglob("*.trans.txt"))[0]
    lines = trans.read_text().splitlines()
    utt = lines[0].split()[0]
    trans.write_text(f"{utt} NAÏVE CAFÉ\n{lines[1]}\n")
    with pytest.raises(BadInputError) as e:
        prepare_librispeech(corpus, tmp_path / "m")
    assert str(e.value).startswith(
        f"prepare librispeech: utterance {utt} ({trans}:1): non-ASCII characters 'ÏÉ' in the "
        "transcript"
    )


def test_duplicate_utterance_id(corpus, tmp_path):
    trans = sorted(corpus.rglob("*.trans.txt"))[0]
    lines = trans.read_text().splitlines()
    trans.write_text(f"{lines[0]}\n{lines[1]}\n{lines[0]}\n")
    with pytest.raises(BadInputError) as e:
        prepare_librispeech(corpus, tmp_path / "m")
    utt = lines[0].split()[0]
    assert str(e.value) == (
        f"prepare librispeech: {trans}:3: utterance {utt} is listed twice (first at {trans}:1)"
    )
    assert not (tmp_path / "m").exists()


def test_prepare_commands_on_the_command_line(corpus, tmp_path):
    from asr_kd.testing.fake_corpora import librispeech_as_kaldi_dir, librispeech_as_lhotse

    data = librispeech_as_kaldi_dir(corpus, "dev-clean-2", tmp_path / "data" / "dev_clean_2")
    result = _run_cli(
        "prepare", "kaldi-dir", "--language", "English", str(data), str(tmp_path / "k")
    )
    assert result.exit_code == 0, result.output
    assert is_done(tmp_path / "k")
    assert len(load_manifest(tmp_path / "k" / "kaldi_cuts_dev-clean-2.jsonl.gz")) == 4
    lhotse_dir = librispeech_as_lhotse(corpus, "dev-clean-2", tmp_path / "lhotse")
    result = _run_cli("prepare", "lhotse", str(lhotse_dir), str(tmp_path / "l"))
    assert result.exit_code == 0, result.output
    assert len(load_manifest(tmp_path / "l" / "mine_cuts_dev-clean-2.jsonl.gz")) == 4
    (data / "text").write_text("")
    result = _run_cli("prepare", "kaldi-dir", str(data), str(tmp_path / "k2"))
    assert result.exit_code == 1
    assert "has no transcript in" in result.output


# --- the recipe on the synthesised LibriSpeech-layout corpus ------------------------


@pytest.mark.slow
def test_recipe_fake_corpus_to_the_shared_stages(tmp_path):
    """run.sh --fake-corpus: corpus, manifests, fbank, MFCC, lang and LM (stages 0-5)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    config = tmp_path / "fake.yaml"
    config.write_text(
        f"parent: {repo}/recipes/librispeech/conf/tiny.yaml\n"
        "fake_corpus: {train_speakers: 3, dev_speakers: 1, test_speakers: 2,"
        " train_utts_per_speaker: 3, eval_utts_per_speaker: 2, lm_sentences: 200}\n"
    )  # tiny's two test parts (test-clean, test-other) get one test speaker each
    corpus = tmp_path / "download" / "LibriSpeech"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = [str(repo / "recipes/librispeech/run.sh"), "--config", str(config), "--fake-corpus"]
    cmd += ["--corpus-dir", str(corpus), "--work-dir", str(tmp_path / "w"), "--nj", "1"]
    cmd += ["--stop-stage", "5"]  # the rest: tests/test_librispeech_recipe.py
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = tmp_path / "w" / "data"
    for part, n in (("train-clean-5", 9), ("dev-clean-2", 2), ("test-clean", 2),
                    ("test-other", 2)):  # fmt: skip
        assert len(load_manifest(data / "manifests" / f"librispeech_cuts_{part}.jsonl.gz")) == n
        assert len(load_manifest(data / "fbank" / f"librispeech_cuts_{part}.jsonl.gz")) == n
    assert is_done(data / "mfcc") and is_done(data / "lang") and is_done(data / "lm")
    summary = json.loads((data / "lang" / "summary.json").read_text())
    assert summary["lexicon"] == str(corpus.parent / "librispeech-lexicon.txt")
    assert summary["oov_tokens"] == 0  # the fake lexicon covers every word
    ppl = json.loads((data / "lm" / "perplexity.json").read_text())
    assert ppl["lm_sentences"] == 200 + 9 and ppl["dev_sentences"] == 2
    assert 1 < ppl["ppl"] < 1000
    # Nothing is downloaded or rebuilt on a rerun; without the corpus, a clear refusal.
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0
    missing = [c if c != str(corpus) else str(tmp_path / "none" / "LibriSpeech") for c in cmd]
    missing.remove("--fake-corpus")
    proc = subprocess.run(missing, env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and "pass --download or --fake-corpus" in proc.stderr


def test_fake_corpus_needs_a_test_speaker_per_test_part(tmp_path):
    from asr_kd.data.synth import SynthCorpusConfig
    from asr_kd.testing.fake_corpora import make_synth_librispeech

    config = SynthCorpusConfig(train_speakers=2, dev_speakers=1, test_speakers=2,
                               train_utts_per_speaker=2, eval_utts_per_speaker=1,
                               lm_sentences=50, voices={"espeak": 1.0})  # fmt: skip
    parts = {"train": "train-clean-5", "dev": "dev-clean-2",
             "test": ["test-clean", "test-other", "dev-other"]}  # fmt: skip
    with pytest.raises(ConfigError, match=r"test split has 2 speaker\(s\) for 3 parts"):
        make_synth_librispeech(tmp_path / "download", config, parts)
    assert not (tmp_path / "download").exists()
