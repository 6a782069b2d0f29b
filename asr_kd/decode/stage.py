"""The decode stage: a cut set's log-posteriors -> WFST decoding -> hypotheses -> WER.

``decode_cuts`` writes ``exp/<model>/decode_<set>/`` atomically::

    hyp.txt          <utt-id> WORDS, at the selected (LM weight, WIP)
    errs.txt         per-utterance ref/hyp/op alignment (Kaldi's per_utt details)
    wer.json         wer (percent), words, ins, del, sub, lm_weight, word_ins_penalty,
                     selected_by, rtf, device, num_utts, priors (counts | posteriors)
                     and priors_file, ..., and the whole sweep grid
    wer_summary.txt  %WER 8.21 [ 412 / 5018, 51 ins, 97 del, 264 sub ] lm_weight=.. ...

LM weight and word insertion penalty: without ``lm_weight`` the grid of
``DecodeConfig.lm_weights x word_ins_penalties`` is scored and the best point *on this
set* is selected (use it on dev). With ``lm_weight`` (and ``word_ins_penalty``) tuned
on dev, that point is applied as it is (use it on test). Kaldi's ``score.sh`` reports
the best point on the test set itself, which tunes on test; we do not. The test grid is
still reported in ``wer.json`` for reference.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lhotse.cut import Cut
from tqdm.auto import tqdm

from asr_kd.config import to_dict
from asr_kd.decode.base import (
    DecodeConfig,
    Decoder,
    GraphLike,
    Hypothesis,
    Point,
    check_graph,
    decoder_log_priors,
    make_decoder,
    pad_batch,
    pseudo_log_likelihoods,
    word_table,
    words_to_text,
)
from asr_kd.errors import BadInputError, ConfigError, first_few
from asr_kd.parallel import worker_result
from asr_kd.scoring.wer import WerResult, compute_wer, format_errs, format_hyps
from asr_kd.stage import note_input, recorded_inputs, require_file, stage_output
from asr_kd.tree.priors import prior_source, read_priors

logger = logging.getLogger(__name__)

STAGE = "decode"
SENONE_KEY = "senones"  # the senone-targets stage's custom field on the cuts

ScoreFn = Callable[[Cut], np.ndarray]
#: A batch of cuts -> (log-posteriors ``[B, T, S]`` on any device, lengths ``[B]``), e.g.
#: a teacher's ``log_probs_batch``: scored on the model's device and handed to the
#: decoder there (no host round trip before the GPU decoder).
BatchScoreFn = Callable[[list[Cut]], tuple[torch.Tensor, torch.Tensor]]


def reference_text(cut: Cut) -> str:
    """A cut's transcript: its supervisions' texts joined by spaces."""
    return " ".join(s.text for s in cut.supervisions if s.text)


def oracle_score_fn(
    cut: Cut,
    num_senones: int,
    correct_prob: float = 0.9,
    log_priors: np.ndarray | None = None,
) -> np.ndarray:
    """Log-posteriors ``[T, S]`` made from the cut's reference senone targets.

    The oracle *likelihood* is ``log(correct_prob)`` on the reference senone and
    ``log((1-correct_prob)/(S-1))`` elsewhere. Given the decoder's ``log_priors``, they
    are added, so that the decoder's division by the priors gives back exactly these
    likelihoods; without them a wrong but rare senone (tiny prior) would outscore the
    right, frequent one. Decoding them should give a WER near 0: it proves that graph,
    tree and decoder agree. Use ``functools.partial(oracle_score_fn, num_senones=S, ...)``.
    """
    if not cut.has_custom(SENONE_KEY):
        raise BadInputError(
            f"cut {cut.id} has no '{SENONE_KEY}' targets: decode the 'senone-targets' cuts"
        )
    targets = np.rint(cut.load_custom(SENONE_KEY)).astype(np.int64).reshape(-1)
    if len(targets) and (targets.min() < 0 or targets.max() >= num_senones):
        raise BadInputError(
            f"cut {cut.id}: senone targets outside 0..{num_senones - 1}: made with another tree?"
        )
    out = np.full((len(targets), num_senones), np.log((1 - correct_prob) / (num_senones - 1)))
    out[np.arange(len(targets)), targets] = np.log(correct_prob)
    if log_priors is not None:
        out += np.asarray(log_priors, dtype=np.float64)
    return out.astype(np.float32)


def _load_graph(graph_dir: Path) -> GraphLike:
    from asr_kd.graph import load_graph  # the graph package is optional until built

    return load_graph(graph_dir)


def _chunks(cuts: Iterable[Cut], size: int) -> Iterator[list[Cut]]:
    chunk: list[Cut] = []
    for cut in cuts:
        chunk.append(cut)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _digest(ids: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def decode_cuts(
    cuts: Iterable[Cut],
    score_fn: ScoreFn | None,
    graph_dir: Path | str,
    priors_path: Path | str,
    out_dir: Path | str,
    config: DecodeConfig | None = None,
    num_jobs: int = 1,
    executor: Executor | None = None,
    lm_weight: float | None = None,
    word_ins_penalty: float | None = None,
    force: bool = False,
    lang_dir: Path | str | None = None,
    tree_id: str | None = None,
    scores_id: str = "",
    batch_score_fn: BatchScoreFn | None = None,
) -> dict[str, Any]:
    """Decode a cut set and score it (``asr-kd decode``); see the module doc.

    Args:
        cuts: the cuts to decode; their supervisions hold the reference text.
        score_fn: a cut's senone log-posteriors ``[T, S]`` (the model, or
            :func:`oracle_score_fn`); called in this process, in cut order.
        graph_dir: the ``HCLG.fst`` directory (``make-graph``).
        priors_path: ``priors.json`` of the senone targets the model was trained on
            (alignment counts) or of the model's ``adjust-priors`` output (averaged
            posteriors): the one ``config.priors`` names.
        out_dir: ``exp/<model>/decode_<set>``, written atomically.
        config: beams, scales, the sweep grid, the device (default: the defaults).
        num_jobs: CPU worker processes behind ``executor`` (sets the chunk size).
        executor: runs the CPU decoding (``asr_kd.parallel.make_executor``).
        lm_weight: apply this LM weight (tuned on dev) instead of picking the best.
        word_ins_penalty: with ``lm_weight``: apply this penalty (default 0).
        force: redo a finished output.
        lang_dir: the lang directory of the references: the graph must use its words.
        tree_id: the tree id of the model's senone targets: the graph must use it.
        scores_id: what makes the scores (checkpoint and its hash, ``"oracle"``):
            recorded, so that a rerun with another model is not skipped.
        batch_score_fn: scores ``config.batch_size`` cuts at a time instead of
            ``score_fn`` (e.g. ``teacher.log_probs_batch``: batched on the model's device).

    Returns:
        The contents of ``wer.json``.
    """
    config = config or DecodeConfig()
    if (score_fn is None) == (batch_score_fn is None):
        raise ConfigError(f"{STAGE}: give one of score_fn and batch_score_fn")
    graph_dir, out_dir = Path(graph_dir).resolve(), Path(out_dir).resolve()
    priors_path = require_file(Path(priors_path).resolve(), "senone-targets")
    source = prior_source(priors_path)
    if source != config.priors:
        raise ConfigError(
            f"{STAGE}: decode.priors is {config.priors!r} but {priors_path} holds priors from "
            f"{source} (alignment counts: senone-targets; posteriors: adjust-priors)"
        )
    point = _given_point(lm_weight, word_ins_penalty)
    cuts = list(cuts)
    if not cuts:
        raise BadInputError(f"{STAGE}: no cuts to decode for {out_dir}")
    untranscribed = [c.id for c in cuts if not reference_text(c).strip()]
    if untranscribed:
        raise BadInputError(
            f"{STAGE}: {len(untranscribed)} of {len(cuts)} cuts have no reference transcript "
            f"({first_few(untranscribed, 5)}): WER is scored against the supervisions' text; "
            "give their transcripts or leave them out of the decoded set"
        )
    stage_config = {
        "graph_dir": str(graph_dir), "priors": str(priors_path), "scores_id": scores_id,
        "lm_weight": lm_weight, "word_ins_penalty": word_ins_penalty,
        "lang_dir": str(lang_dir) if lang_dir else None, "tree_id": tree_id,
        "cuts": len(cuts), "cut_ids_sha": _digest(c.id for c in cuts), **to_dict(config),
    }  # fmt: skip
    with stage_output(out_dir, STAGE, stage_config, force) as tmp:
        if tmp is None:
            return json.loads((out_dir / "wer.json").read_text())
        graph = _load_graph(graph_dir)
        check_graph(graph, lang_dir, tree_id)
        counts = read_priors(priors_path)
        if len(counts) != graph.num_senones:
            raise BadInputError(
                f"{priors_path} has {len(counts)} senones but the graph {graph.num_senones}: "
                "priors and graph come from different trees"
            )
        points = list(dict.fromkeys(config.grid() + ([point] if point else [])))
        fst_path = graph_dir / "HCLG.fst"
        decoder = make_decoder(
            graph, config, executor, fst_path=fst_path if fst_path.is_file() else None
        )
        log_prior = decoder_log_priors(counts, config.prior_floor)
        chunk = max(config.batch_size, 4 * num_jobs) if executor is not None else config.batch_size
        if batch_score_fn is not None:
            scorer = _batch_scorer(batch_score_fn, log_prior)
        else:
            assert score_fn is not None
            scorer = _cut_scorer(score_fn, log_prior)
        sweep_hyps, timing = _decode_all(cuts, scorer, decoder, points, chunk)
        report = _score(cuts, sweep_hyps, word_table(graph.words), point, tmp)
        report.update(timing)
        report.update(
            device=getattr(decoder, "device", config.device), graph_dir=str(graph_dir),
            tree_id=graph.tree_id, words_sha=graph.words_sha, priors=source,
            priors_file=str(priors_path),
        )  # fmt: skip
        (tmp / "wer.json").write_text(json.dumps(report, indent=2) + "\n")
        logger.info(
            "%s: %s (lm_weight %g, wip %g, %s) on %d utterances; RTF %.3f; wrote %s",
            STAGE, report["summary"], report["lm_weight"], report["word_ins_penalty"],
            report["selected_by"], len(cuts), report["rtf"] or 0.0, out_dir,
        )  # fmt: skip
    return report


def decode_dev_test(
    dev_cuts: Iterable[Cut],
    test_cuts: Iterable[Cut],
    score_fn: ScoreFn | None,
    graph_dir: Path | str,
    priors_path: Path | str,
    out_dir: Path | str,
    **options: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Tune the LM weight and insertion penalty on dev, apply dev's point to test.

    Writes ``out_dir/decode_dev`` (the sweep, best point on dev) and
    ``out_dir/decode_test`` (dev's point, never tuned on test), each a
    :func:`decode_cuts` output with its own marker: the same two directories as a
    decode of dev and then of test with dev's ``lm_weight`` and ``word_ins_penalty``.
    ``options``: the further arguments of :func:`decode_cuts` (not ``lm_weight``).

    Returns:
        The ``wer.json`` contents of dev and of test.
    """
    if "lm_weight" in options or "word_ins_penalty" in options:
        raise ConfigError(f"{STAGE}: the test split gets dev's LM weight; give none")
    out_dir = Path(out_dir)
    inputs = recorded_inputs()  # e.g. the model and the senone targets, checked by the caller
    dev = decode_cuts(dev_cuts, score_fn, graph_dir, priors_path, out_dir / "decode_dev",
                      **options)  # fmt: skip
    for path, entry in inputs.items():  # the dev stage's marker took them: the test's too
        note_input(path, entry["stage"])
    require_file(out_dir / "decode_dev" / "wer.json", STAGE)  # test depends on dev's point
    test = decode_cuts(
        test_cuts, score_fn, graph_dir, priors_path, out_dir / "decode_test",
        lm_weight=dev["lm_weight"], word_ins_penalty=dev["word_ins_penalty"], **options,
    )  # fmt: skip
    return dev, test


def _given_point(lm_weight: float | None, word_ins_penalty: float | None) -> Point | None:
    if lm_weight is None:
        if word_ins_penalty is not None:
            raise ConfigError("--word-ins-penalty needs --lm-weight (both tuned on dev)")
        return None
    if lm_weight <= 0:
        raise ConfigError(f"lm_weight must be positive, got {lm_weight}")
    return (float(lm_weight), float(word_ins_penalty or 0.0))


Scorer = Callable[[list[Cut]], tuple[torch.Tensor, torch.Tensor]]


def _cut_scorer(score_fn: ScoreFn, log_prior: np.ndarray) -> Scorer:
    """Pseudo log-likelihoods of a batch, one cut at a time, padded on the host."""

    def scorer(batch: list[Cut]) -> tuple[torch.Tensor, torch.Tensor]:
        scores = []
        for cut in batch:
            post = np.asarray(score_fn(cut))
            if post.ndim != 2:
                raise BadInputError(f"cut {cut.id}: scores must be [frames, senones], "
                                    f"got shape {post.shape}")  # fmt: skip
            scores.append(pseudo_log_likelihoods(post, log_prior))
        return pad_batch(scores)

    return scorer


def _batch_scorer(batch_score_fn: BatchScoreFn, log_prior: np.ndarray) -> Scorer:
    """Pseudo log-likelihoods of a batch scored at once, left on the scores' device."""

    def scorer(batch: list[Cut]) -> tuple[torch.Tensor, torch.Tensor]:
        post, lengths = batch_score_fn(batch)
        if post.dim() != 3 or len(post) != len(batch) or len(lengths) != len(batch):
            raise BadInputError(
                f"cuts {batch[0].id}..: batch scores must be [{len(batch)}, frames, senones] "
                f"with {len(batch)} lengths, got {list(post.shape)} and {len(lengths)}"
            )
        log_likes = pseudo_log_likelihoods(post, log_prior)
        if log_likes.is_cuda:
            torch.cuda.synchronize(log_likes.device)  # time the scoring, not the search
        return log_likes, lengths

    return scorer


def _decode_all(
    cuts: list[Cut],
    scorer: Scorer,
    decoder: Decoder,
    points: list[Point],
    chunk: int,
) -> tuple[dict[Point, dict[str, list[int]]], dict[str, Any]]:
    """Score and decode every cut; word ids per sweep point and utterance, and timings.

    A decoder with ``submit`` (the CPU decoder's worker processes) gets the next batch
    before the previous one is collected: the model scores batch k+1 while the workers
    search batch k, and no worker waits for the slowest utterance of a batch.
    """
    sweep: dict[Point, dict[str, list[int]]] = {p: {} for p in points}
    score_s = 0.0
    frames = not_final = 0
    submit = getattr(decoder, "submit", None)
    pending: deque[tuple[list[Cut], list[Future[Hypothesis]]]] = deque()

    def collect(batch: list[Cut], hyps: Iterable[Hypothesis]) -> None:
        nonlocal not_final
        for cut, hyp in zip(batch, hyps, strict=True):
            not_final += not hyp.reached_final
            for p in points:
                sweep[p][cut.id] = hyp.sweep[p]
        bar.update(len(batch))

    start = time.perf_counter()
    with tqdm(total=len(cuts), desc=STAGE, unit="utt") as bar:
        try:
            for batch in _chunks(cuts, chunk):
                scored = time.perf_counter()
                log_likes, lengths = scorer(batch)
                score_s += time.perf_counter() - scored
                frames += int(lengths.sum())
                ids = [c.id for c in batch]
                if submit is None:
                    collect(batch, decoder.decode(log_likes, lengths, ids, points))
                    continue
                pending.append((batch, submit(log_likes, lengths, ids, points)))
                if len(pending) > 1:
                    done, futures = pending.popleft()
                    collect(done, [worker_result(f) for f in futures])
            while pending:
                done, futures = pending.popleft()
                collect(done, [worker_result(f) for f in futures])
        except BaseException:
            for _, futures in pending:
                for f in futures:
                    f.cancel()
            raise
    search_s = time.perf_counter() - start - score_s  # wall time not spent scoring
    if not_final:
        logger.warning("%s: %d of %d utterances did not reach a final state of the graph "
                       "(partial paths scored)", STAGE, not_final, len(cuts))  # fmt: skip
    audio = sum(c.duration for c in cuts)
    timing = {
        "audio_seconds": round(audio, 2),
        "frames": frames,
        "score_seconds": round(score_s, 3),
        "search_seconds": round(search_s, 3),
        "rtf": round((score_s + search_s) / audio, 5) if audio else None,
        "rtf_search": round(search_s / audio, 5) if audio else None,
        "frames_per_second": round(frames / search_s, 1) if search_s else None,
        "not_reached_final": not_final,
    }
    return sweep, timing


def _score(
    cuts: list[Cut],
    sweep: dict[Point, dict[str, list[int]]],
    table: dict[int, str],
    given: Point | None,
    tmp: Path,
) -> dict[str, Any]:
    """Score every sweep point, select one, and write hyp.txt, errs.txt, wer_summary.txt."""
    refs = {c.id: reference_text(c) for c in cuts}
    texts = {p: {u: words_to_text(w, table) for u, w in hyps.items()} for p, hyps in sweep.items()}
    results: dict[Point, WerResult] = {
        p: compute_wer(refs, t, alignments=False) for p, t in texts.items()
    }
    if given is None:
        chosen = min(results, key=lambda p: (results[p].errors, p))
    else:
        chosen = given
    best = compute_wer(refs, texts[chosen])
    selected_by = "given" if given is not None else "best_on_this_set"
    summary = best.summary_line()
    (tmp / "hyp.txt").write_text(format_hyps(texts[chosen]))
    (tmp / "errs.txt").write_text(format_errs(best))
    (tmp / "wer_summary.txt").write_text(
        f"{summary} lm_weight={chosen[0]:g} word_ins_penalty={chosen[1]:g} ({selected_by})\n"
    )
    return {
        **best.to_dict(),
        "summary": summary,
        "lm_weight": chosen[0],
        "word_ins_penalty": chosen[1],
        "selected_by": selected_by,
        "sweep": [
            {"lm_weight": p[0], "word_ins_penalty": p[1], **r.to_dict()}
            for p, r in sorted(results.items())
        ],
    }
