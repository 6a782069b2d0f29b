"""Decoding-graph stage."""

from __future__ import annotations

from pathlib import Path

import click

from asr_kd.cli.options import config_option, force_option, set_option


@click.command("make-graph")
@click.argument("lang_dir", type=click.Path(file_okay=False))
@click.argument("lm_dir", type=click.Path(file_okay=False))
@click.argument("tree_dir", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@config_option
@set_option
@force_option
def make_graph(lang_dir, lm_dir, tree_dir, out_dir, config_path, overrides, force) -> None:
    """Build HCLG.fst for the tri-phone models from LANG_DIR, LM_DIR's G.fst and TREE_DIR.

    Writes OUT_DIR/{HCLG.fst, words.txt, labels.json, info.json}; graph input label k
    is scored by senone labels.json["label_to_senone"][k-1].
    """
    from asr_kd.config import load_section
    from asr_kd.graph import GraphConfig
    from asr_kd.graph import make_graph as run

    config = load_section(config_path, "graph", GraphConfig, overrides)
    run(Path(lang_dir), Path(lm_dir), Path(tree_dir), Path(out_dir), config, force=force)
