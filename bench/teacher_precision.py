"""The teachers' inference precision on the CPU: float32 against bfloat16 autocast.

Distillation with the teachers on the fly (``distill.source: on_the_fly``, consistent
teaching) runs every teacher on every training window; on the CPU that forward is about
half of a step. ``distill.amp: bf16`` runs it under bfloat16 autocast (``auto`` does so on
CUDA only). This scores the same dev utterances with a recipe's teachers combined as the
recipe combines them, once per precision, on one process with ``--threads`` threads, and
prints frames/s and how far the bf16 soft targets are from the float32 ones (KL per
frame, argmax agreement, the largest probability difference), and writes them as JSON.

    python bench/teacher_precision.py --work-dir /work/xp [--teachers teacher1,...] \
        [--utts 40] [--threads 1] [--temperature 2] [--out bench/teacher_precision.json]

A CPU without bf16 instructions (avx512_bf16 or AMX) emulates them: slower than float32;
the table says which this machine has.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def cpu_bf16_flags() -> str:
    """The CPU's bf16 instruction sets as /proc/cpuinfo names them (empty: none)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n", 1)[0]
    except (OSError, IndexError):
        return "unknown"
    return " ".join(f for f in flags.split() if "bf16" in f or f.startswith("amx")) or "none"


def score(spec: str, cuts, temperature: float, amp: str, batch: int) -> tuple[list, float]:
    """Every cut's combined log-probabilities at ``temperature`` and the frames per second
    of the scoring (after one warm-up batch)."""
    from asr_kd.teachers import load

    teacher = load(spec, device="cpu", amp=amp)
    teacher.log_probs_batch(cuts[:batch], temperature)  # warm-up
    out, frames, start = [], 0, time.perf_counter()
    for i in range(0, len(cuts), batch):
        logp, lengths = teacher.log_probs_batch(cuts[i : i + batch], temperature)
        for row, n in zip(logp, lengths.tolist(), strict=True):
            out.append(row[:n].numpy())
            frames += n
    return out, frames / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", required=True, help="A synth recipe run past stage 13.")
    parser.add_argument("--teachers", default=None,
                        help="Comma-separated exp/ names (default: exp/teacher<N>).")  # fmt: skip
    parser.add_argument("--split", default="dev")
    parser.add_argument("--utts", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8, help="Utterances per forward.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--out", default="bench/teacher_precision.json")
    args = parser.parse_args()

    from lhotse import load_manifest_lazy

    torch.set_num_threads(args.threads)
    work = Path(args.work_dir)
    names = args.teachers.split(",") if args.teachers else sorted(
        (p.name for p in (work / "exp").glob("teacher[0-9]*") if (p / "model.pt").exists()),
        key=lambda n: int(n[len("teacher"):]),
    )  # fmt: skip
    if not names:
        raise SystemExit(f"{work}/exp holds no teacher<N>/model.pt: run the recipe to stage 13")
    spec = "ensemble:" + ",".join(str(work / "exp" / n) for n in names)
    manifest = work / "data" / "senones" / f"synth_cuts_{args.split}.jsonl.gz"
    cuts = [c for _, c in zip(range(args.utts), load_manifest_lazy(manifest), strict=False)]

    rows = {}
    for amp in ("off", "bf16"):
        out, fps = score(spec, cuts, args.temperature, amp, args.batch)
        rows[amp] = {"frames_per_second": round(fps), "log_probs": out}
    ref = np.concatenate(rows["off"]["log_probs"])  # [frames, senones]
    bf = np.concatenate(rows["bf16"]["log_probs"])
    p = np.exp(ref)
    kl = float(np.mean((p * (ref - bf)).sum(-1)))
    agree = float(np.mean(ref.argmax(-1) == bf.argmax(-1)))
    max_diff = float(np.abs(p - np.exp(bf)).max())
    entropy = float(np.mean(-(p * ref).sum(-1)))
    frames = len(ref)
    result = {
        "work_dir": str(work), "teachers": names, "split": args.split, "utterances": len(cuts),
        "frames": frames, "threads": args.threads, "temperature": args.temperature,
        "cpu_bf16": cpu_bf16_flags(), "torch": torch.__version__,
        "fp32_frames_per_second": rows["off"]["frames_per_second"],
        "bf16_frames_per_second": rows["bf16"]["frames_per_second"],
        "kl_per_frame": kl, "argmax_agreement": agree, "max_prob_diff": max_diff,
        "target_entropy": entropy,
    }  # fmt: skip
    print(f"{len(names)} teachers, {len(cuts)} {args.split} utterances ({frames} frames), "
          f"T = {args.temperature:g}, {args.threads} thread(s); "
          f"CPU bf16: {result['cpu_bf16']}")  # fmt: skip
    print("| precision | frames/s | speed-up |")
    print("|:--|--:|--:|")
    fp32 = result["fp32_frames_per_second"]
    for amp, label in (("off", "float32"), ("bf16", "bf16 autocast")):
        fps = rows[amp]["frames_per_second"]
        print(f"| {label} | {fps} | {fps / fp32:.2f}x |")
    print(f"bf16 against float32: KL {kl:.2e} nats per frame (the targets' entropy "
          f"{entropy:.2f}), argmax agreement {100 * agree:.2f}%, largest probability "
          f"difference {max_diff:.4f}")  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
