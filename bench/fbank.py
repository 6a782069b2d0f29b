"""Fbank extraction speed: Lhotse's torch Fbank on the CPU and on a CUDA device, same audio.

The extractor is the one ``compute-features`` uses (:func:`asr_kd.data.features.make_extractor`,
80 mel bins, no dither), fed batches of ``--batch`` clips of ``--seconds`` seconds of
seeded noise (the speed does not depend on the content): x real time per device, and
the largest difference between the CPU's and the GPU's features of the same clips.
Prints a table and writes ``fbank.json``.

    python bench/fbank.py [--batch 64] [--seconds 3] [--batches 8] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from asr_kd.data.features import FeatureConfig, make_extractor


def clips(batch: int, seconds: float, rate: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.normal(0, 0.1, (batch, int(seconds * rate))).astype(np.float32))


def extract(extractor, audio: torch.Tensor, rate: int) -> torch.Tensor:
    out = extractor.extract_batch(audio, sampling_rate=rate)
    return torch.stack([torch.as_tensor(f) for f in out]) if isinstance(out, list) else out


def speed(device: str, audio: torch.Tensor, batches: int, rate: int) -> tuple[float, torch.Tensor]:
    """(x real time, features of the first batch on the CPU) of ``batches`` calls."""
    extractor = make_extractor(FeatureConfig(dither=0.0, device=device), device)
    audio = audio.to(device)
    first = extract(extractor, audio, rate)  # warm-up (CUDA context, kernels, FFT plans)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(batches):
        extract(extractor, audio, rate)
    if device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    return batches * audio.shape[0] * audio.shape[1] / rate / wall, first.float().cpu()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    args = ap.parse_args()
    rate = FeatureConfig().sampling_rate
    audio = clips(args.batch, args.seconds, rate)
    rows, feats = [], {}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        x_rt, feats[device] = speed(device, audio, args.batches, rate)
        rows.append({"device": device, "batch": args.batch, "seconds": args.seconds,
                     "threads": torch.get_num_threads(), "x_real_time": x_rt})  # fmt: skip
    doc: dict = {"rows": rows, "gpu": torch.cuda.get_device_name() if "cuda" in feats else None}
    if "cuda" in feats:
        doc["max_abs_diff_cpu_gpu"] = float((feats["cpu"] - feats["cuda"]).abs().max())
        doc["gpu_over_cpu"] = rows[1]["x_real_time"] / rows[0]["x_real_time"]
    print(f"{'device':<6} {'batch':>5} {'clip s':>6} {'threads':>7} {'x real time':>12}")
    for r in rows:
        print(f"{r['device']:<6} {r['batch']:>5} {r['seconds']:6.1f} {r['threads']:>7} "
              f"{r['x_real_time']:12.1f}")  # fmt: skip
    if "gpu_over_cpu" in doc:
        print(f"GPU / CPU: {doc['gpu_over_cpu']:.1f}x; largest feature difference "
              f"{doc['max_abs_diff_cpu_gpu']:.2e}")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fbank.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out / 'fbank.json'}")


if __name__ == "__main__":
    main()
