"""The decode stage: any cut set with features and supervisions -> hyp.txt, errs.txt, wer.json."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import click

from asr_kd.cli.options import config_option, force_option, jobs_option, set_option
from asr_kd.config import load_section
from asr_kd.parallel import make_executor


def _tuned_point(tuned_on: str | None, lm_weight, wip) -> tuple[float | None, float | None]:
    if tuned_on is None:
        return lm_weight, wip
    from asr_kd.stage import require_file

    wer = json.loads(require_file(Path(tuned_on) / "wer.json", "decode").read_text())
    return wer["lm_weight"], wer["word_ins_penalty"]


@click.command("decode")
@click.argument("cuts", type=click.Path(dir_okay=False))
@click.argument("graph_dir", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--oracle", "senone_dir", default=None, type=click.Path(file_okay=False),
              help="Score with the reference senone targets of CUTS (the oracle check); "
              "SENONE_DIR is the senone-targets output holding priors.json.")  # fmt: skip
@click.option("--lang", "lang_dir", default=None, type=click.Path(file_okay=False),
              help="Lang directory of the references; the graph must use its words.")  # fmt: skip
@click.option("--lm-weight", type=float, default=None, help="Apply this LM weight (no sweep).")
@click.option("--word-ins-penalty", type=float, default=None, help="With --lm-weight.")
@click.option("--tuned-on", default=None, type=click.Path(file_okay=False),
              help="Dev decode directory: apply its selected LM weight and penalty.")  # fmt: skip
@config_option
@set_option
@jobs_option
@force_option
def decode(
    cuts, graph_dir, out_dir, senone_dir, lang_dir, lm_weight, word_ins_penalty, tuned_on,
    config_path, overrides, num_jobs, force,
) -> None:  # fmt: skip
    """Decode the cut manifest CUTS with the HCLG in GRAPH_DIR; write OUT_DIR.

    Without --lm-weight/--tuned-on, the LM weight x insertion penalty grid is swept and
    the best point on CUTS is selected (do that on dev, then --tuned-on it for test).
    """
    from asr_kd.data.manifests import load_cuts
    from asr_kd.decode.base import DecodeConfig, decoder_log_priors
    from asr_kd.decode.stage import decode_cuts, oracle_score_fn
    from asr_kd.errors import ConfigError
    from asr_kd.tree.priors import read_priors
    from asr_kd.tree.targets import read_targets_info

    if senone_dir is None:
        raise ConfigError("give the scores to decode: --oracle SENONE_DIR")
    config = load_section(config_path, "decode", DecodeConfig, overrides)
    lm_weight, word_ins_penalty = _tuned_point(tuned_on, lm_weight, word_ins_penalty)
    info = read_targets_info(senone_dir)
    counts = read_priors(Path(senone_dir) / "priors.json")
    log_priors = decoder_log_priors(counts, config.prior_floor)
    score_fn = partial(oracle_score_fn, num_senones=info["num_senones"], log_priors=log_priors)
    with make_executor(num_jobs) as executor:
        decode_cuts(
            load_cuts(cuts, "senone-targets"), score_fn, graph_dir,
            Path(senone_dir) / "priors.json", out_dir, config, num_jobs, executor,
            lm_weight, word_ins_penalty, force, lang_dir, info["tree_id"], scores_id="oracle",
        )  # fmt: skip
