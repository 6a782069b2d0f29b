"""Corpus-synthesis and feature-extraction speed.

Synthesises a small ``synth`` corpus on one process with each voice engine (espeak-ng,
piper, hibari: seconds of audio per wall second, per core; the engine's one-off load
time apart; the machine's load average is printed beside, as the figures mean little
on a busy machine), then extracts 80-dim
fbank and 13-dim MFCC of the espeak corpus on one process, and on the GPU when one is
present. Prints a table and writes JSON.

    python bench/corpus_features.py [--speakers 12] [--utts 10] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from asr_kd.data.features import FeatureConfig, compute_features
from asr_kd.data.piper import load_engine
from asr_kd.data.synth import ENGINES, SynthCorpusConfig, synthesize_corpus
from asr_kd.data.synth_prepare import prepare_synth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speakers", type=int, default=12, help="train speakers")
    ap.add_argument("--utts", type=int, default=10, help="utterances per speaker")
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    args = ap.parse_args()

    corpus_cfg = SynthCorpusConfig(
        train_speakers=args.speakers,
        dev_speakers=1,
        test_speakers=1,
        train_utts_per_speaker=args.utts,
        eval_utts_per_speaker=2,
        lm_sentences=100,
        recorded_rir_share=0.5,
    )
    rows = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        for engine in ENGINES:
            if engine != "espeak":
                t0 = time.perf_counter()
                load_engine(engine)
                print(f"{engine}: voice loaded in {time.perf_counter() - t0:.1f} s")
            cfg = replace(corpus_cfg, voices={engine: 1.0})
            t0 = time.perf_counter()
            synthesize_corpus(work / f"corpus-{engine}", cfg)
            synth_wall = time.perf_counter() - t0
            task = f"synthesis {engine} (+ perturbation/noise/reverb/FLAC)"
            rows.append((task, "cpu x1", _audio_seconds(work / f"corpus-{engine}"), synth_wall))
        prepare_synth(work / "corpus-espeak", work / "manifests")
        audio = _audio_seconds(work / "corpus-espeak")
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for kind, bins in (("fbank", 80), ("mfcc", 23)):
            for device in devices:
                cfg = FeatureConfig(kind=kind, num_mel_bins=bins, device=device)
                t0 = time.perf_counter()
                compute_features(work / "manifests", work / f"{kind}-{device}", cfg, num_jobs=1)
                wall = time.perf_counter() - t0
                rows.append((f"{kind} extraction + lilcom + stats", f"{device} x1", audio, wall))

    print(f"\n{'task':<52} {'where':<8} {'audio s':>9} {'wall s':>8} {'x real time':>12}")
    for task, where, a, w in rows:
        print(f"{task:<52} {where:<8} {a:9.1f} {w:8.2f} {a / w:12.0f}")
    load = (load_before, os.getloadavg()[0])
    print(f"load average (1 min) {load[0]:.1f} before, {load[1]:.1f} after, {os.cpu_count()} cores")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "load_average": {"before": load[0], "after": load[1], "cores": os.cpu_count()},
        "rows": [
            {"task": t, "where": w, "audio_s": a, "wall_s": s, "x_real_time": a / s}
            for t, w, a, s in rows
        ],
    }
    (args.out / "corpus_features.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out / 'corpus_features.json'}")


def _audio_seconds(corpus: Path) -> float:
    total = 0.0
    for split in ("train", "dev", "test"):
        for line in (corpus / split / "utterances.jsonl").read_text().splitlines():
            row = json.loads(line)
            total += row["num_samples"] / row["sample_rate"]
    return total


if __name__ == "__main__":
    main()
