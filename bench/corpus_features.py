"""Corpus-synthesis and feature-extraction speed.

Synthesis per voice engine on one process, side by side: the same sentences are
rendered (``asr_kd.data.synth.render_utterance``: the engine, speed/pitch/formant
perturbation, room and noise; no FLAC) by each engine's speakers in turn, in
``--rounds`` interleaved rounds, so that the engines share the machine's load. Reported
per engine: seconds of audio per wall second (one core), and the median over rounds of
espeak's speed over the engine's (how many times slower than espeak), which is the
figure to trust on a loaded machine; the engines' one-off load times apart. The load
average is printed beside. Then a small espeak corpus is written (``synth-corpus``,
FLAC included) and its 80-dim fbank and 13-dim MFCC are extracted on one process, and
on the GPU when one is present. Prints tables and writes JSON.

    python bench/corpus_features.py [--speakers 12] [--utts 10] [--rounds 3]
                                    [--synth-utts 8] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from asr_kd.data.features import FeatureConfig, compute_features
from asr_kd.data.piper import load_engine
from asr_kd.data.synth import (
    ENGINES,
    SynthCorpusConfig,
    plan_corpus,
    render_utterance,
    synthesize_corpus,
)
from asr_kd.data.synth_prepare import prepare_synth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speakers", type=int, default=12, help="train speakers")
    ap.add_argument("--utts", type=int, default=10, help="utterances per speaker")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved synthesis rounds")
    ap.add_argument("--synth-utts", type=int, default=8, help="utterances per engine and round")
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
    load_before = os.getloadavg()[0]
    engines = synthesis_side_by_side(corpus_cfg, args.rounds, args.synth_utts)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        t0 = time.perf_counter()
        synthesize_corpus(work / "corpus", corpus_cfg)
        audio = _audio_seconds(work / "corpus")
        rows.append(("synth-corpus espeak (+ FLAC, manifests)", "cpu x1", audio,
                     time.perf_counter() - t0))  # fmt: skip
        prepare_synth(work / "corpus", work / "manifests")
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for kind, bins in (("fbank", 80), ("mfcc", 23)):
            for device in devices:
                cfg = FeatureConfig(kind=kind, num_mel_bins=bins, device=device)
                t0 = time.perf_counter()
                compute_features(work / "manifests", work / f"{kind}-{device}", cfg, num_jobs=1)
                wall = time.perf_counter() - t0
                rows.append((f"{kind} extraction + lilcom + stats", f"{device} x1", audio, wall))

    print(f"\nSynthesis per engine, one process, {args.rounds} interleaved rounds of "
          f"{args.synth_utts} utterances (the same sentences):")  # fmt: skip
    print(f"{'engine':<8} {'load s':>7} {'audio s':>9} {'wall s':>8} {'x real time':>12} "
          f"{'x slower than espeak (median, rounds)':>40}")  # fmt: skip
    for e, r in engines.items():
        rounds = ", ".join(f"{x:.1f}" for x in r["slower_than_espeak_per_round"])
        print(f"{e:<8} {r['load_s']:7.2f} {r['audio_s']:9.1f} {r['wall_s']:8.2f} "
              f"{r['x_real_time']:12.1f} {r['slower_than_espeak']:11.2f} ({rounds})")  # fmt: skip
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
        "synthesis": {
            "rounds": args.rounds,
            "utterances_per_round": args.synth_utts,
            "engines": engines,
        },  # fmt: skip
        "rows": [
            {"task": t, "where": w, "audio_s": a, "wall_s": s, "x_real_time": a / s}
            for t, w, a, s in rows
        ],
    }
    (args.out / "corpus_features.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out / 'corpus_features.json'}")


def synthesis_side_by_side(
    config: SynthCorpusConfig, rounds: int, per_round: int
) -> dict[str, dict]:
    """Each engine's speed rendering the same sentences, the engines taking turns."""
    jobs = {}
    for engine in ENGINES:
        planned = plan_corpus(replace(config, voices={engine: 1.0}, lm_sentences=0))[0]
        jobs[engine] = [j for j in planned if j.split == "train"][: rounds * per_round]
    load_s = dict.fromkeys(ENGINES, 0.0)
    for engine in ENGINES:
        t0 = time.perf_counter()
        if engine != "espeak":
            load_engine(engine)  # cached for the process
        load_s[engine] = time.perf_counter() - t0
        render_utterance(jobs[engine][0], config)  # warm-up, not timed
    audio = {e: [0.0] * rounds for e in ENGINES}
    wall = {e: [0.0] * rounds for e in ENGINES}
    for r in range(rounds):
        for engine in ENGINES:
            for job in jobs[engine][r * per_round : (r + 1) * per_round]:
                t0 = time.perf_counter()
                x, _, _ = render_utterance(job, config)
                wall[engine][r] += time.perf_counter() - t0
                audio[engine][r] += len(x) / config.sample_rate
    speed = {e: [a / w for a, w in zip(audio[e], wall[e], strict=True)] for e in ENGINES}
    out = {}
    for e in ENGINES:
        slower = [s / x for s, x in zip(speed["espeak"], speed[e], strict=True)]
        out[e] = {
            "load_s": round(load_s[e], 3),
            "audio_s": round(sum(audio[e]), 2),
            "wall_s": round(sum(wall[e]), 2),
            "x_real_time": round(sum(audio[e]) / sum(wall[e]), 2),
            "slower_than_espeak": round(statistics.median(slower), 3),
            "slower_than_espeak_per_round": [round(x, 3) for x in slower],
        }
    return out


def _audio_seconds(corpus: Path) -> float:
    total = 0.0
    for split in ("train", "dev", "test"):
        for line in (corpus / split / "utterances.jsonl").read_text().splitlines():
            row = json.loads(line)
            total += row["num_samples"] / row["sample_rate"]
    return total


if __name__ == "__main__":
    main()
