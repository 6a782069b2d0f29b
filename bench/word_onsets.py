"""How exact are the synthesiser's word timings? The first word against the audio's onset.

Every aligner puts piper's word starts 17-20 ms before its reference (the duration
predictor's frames), espeak's about 5 ms after (bench/RESULTS.md). Is piper's
reference late, or are the aligners early on its voice? One check needs no aligner:
an utterance's first word follows its leading silence, so its sound begins where the
clean copy's energy first rises (``corpus.clean_copies``: the same samples before room
and noise, over a floor 45 dB down). Per engine, the signed distance from the first
word's reference start to that onset (positive: the sound starts after the reference),
at two thresholds under the utterance's peak frame energy (2.5 ms frames). Prints a
table and writes JSON.

With ``--ali-dir`` (an alignment stage's output) and ``--lang``, also the aligner's
signed word-start errors on espeak's timings by the word's first phone (positive: the
aligner starts the word after the reference): where the misses of 20 ms are.

    python bench/word_onsets.py CORPUS_DIR [--splits train dev] [--out bench/out]
                                [--ali-dir W/exp/tri1_ali --lang W/data/lang]

CORPUS_DIR: a ``synth-corpus`` output written with ``corpus.clean_copies: true``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf

FRAME_S = 0.0025
THRESHOLDS_DB = (30, 40)


def onset(x: np.ndarray, sample_rate: int, below_peak_db: float) -> float:
    """Seconds to the first 2.5 ms frame within ``below_peak_db`` of the peak frame energy
    (energies smoothed over two frames)."""
    hop = int(FRAME_S * sample_rate)
    n = len(x) // hop
    energy = (x[: n * hop].reshape(n, hop) ** 2).mean(axis=1)
    energy = np.convolve(energy, np.ones(2) / 2, "same")
    first = int(np.argmax(energy > energy.max() * 10 ** (-below_peak_db / 10)))
    return first * hop / sample_rate


def measure(corpus_dir: Path, split: str) -> dict[str, dict[int, list[float]]]:
    """engine -> threshold -> signed ms (onset minus the first word's reference start)."""
    out: dict[str, dict[int, list[float]]] = {}
    with open(corpus_dir / split / "utterances.jsonl") as f:
        rows = [json.loads(line) for line in f]
    for row in rows:
        if not row.get("words") or "clean_audio" not in row:
            continue
        x, sr = sf.read(corpus_dir / row["clean_audio"], dtype="float32")
        for db in THRESHOLDS_DB:
            ms = 1000 * (onset(x, sr, db) - row["words"][0][1])
            out.setdefault(row["engine"], {}).setdefault(db, []).append(ms)
    return out


def start_errors_by_first_phone(ali_dir: Path, lang_dir: Path, split: str, engine: str):
    """first phone -> signed word-start errors (ms) of ``engine``'s timed words."""
    import kaldi_hmm_gmm as khg
    from lhotse import CutSet

    from asr_kd.align.align import boundary_errors
    from asr_kd.data.manifests import ALI_KEY
    from asr_kd.lang.lang_dir import Lang

    lang = Lang.load(lang_dir)
    topo = khg.HmmTopology()
    topo.read(lang.topo_text)
    last_state = {p: n - 1 for p, n in enumerate(topo.get_phone_to_num_pdf_classes()) if n > 0}
    out: dict[str, list[float]] = {}
    for path in sorted(ali_dir.glob(f"*_cuts_{split}.jsonl.gz")):
        for cut in CutSet.from_file(path):
            sup = cut.supervisions[0]
            if (sup.custom or {}).get("engine") != engine:
                continue
            err = boundary_errors(cut, cut.load_custom(ALI_KEY), lang, last_state, True)
            if err is None:
                continue
            for word, start_err in zip(sup.text.split(), err[:, 0], strict=True):
                first = lang.lexicon[word][0][0] if word in lang.lexicon else lang.oov_word
                out.setdefault(first, []).append(1000 * float(start_err))
    return out


def print_first_phones(by_phone: dict[str, list[float]], split: str, shown: int = 10) -> list:
    rows = []
    for phone, values in by_phone.items():
        v = np.asarray(values)
        rows.append({"split": split, "first_phone": phone, "words": len(v),
                     "missed_20ms": int(np.sum(np.abs(v) > 20)),
                     "within_20ms": round(float(np.mean(np.abs(v) <= 20)), 3),
                     "median_ms": round(float(np.median(v)), 1)})  # fmt: skip
    rows.sort(key=lambda r: -r["missed_20ms"])
    total = sum(r["missed_20ms"] for r in rows)
    print(f"\n{split}: espeak word starts off by > 20 ms: {total}, by first phone "
          f"({shown} largest)")  # fmt: skip
    print("| first phone | words | missed | within 20 ms | median (ms) |")
    print("|:--|--:|--:|--:|--:|")
    for r in rows[:shown]:
        print(f"| {r['first_phone']} | {r['words']} | {r['missed_20ms']} | "
              f"{100 * r['within_20ms']:.0f}% | {r['median_ms']:+.1f} |")  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus_dir", type=Path)
    parser.add_argument("--splits", nargs="+", default=["train", "dev"])
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    parser.add_argument("--ali-dir", type=Path, default=None)
    parser.add_argument("--lang", type=Path, default=None)
    args = parser.parse_args()
    if (args.ali_dir is None) != (args.lang is None):
        parser.error("--ali-dir and --lang go together")

    rows = []
    for split in args.splits:
        for engine, by_db in sorted(measure(args.corpus_dir, split).items()):
            for db, values in sorted(by_db.items()):
                v = np.asarray(values)
                rows.append({
                    "split": split, "engine": engine, "below_peak_db": db, "utterances": len(v),
                    "median_ms": round(float(np.median(v)), 1),
                    "p10_ms": round(float(np.percentile(v, 10)), 1),
                    "p90_ms": round(float(np.percentile(v, 90)), 1),
                    "within_20ms": round(float(np.mean(np.abs(v) <= 20)), 3),
                })  # fmt: skip
    if not rows:
        raise SystemExit(f"{args.corpus_dir}: no utterance with word timings and a clean copy")
    print("| split | engine | onset threshold | utts | median (ms) | p10 | p90 | within 20 ms |")
    print("|:--|:--|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        print(f"| {r['split']} | {r['engine']} | -{r['below_peak_db']} dB | {r['utterances']} | "
              f"{r['median_ms']:+.1f} | {r['p10_ms']:+.1f} | {r['p90_ms']:+.1f} | "
              f"{100 * r['within_20ms']:.0f}% |")  # fmt: skip
    first_phones = []
    if args.ali_dir is not None:
        for split in args.splits:
            by_phone = start_errors_by_first_phone(args.ali_dir, args.lang, split, "espeak")
            first_phones += print_first_phones(by_phone, split)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "word_onsets.json"
    doc = {"corpus_dir": str(args.corpus_dir), "rows": rows, "first_phones": first_phones}
    path.write_text(json.dumps(doc, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
