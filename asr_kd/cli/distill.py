"""Soft-target caching, distillation and the report."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import click

from asr_kd.cli.options import config_option, force_option, set_option
from asr_kd.config import load_section

teacher_option = click.option(
    "--teacher",
    "teachers",
    multiple=True,
    metavar="SPEC",
    help="A teacher spec (model.pt, its training dir, a teacher file, ensemble:A,B[:method] or "
    "a train-specialists dir; see asr_kd.teachers.load); repeatable. Replaces distill.teachers.",
)


def _distill_config(config_path, section, overrides, teachers, reads=()):
    from asr_kd.distill import DistillConfig

    config = load_section(config_path, section, DistillConfig, overrides, reads)
    return dataclasses.replace(config, teachers=tuple(teachers)) if teachers else config


@click.command("cache-soft-targets")
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.argument("feature_dir", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--section", default="distill", show_default=True, help="Config section to read.")
@teacher_option
@click.option("--split", "splits", multiple=True, default=("train",), show_default=True,
              help="Split to cache (repeatable).")  # fmt: skip
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--max-duration", default=200.0, show_default=True, help="Seconds per batch.")
@click.option("--num-workers", default=2, show_default=True, help="Feature-reading workers.")
@config_option
@set_option
@force_option
def cache_soft_targets(
    data_dir, feature_dir, out_dir, section, teachers, splits, device, max_duration, num_workers,
    config_path, overrides, force,
) -> None:  # fmt: skip
    """Cache the teachers' top-k soft targets of DATA_DIR's cuts in OUT_DIR.

    FEATURE_DIR is the feature directory whose statistics normalise the batches. The
    temperature, k, combination and teachers come from the distill section.
    """
    from asr_kd.distill import cache_soft_targets as run
    from asr_kd.distill import read_cache_info

    config = _distill_config(config_path, section, overrides, teachers)
    run(
        Path(data_dir), Path(feature_dir), Path(out_dir), config, splits=splits, device=device,
        max_duration=max_duration, num_workers=num_workers, force=force,
    )  # fmt: skip
    info = read_cache_info(out_dir)
    click.echo(
        f"cached top-{info['k']} soft targets at T={info['temperature']:g}: "
        f"{info['bytes_per_hour'] / 1e6:.1f} MB per hour of audio"
    )


@click.command("distill")
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.argument("feature_dir", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--section", default="distill", show_default=True, help="Distillation section.")
@click.option("--train-section", default="student", show_default=True,
              help="The student's training section (a train config).")  # fmt: skip
@teacher_option
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False),
              help="Read the soft targets from this cache (sets source: cache).")  # fmt: skip
@click.option("--train-split", default="train", show_default=True)
@click.option("--dev-split", default="dev", show_default=True, help="Selects the best epoch.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@config_option
@set_option
@force_option
def distill(
    data_dir, feature_dir, out_dir, section, train_section, teachers, cache_dir, train_split,
    dev_split, device, config_path, overrides, force,
) -> None:  # fmt: skip
    """Distil the teachers into a student trained on DATA_DIR; write OUT_DIR.

    --set KEY=VALUE sets the distill section; --set SECTION.KEY=VALUE any section (e.g.
    student.lr=0.1). Under torchrun every rank runs this command.
    """
    from asr_kd.distill import distill as run
    from asr_kd.train import TrainConfig

    if int(os.environ.get("RANK", "0")) > 0:  # other ranks log to their own file only
        for handler in logging.getLogger().handlers:
            handler.setLevel(logging.WARNING)
    config = _distill_config(config_path, section, overrides, teachers, [train_section])
    if cache_dir:
        config = dataclasses.replace(config, source="cache", cache_dir=cache_dir)
    named = [o for o in overrides if "." in o.split("=", 1)[0]]
    train = load_section(config_path, train_section, TrainConfig, named, [section])
    run(
        Path(data_dir), Path(feature_dir), Path(out_dir), config, train,
        train_split=train_split, dev_split=dev_split, device=device, force=force,
    )  # fmt: skip


@click.command("report")
@click.argument("exp_dir", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--systems", "systems_file", default=None, type=click.Path(dir_okay=False),
              help="YAML/JSON: systems: {name: dir}, and baseline/ensemble/student names; "
              "default: every experiment directory in EXP_DIR.")  # fmt: skip
@click.option("--data-dir", default=None, type=click.Path(file_okay=False),
              help="Senone targets: evaluate frame accuracy missing from eval JSONs.")  # fmt: skip
@click.option("--device", default="auto", show_default=True, help="For those evaluations.")
@click.option("--dev-split", default="dev", show_default=True,
              help="The data's name of the dev split (eval JSON keys, manifests).")  # fmt: skip
@click.option("--test-split", default="test", show_default=True,
              help="The data's name of the test split.")  # fmt: skip
@click.option("--voice-splits", "voice_splits", multiple=True, type=click.Path(file_okay=False),
              help="Manifest dir whose <split>_<engine> cuts divide a decoded split by voice "
              "(test_<engine>, heldout_<engine>): the WER-by-voice table; repeatable.")  # fmt: skip
@force_option
def report(
    exp_dir, out_dir, systems_file, data_dir, device, dev_split, test_split, voice_splits, force
) -> None:
    """Summarise the experiments in EXP_DIR into OUT_DIR and print RESULTS.md."""
    from asr_kd.report import read_systems_file
    from asr_kd.report import report as run

    systems, roles = read_systems_file(systems_file, exp_dir) if systems_file else (None, None)
    run(
        Path(exp_dir), Path(out_dir), data_dir=data_dir, systems=systems, roles=roles,
        split_names={"dev": dev_split, "test": test_split}, voice_splits=voice_splits,
        device=device, force=force,
    )  # fmt: skip
    click.echo((Path(out_dir) / "RESULTS.md").read_text(), nl=False)
