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

    python bench/word_onsets.py CORPUS_DIR [--splits train dev] [--out bench/out]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus_dir", type=Path)
    parser.add_argument("--splits", nargs="+", default=["train", "dev"])
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()

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
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "word_onsets.json"
    path.write_text(json.dumps({"corpus_dir": str(args.corpus_dir), "rows": rows}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
