"""Acoustic-model training throughput, and the fused ensemble against one-after-another.

Part 1 times training steps (forward, backward, Adam) of the registered presets on
random [4, 128, 80] batches: frames per second on this machine. On a GPU it adds the
paper's DNN (8x2560, 26 x 40 input, 14,000 senones) in bf16 with the achieved TFLOP/s
and the model-FLOPs utilisation against the H100's ~990 TFLOP/s dense bf16 peak.

Part 2 (with --work-dir, a synth recipe run through stage 9) trains N teachers for a
fixed number of steps on the real senone targets twice in one run: fused (one batched
program, one data pass) and separately (N train_model runs), and reports frames/s of
each side by side.

    python bench/train.py [--work-dir recipes/synth] [--teachers 4] [--steps 60]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from asr_kd.config import load_section
from asr_kd.ensemble import EnsembleConfig, train_ensemble
from asr_kd.models import ModelSpec, build_model
from asr_kd.train import TrainConfig

H100_BF16_PEAK = 989e12
PRESETS = [("dnn", "tiny"), ("dnn", "small"), ("dnn", "medium"), ("tdnn", "small"),
           ("lstm", "small"), ("conformer", "small")]  # fmt: skip


def step_throughput(spec: ModelSpec, feat_dim: int, senones: int, device: str, amp: bool,
                    batch=(4, 128), steps: int = 20) -> tuple[float, float]:  # fmt: skip
    """(frames/s, model FLOP/s) of training steps on random data."""
    model = build_model(spec, feat_dim, senones).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    b, t = batch
    feats = torch.randn(b, t, feat_dim, device=device)
    lengths = torch.full((b,), t, dtype=torch.int64, device=device)
    targets = torch.randint(0, senones, (b, t), device=device)

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            logits, _ = model(feats, lengths)
            loss = torch.nn.functional.cross_entropy(
                logits.float().flatten(0, 1), targets.flatten()
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    fps = steps * b * t / (time.perf_counter() - start)
    return fps, 3 * model.flops_per_frame() * fps  # backward ~ 2x forward


def part1(device: str) -> list[dict]:
    rows = []
    for arch, preset in PRESETS:
        fps, flops = step_throughput(ModelSpec(arch, preset), 80, 500, device, amp=False)
        rows.append({"model": f"{arch} {preset}", "device": device, "dtype": "fp32",
                     "frames_per_s": fps, "tflops": flops / 1e12})  # fmt: skip
    if device == "cuda":
        fps, flops = step_throughput(ModelSpec("dnn", "paper"), 40, 14000, device, amp=True,
                                     batch=(64, 256))  # fmt: skip
        rows.append({"model": "dnn paper (14k senones)", "device": device, "dtype": "bf16",
                     "frames_per_s": fps, "tflops": flops / 1e12,
                     "mfu": flops / H100_BF16_PEAK})  # fmt: skip
    return rows


def part2(work: Path, teachers: int, steps: int, device: str) -> list[dict]:
    conf = Path(__file__).resolve().parents[1] / "recipes" / "synth" / "conf" / "small.yaml"
    train = load_section(conf, "teacher", TrainConfig)
    train = dataclasses.replace(train, max_steps=steps, max_epochs=1, patience=0)
    rows = []
    for fused in (True, False):
        ens = EnsembleConfig(num_teachers=teachers, fused=fused)
        with tempfile.TemporaryDirectory() as d:
            start = time.perf_counter()
            outs = train_ensemble(work / "data" / "senones", work / "data" / "fbank", Path(d),
                                  ens, train, device=device)  # fmt: skip
            wall = time.perf_counter() - start
            frames = sum(json.loads((o / "train.json").read_text())["total_frames"]
                         for o in outs)  # fmt: skip
        rows.append({"mode": "fused (vmap)" if fused else "one after another",
                     "teachers": teachers, "steps": steps, "wall_s": wall,
                     "frames_per_s": frames / wall})  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-dir", type=Path, default=None)
    ap.add_argument("--teachers", type=int, default=4)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"

    rows1 = part1(device)
    print(f"\n{'model':<26} {'device':<6} {'dtype':<5} {'frames/s':>10} {'TFLOP/s':>8} {'MFU':>6}")
    for r in rows1:
        mfu = f"{100 * r['mfu']:.1f}%" if "mfu" in r else ""
        print(f"{r['model']:<26} {r['device']:<6} {r['dtype']:<5} {r['frames_per_s']:10.0f} "
              f"{r['tflops']:8.3f} {mfu:>6}")  # fmt: skip
    rows2 = part2(args.work_dir, args.teachers, args.steps, device) if args.work_dir else []
    if rows2:
        print(f"\n{'ensemble training':<20} {'teachers':>8} {'steps':>6} {'wall s':>8} "
              f"{'frames/s':>10}")  # fmt: skip
        for r in rows2:
            print(f"{r['mode']:<20} {r['teachers']:>8} {r['steps']:>6} {r['wall_s']:8.1f} "
                  f"{r['frames_per_s']:10.0f}")  # fmt: skip
        print(f"fused / separate speed: {rows2[0]['frames_per_s'] / rows2[1]['frames_per_s']:.2f}x")
    args.out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name() if device == "cuda" else None
    doc = {"device": device, "gpu": gpu, "models": rows1, "ensemble": rows2}
    (args.out / "train.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {args.out / 'train.json'}")


if __name__ == "__main__":
    main()
