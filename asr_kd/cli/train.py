"""Acoustic-model training and frame-accuracy evaluation."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from asr_kd.cli.options import config_option, force_option, set_option
from asr_kd.config import load_section


@click.command("train")
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.argument("feature_dir", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--section", default="train", show_default=True, help="Config section to read.")
@click.option("--train-split", default="train", show_default=True)
@click.option("--dev-split", default="dev", show_default=True, help="Selects the best epoch.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@config_option
@set_option
@force_option
def train(
    data_dir, feature_dir, out_dir, section, train_split, dev_split, device, config_path,
    overrides, force,
) -> None:  # fmt: skip
    """Train an acoustic model on the senone targets in DATA_DIR into OUT_DIR.

    FEATURE_DIR is the feature directory whose statistics normalise the input. A killed
    training resumes when rerun; under torchrun every rank runs this command.
    """
    from asr_kd.train import TrainConfig, train_model

    if int(os.environ.get("RANK", "0")) > 0:  # other ranks log to their own file only
        for handler in logging.getLogger().handlers:
            handler.setLevel(logging.WARNING)
    config = load_section(config_path, section, TrainConfig, overrides)
    train_model(
        Path(data_dir), Path(feature_dir), Path(out_dir), config, train_split=train_split,
        dev_split=dev_split, device=device, force=force,
    )  # fmt: skip


@click.command("eval-frame-acc")
@click.argument("model", type=click.Path())
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.option("--split", default="dev", show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--max-duration", default=200.0, show_default=True, help="Seconds per batch.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None,
              help="Also write the result as JSON here.")  # fmt: skip
def eval_frame_acc(model, data_dir, split, device, max_duration, out_file) -> None:
    """Frame accuracy of MODEL (a training directory or model.pt) on DATA_DIR's targets."""
    from asr_kd.train import evaluate_frame_accuracy

    result = evaluate_frame_accuracy(
        Path(model), Path(data_dir), split, device, max_duration,
        Path(out_file) if out_file else None,
    )  # fmt: skip
    click.echo(f"{split}: frame accuracy {100 * result['frame_acc']:.2f}% on {result['cuts']} cuts")
