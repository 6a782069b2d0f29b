"""The two data paths of the trainer side by side: utterance batches against frame batches.

Trains the same model with the same optimiser and schedule twice on a synth recipe's
senone targets (run through stage 11): once on padded utterance batches
(``data_path: utterances``, ``max_duration`` seconds each) and once on globally shuffled
minibatches of spliced frames (``data_path: frames``, ``frame_batch_size`` frames, Kaldi
nnet1's way), both through ``asr_kd.train.train_model`` (what ``asr-kd train --set
data_path=...`` runs). Prints training frames/s and dev frame accuracy per epoch of
both, side by side, and writes them as JSON.

    python bench/train_paths.py --work-dir /work/small [--epochs 3] [--threads 2] \
        [--paths utterances,frames,frames:512] [--max-steps N] [--parallel] \
        [--out bench/train_paths.json]

``--parallel`` trains the paths at the same time, one process each with ``--threads``
threads: on a shared machine both then see the same load.

The defaults are the calibration run's settings (/work/shared/MEASURED.md): a 4x512
ReLU DNN on +-5 spliced fbank frames, dropout 0.1, Adam 1e-3 with cosine decay per
update to 2e-5, 256-frame minibatches; the utterance path uses the recipe's 20 s batches.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from asr_kd.train import TrainConfig, train_model


def path_config(args: argparse.Namespace, variant: str) -> TrainConfig:
    """The shared settings, on ``variant``: ``utterances``, ``frames`` or
    ``frames:<frame_batch_size>``."""
    path, _, size = variant.partition(":")
    model = {"arch": "dnn", "preset": "small", "options": {"dropout": args.dropout}}
    return TrainConfig(
        model=model, seed=args.seed, max_epochs=args.epochs, max_steps=args.max_steps,
        optimizer="adam", lr=args.lr, schedule="cosine", min_lr=args.min_lr,
        max_duration=args.max_duration, num_workers=0, patience=0, log_interval=500,
        data_path=path, frame_batch_size=int(size or args.frame_batch_size),
    )  # fmt: skip


def run_path(args: argparse.Namespace, variant: str, out: Path) -> dict:
    """Train one variant; its train.json and the wall time of the whole run."""
    work = Path(args.work_dir)
    start = time.time()
    name = variant.replace(":", "_")
    train_model(work / "data" / "senones", work / "data" / "fbank", out / name,
                path_config(args, variant), device=args.device, force=True)  # fmt: skip
    doc = json.loads((out / name / "train.json").read_text())
    return {"wall_seconds": round(time.time() - start, 1), **doc}


def table(results: dict[str, dict]) -> str:
    """Per epoch: dev frame accuracy and training frames/s of each path."""
    paths = list(results)
    head = "epoch | " + " | ".join(f"{p} dev acc | {p} frames/s | {p} s" for p in paths)
    lines = [head, "-" * len(head)]
    epochs = max(len(r["epochs"]) for r in results.values())
    for e in range(epochs):
        cells = []
        for p in paths:
            rows = results[p]["epochs"]
            if e < len(rows):
                r = rows[e]
                cells.append(f"{100 * r['dev_frame_acc']:.2f}% | {r['frames_per_second']:,} | "
                             f"{r['seconds']:.0f}")  # fmt: skip
            else:
                cells.append(" | | ")
        lines.append(f"{e + 1} | " + " | ".join(cells))
    for p in paths:
        r = results[p]
        lines.append(f"{p}: {r['total_steps']} updates, whole run {r['wall_seconds']} s "
                     f"(incl. loading and dev passes)")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", required=True, help="a synth recipe run through stage 11")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--paths",
        default="utterances,frames",
        help="data paths to compare; frames:512 sets that path's batch size",
    )
    parser.add_argument("--max-steps", type=int, default=0, help="stop each run after N updates")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--min-lr", type=float, default=2e-5)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--frame-batch-size", type=int, default=256)
    parser.add_argument("--max-duration", type=float, default=20.0)
    parser.add_argument("--out", default="bench/train_paths.json")
    parser.add_argument("--parallel", action="store_true", help="train the paths at once")
    parser.add_argument("--keep", help="keep the training directories here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    paths = args.paths.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep or tmp)
        if args.parallel:
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(len(paths), spawn, torch.set_num_threads,
                                     (args.threads,)) as pool:  # fmt: skip
                futures = [pool.submit(run_path, args, p, out) for p in paths]
                results = dict(zip(paths, (f.result() for f in futures), strict=True))
        else:
            results = {p: run_path(args, p, out) for p in paths}
    print(table(results))
    settings = {k: v for k, v in vars(args).items() if k != "keep"}
    doc = {"settings": settings, "torch_threads": torch.get_num_threads(), "paths": results}
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
