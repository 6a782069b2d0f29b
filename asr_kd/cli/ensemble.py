"""Training an ensemble of teachers and scoring teachers and ensembles."""

from __future__ import annotations

from pathlib import Path

import click

from asr_kd.cli.options import config_option, force_option, jobs_option, set_option
from asr_kd.config import load_section


@click.command("train-ensemble")
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.argument("feature_dir", type=click.Path(file_okay=False))
@click.argument("exp_dir", type=click.Path(file_okay=False))
@click.option("--train-section", default="teacher", show_default=True,
              help="Config section with the teachers' training settings.")  # fmt: skip
@click.option("--train-split", default="train", show_default=True)
@click.option("--dev-split", default="dev", show_default=True, help="Selects the best epoch.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@config_option
@set_option
@jobs_option
@force_option
def train_ensemble(
    data_dir, feature_dir, exp_dir, train_section, train_split, dev_split, device, config_path,
    overrides, num_jobs, force,
) -> None:  # fmt: skip
    """Train the teachers of the 'ensemble' config section into EXP_DIR/teacher1..N.

    They share the training settings of --train-section and differ in their
    initialisation seeds; 'fused: true' trains them in one batched program.
    --num-jobs N trains N separate teachers at once on the CPU, one thread each.
    Override with --set ensemble.num_teachers=4 (the ensemble) or --set lr=0.1 (training).
    """
    from asr_kd.ensemble import EnsembleConfig
    from asr_kd.ensemble import train_ensemble as run
    from asr_kd.train import TrainConfig

    mine = [o for o in overrides if o.startswith("ensemble.")]
    rest = [o for o in overrides if not o.startswith("ensemble.")]
    ensemble = load_section(config_path, "ensemble", EnsembleConfig, mine, [train_section])
    train = load_section(config_path, train_section, TrainConfig, rest, ["ensemble"])
    outs = run(
        Path(data_dir), Path(feature_dir), Path(exp_dir), ensemble, train,
        train_split=train_split, dev_split=dev_split, device=device, force=force,
        num_jobs=num_jobs,
    )  # fmt: skip
    click.echo(f"teachers: {' '.join(str(o) for o in outs)}")


@click.command("eval-ensemble")
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.argument("teachers", nargs=-1, required=True)
@click.option("--split", "splits", multiple=True, default=("dev", "test"), show_default=True,
              help="Split to score (repeatable).")  # fmt: skip
@click.option("--method", "methods", multiple=True, default=("arithmetic", "geometric"),
              show_default=True, type=click.Choice(["arithmetic", "geometric"]),
              help="Ensemble combination to score (repeatable).")  # fmt: skip
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--max-duration", default=30.0, show_default=True, help="Seconds per batch.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None,
              help="Also write the result as JSON here.")  # fmt: skip
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="The stage directory to write eval.json into (a rerun skips it).")  # fmt: skip
@force_option
def eval_ensemble(
    data_dir, teachers, splits, methods, device, max_duration, out_file, out_dir, force
) -> None:  # fmt: skip
    """Frame accuracy of each teacher and of their ensembles on DATA_DIR's targets.

    TEACHERS are teacher specs (model.pt, training directory or teacher file), each
    optionally named: teacher1=exp/teacher1/model.pt. An ensemble spec
    (ensemble:A,B[:method] or an ensemble file) adds its members as teachers and is
    scored as their combination.
    """
    from asr_kd.ensemble import Combo, evaluate_systems, format_table, load_systems

    loaded, combos = load_systems(teachers, device)
    combos += [Combo(m) for m in methods if Combo(m) not in combos]

    def run():
        out = Path(out_file) if out_file else None
        return evaluate_systems(loaded, Path(data_dir), splits, combos, out, max_duration)

    if out_dir is None:
        result = run()
    else:
        from asr_kd.stage import json_stage, note_input

        for spec in teachers:
            for member in spec_paths(spec):
                note_input(member)
        config = {"data_dir": str(Path(data_dir).resolve()), "splits": list(splits),
                  "teachers": {n: t.source for n, t in loaded.items()},
                  "combos": [str(c) for c in combos], "max_duration": max_duration}  # fmt: skip
        result = json_stage(out_dir, "eval-ensemble", config, run, force)
    click.echo(format_table(result["splits"]))


def spec_paths(item: str) -> list[str]:
    """The paths in a teacher argument (``[NAME=]SPEC``; an ``ensemble:`` spec's members)."""
    from asr_kd.teachers import ENSEMBLE_PREFIX, parse_ensemble_spec

    name, sep, spec = item.partition("=")
    spec = spec if sep and not name.startswith(ENSEMBLE_PREFIX) else item
    return parse_ensemble_spec(spec)[0] if spec.startswith(ENSEMBLE_PREFIX) else [spec]
