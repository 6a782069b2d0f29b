"""Decision-tree and senone-target stages."""

from __future__ import annotations

from pathlib import Path

import click

from asr_kd.cli.align import parallel_stage_options, transform_option
from asr_kd.cli.options import force_option
from asr_kd.config import load_section
from asr_kd.parallel import make_executor


@click.command("build-tree")
@click.argument("ali_dir", type=click.Path(file_okay=False))
@click.argument("feature_dir", type=click.Path(file_okay=False))
@click.argument("lang_dir", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--split", default="train", show_default=True, help="Alignments to build from.")
@transform_option
@parallel_stage_options
def build_tree(
    ali_dir, feature_dir, lang_dir, out_dir, split, transform_dir, config_path, overrides,
    num_jobs, dask_scheduler, force,
) -> None:  # fmt: skip
    """Build the phonetic decision tree (senones) from monophone alignments.

    FEATURE_DIR is the MFCC feature directory the alignment used.
    """
    from asr_kd.tree.build import TreeConfig
    from asr_kd.tree.targets import build_tree_stage

    config = load_section(config_path, "tree", TreeConfig, overrides)
    with make_executor(num_jobs, dask_scheduler) as executor:
        build_tree_stage(
            Path(ali_dir), Path(feature_dir), Path(lang_dir), Path(out_dir), config,
            split=split, num_jobs=num_jobs, executor=executor, force=force,
            transform_dir=transform_dir,
        )  # fmt: skip


@click.command("senone-targets")
@click.argument("ali_dir", type=click.Path(file_okay=False))
@click.argument("fbank_dir", type=click.Path(file_okay=False))
@click.argument("tree_dir", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--train-split", default="train", show_default=True,
              help="The split whose targets give the senone priors.")  # fmt: skip
@force_option
def senone_targets(ali_dir, fbank_dir, tree_dir, out_dir, train_split, force) -> None:
    """Store per-frame senone targets on the fbank cuts, and the senone priors."""
    from asr_kd.tree.targets import senone_targets_stage

    senone_targets_stage(Path(ali_dir), Path(fbank_dir), Path(tree_dir), Path(out_dir),
                         prior_split=train_split, force=force)  # fmt: skip
