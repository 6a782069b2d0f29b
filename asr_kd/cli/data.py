"""Corpus, manifest and feature stages."""

from __future__ import annotations

from pathlib import Path

import click

from asr_kd.cli.options import config_option, dask_option, force_option, jobs_option, set_option
from asr_kd.config import load_section
from asr_kd.parallel import make_executor


@click.command("synth-corpus")
@click.argument("out_dir", type=click.Path(file_okay=False))
@config_option
@set_option
@jobs_option
@dask_option
@force_option
@click.option(
    "--heldout",
    is_flag=True,
    help="Write only the 'heldout' split: the test sentences read by voices never trained on.",
)
def synth_corpus(out_dir, config_path, overrides, num_jobs, dask_scheduler, force, heldout) -> None:
    """Synthesise the offline 'synth' corpus (audio, transcripts, LM text) into OUT_DIR."""
    from asr_kd.data.synth import SynthCorpusConfig, synthesize_corpus

    config = load_section(config_path, "corpus", SynthCorpusConfig, overrides)
    with make_executor(num_jobs, dask_scheduler) as executor:
        synthesize_corpus(Path(out_dir), config, executor=executor, force=force, heldout=heldout)


@click.group()
def prepare() -> None:
    """Write Lhotse manifests (recordings, supervisions, cuts) for a corpus."""


@prepare.command("synth")
@click.argument("corpus_dir", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@force_option
def prepare_synth(corpus_dir, out_dir, force) -> None:
    """Manifests for a corpus written by 'asr-kd synth-corpus'."""
    from asr_kd.data.synth_prepare import prepare_synth as run

    run(Path(corpus_dir), Path(out_dir), force=force)


@prepare.command("librispeech")
@click.argument("corpus_dir", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--part", "parts", multiple=True, help="Dataset part(s); default: all present.")
@jobs_option
@force_option
def prepare_librispeech(corpus_dir, out_dir, parts, num_jobs, force) -> None:
    """Manifests for a local LibriSpeech or mini-LibriSpeech copy (Lhotse's recipe)."""
    from asr_kd.data.librispeech import prepare_librispeech as run

    run(Path(corpus_dir), Path(out_dir), parts=parts or None, num_jobs=num_jobs, force=force)


@prepare.command("kaldi-dir")
@click.argument("data_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--corpus", default="kaldi", show_default=True, help="Corpus name of the manifests.")
@click.option("--sampling-rate", type=int, default=16000, show_default=True)
@click.option("--language", default=None, help="Language stored on the supervisions.")
@jobs_option
@force_option
def prepare_kaldi_dir(data_dirs, out_dir, corpus, sampling_rate, language, num_jobs, force) -> None:
    """Manifests for Kaldi data directories (wav.scp, text, utt2spk[, segments, spk2gender]).

    Each DATA_DIR is one split, named after it (data/dev_clean -> dev-clean).
    """
    from asr_kd.data.kaldi_dir import prepare_kaldi_dirs as run

    dirs = [Path(d) for d in data_dirs]
    run(dirs, Path(out_dir), corpus, sampling_rate, language, num_jobs, force)


@prepare.command("lhotse")
@click.argument("manifest_dir", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--sampling-rate", type=int, default=16000, show_default=True)
@jobs_option
@force_option
def prepare_lhotse(manifest_dir, out_dir, sampling_rate, num_jobs, force) -> None:
    """Check existing Lhotse manifests (recordings + supervisions, or cuts) and rewrite them."""
    from asr_kd.data.lhotse_import import prepare_lhotse as run

    run(Path(manifest_dir), Path(out_dir), sampling_rate, num_jobs, force)


@click.group()
def download() -> None:
    """Download a public corpus (needs network access)."""


@download.command("librispeech")
@click.argument("target_dir", type=click.Path(file_okay=False))
@click.option(
    "--part",
    "parts",
    multiple=True,
    help="Part to fetch (repeatable; e.g. train-clean-100); default: mini-LibriSpeech "
    "(dev-clean-2, train-clean-5).",
)
@click.option("--base-url", default=None, help="OpenSLR resources address or a mirror of it.")
def download_librispeech(target_dir, parts, base_url) -> None:
    """Download the named LibriSpeech parts into TARGET_DIR/LibriSpeech (finished ones skipped)."""
    from asr_kd.data.librispeech import MINI_LIBRISPEECH_PARTS, OPENSLR_URL
    from asr_kd.data.librispeech import download_librispeech as run

    run(Path(target_dir), parts or MINI_LIBRISPEECH_PARTS, base_url or OPENSLR_URL)


@click.command("compute-features")
@click.argument("manifest_dir", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--section", default="features", show_default=True, help="Config section to read.")
@click.option(
    "--stats-split",
    default="train",
    show_default=True,
    help="Split whose statistics are the global ones (e.g. train-clean-100).",
)
@config_option
@set_option
@jobs_option
@dask_option
@force_option
def compute_features(
    manifest_dir,
    out_dir,
    section,
    stats_split,
    config_path,
    overrides,
    num_jobs,
    dask_scheduler,
    force,
) -> None:
    """Extract fbank or MFCC features for every cut manifest in MANIFEST_DIR."""
    from asr_kd.data.features import FeatureConfig
    from asr_kd.data.features import compute_features as run

    config = load_section(config_path, section, FeatureConfig, overrides)
    with make_executor(1, dask_scheduler) as executor:
        run(Path(manifest_dir), Path(out_dir), config, num_jobs, executor, force, stats_split)
