"""``asr-kd protocol``: the recipe's experiment policy (the config's ``protocol:``)."""

from __future__ import annotations

import click

from asr_kd.cli.options import config_option, set_option


@click.command("protocol")
@config_option
@set_option
@click.argument("key")
def protocol(config_path, overrides, key: str) -> None:
    """Print the protocol's KEY (a list space-separated, a flag yes/no).

    KEY ``system:KIND[:FRACTION[:SEED]]`` prints the exp/ name of that system, e.g.
    ``system:hard:0.03:1`` -> ``hard_3pct_s1``; KEY ``subset_seeds:FRACTION`` the subset
    seeds that fraction is trained with (``seeded_fractions``); KEY
    ``decode_options:SYSTEM`` the ``--set`` arguments of that system's decode
    (``decode_overrides``), e.g. ``--set lattice=false --set max_active=2000``; KEY
    ``soft_fraction_options`` the ``--set distill.KEY=VALUE`` arguments of the soft-target
    fraction models (``soft_fraction_distill``), KEY ``soft_fraction_source`` where their
    targets come from (``cache`` or ``on_the_fly``); KEY ``student_options`` and
    ``student_source`` the same for the full-data students (``student_overrides``).
    """
    from asr_kd.config import load_section
    from asr_kd.errors import ConfigError
    from asr_kd.protocol import ProtocolConfig, system_name

    config = load_section(config_path, "protocol", ProtocolConfig, overrides)
    if key.startswith("system:"):
        parts = key.split(":")[1:]
        try:
            fraction = float(parts[1]) if len(parts) > 1 and parts[1] else None
            seed = int(parts[2]) if len(parts) > 2 else 0
        except ValueError:
            raise ConfigError(f"expected system:KIND[:FRACTION[:SEED]], got {key!r}") from None
        click.echo(system_name(parts[0], fraction, seed))
        return
    if key.startswith("decode_options:"):
        click.echo(" ".join(config.decode_options(key.split(":", 1)[1])))
        return
    derived = {
        "soft_fraction_options": lambda: " ".join(config.soft_fraction_options()),
        "soft_fraction_source": lambda: config.soft_fraction_source,
        "student_options": lambda: " ".join(config.student_options()),
        "student_source": lambda: config.student_source,
    }
    if key in derived:
        click.echo(derived[key]())
        return
    if key.startswith("subset_seeds:"):
        try:
            seeds = config.seeds_for(float(key.split(":", 1)[1]))
        except (ValueError, KeyError) as e:
            raise ConfigError(f"{key!r}: {e.args[0] if e.args else e}") from None
        click.echo(" ".join(str(s) for s in seeds))
        return
    try:
        click.echo(config.value(key))
    except KeyError as e:
        raise ConfigError(str(e.args[0])) from None
