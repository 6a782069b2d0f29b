"""Graph build time and size; WFST decoding speed on CPU and GPU; CPU/GPU agreement.

Needs a recipe work dir that has run through the oracle stage (``recipes/synth/run.sh
--stop-stage 11``). Rebuilds the HCLG into a temporary directory (timed), then decodes
the dev cuts from noisy oracle scores (reference senones plus Gaussian noise, so that
the search has real competition):

- speed: the CPU decoder on one process (lattices + the LM-weight sweep, and 1-best),
  on ``--cpu-jobs`` processes, and, when CUDA and riva are present, the GPU decoder at
  each of ``--gpu-batches`` (the dev scores are repeated to fill each batch at least
  twice); ``model-speed`` does the same on ``--model``'s scores (no one-process rows).
  Every row of a block decodes the same graph and the same scores.
- agreement (GPU only): CPU and GPU decode the same scores, from the noisy oracle and,
  with ``--model``, from a trained model; the table gives the share of utterances with
  the same words and both WERs, at the search's own point and at the best sweep point,
  for each GPU ``--max-active`` (the CPU lattice decoder has no such cap).

Prints tables and writes ``decode.json``.

    python bench/decode.py --work-dir recipes/synth [--model recipes/synth/exp/baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import torch

from asr_kd.data.manifests import load_cuts
from asr_kd.decode.base import (
    DecodeConfig,
    Point,
    decoder_log_priors,
    make_decoder,
    pad_batch,
    pseudo_log_likelihoods,
    word_table,
    words_to_text,
)
from asr_kd.decode.stage import oracle_score_fn, reference_text
from asr_kd.graph import load_graph, make_graph
from asr_kd.parallel import make_executor
from asr_kd.scoring import compute_wer
from asr_kd.tree.priors import read_priors
from asr_kd.tree.targets import read_targets_info


def noisy_scores(cuts, num_senones: int, log_priors: np.ndarray, noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for cut in cuts:
        s = oracle_score_fn(cut, num_senones, log_priors=log_priors)
        out.append(s + rng.normal(0, noise, size=s.shape).astype(np.float32))
    return out


def model_scores(spec: str, senone_dir: Path, cuts, device: str) -> list[np.ndarray]:
    from asr_kd.teachers import load

    info = read_targets_info(senone_dir)
    shift = next(iter(cuts)).frame_shift
    teacher = load(spec, info["tree_id"], int(info["num_senones"]), shift, device)
    return [np.asarray(teacher.log_probs(cut), dtype=np.float32) for cut in cuts]


def run(decoder, scores, log_priors, batch: int, points=None) -> tuple[float, list]:
    """(wall seconds, hypotheses) of decoding ``scores`` in batches of ``batch``."""
    hyps = []
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(0, len(scores), batch):
        padded, lengths = pad_batch(scores[i : i + batch])
        hyps += decoder.decode(pseudo_log_likelihoods(padded, log_priors), lengths, None, points)
    return time.perf_counter() - start, hyps


def agreement(name: str, cuts, table, config: DecodeConfig, cpu_hyps, gpu_hyps) -> dict:
    """Same-words share and WER of CPU and GPU hypotheses, at the decode and best points."""
    refs = {c.id: reference_text(c) for c in cuts}

    def texts(hyps, point: Point) -> dict[str, str]:
        return {c.id: words_to_text(h.sweep[point], table) for c, h in zip(cuts, hyps, strict=True)}

    def wer(hyps, point: Point) -> tuple[float, int]:
        r = compute_wer(refs, texts(hyps, point), alignments=False)
        return r.wer, r.errors

    cpu_wer = {p: wer(cpu_hyps, p) for p in config.grid()}
    best = min(cpu_wer, key=lambda p: (cpu_wer[p][1], p))  # as the decode stage selects
    row = {"scores": name, "utterances": len(cuts)}
    for label, point in (("decode_point", config.decode_point), ("best_cpu_point", best)):
        cpu_t, gpu_t = texts(cpu_hyps, point), texts(gpu_hyps, point)
        same = sum(cpu_t[u] == gpu_t[u] for u in cpu_t) / len(cpu_t)
        row[label] = {
            "lm_weight": point[0],
            "word_ins_penalty": point[1],
            "same_words": same,
            "cpu_wer": cpu_wer[point][0],
            "gpu_wer": wer(gpu_hyps, point)[0],
        }
    sweep_same = [
        np.mean([a.sweep[p] == b.sweep[p] for a, b in zip(cpu_hyps, gpu_hyps, strict=True)])
        for p in config.grid()
    ]
    row["same_words_min_over_sweep"] = float(min(sweep_same))
    return row


def speed_rows(graph, fst, cuts, scores, log_priors, cpu_jobs, gpu_batches, executor, save,
               label: str = "noisy oracle", one_process: bool = True):  # fmt: skip
    """Decoding speed on ``scores``; ``one_process=False`` skips the one-process CPU rows."""
    audio = sum(c.duration for c in cuts)
    rows = []

    def add(name: str, batch: int, wall: float, audio_s: float = audio) -> None:
        rows.append({"scores": label, "decoder": name, "batch": batch, "audio_s": audio_s,
                     "wall_s": wall, "x_real_time": audio_s / wall})  # fmt: skip
        print(f"  {name:<34} batch {batch:>5}: {audio_s / wall:9.1f}x real time", flush=True)
        save()

    if one_process:
        cpu = make_decoder(graph, DecodeConfig(device="cpu"), fst_path=fst)
        add("cpu x1 (lattice + sweep)", 32, run(cpu, scores, log_priors, 32)[0])
        cpu1 = make_decoder(graph, DecodeConfig(device="cpu", lattice=False), fst_path=fst)
        add("cpu x1 (1-best)", 32, run(cpu1, scores, log_priors, 32)[0])
    if executor is not None:
        cpun = make_decoder(graph, DecodeConfig(device="cpu"), executor, fst_path=fst)
        batch = 4 * cpu_jobs
        add(f"cpu x{cpu_jobs} (lattice + sweep)", batch, run(cpun, scores, log_priors, batch)[0])
    if not torch.cuda.is_available():
        return rows
    name = f"gpu {torch.cuda.get_device_name()}"
    for batch in gpu_batches:
        reps = max(1, -(-2 * batch // len(scores)))  # fill the batch at least twice
        tiled, tiled_audio = scores * reps, audio * reps
        try:
            gpu = make_decoder(graph, DecodeConfig(device="cuda", batch_size=batch), fst_path=fst)
            run(gpu, tiled[:batch], log_priors, batch)  # warm-up: CUDA context, graph upload
            add(name, batch, run(gpu, tiled, log_priors, batch)[0], tiled_audio)
            del gpu
        except (RuntimeError, MemoryError) as e:  # the largest batch may not fit
            rows.append({"scores": label, "decoder": name, "batch": batch, "error": str(e)[:300]})
            print(f"  {name} batch {batch}: failed: {e}", flush=True)
            save()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-dir", type=Path, default=Path("recipes/synth"))
    ap.add_argument("--noise", type=float, default=2.0, help="std of the score noise")
    ap.add_argument("--model", default=None, help="also compare CPU and GPU on this model")
    ap.add_argument("--cpu-jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--gpu-batches", default="1,64,256,1024",
                    help="GPU batch sizes, comma-separated")  # fmt: skip
    ap.add_argument(
        "--max-active",
        default=str(DecodeConfig().max_active),
        help="GPU max_active values for the agreement rows, comma-separated",
    )
    ap.add_argument(
        "--parts",
        default="speed,agreement",
        help="what to run: speed, model-speed (needs --model), agreement",
    )
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    args = ap.parse_args()
    data, exp = args.work_dir / "data", args.work_dir / "exp"
    gpu_batches = [int(b) for b in args.gpu_batches.split(",")]
    parts = set(args.parts.split(","))

    with tempfile.TemporaryDirectory() as d:
        start = time.perf_counter()
        make_graph(data / "lang", data / "lm", exp / "tree", Path(d) / "graph")
        build_s = time.perf_counter() - start
        info = json.loads((Path(d) / "graph" / "info.json").read_text())
        size_mb = (Path(d) / "graph" / "HCLG.fst").stat().st_size / 2**20
    print(f"HCLG: {info['states']} states, {info['arcs']} arcs, {size_mb:.1f} MB, "
          f"built in {build_s:.1f} s", flush=True)  # fmt: skip
    graph, fst = load_graph(exp / "graph"), exp / "graph" / "HCLG.fst"
    cuts = list(load_cuts(data / "senones" / "synth_cuts_dev.jsonl.gz", "senone-targets"))
    log_priors = decoder_log_priors(read_priors(data / "senones" / "priors.json"))
    scores = noisy_scores(cuts, graph.num_senones, log_priors, args.noise)

    result: dict = {
        "graph": {
            "states": info["states"],
            "arcs": info["arcs"],
            "mb": size_mb,
            "build_seconds": build_s,
        },  # fmt: skip
        "utterances": len(cuts),
        "noise": args.noise,
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "rows": [],
        "agreement": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        (args.out / "decode.json").write_text(json.dumps(result, indent=2) + "\n")

    cuda = torch.cuda.is_available()
    sets = [("noisy oracle", scores)]
    if args.model and ("model-speed" in parts or ("agreement" in parts and cuda)):
        senones = args.work_dir / "data" / "senones"
        model = model_scores(args.model, senones, cuts, "cuda" if cuda else "cpu")
        sets.append((f"model {args.model}", model))
    jobs = args.cpu_jobs
    with make_executor(jobs if jobs > 1 else 1) as executor:
        if "speed" in parts:
            print("speed (noisy oracle scores):", flush=True)
            result["rows"] = speed_rows(graph, fst, cuts, scores, log_priors, jobs,
                                        gpu_batches, executor, save)  # fmt: skip
        if "model-speed" in parts and len(sets) > 1:
            label, model = sets[1]
            print(f"speed ({label} scores):", flush=True)
            result["rows"] += speed_rows(graph, fst, cuts, model, log_priors, jobs, gpu_batches,
                                         executor, save, label, False)  # fmt: skip
        if "agreement" in parts and cuda:
            max_actives = [int(m) for m in args.max_active.split(",")]
            compare(graph, fst, cuts, sets, log_priors, max_actives, executor, save,
                    result["agreement"])  # fmt: skip
    save()
    print_tables(result)
    print(f"\nwrote {args.out / 'decode.json'}")


def compare(graph, fst, cuts, sets, log_priors, max_actives, executor: Executor | None, save,
            rows: list) -> None:  # fmt: skip
    """Append CPU/GPU agreement rows to ``rows`` for each (name, scores) of ``sets``.

    The CPU lattice decoder has no ``max_active``; the GPU decoder caps its tokens per
    frame by narrowing the beam (Kaldi's CUDA decoder), so each of ``max_actives`` gets
    its own GPU row against the same CPU hypotheses.
    """
    table = word_table(graph.words)
    config = DecodeConfig()
    audio = sum(c.duration for c in cuts)
    for name, s in sets:
        cpu = make_decoder(graph, DecodeConfig(device="cpu"), executor, fst_path=fst)
        _, cpu_hyps = run(cpu, s, log_priors, 64, config.grid())
        for max_active in max_actives:
            gpu_config = DecodeConfig(device="cuda", batch_size=64, max_active=max_active)
            gpu = make_decoder(graph, gpu_config, fst_path=fst)
            run(gpu, s[:64], log_priors, 64, config.grid())  # warm-up
            wall, gpu_hyps = run(gpu, s, log_priors, 64, config.grid())
            row = agreement(name, cuts, table, config, cpu_hyps, gpu_hyps)
            rows.append({**row, "gpu_max_active": max_active, "gpu_x_real_time": audio / wall})
            del gpu
            save()


def print_tables(result: dict) -> None:
    print(f"\n{'scores':<14} {'decoder':<34} {'batch':>6} {'audio s':>9} {'wall s':>8} "
          f"{'x real time':>12}")  # fmt: skip
    for r in result["rows"]:
        head = f"{r.get('scores', '')[:14]:<14} {r['decoder']:<34} {r['batch']:>6}"
        if "error" in r:
            print(f"{head}  failed: {r['error'][:60]}")
        else:
            print(f"{head} {r['audio_s']:9.1f} {r['wall_s']:8.2f} {r['x_real_time']:12.1f}")
    if result["agreement"]:
        print(f"\n{'CPU vs GPU (dev)':<24} {'GPU max_active':>14} {'point':<15} {'same words':>10} "
              f"{'CPU WER':>8} {'GPU WER':>8} {'GPU x RT':>9}")  # fmt: skip
        for r in result["agreement"]:
            head = f"{r['scores'][:24]:<24} {r['gpu_max_active']:>14}"
            for label in ("decode_point", "best_cpu_point"):
                a = r[label]
                point = f"{a['lm_weight']:g}/{a['word_ins_penalty']:g}"
                print(
                    f"{head} {point:<15} {100 * a['same_words']:9.1f}% "
                    f"{a['cpu_wer']:8.2f} {a['gpu_wer']:8.2f} {r['gpu_x_real_time']:9.1f}"
                )
                head = " " * 39
            print(f"{head} {'worst of sweep':<15} {100 * r['same_words_min_over_sweep']:9.1f}%")


if __name__ == "__main__":
    main()
