"""Lang directory and language-model stages."""

from __future__ import annotations

from pathlib import Path

import click

from asr_kd.cli.options import config_option, force_option, set_option

_FORMATS = ("auto", "plain", "kaldi", "manifest")
text_format_option = click.option(
    "--text-format",
    type=click.Choice(_FORMATS),
    default="auto",
    show_default=True,
    help="Format of the text files: plain sentences, Kaldi 'text' (utt-id first) or a "
    "Lhotse supervision/cut manifest; auto tells them apart.",
)


def lm_outputs(command):
    """LANG_DIR and OUT_DIR arguments and the --dev option of the LM stages."""
    command = click.option(
        "--dev",
        "dev_text",
        type=click.Path(dir_okay=False),  # read_texts names a missing file and its stage
        default=None,
        help="Held-out transcripts (text or manifest) to report the perplexity on.",
    )(command)
    command = click.argument("out_dir", type=click.Path(file_okay=False))(command)
    return click.argument("lang_dir", type=click.Path(file_okay=False))(command)


@click.command("prepare-lang")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option(
    "--words-from",
    "sources",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False),
    help="Text file or Lhotse cut/supervision manifest whose words form the vocabulary "
    "(repeatable; e.g. the training cuts and the LM text).",
)
@click.option(
    "--sil-prob",
    type=float,
    default=0.5,
    show_default=True,
    help="Probability of silence between words.",
)
@click.option(
    "--lexicon",
    "lexicon_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Kaldi-format lexicon (WORD PH PH ..., e.g. librispeech-lexicon.txt); default CMUdict.",
)
@click.option(
    "--whole-lexicon",
    is_flag=True,
    help="Every --lexicon word joins the vocabulary (as Kaldi's LibriSpeech recipe).",
)
@click.option(
    "--map-oov",
    is_flag=True,
    help="Leave words missing from the lexicon out (mapped to <UNK>, counted in summary.json).",
)
@text_format_option
@force_option
def prepare_lang(
    out_dir, sources, sil_prob, lexicon_file, whole_lexicon, map_oov, text_format, force
) -> None:
    """Write the lang directory OUT_DIR (words.txt, phones.txt, L.fst, topo, phones/, ...)."""
    from asr_kd.lang import prepare_lang as run
    from asr_kd.lang import read_texts

    words = [w for src in sources for line in read_texts(src, text_format) for w in line.split()]
    lexicon = lexicon_file and Path(lexicon_file)
    run(words, Path(out_dir), sil_prob, map_oov, force, lexicon, whole_lexicon)


@click.command("train-lm")
@click.argument("lm_text", type=click.Path(dir_okay=False))
@lm_outputs
@click.option("--order", type=int, default=None,
              help="N-gram order: the same as --set order=N (default: the lm "
              "section's).")  # fmt: skip
@click.option(
    "--add-text",
    "extra_texts",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="More LM training text (repeatable; e.g. a corpus's LM text next to the transcripts).",
)
@text_format_option
@config_option
@set_option
@force_option
def train_lm(
    lm_text, lang_dir, out_dir, dev_text, order, extra_texts, text_format, config_path, overrides,
    force,
) -> None:  # fmt: skip
    """Train a Kneser-Ney LM on LM_TEXT and --add-text only; write lm.arpa, G.fst, ppl.

    The order is the config's lm section (lm: {order: 3}).
    """
    from asr_kd.config import load_section
    from asr_kd.lang import train_lm as run
    from asr_kd.lang.lm import LmConfig

    overrides = (*overrides, f"order={order}") if order is not None else overrides
    config = load_section(config_path, "lm", LmConfig, overrides)

    run(
        Path(lm_text),
        Path(lang_dir),
        Path(out_dir),
        order=config.order,
        dev_text=dev_text and Path(dev_text),
        force=force,
        text_format=text_format,
        extra_texts=[Path(t) for t in extra_texts],
    )


@click.command("import-lm")
@click.argument("arpa", type=click.Path(exists=True, dir_okay=False))
@lm_outputs
@text_format_option
@force_option
def import_lm(arpa, lang_dir, out_dir, dev_text, text_format, force) -> None:
    """Use a given ARPA LM (.arpa or .arpa.gz): write lm.arpa, G.fst, perplexity.json to OUT_DIR."""
    from asr_kd.lang.lm import import_lm as run

    run(Path(arpa), Path(lang_dir), Path(out_dir), dev_text and Path(dev_text), force, text_format)
