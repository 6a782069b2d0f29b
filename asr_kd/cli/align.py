"""GMM-HMM training (monophone, tri-phone) and forced-alignment stages."""

from __future__ import annotations

from pathlib import Path

import click

from asr_kd.cli.options import config_option, dask_option, force_option, jobs_option, set_option
from asr_kd.config import load_section
from asr_kd.parallel import make_executor


def parallel_stage_options(command):
    """``--config``, ``--set``, ``--num-jobs``, ``--dask-scheduler`` and ``--force``."""
    for option in (force_option, dask_option, jobs_option, set_option, config_option):
        command = option(command)
    return command


def tree_stage_arguments(command):
    """ALI_DIR FEATURE_DIR LANG_DIR TREE_DIR OUT_DIR (the stages after a tree)."""
    for name in ("out_dir", "tree_dir", "lang_dir", "feature_dir", "ali_dir"):
        command = click.argument(name, type=click.Path(file_okay=False))(command)
    return command


transform_option = click.option(
    "--transform",
    "transform_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="An estimate-lda output: its LDA(+MLLT) features instead of MFCC + deltas.",
)


@click.command("train-mono")
@click.argument("feature_dir", type=click.Path(file_okay=False))
@click.argument("lang_dir", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--section", default="mono", show_default=True, help="Config section to read.")
@parallel_stage_options
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
@tree_stage_arguments
@click.option("--section", default="tri1", show_default=True, help="Config section to read.")
@transform_option
@parallel_stage_options
def train_tri(
    ali_dir, feature_dir, lang_dir, tree_dir, out_dir, section, transform_dir, config_path,
    overrides, num_jobs, dask_scheduler, force,
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
            config, num_jobs, executor, force, transform_dir,
        )  # fmt: skip


@click.command("estimate-lda")
@tree_stage_arguments
@click.option("--section", default="lda", show_default=True, help="Config section to read.")
@parallel_stage_options
def estimate_lda(
    ali_dir, feature_dir, lang_dir, tree_dir, out_dir, section, config_path, overrides,
    num_jobs, dask_scheduler, force,
) -> None:  # fmt: skip
    """Estimate an LDA of spliced MFCCs with ALI_DIR's senones (on TREE_DIR) as classes.

    FEATURE_DIR is the MFCC feature directory the alignments used; OUT_DIR is read by
    build-tree --transform and train-tri --transform.
    """
    from asr_kd.align.lda_stage import LdaConfig, estimate_lda_stage

    config = load_section(config_path, section, LdaConfig, overrides)
    with make_executor(num_jobs, dask_scheduler) as executor:
        estimate_lda_stage(
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
@parallel_stage_options
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
