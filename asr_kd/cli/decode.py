"""The decode stage: any cut set with features and supervisions -> hyp.txt, errs.txt, wer.json."""

from __future__ import annotations

import dataclasses
import json
from functools import partial
from pathlib import Path

import click

from asr_kd.cli.options import config_option, force_option, jobs_option, set_option
from asr_kd.config import load_section
from asr_kd.errors import ConfigError
from asr_kd.parallel import make_executor


def _tuned_point(tuned_on: str | None, lm_weight, wip) -> tuple[float | None, float | None]:
    if tuned_on is None:
        return lm_weight, wip
    from asr_kd.stage import require_file

    wer = json.loads(require_file(Path(tuned_on) / "wer.json", "decode").read_text())
    return wer["lm_weight"], wer["word_ins_penalty"]


def _split_paths(paths, dev, test, lm_weight, tuned_on) -> tuple[str | None, str, str]:
    """(CUTS or None, GRAPH_DIR, OUT_DIR) of the positional form or the --dev/--test form."""
    if dev is None and test is None:
        if len(paths) != 3:
            raise ConfigError("decode takes CUTS GRAPH_DIR OUT_DIR (or --dev D --test T "
                              f"GRAPH_DIR OUT_DIR), got {len(paths)} paths")  # fmt: skip
        return paths[0], paths[1], paths[2]
    if dev is None or test is None:
        raise ConfigError("--dev and --test go together (tune on dev, apply to test)")
    if len(paths) != 2:
        raise ConfigError(f"with --dev/--test, decode takes GRAPH_DIR OUT_DIR, got {len(paths)} "
                          "paths")  # fmt: skip
    if lm_weight is not None or tuned_on is not None:
        raise ConfigError("--dev/--test tune the LM weight on dev: no --lm-weight or --tuned-on")
    return None, paths[0], paths[1]


@click.command("decode")
@click.argument("paths", nargs=-1, metavar="[CUTS] GRAPH_DIR OUT_DIR")
@click.option("--dev", "dev_cuts", default=None, type=click.Path(dir_okay=False),
              help="Dev cuts: tune the LM weight and penalty on them (OUT_DIR/decode_dev), "
              "then decode --test at that point (OUT_DIR/decode_test).")  # fmt: skip
@click.option("--test", "test_cuts", default=None, type=click.Path(dir_okay=False),
              help="Test cuts, with --dev.")  # fmt: skip
@click.option("--oracle", "senone_dir", default=None, type=click.Path(file_okay=False),
              help="Score with the reference senone targets of CUTS (the oracle check); "
              "SENONE_DIR is the senone-targets output holding priors.json.")  # fmt: skip
@click.option("--model", "model_spec", default=None, metavar="SPEC",
              help="Score with a model: exp/teacher1/model.pt, a teacher file (.yaml), or "
              "ensemble:exp/teacher1,exp/teacher2[:arithmetic|:geometric]; needs "
              "--priors.")  # fmt: skip
@click.option("--priors", "priors_dir", default=None, type=click.Path(file_okay=False),
              help="With --model: the senone-targets output it was trained on (priors.json, "
              "tree id).")  # fmt: skip
@click.option("--posterior-priors", "posterior_dir", default=None,
              type=click.Path(file_okay=False),
              help="With --model: its 'adjust-priors' output; divided out when decode.priors "
              "is 'posteriors' (default 'counts': --priors' alignment counts).")  # fmt: skip
@click.option("--device", default="auto", show_default=True, help="With --model: auto, cpu, cuda.")
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
    paths, dev_cuts, test_cuts, senone_dir, model_spec, priors_dir, posterior_dir, device,
    lang_dir, lm_weight, word_ins_penalty, tuned_on, config_path, overrides, num_jobs, force,
) -> None:  # fmt: skip
    """Decode the cut manifest CUTS with the HCLG in GRAPH_DIR; write OUT_DIR.

    Without --lm-weight/--tuned-on, the LM weight x insertion penalty grid is swept and
    the best point on CUTS is selected (do that on dev, then --tuned-on it for test).
    With --dev D --test T instead of CUTS, both in one go: OUT_DIR/decode_dev (tuned)
    and OUT_DIR/decode_test (at dev's point).
    """
    from asr_kd.data.manifests import load_cuts
    from asr_kd.decode.base import DecodeConfig
    from asr_kd.decode.stage import decode_cuts, decode_dev_test
    from asr_kd.tree.targets import read_targets_info

    cuts, graph_dir, out_dir = _split_paths(paths, dev_cuts, test_cuts, lm_weight, tuned_on)
    if (senone_dir is None) == (model_spec is None):
        raise ConfigError("give the scores to decode: --oracle SENONE_DIR or --model SPEC")
    if model_spec is not None and priors_dir is None:
        raise ConfigError("--model needs --priors SENONE_DIR (the targets it was trained on)")
    config = load_section(config_path, "decode", DecodeConfig, overrides)
    if model_spec is None and config.priors != "counts":  # the oracle's scores are made
        config = dataclasses.replace(config, priors="counts")  # for the alignment counts
    lm_weight, word_ins_penalty = _tuned_point(tuned_on, lm_weight, word_ins_penalty)
    senone_dir = senone_dir or priors_dir
    info = read_targets_info(senone_dir)
    splits = [load_cuts(c, "senone-targets") for c in ([cuts] if cuts else [dev_cuts, test_cuts])]
    score_fn, scores_id = _score_fn(model_spec, senone_dir, info, splits[0], device, config)
    options = dict(config=config, num_jobs=num_jobs, force=force, lang_dir=lang_dir,
                   tree_id=info["tree_id"], scores_id=scores_id)  # fmt: skip
    priors = _priors_file(config.priors, senone_dir, posterior_dir, model_spec)
    with make_executor(num_jobs) as executor:
        if cuts is not None:
            decode_cuts(
                splits[0], score_fn, graph_dir, priors, out_dir, executor=executor,
                lm_weight=lm_weight, word_ins_penalty=word_ins_penalty, **options,
            )  # fmt: skip
        else:
            decode_dev_test(*splits, score_fn, graph_dir, priors, out_dir, executor=executor,
                            **options)  # fmt: skip


def _priors_file(which: str, senone_dir, posterior_dir, model_spec) -> Path:
    """The priors.json that decode.priors names: alignment counts or averaged posteriors."""
    from asr_kd.decode.priors import STAGE
    from asr_kd.stage import require_done

    if which == "counts":
        return Path(senone_dir) / "priors.json"
    if posterior_dir is None:
        raise ConfigError(f"decode.priors=posteriors needs --posterior-priors DIR (the output of "
                          f"'{STAGE}' for the model {model_spec})")  # fmt: skip
    return require_done(posterior_dir, STAGE) / "priors.json"


@click.command("adjust-priors")
@click.argument("cuts", type=click.Path(dir_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--model", "model_spec", required=True, metavar="SPEC",
              help="The model (as decode's --model).")  # fmt: skip
@click.option("--priors", "senone_dir", required=True, type=click.Path(file_okay=False),
              help="The senone-targets output it was trained on (tree id, senones).")  # fmt: skip
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda.")
@config_option
@set_option
@force_option
def adjust_priors(cuts, out_dir, model_spec, senone_dir, device, config_path, overrides, force):
    """Average the model's posteriors over decode.prior_frames frames of CUTS (its training
    cuts) into OUT_DIR/priors.json: the priors decode divides out with decode.priors=posteriors
    (Kaldi's nnet3-am-adjust-priors)."""
    from asr_kd.data.manifests import load_cuts
    from asr_kd.decode.base import DecodeConfig
    from asr_kd.decode.priors import adjust_priors as run
    from asr_kd.teachers import load
    from asr_kd.tree.targets import read_targets_info

    config = load_section(config_path, "decode", DecodeConfig, overrides)
    info = read_targets_info(senone_dir)
    cut_set = load_cuts(cuts, "senone-targets")
    shift = next(iter(cut_set)).frame_shift
    teacher = load(model_spec, info["tree_id"], int(info["num_senones"]), shift, device)
    _note_model(model_spec)
    run(
        list(cut_set), teacher.log_probs_batch, int(info["num_senones"]), out_dir,
        config.prior_frames, config.batch_size, teacher.source, info["tree_id"], force,
    )  # fmt: skip


def _note_model(model_spec: str) -> None:
    """Record the model (an ensemble's members) as an input of the stage, when it is a
    finished stage output: retraining it makes the decode out of date."""
    from asr_kd.cli.ensemble import spec_paths
    from asr_kd.stage import note_input

    for path in spec_paths(model_spec):
        note_input(path)


def _score_fn(model_spec, senone_dir, info, cut_set, device, config):
    """The scores to decode (a model's or the oracle's) and what makes them."""
    from asr_kd.decode.base import decoder_log_priors
    from asr_kd.decode.stage import oracle_score_fn
    from asr_kd.tree.priors import read_priors

    if model_spec is not None:
        from asr_kd.teachers import load

        shift = next(iter(cut_set)).frame_shift  # that of the features (None: no features)
        teacher = load(model_spec, info["tree_id"], int(info["num_senones"]), shift, device)
        _note_model(model_spec)
        return teacher.log_probs, teacher.source
    counts = read_priors(Path(senone_dir) / "priors.json")
    log_priors = decoder_log_priors(counts, config.prior_floor)
    oracle = partial(oracle_score_fn, num_senones=info["num_senones"], log_priors=log_priors)
    return oracle, "oracle"
