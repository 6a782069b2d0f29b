"""Specialists over confusable senone clusters: training and in-cluster evaluation."""

from __future__ import annotations

from pathlib import Path

import click

from asr_kd.cli.options import config_option, force_option, jobs_option, set_option
from asr_kd.config import load_section


@click.command("train-specialists")
@click.argument("generalist")
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.argument("feature_dir", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--clusters", "clusters_file", default=None, type=click.Path(dir_okay=False),
              help="Use these clusters (a clusters.json) instead of finding them.")  # fmt: skip
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--train-split", default="train", show_default=True)
@click.option("--dev-split", default="dev", show_default=True, help="Selects the best epoch.")
@jobs_option
@config_option
@set_option
@force_option
def train_specialists(
    generalist, data_dir, feature_dir, out_dir, clusters_file, device, train_split, dev_split,
    num_jobs, config_path, overrides, force,
) -> None:  # fmt: skip
    """Cluster the senones GENERALIST confuses and train one specialist per cluster.

    GENERALIST is a model.pt, its training directory or a plug-in teacher file;
    DATA_DIR the senone targets, FEATURE_DIR their features. Settings come from the
    'specialists' config section; on the CPU --num-jobs processes share the specialists.
    """
    from asr_kd.specialists import SpecialistConfig
    from asr_kd.specialists import train_specialists as run

    config = load_section(config_path, "specialists", SpecialistConfig, overrides)
    run(
        generalist, Path(data_dir), Path(feature_dir), Path(out_dir), config,
        clusters_file=clusters_file, num_jobs=num_jobs, device=device, force=force,
        train_split=train_split, dev_split=dev_split,
    )  # fmt: skip
    click.echo((Path(out_dir) / "clusters.json").read_text().split('"clusters"')[0] + "...")


@click.command("eval-specialists")
@click.argument("specialists_dir", type=click.Path(file_okay=False))
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.option("--system", "systems", multiple=True, metavar="NAME=SPEC",
              help="Also score this system (e.g. specialists_student=exp/specialists_student); "
              "repeatable.")  # fmt: skip
@click.option("--split", "splits", multiple=True, default=("dev", "test"), show_default=True)
@click.option("--out-dir", required=True, type=click.Path(file_okay=False),
              help="The stage directory to write eval.json into (a rerun skips it).")  # fmt: skip
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@force_option
def eval_specialists(specialists_dir, data_dir, systems, splits, out_dir, device, force) -> None:
    """Frame accuracy, overall and on frames of the clusters, of the generalist, the
    generalist + specialists and other systems."""
    from asr_kd.errors import ConfigError
    from asr_kd.specialists import evaluate_in_clusters
    from asr_kd.stage import json_stage, note_input

    named = {}
    for s in systems:
        name, sep, spec = s.partition("=")
        if not sep or not name or not spec:
            raise ConfigError(f"--system {s!r}: write NAME=SPEC")
        named[name] = spec
    for spec in named.values():
        note_input(spec)
    config = {"specialists_dir": str(Path(specialists_dir).resolve()), "systems": named,
              "data_dir": str(Path(data_dir).resolve()), "splits": list(splits)}  # fmt: skip
    doc = json_stage(out_dir, "eval-specialists", config, lambda: evaluate_in_clusters(
        specialists_dir, data_dir, named, splits, None, device), force)  # fmt: skip
    click.echo(f"{'system':<22}" + "".join(f"{s + ' acc':>12}{s + ' in-cl':>12}" for s in splits))
    for name, entry in doc["systems"].items():
        row = "".join(
            f"{100 * entry[s]['frame_acc']:>12.2f}{100 * entry[s]['frame_acc_in_clusters']:>12.2f}"
            for s in splits
        )
        click.echo(f"{name:<22}{row}")
