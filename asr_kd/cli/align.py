"""GMM-HMM training (monophone, tri-phone) and forced-alignment stages."""

from __future__ import annotations

from pathlib import Path

import click

from asr_kd.cli.options import config_option, dask_option, force_option, jobs_option, set_option
from asr_kd.config import load_section
from asr_kd.parallel import make_executor


@click.command("train-mono")
@click.argument("feature_dir", type=click.Path(file_okay=False))
@click.argument("lang_dir", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--section", default="mono", show_default=True, help="Config section to read.")
@config_option
@set_option
@jobs_option
@dask_option
@force_option
def train_mono(
    feature_dir, lang_dir, out_dir, section, config_path, overrides, num_jobs, dask_scheduler, force
) -> None:
    """Train a monophone GMM-HMM on the MFCCs in FEATURE_DIR with LANG_DIR into OUT_DIR."""
    from asr_kd.align.mono import MonoConfig
    from asr_kd.align.mono import train_mono as run

    config = load_section(config_path, section, MonoConfig, overrides)
    with make_executor(num_jobs, dask_scheduler) as executor:
        run(Path(feature_dir), Path(lang_dir), Path(out_dir), config, num_jobs, executor, force)


@click.command("train-tri")
@click.argument("ali_dir", type=click.Path(file_okay=False))
@click.argument("feature_dir", type=click.Path(file_okay=False))
@click.argument("lang_dir", type=click.Path(file_okay=False))
@click.argument("tree_dir", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--section", default="tri1", show_default=True, help="Config section to read.")
@config_option
@set_option
@jobs_option
@dask_option
@force_option
def train_tri(
    ali_dir, feature_dir, lang_dir, tree_dir, out_dir, section, config_path, overrides,
    num_jobs, dask_scheduler, force,
) -> None:  # fmt: skip
    """Train a tri-phone GMM-HMM on TREE_DIR's senones, starting from ALI_DIR's alignments.

    FEATURE_DIR is the MFCC feature directory the alignments used.
    """
    from asr_kd.align.tri import TriConfig
    from asr_kd.align.tri import train_tri as run

    config = load_section(config_path, section, TriConfig, overrides)
    with make_executor(num_jobs, dask_scheduler) as executor:
        run(
            Path(ali_dir), Path(feature_dir), Path(lang_dir), Path(tree_dir), Path(out_dir),
            config, num_jobs, executor, force,
        )  # fmt: skip


@click.command("align")
@click.argument("feature_dir", type=click.Path(file_okay=False))
@click.argument("lang_dir", type=click.Path(file_okay=False))
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option(
    "--model",
    "model_spec",
    default=None,
    metavar="SPEC",
    help="Align with this model (exp/baseline, ensemble:A,B, a teacher file) "
    "instead of a GMM: FEATURE_DIR is then its input features and MODEL_DIR "
    "the senone-targets output it was trained on (tree, priors).",
)
@click.option("--device", default="cpu", show_default=True, help="With --model: cpu, cuda, auto.")
@click.option("--section", default="align", show_default=True, help="Config section to read.")
@config_option
@set_option
@jobs_option
@dask_option
@force_option
def align(
    feature_dir, lang_dir, model_dir, out_dir, model_spec, device, section, config_path,
    overrides, num_jobs, dask_scheduler, force,
) -> None:  # fmt: skip
    """Force-align every split in FEATURE_DIR with MODEL_DIR's GMM (mono or tri) into OUT_DIR.

    With --model SPEC: with that acoustic model, through training graphs of the tree
    in MODEL_DIR (a senone-targets output), as Kaldi's nnet3 align.sh.
    """
    from asr_kd.align.align import AlignConfig
    from asr_kd.align.align import align as run

    config = load_section(config_path, section, AlignConfig, overrides)
    with make_executor(num_jobs, dask_scheduler) as executor:
        run(
            Path(feature_dir), Path(lang_dir), Path(model_dir), Path(out_dir), config,
            num_jobs, executor, force, model_spec, device,
        )  # fmt: skip
