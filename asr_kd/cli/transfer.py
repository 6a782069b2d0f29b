"""The transfer-set experiments: an omitted phone, untranscribed audio (``transfer:``)."""

from __future__ import annotations

from pathlib import Path

import click

from asr_kd.cli.options import config_option, dask_option, force_option, jobs_option, set_option
from asr_kd.config import load_section


def _transfer_config(config_path, overrides):
    from asr_kd.transfer import TransferConfig

    return load_section(config_path, "transfer", TransferConfig, overrides)


@click.command("transfer-config")
@config_option
@set_option
@click.argument("key")
def transfer_config(config_path, overrides, key: str) -> None:
    """Print the transfer section's KEY (a list space-separated, a flag yes/no)."""
    from asr_kd.errors import ConfigError

    config = _transfer_config(config_path, overrides)
    if not hasattr(config, key):
        raise ConfigError(f"the transfer section has no {key!r}")
    value = getattr(config, key)
    if isinstance(value, bool):
        value = "yes" if value else "no"
    elif isinstance(value, tuple):
        value = " ".join(str(v) for v in value)
    click.echo(value)


@click.command("synth-unlabelled")
@click.argument("out_dir", type=click.Path(file_okay=False))
@config_option
@set_option
@jobs_option
@dask_option
@force_option
def synth_unlabelled(out_dir, config_path, overrides, num_jobs, dask_scheduler, force) -> None:
    """Synthesise untranscribed audio into OUT_DIR: the corpus section with the transfer
    section's unlabelled_seed and unlabelled_factor x the training utterances per speaker
    (its train split; prepare and compute features as for the corpus)."""
    from asr_kd.data.synth import SynthCorpusConfig, synthesize_corpus
    from asr_kd.parallel import make_executor
    from asr_kd.transfer import unlabelled_corpus_config

    transfer = _transfer_config(config_path, [o for o in overrides if o.startswith("transfer.")])
    corpus = load_section(config_path, "corpus", SynthCorpusConfig,
                          [o for o in overrides if not o.startswith("transfer.")])  # fmt: skip
    config = unlabelled_corpus_config(corpus, transfer.unlabelled_factor, transfer.unlabelled_seed)
    with make_executor(num_jobs, dask_scheduler) as executor:
        synthesize_corpus(Path(out_dir), config, executor=executor, force=force)


@click.command("unlabelled-set")
@click.argument("labelled_dir", type=click.Path(file_okay=False))
@click.argument("unlabelled_fbank", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--unlabelled-split", default="train", show_default=True,
              help="The split of UNLABELLED_FBANK that is the untranscribed audio.")  # fmt: skip
@click.option("--train-split", default="train", show_default=True,
              help="The transcribed training split they join.")  # fmt: skip
@force_option
def unlabelled_set(labelled_dir, unlabelled_fbank, out_dir, unlabelled_split, train_split,
                   force) -> None:  # fmt: skip
    """Write OUT_DIR: LABELLED_DIR's senone targets with UNLABELLED_FBANK's cuts, their
    transcripts removed, added to the training split (soft targets only)."""
    from asr_kd.transfer import make_unlabelled_set, unlabelled_info

    make_unlabelled_set(
        Path(labelled_dir), Path(unlabelled_fbank), Path(out_dir),
        unlabelled_split=unlabelled_split, train_split=train_split, force=force,
    )  # fmt: skip
    info = unlabelled_info(out_dir) or {}
    click.echo(f"{info.get('cuts')} untranscribed cuts ({info.get('hours')} h) beside "
               f"{info.get('labelled_hours')} h transcribed")  # fmt: skip


@click.command("eval-omitted-phone")
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--system", "systems", multiple=True, required=True, metavar="NAME=MODEL",
              help="A system to score (training dir or model.pt); repeatable.")  # fmt: skip
@click.option("--phone", default=None, help="Default: the phone the systems were trained without.")
@click.option("--dev-split", default="dev", show_default=True, help="Chooses the bias.")
@click.option("--test-split", default="test", show_default=True,
              help="Scored at dev's bias ('' for none).")  # fmt: skip
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@config_option
@set_option
@force_option
def eval_omitted_phone(data_dir, out_dir, systems, phone, dev_split, test_split, device,
                       config_path, overrides, force) -> None:  # fmt: skip
    """Frame accuracy of every system on the omitted phone's frames of DATA_DIR's dev and
    test and on the rest, with and without the dev-chosen bias correction; writes OUT_DIR
    (omitted_phone.json, <name>_bias_corrected/model.pt)."""
    from asr_kd.errors import ConfigError
    from asr_kd.transfer import evaluate_omitted_phone, read_omitted_phone

    named = {}
    for item in systems:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--system takes NAME=MODEL, got {item!r}")
        named[name] = Path(path)
    grid = _transfer_config(config_path, overrides).bias_grid
    splits = {"dev": dev_split, **({"test": test_split} if test_split else {})}
    evaluate_omitted_phone(Path(data_dir), named, Path(out_dir), phone=phone, grid=grid,
                           splits=splits, device=device, force=force)  # fmt: skip
    doc = read_omitted_phone(out_dir)
    for name, s in doc["systems"].items():
        for split in ("dev", "test"):
            if split in s:
                e = s[split]
                click.echo(f"{name} {split}: {doc['phone']} {e['frame_acc_phone']}% "
                           f"({e['frame_acc_phone_bias_corrected']}% with bias {s['bias']:+g}), "
                           f"rest {e['frame_acc_rest']}%")  # fmt: skip
