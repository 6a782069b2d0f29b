"""The `paper` DNN's training step on frame batches: frames/s, TFLOP/s and MFU.

The frame-level path (``data_path: frames``) hands the model one spliced window per
frame (``forward(windows, lengths, windows=True)``: ``[N, 26, 40]``), so a step is a
plain MLP on ``N`` rows. This times forward, cross-entropy, backward and Adam on
random windows for each ``--frames`` batch size, in bf16 autocast, with Adam's fused
CUDA kernel, and (``--compile``) under ``torch.compile`` too. MFU is against the dense
bf16 peak of an H100/H200 (989 TFLOP/s); elsewhere it is left out. Prints a table and
writes ``mfu.json``.

    python bench/mfu.py [--frames 16384,65536,131072] [--compile] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from asr_kd.models import ModelSpec, build_model

HOPPER_BF16_PEAK = 989e12  # dense bf16, H100 SXM and H200


def peak_flops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return HOPPER_BF16_PEAK if ("H100" in name or "H200" in name) else None


def step_rate(frames: int, device: str, compiled: bool, steps: int = 20) -> tuple[float, float]:
    """(frames/s, model FLOP/s) of training steps on ``frames`` random windows."""
    model = build_model(ModelSpec("dnn", "paper"), 40, 14000).to(device)
    cuda = device == "cuda"
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=cuda)
    forward = torch.compile(model) if compiled else model
    left, right = model.left_context, model.right_context
    windows = torch.randn(frames, left + 1 + right, 40, device=device)
    ones = torch.ones(frames, dtype=torch.int64, device=device)
    targets = torch.randint(0, 14000, (frames,), device=device)

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
            logits, _ = forward(windows, ones, windows=True)
            loss = torch.nn.functional.cross_entropy(logits[:, 0].float(), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):  # warm-up (and compilation)
        step()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    rate = steps * frames / (time.perf_counter() - start)
    return rate, 3 * model.flops_per_frame() * rate  # backward ~ 2x forward


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default="16384,65536,131072", help="frame batch sizes")
    ap.add_argument("--compile", action="store_true", help="also under torch.compile")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    peak = peak_flops()
    rows: list[dict] = []
    gpu = torch.cuda.get_device_name() if device == "cuda" else None
    doc = {"device": device, "gpu": gpu, "dtype": "bf16" if device == "cuda" else "fp32",
           "rows": rows}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every row: a run cut by a timeout keeps what it measured
        (args.out / "mfu.json").write_text(json.dumps(doc, indent=2) + "\n")

    for compiled in (False, True) if args.compile else (False,):
        for frames in [int(f) for f in args.frames.split(",")]:
            try:
                rate, flops = step_rate(frames, device, compiled, args.steps)
            except (RuntimeError, torch.OutOfMemoryError) as e:
                rows.append({"frames": frames, "compiled": compiled, "error": str(e)[:200]})
                save()
                continue
            mfu = flops / peak if peak else None
            rows.append({"frames": frames, "compiled": compiled, "frames_per_s": rate,
                         "tflops": flops / 1e12, "mfu": mfu})  # fmt: skip
            save()
    print(f"{'frames':>8} {'compiled':>8} {'frames/s':>12} {'TFLOP/s':>8} {'MFU':>6}")
    for r in rows:
        if "error" in r:
            print(f"{r['frames']:>8} {r['compiled']!s:>8}  failed: {r['error'][:60]}")
            continue
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else ""
        print(f"{r['frames']:>8} {r['compiled']!s:>8} {r['frames_per_s']:12.0f} "
              f"{r['tflops']:8.1f} {mfu:>6}")  # fmt: skip
    save()
    print(f"wrote {args.out / 'mfu.json'}")


if __name__ == "__main__":
    main()
