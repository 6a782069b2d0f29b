"""Graph build time and size, and WFST decoding speed on CPU (per core) and GPU.

Needs a recipe work dir that has run through the oracle stage (``recipes/synth/run.sh
--stop-stage 11``). Rebuilds the HCLG into a temporary directory (timed), then decodes
the dev cuts from noisy oracle scores (reference senones plus Gaussian noise, so that
the search has real competition) with the CPU decoder on one process, and with the GPU
decoder at batch sizes 1, 64 and the largest that fits when CUDA and riva are present.
All rows use the same graph and the same scores. Prints a table and writes JSON.

    python bench/decode.py --work-dir recipes/synth [--noise 2.0] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from asr_kd.data.manifests import load_cuts
from asr_kd.decode.base import (
    DecodeConfig,
    decoder_log_priors,
    make_decoder,
    pad_batch,
    pseudo_log_likelihoods,
)
from asr_kd.decode.stage import oracle_score_fn
from asr_kd.graph import load_graph, make_graph
from asr_kd.tree.priors import read_priors


def noisy_scores(cuts, num_senones: int, log_priors: np.ndarray, noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for cut in cuts:
        s = oracle_score_fn(cut, num_senones, log_priors=log_priors)
        out.append(s + rng.normal(0, noise, size=s.shape).astype(np.float32))
    return out


def run(decoder, scores, log_priors, batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(scores), batch):
        padded, lengths = pad_batch(scores[i : i + batch])
        decoder.decode(pseudo_log_likelihoods(padded, log_priors), lengths)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-dir", type=Path, default=Path("recipes/synth"))
    ap.add_argument("--noise", type=float, default=2.0, help="std of the score noise")
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    args = ap.parse_args()
    data, exp = args.work_dir / "data", args.work_dir / "exp"

    with tempfile.TemporaryDirectory() as d:
        start = time.perf_counter()
        make_graph(data / "lang", data / "lm", exp / "tree", Path(d) / "graph")
        build_s = time.perf_counter() - start
        info = json.loads((Path(d) / "graph" / "info.json").read_text())
        size_mb = (Path(d) / "graph" / "HCLG.fst").stat().st_size / 2**20
    graph = load_graph(exp / "graph")
    cuts = list(load_cuts(data / "senones" / "synth_cuts_dev.jsonl.gz", "senone-targets"))
    audio = sum(c.duration for c in cuts)
    log_priors = decoder_log_priors(read_priors(data / "senones" / "priors.json"))
    scores = noisy_scores(cuts, graph.num_senones, log_priors, args.noise)

    rows = []
    cpu = make_decoder(graph, DecodeConfig(device="cpu"), fst_path=exp / "graph" / "HCLG.fst")
    rows.append(("cpu x1 (lattice + sweep)", 1, run(cpu, scores, log_priors, 32)))
    cpu1 = make_decoder(graph, DecodeConfig(device="cpu", lattice=False))
    rows.append(("cpu x1 (1-best)", 1, run(cpu1, scores, log_priors, 32)))
    if torch.cuda.is_available():
        gpu = make_decoder(graph, DecodeConfig(device="cuda", batch_size=len(scores)),
                           fst_path=exp / "graph" / "HCLG.fst")  # fmt: skip
        for batch in (1, 64, len(scores)):
            rows.append((f"gpu ({torch.cuda.get_device_name()})", batch,
                         run(gpu, scores, log_priors, batch)))  # fmt: skip

    print(f"\nHCLG: {info['states']} states, {info['arcs']} arcs, {size_mb:.1f} MB, "
          f"built in {build_s:.1f} s")  # fmt: skip
    print(f"\n{'decoder':<34} {'batch':>6} {'audio s':>8} {'wall s':>8} {'x real time':>12}")
    for name, batch, wall in rows:
        print(f"{name:<34} {batch:>6} {audio:8.1f} {wall:8.2f} {audio / wall:12.1f}")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "graph": {
            "states": info["states"],
            "arcs": info["arcs"],
            "mb": size_mb,
            "build_seconds": build_s,
        },  # fmt: skip
        "utterances": len(cuts),
        "noise": args.noise,
        "rows": [
            {"decoder": n, "batch": b, "audio_s": audio, "wall_s": w, "x_real_time": audio / w}
            for n, b, w in rows
        ],  # fmt: skip
    }
    (args.out / "decode.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out / 'decode.json'}")


if __name__ == "__main__":
    main()
