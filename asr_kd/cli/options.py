"""Options shared by the stage subcommands."""

from __future__ import annotations

import click

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Recipe config (YAML); the command reads its own section.",
)
set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value (repeatable), e.g. --set noise_prob=0.8.",
)
force_option = click.option("--force", is_flag=True, help="Redo the stage even if finished.")
jobs_option = click.option(
    "--num-jobs", "-j", type=int, default=1, show_default=True, help="Local worker processes."
)
dask_option = click.option(
    "--dask-scheduler",
    default=None,
    metavar="ADDRESS",
    help="Run per-utterance work on this Dask cluster (extra 'dask').",
)
