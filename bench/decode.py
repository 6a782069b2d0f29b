"""Graph build time and size; WFST decoding speed on CPU and GPU; CPU/GPU agreement; profile.

Needs a recipe work dir that has run through the oracle stage (``recipes/synth/run.sh
--stop-stage 11``). Rebuilds the HCLG into a temporary directory (timed; not with
``--no-graph-build``), then decodes with ``exp/graph`` the dev cuts from noisy oracle
scores (reference senones plus Gaussian noise, so that
the search has real competition). ``--concat N`` joins N consecutive dev utterances
(scores, references and durations) into one, for longer test audio that fills the GPU
(the `small` dev utterances last about 3 s). Parts (``--parts``):

- ``speed``: the CPU decoder on one process (lattices + the LM-weight sweep, and
  1-best), on ``--cpu-jobs`` processes, and, when CUDA and riva are present, the GPU
  decoder at each of ``--gpu-batches`` (the scores are repeated to fill each batch at
  least twice): lattices from the binary archive + sweep, the same from the text
  archive (the old path, at the first batch), and 1-best (search only).
- ``model-speed`` (needs ``--model``): the decoders on the model's scores (its lattices
  are large and slow to make: the GPU lattice row at the first batch only), and for the
  GPU 1-best the whole chain with the model included: features in memory -> the model
  on the GPU in batches (``log_probs_batch``) -> priors -> the decoder, no host round
  trip.
- ``agreement`` (GPU only): CPU and GPU decode the same scores (noisy oracle and, with
  ``--model``, the model): the share of utterances with the same words and both WERs,
  at the search's own point and at the best sweep point, for each GPU ``--max-active``;
  and the GPU 1-best against the CPU 1-best (both on ``--cpu-jobs`` processes).
- ``tuned``: would a 1-best search at the point tuned on dev be a cheaper test search
  than lattices? On the CPU with ``--config``'s decode section (default: the
  defaults): the lattice search with its sweep picks the best point, then one 1-best
  search at that LM weight for each of ``--one-best-beams`` (``acoustic_scale =
  1/lm_weight``, ``max_active`` from the config): wall time, WER at the point and the
  share of utterances with the lattice's words (model scores with ``--model``; the
  noisy oracle otherwise).
- ``profile`` (or ``--profile``): where the time of one pass goes, step by step (model
  scoring split into feature loading and the network, label gather and scale on the
  device, search, lattice conversion/write/read/parse, rescoring), for the CPU lattice
  decoder in this process (noisy oracle, the ``--cpu-utts`` first utterances) and, on a
  GPU, the GPU decoders at ``--profile-batch`` (on the model's scores with
  ``--model``); plus torch.profiler's top operators. Runs on the CPU alone too.

Speed rows time the decoders alone (the scores padded, divided by the priors and on
the decoder's device before the clock starts); the model-included rows time the chain.

Prints tables and writes ``decode.json``.

    python bench/decode.py --work-dir recipes/synth [--model recipes/synth/exp/baseline]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

import asr_kd.decode.cpu as cpu_module
from asr_kd.config import load_section
from asr_kd.data.manifests import load_cuts
from asr_kd.decode.base import (
    DecodeConfig,
    decoder_log_priors,
    make_decoder,
    pad_batch,
    pseudo_log_likelihoods,
    word_table,
    words_to_text,
)
from asr_kd.decode.lattice import Lattice, Point
from asr_kd.decode.stage import oracle_score_fn, reference_text
from asr_kd.graph import load_graph, make_graph
from asr_kd.parallel import make_executor
from asr_kd.scoring import compute_wer
from asr_kd.tree.priors import read_priors
from asr_kd.tree.targets import read_targets_info


@dataclass
class Utts:
    """Test utterances: ids, reference texts, durations (s) and ``[T, S]`` log-posteriors."""

    ids: list[str]
    refs: list[str]
    durations: list[float]
    scores: list[np.ndarray]

    @property
    def audio(self) -> float:
        return float(sum(self.durations))

    def concat(self, n: int) -> Utts:
        """Every ``n`` consecutive utterances joined into one (the last group may be shorter)."""
        if n <= 1:
            return self
        groups = [slice(i, i + n) for i in range(0, len(self.ids), n)]
        return Utts(
            ids=["+".join(self.ids[g]) for g in groups],
            refs=[" ".join(self.refs[g]) for g in groups],
            durations=[sum(self.durations[g]) for g in groups],
            scores=[np.concatenate(self.scores[g]) for g in groups],
        )

    def head(self, count: int | None) -> Utts:
        """The first ``count`` utterances (all with ``None``)."""
        n = slice(count)
        return Utts(self.ids[n], self.refs[n], self.durations[n], self.scores[n])

    def tiled(self, count: int) -> Utts:
        """The utterances repeated to at least ``count`` (to fill a GPU batch)."""
        reps = max(1, -(-count // len(self.ids)))
        return Utts(self.ids * reps, self.refs * reps, self.durations * reps, self.scores * reps)


def noisy_scores(cuts, num_senones: int, log_priors: np.ndarray, noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for cut in cuts:
        s = oracle_score_fn(cut, num_senones, log_priors=log_priors)
        out.append(s + rng.normal(0, noise, size=s.shape).astype(np.float32))
    return out


def load_teacher(spec: str, senone_dir: Path, cuts, device: str):
    from asr_kd.teachers import load

    info = read_targets_info(senone_dir)
    shift = next(iter(cuts)).frame_shift
    return load(spec, info["tree_id"], int(info["num_senones"]), shift, device)


def model_scores(teacher, cuts, feats, batch: int, times: Counter | None = None):
    """Log-posteriors ``[T, S]`` per cut, scored ``batch`` cuts at a time on the model's device.

    ``times`` (if given) accumulates ``model_forward`` seconds (synchronised).
    """
    out = []
    for i in range(0, len(cuts), batch):
        start = time.perf_counter()
        post, lengths = teacher.log_probs_batch(cuts[i : i + batch], feats=feats[i : i + batch])
        host = post.float().cpu().numpy()
        if times is not None:
            times["model_forward"] += time.perf_counter() - start
        out += [host[j, :n] for j, n in enumerate(lengths.tolist())]
    return out


def load_features(cuts, times: Counter | None = None) -> list[np.ndarray]:
    start = time.perf_counter()
    feats = [c.load_features() for c in cuts]
    if times is not None:
        times["feature_load"] += time.perf_counter() - start
    return feats


def run(decoder, scores, log_priors, batch: int, points=None) -> tuple[float, list]:
    """(wall seconds, hypotheses) of decoding ``scores`` in batches of ``batch``.

    The batches are padded, divided by the priors and put on the decoder's device
    before the clock starts: the rows time the decoders (``end_to_end`` times the chain).
    """
    device = getattr(decoder, "device", "cpu")
    batches = []
    for i in range(0, len(scores), batch):
        padded, lengths = pad_batch(scores[i : i + batch])
        batches.append((pseudo_log_likelihoods(padded, log_priors).to(device), lengths))
    hyps = []
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for log_likes, lengths in batches:
        hyps += decoder.decode(log_likes, lengths, None, points)
    return time.perf_counter() - start, hyps


def end_to_end(teacher, cuts, feats, decoder, log_priors, batch: int, concat: int) -> float:
    """Wall seconds of features in memory -> model on its device -> priors -> decoder."""
    torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(0, len(cuts), batch * concat):
        post, lengths = teacher.log_probs_batch(
            cuts[i : i + batch * concat], feats=feats[i : i + batch * concat]
        )
        log_likes = pseudo_log_likelihoods(post, log_priors)
        if concat > 1:  # join consecutive utterances on the device
            pieces = [log_likes[j, :n] for j, n in enumerate(lengths.tolist())]
            groups = [torch.cat(pieces[k : k + concat]) for k in range(0, len(pieces), concat)]
            lengths = torch.tensor([len(g) for g in groups])
            log_likes = torch.nn.utils.rnn.pad_sequence(groups, batch_first=True)
        decoder.decode(log_likes, lengths)
    torch.cuda.synchronize()
    return time.perf_counter() - start


def gpu_decoder(graph, fst, batch: int, lattice: bool = True, archive: str = "binary",
                max_active: int | None = None, chunk_frames: int = 50):  # fmt: skip
    from asr_kd.decode.gpu import GpuDecoder

    config = DecodeConfig(device="cuda", batch_size=batch, lattice=lattice)
    if max_active is not None:
        config = replace(config, max_active=max_active)
    return GpuDecoder(graph, config, fst_path=fst, archive=archive, chunk_frames=chunk_frames)


def gpu_kinds(first_batch: bool, model: bool = False) -> list[tuple[str, dict]]:
    """GPU decoder variants of a speed block: (row name, gpu_decoder keywords).

    The text archive (the old path) runs at the first batch only. A model's lattices
    are large and slow to make (the search is fast): on model scores only the binary
    lattice row at the first batch, and 1-best at every batch.
    """
    kinds = [("gpu 1-best", {"lattice": False})]
    if first_batch or not model:
        kinds.insert(0, ("gpu lattice (binary ark) + sweep", {}))
    if first_batch and not model:
        kinds.insert(1, ("gpu lattice (text ark) + sweep", {"archive": "text"}))
    return kinds


def speed_rows(graph, fst, utts: Utts, log_priors, args, executor, save, label: str,
               rows: list, one_process: bool = True, model=None) -> None:  # fmt: skip
    """Append decoding-speed rows on ``utts`` to ``rows`` (saved after each).

    ``one_process=False`` skips the one-process CPU rows; ``model`` = (teacher, cuts,
    feats) adds the end-to-end rows (model included).
    """

    def add(name: str, batch: int, wall: float, audio_s: float) -> None:
        rows.append({"scores": label, "decoder": name, "batch": batch, "audio_s": audio_s,
                     "wall_s": wall, "x_real_time": audio_s / wall})  # fmt: skip
        print(f"  {name:<40} batch {batch:>5}: {audio_s / wall:9.1f}x real time", flush=True)
        save()

    cpu_utts = utts.head(args.cpu_utts)
    scores, cpu_audio = cpu_utts.scores, cpu_utts.audio
    if one_process:
        cpu = make_decoder(graph, DecodeConfig(device="cpu"), fst_path=fst)
        add("cpu x1 (lattice + sweep)", 32, run(cpu, scores, log_priors, 32)[0], cpu_audio)
        cpu1 = make_decoder(graph, DecodeConfig(device="cpu", lattice=False), fst_path=fst)
        add("cpu x1 (1-best)", 32, run(cpu1, scores, log_priors, 32)[0], cpu_audio)
    if executor is not None:
        cpun = make_decoder(graph, DecodeConfig(device="cpu"), executor, fst_path=fst)
        batch = 4 * args.cpu_jobs
        wall = run(cpun, scores, log_priors, batch)[0]
        add(f"cpu x{args.cpu_jobs} (lattice + sweep)", batch, wall, cpu_audio)
    if not gpu_ready():
        return
    for k, batch in enumerate(args.gpu_batches):
        tiled = utts.tiled(2 * batch)  # fill the batch at least twice
        for name, kind in gpu_kinds(k == 0, model is not None):
            try:
                gpu = gpu_decoder(graph, fst, batch, chunk_frames=args.chunk_frames, **kind)
                run(gpu, tiled.scores[:batch], log_priors, batch)  # warm-up: context, graph
                add(name, batch, run(gpu, tiled.scores, log_priors, batch)[0], tiled.audio)
                if model is not None and not kind:  # 1-best: the end-to-end rows
                    teacher, cuts, feats = model
                    reps = max(1, -(-2 * batch * args.concat // len(cuts)))
                    wall = end_to_end(teacher, cuts * reps, feats * reps, gpu, log_priors,
                                      batch, args.concat)  # fmt: skip
                    audio = reps * sum(c.duration for c in cuts)
                    add(f"model + {name}", batch, wall, audio)
                del gpu
            except (RuntimeError, MemoryError) as e:  # the largest batch may not fit
                rows.append({"scores": label, "decoder": name, "batch": batch,
                             "error": str(e)[:300]})  # fmt: skip
                print(f"  {name} batch {batch}: failed: {e}", flush=True)
                save()


def gpu_ready() -> bool:
    if not torch.cuda.is_available():
        return False
    from asr_kd.decode.base import _riva_available

    return _riva_available()


# ---------------------------------------------------------------------------
# Agreement


def agreement(name: str, utts: Utts, table, config: DecodeConfig, cpu_hyps, gpu_hyps) -> dict:
    """Same-words share and WER of CPU and GPU hypotheses, at the decode and best points."""
    refs = dict(zip(utts.ids, utts.refs, strict=True))
    points = config.grid()

    def texts(hyps, point: Point) -> dict[str, str]:
        return {
            u: words_to_text(h.sweep[point], table) for u, h in zip(utts.ids, hyps, strict=True)
        }

    def wer(hyps, point: Point) -> tuple[float, int]:
        r = compute_wer(refs, texts(hyps, point), alignments=False)
        return r.wer, r.errors

    cpu_wer = {p: wer(cpu_hyps, p) for p in points}
    best = min(cpu_wer, key=lambda p: (cpu_wer[p][1], p))  # as the decode stage selects
    row = {"scores": name, "utterances": len(utts.ids)}
    labels = (("decode_point", config.decode_point), ("best_cpu_point", best))
    for label, point in labels[: 1 if len(points) == 1 else 2]:
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
        for p in points
    ]
    row["same_words_min_over_sweep"] = float(min(sweep_same))
    return row


def compare(graph, fst, sets, log_priors, max_actives, executor: Executor | None, save,
            rows: list) -> None:  # fmt: skip
    """Append CPU/GPU agreement rows to ``rows`` for each (name, Utts) of ``sets``.

    The CPU lattice decoder has no ``max_active``; the GPU decoder caps its tokens per
    frame by narrowing the beam (Kaldi's CUDA decoder), so each of ``max_actives`` gets
    its own GPU row against the same CPU hypotheses. The GPU 1-best is compared with
    the CPU 1-best (FasterDecoder, the same max_active).
    """
    table = word_table(graph.words)
    for name, utts in sets:
        s, audio = utts.scores, utts.audio
        for lattice in (True, False):
            config = DecodeConfig(lattice=lattice)
            cpu_config = replace(config, device="cpu")
            cpu = make_decoder(graph, cpu_config, executor, fst_path=fst)
            _, cpu_hyps = run(cpu, s, log_priors, 64, config.grid())
            for max_active in max_actives if lattice else max_actives[:1]:
                gpu = gpu_decoder(graph, fst, 64, lattice, max_active=max_active)
                run(gpu, s[:64], log_priors, 64, config.grid())  # warm-up
                wall, gpu_hyps = run(gpu, s, log_priors, 64, config.grid())
                row = agreement(name, utts, table, config, cpu_hyps, gpu_hyps)
                mode = "lattice" if lattice else "1-best"
                rows.append({**row, "mode": mode, "gpu_max_active": max_active,
                             "gpu_x_real_time": audio / wall})  # fmt: skip
                del gpu
                save()


def tuned_rows(graph, fst, sets, log_priors, config: DecodeConfig, beams, executor, save,
               rows: list) -> None:  # fmt: skip
    """Append rows of the lattice sweep and of 1-best searches at its best point.

    For each (name, Utts) of ``sets``: the lattice search (``config``) scores its grid
    and picks the best point as the decode stage does; each beam of ``beams`` then
    searches 1-best at that point (``acoustic_scale = 1/lm_weight``), against the lattice.
    """
    table = word_table(graph.words)
    for name, utts in sets:
        refs = dict(zip(utts.ids, utts.refs, strict=True))

        def texts(hyps, point: Point, ids=tuple(utts.ids)) -> dict[str, str]:
            return {u: words_to_text(h.sweep[point], table) for u, h in zip(ids, hyps, strict=True)}

        lattice = replace(config, device="cpu", lattice=True)
        decoder = make_decoder(graph, lattice, executor, fst_path=fst)
        wall, hyps = run(decoder, utts.scores, log_priors, 32, lattice.grid())
        errors = {p: compute_wer(refs, texts(hyps, p), alignments=False) for p in lattice.grid()}
        best = min(errors, key=lambda p: (errors[p].errors, p))  # as the decode stage selects
        base = texts(hyps, best)
        row = {"scores": name, "utterances": len(utts.ids), "lm_weight": best[0],
               "word_ins_penalty": best[1]}  # fmt: skip
        rows.append({**row, "search": f"lattice (beam {lattice.beam:g}) + sweep",
                     "wall_s": wall, "x_real_time": utts.audio / wall,
                     "wer": errors[best].wer, "same_words": 1.0})  # fmt: skip
        save()
        for beam in beams if not best[1] else ():  # a nonzero WIP needs lattices
            search = replace(lattice, lattice=False, acoustic_scale=1.0 / best[0], beam=beam)
            decoder = make_decoder(graph, search, executor, fst_path=fst)
            wall, hyps = run(decoder, utts.scores, log_priors, 32, [best])
            got = texts(hyps, best)
            same = float(np.mean([got[u] == base[u] for u in base]))
            rows.append({**row, "search": f"1-best at the point (beam {beam:g})",
                         "wall_s": wall, "x_real_time": utts.audio / wall,
                         "wer": compute_wer(refs, got, alignments=False).wer,
                         "same_words": same})  # fmt: skip
            save()


# ---------------------------------------------------------------------------
# Profile


@contextlib.contextmanager
def timed(owner, name: str, times: Counter, key: str) -> Iterator[None]:
    """Accumulate the seconds spent in ``owner.name`` into ``times[key]`` while inside."""
    original = getattr(owner, name)

    def wrapper(*a, **kw):
        start = time.perf_counter()
        try:
            return original(*a, **kw)
        finally:
            times[key] += time.perf_counter() - start

    setattr(owner, name, wrapper)
    try:
        yield
    finally:
        setattr(owner, name, original)


def profile(graph, fst, sets, log_priors, args, model_times: Counter | None, blocks: list,
            save) -> None:  # fmt: skip
    """Append the time split of one pass of each decoder to ``blocks``, with
    torch.profiler's top operators: the CPU decoder on the first ``--cpu-utts`` noisy
    oracle utterances (the first of ``sets``), the GPU decoders on the last of ``sets``
    (the model's when there is one; ``model_times``: its scoring, once for all cuts).
    """

    def block(name: str, batch: int, times: Counter, wall: float, utts, prof) -> None:
        steps = dict(times)
        label = sets[0][0] if utts is cpu_utts else sets[-1][0]
        if model_times and label.startswith("model"):
            steps = {**{f"model: {k}": v for k, v in model_times.items()}, **steps}
        ops = prof.key_averages().table(sort_by=sort_key, row_limit=12)
        blocks.append({"scores": label, "decoder": name, "batch": batch, "audio_s": utts.audio,
                       "wall_s": wall, "x_real_time": utts.audio / wall, "steps": steps,
                       "top_ops": ops})  # fmt: skip
        save()

    cpu_utts = sets[0][1].head(args.cpu_utts)

    activities = [torch.profiler.ProfilerActivity.CPU]
    sort_key = "self_cpu_time_total"
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        sort_key = "self_cuda_time_total"
    # CPU lattice decoder, in this process: Kaldi's search + raw lattice, the lattice
    # through OpenFst's binary format, the sweep's rescoring
    cpu = make_decoder(graph, DecodeConfig(device="cpu"), fst_path=fst)
    times: Counter = Counter()
    with (
        timed(cpu_module, "decode_matrix", times, "search + lattice (total per utterance)"),
        timed(cpu_module, "lattice_from_kaldifst", times, "lattice write/read/parse"),
        timed(Lattice, "best_paths", times, "rescore (sweep)"),
        torch.profiler.profile(activities=activities) as prof,
    ):  # fmt: skip
        wall, _ = run(cpu, cpu_utts.scores, log_priors, 32)
    total = times.pop("search + lattice (total per utterance)")
    times["kaldi search + raw lattice"] = (
        total - times["lattice write/read/parse"] - times["rescore (sweep)"]
    )
    times["score checks, to numpy"] = wall - total
    block("cpu x1 (lattice + sweep)", 32, times, wall, cpu_utts, prof)
    if gpu_ready():
        batch = args.profile_batch or args.gpu_batches[-1]
        tiled = sets[-1][1].tiled(2 * batch)
        for name, kind in gpu_kinds(True):
            gpu = gpu_decoder(graph, fst, batch, chunk_frames=args.chunk_frames, **kind)
            run(gpu, tiled.scores[:batch], log_priors, batch)  # warm-up
            gpu.timings.clear()
            with torch.profiler.profile(activities=activities) as prof:
                wall, _ = run(gpu, tiled.scores, log_priors, batch)
            times = Counter(gpu.timings)
            times["score checks"] = wall - sum(gpu.timings.values())
            block(name, batch, times, wall, tiled, prof)
            del gpu
    for b in blocks:
        print(f"\nprofile: {b['decoder']}, batch {b['batch']}, {b['scores']} scores: "
              f"{b['x_real_time']:.1f}x real time")  # fmt: skip
        print(f"  {'step':<44} {'seconds':>9} {'share':>7} {'x real time':>12}")
        for step, sec in b["steps"].items():
            share = f"{100 * sec / b['wall_s']:6.1f}%" if not step.startswith("model") else ""
            rate = f"{b['audio_s'] / sec:12.1f}" if sec > 0 else ""
            print(f"  {step:<44} {sec:9.3f} {share:>7} {rate}")
        print(b["top_ops"])


# ---------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-dir", type=Path, default=Path("recipes/synth"))
    ap.add_argument("--noise", type=float, default=2.0, help="std of the score noise")
    ap.add_argument("--model", default=None, help="also decode this model's scores (a spec)")
    ap.add_argument("--cpu-jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--gpu-batches", default="1,64,256,1024",
                    help="GPU batch sizes, comma-separated")  # fmt: skip
    ap.add_argument("--chunk-frames", type=int, default=50,
                    help="GPU lattice decoder: frames per utterance and batch step")  # fmt: skip
    ap.add_argument("--concat", type=int, default=1,
                    help="join this many consecutive dev utterances into one")  # fmt: skip
    ap.add_argument("--max-utts", type=int, default=None, help="first N dev cuts only")
    ap.add_argument("--cpu-utts", type=int, default=None,
                    help="the CPU speed rows decode the first N utterances")  # fmt: skip
    ap.add_argument("--profile-batch", type=int, default=None,
                    help="GPU batch of the profile (default: the largest)")  # fmt: skip
    ap.add_argument(
        "--max-active",
        default=str(DecodeConfig().max_active),
        help="GPU max_active values for the agreement rows, comma-separated",
    )
    ap.add_argument(
        "--parts",
        default="speed,agreement",
        help="what to run: speed, model-speed (needs --model), agreement, tuned, profile",
    )
    ap.add_argument("--profile", action="store_true", help="add the profile part")
    ap.add_argument(
        "--config", type=Path, default=None, help="a recipe config: the tuned part's decode section"
    )
    ap.add_argument("--one-best-beams", default="10,13,16",
                    help="the tuned part's 1-best beams")  # fmt: skip
    ap.add_argument("--no-graph-build", dest="build_graph", action="store_false",
                    help="no timed rebuild (it needs data/lang, data/lm, exp/tree)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    args = ap.parse_args()
    data, exp = args.work_dir / "data", args.work_dir / "exp"
    args.gpu_batches = [int(b) for b in args.gpu_batches.split(",")]
    parts = set(args.parts.split(",")) | ({"profile"} if args.profile else set())

    build_s = None
    if args.build_graph:
        with tempfile.TemporaryDirectory() as d:
            start = time.perf_counter()
            make_graph(data / "lang", data / "lm", exp / "tree", Path(d) / "graph")
            build_s = time.perf_counter() - start
    info = json.loads((exp / "graph" / "info.json").read_text())
    size_mb = (exp / "graph" / "HCLG.fst").stat().st_size / 2**20
    built = f", built in {build_s:.1f} s" if build_s is not None else ""
    print(
        f"HCLG: {info['states']} states, {info['arcs']} arcs, {size_mb:.1f} MB{built}", flush=True
    )
    graph, fst = load_graph(exp / "graph"), exp / "graph" / "HCLG.fst"
    cuts = list(load_cuts(data / "senones" / "synth_cuts_dev.jsonl.gz", "senone-targets"))
    cuts = cuts[: args.max_utts] if args.max_utts else cuts
    log_priors = decoder_log_priors(read_priors(data / "senones" / "priors.json"))
    base = Utts([c.id for c in cuts], [reference_text(c) for c in cuts],
                [c.duration for c in cuts], [])  # fmt: skip
    noisy = replace(base, scores=noisy_scores(cuts, graph.num_senones, log_priors, args.noise))

    result: dict = {
        "graph": {
            "states": info["states"],
            "arcs": info["arcs"],
            "mb": size_mb,
            "build_seconds": build_s,
        },  # fmt: skip
        "utterances": len(cuts),
        "concat": args.concat,
        "noise": args.noise,
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "rows": [],
        "agreement": [],
        "tuned": [],
        "profile": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        (args.out / "decode.json").write_text(json.dumps(result, indent=2) + "\n")

    cuda = gpu_ready()
    sets = [("noisy oracle", noisy.concat(args.concat))]
    model = model_times = None
    if args.model and parts & {"model-speed", "agreement", "profile", "tuned"}:
        model_times = Counter()
        device = "cuda" if torch.cuda.is_available() else "cpu"
        teacher = load_teacher(args.model, data / "senones", cuts, device)
        feats = load_features(cuts, model_times)
        scores = model_scores(teacher, cuts, feats, 64, model_times)
        sets.append((f"model {args.model}", replace(base, scores=scores).concat(args.concat)))
        model = (teacher, cuts, feats)
    jobs = args.cpu_jobs
    with make_executor(jobs if jobs > 1 else 1) as executor:
        if "speed" in parts:
            print("speed (noisy oracle scores):", flush=True)
            speed_rows(graph, fst, sets[0][1], log_priors, args, executor, save, sets[0][0],
                       result["rows"])  # fmt: skip
        if "model-speed" in parts and model is not None:
            label, utts = sets[1]
            print(f"speed ({label} scores):", flush=True)
            speed_rows(graph, fst, utts, log_priors, args, executor, save, label,
                       result["rows"], False, model)  # fmt: skip
        if "agreement" in parts and cuda:
            max_actives = [int(m) for m in args.max_active.split(",")]
            compare(graph, fst, sets, log_priors, max_actives, executor, save,
                    result["agreement"])  # fmt: skip
        if "tuned" in parts:
            print("\nsearch at the tuned point:", flush=True)
            config = load_section(args.config, "decode", DecodeConfig)
            beams = [float(b) for b in args.one_best_beams.split(",")]
            tuned_rows(graph, fst, sets[-1:], log_priors, config, beams, executor, save,
                       result["tuned"])  # fmt: skip
    if "profile" in parts:
        print("\nprofile:", flush=True)
        profile(graph, fst, sets, log_priors, args, model_times, result["profile"], save)
    save()
    print_tables(result)
    print(f"\nwrote {args.out / 'decode.json'}")


def print_tables(result: dict) -> None:
    print(f"\n{'scores':<14} {'decoder':<40} {'batch':>6} {'audio s':>9} {'wall s':>8} "
          f"{'x real time':>12}")  # fmt: skip
    for r in result["rows"]:
        head = f"{r.get('scores', '')[:14]:<14} {r['decoder']:<40} {r['batch']:>6}"
        if "error" in r:
            print(f"{head}  failed: {r['error'][:60]}")
        else:
            print(f"{head} {r['audio_s']:9.1f} {r['wall_s']:8.2f} {r['x_real_time']:12.1f}")
    if result["agreement"]:
        print(f"\n{'CPU vs GPU (dev)':<24} {'mode':<8} {'max_active':>10} {'point':<15} "
              f"{'same words':>10} {'CPU WER':>8} {'GPU WER':>8} {'GPU x RT':>9}")  # fmt: skip
        for r in result["agreement"]:
            head = f"{r['scores'][:24]:<24} {r['mode']:<8} {r['gpu_max_active']:>10}"
            for label in ("decode_point", "best_cpu_point"):
                if label not in r:
                    continue
                a = r[label]
                point = f"{a['lm_weight']:g}/{a['word_ins_penalty']:g}"
                print(
                    f"{head} {point:<15} {100 * a['same_words']:9.1f}% "
                    f"{a['cpu_wer']:8.2f} {a['gpu_wer']:8.2f} {r['gpu_x_real_time']:9.1f}"
                )
                head = " " * len(head)
            print(f"{head} {'worst of sweep':<15} {100 * r['same_words_min_over_sweep']:9.1f}%")
    if result["tuned"]:
        print(f"\n{'scores':<24} {'search':<34} {'point':<9} {'wall s':>8} {'x RT':>7} "
              f"{'WER':>6} {'same words':>10}")  # fmt: skip
        for r in result["tuned"]:
            point = f"{r['lm_weight']:g}/{r['word_ins_penalty']:g}"
            print(
                f"{r['scores'][:24]:<24} {r['search']:<34} {point:<9} {r['wall_s']:8.1f} "
                f"{r['x_real_time']:7.1f} {r['wer']:6.2f} {100 * r['same_words']:9.1f}%"
            )


if __name__ == "__main__":
    main()
