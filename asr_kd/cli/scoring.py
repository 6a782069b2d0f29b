"""``asr-kd compare-wer``: bootstrap WER intervals and paired comparisons (Kaldi's
``compute-wer-bootci``) over finished decode directories."""

from __future__ import annotations

import json

import click


@click.command("compare-wer")
@click.argument("decode_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--replications", default=10_000, show_default=True, type=click.IntRange(1),
              help="Bootstrap resamples of the utterances.")  # fmt: skip
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--method", type=click.Choice(["percentile", "normal"]), default="percentile",
              show_default=True, help="normal: Kaldi's mean ± 1.96 sd.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def compare_wer(decode_dirs, replications: int, seed: int, method: str, as_json: bool) -> None:
    """WER with a 95% bootstrap interval for each DECODE_DIR (``asr-kd decode`` outputs of
    one test set), and each later one compared with the first, paired per utterance."""
    from asr_kd.scoring.bootstrap import bootstrap_wer, paired_bootstrap, read_utt_counts

    counts = [read_utt_counts(d) for d in decode_dirs]
    single = [bootstrap_wer(c, replications, seed, method) for c in counts]
    paired = [paired_bootstrap(counts[0], c, replications, seed, method) for c in counts[1:]]
    if as_json:
        doc = {
            "systems": {d: s.to_dict() for d, s in zip(decode_dirs, single, strict=True)},
            "against": decode_dirs[0],
            "paired": {d: p.to_dict() for d, p in zip(decode_dirs[1:], paired, strict=True)},
        }
        click.echo(json.dumps(doc, indent=2))
        return
    for d, s in zip(decode_dirs, single, strict=True):
        click.echo(f"{d}: %WER {s.wer:.2f}  95% interval [{s.low:.2f}, {s.high:.2f}]")
    for d, p in zip(decode_dirs[1:], paired, strict=True):
        click.echo(
            f"{d} - {decode_dirs[0]}: {p.delta:+.2f} [{p.low:+.2f}, {p.high:+.2f}], "
            f"P(improves) {100 * p.p_improve:.1f}%{' (significant)' if p.significant else ''}"
        )
