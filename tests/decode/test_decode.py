"""Decoders on tiny hand-built HCLG-like graphs: words, label gather, sweep, checks, stage."""

from __future__ import annotations

import functools
import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import kaldifst
import numpy as np
import pytest
import torch
from lhotse import MonoCut, NumpyHdf5Writer, SupervisionSegment

import asr_kd.decode.stage as decode_stage
from asr_kd.decode import (
    CpuDecoder,
    DecodeConfig,
    Lattice,
    check_graph,
    decode_cuts,
    decoder_log_priors,
    make_decoder,
    oracle_score_fn,
    pseudo_log_likelihoods,
)
from asr_kd.decode.base import UNSEEN_LOG_PRIOR, graph_scores, pad_batch
from asr_kd.decode.gpu import read_compact_lattice_archive
from asr_kd.errors import BadInputError, ConfigError
from asr_kd.parallel import make_executor
from asr_kd.tree.priors import write_priors

WORDS = {0: "<eps>", 1: "A", 2: "B", 3: "C"}
# graph input labels per word (two HMM states each, C has one); label k reads senone
# LABEL_TO_SENONE[k-1]: A's second state and B's second state share senone 1
PRONS = {1: [1, 2], 2: [3, 4], 3: [5]}
LABEL_TO_SENONE = np.array([0, 1, 2, 1, 3])
NUM_SENONES = 4
WORD_COST = math.log(3.0)
LOOP_COST = 0.1  # graph cost of a self-loop
BAD = -10.0  # unscaled pseudo log-likelihood of a wrong senone


@dataclass
class TinyGraph:
    """What ``asr_kd.graph.load_graph`` returns, built by hand."""

    fst: kaldifst.StdVectorFst
    label_to_senone: np.ndarray = field(default_factory=lambda: LABEL_TO_SENONE.copy())
    words: dict[int, str] = field(default_factory=lambda: dict(WORDS))
    num_senones: int = NUM_SENONES
    tree_id: str = "tree0123456789ab"
    words_sha: str = "words0123456789a"


def word_loop_fst(prons: dict[int, list[int]], word_cost: float) -> kaldifst.StdVectorFst:
    """A word loop: state 0 (start, final) -> a chain of self-looped labels per word -> 0."""
    lines, next_state = [], 1
    for word, labels in prons.items():
        prev = 0
        for i, label in enumerate(labels):
            state, next_state = next_state, next_state + 1
            olabel, cost = (word, word_cost) if i == 0 else (0, 0.0)
            lines += [
                f"{prev} {state} {label} {olabel} {cost}",
                f"{state} {state} {label} 0 {LOOP_COST}",
            ]
            prev = state
        lines.append(f"{prev} 0 0 0 0.0")
    lines.append("0 0.0")
    return kaldifst.compile("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def graph() -> TinyGraph:
    return TinyGraph(word_loop_fst(PRONS, WORD_COST))


def senone_scores(words: list[int], frames_per_label: int = 3) -> np.ndarray:
    """Unscaled pseudo log-likelihoods ``[T, S]``: 0 on the words' senones, BAD elsewhere."""
    senones = [
        LABEL_TO_SENONE[k - 1] for w in words for k in PRONS[w] for _ in range(frames_per_label)
    ]
    out = np.full((len(senones), NUM_SENONES), BAD, dtype=np.float32)
    out[np.arange(len(senones)), senones] = 0.0
    return out


def batch(*matrices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return pad_batch(matrices)


# ---------------------------------------------------------------------------
# Decoding


@pytest.mark.parametrize("lattice", [True, False])
def test_cpu_decoder_finds_the_words(graph, lattice):
    config = DecodeConfig(lattice=lattice)
    decoder = CpuDecoder(graph, config)
    utts = [[1, 2, 3], [3, 1, 3], [2]]  # (a repeated word would merge: C C = C)
    hyps = decoder.decode(*batch(*(senone_scores(u) for u in utts)))
    assert [h.words for h in hyps] == utts
    assert all(h.reached_final for h in hyps)


def test_label_gather_reads_each_labels_senone(graph):
    scores = torch.arange(2 * NUM_SENONES, dtype=torch.float32).reshape(1, 2, NUM_SENONES)
    out = graph_scores(scores, torch.as_tensor(LABEL_TO_SENONE), 0.5)
    assert out.shape == (1, 2, len(LABEL_TO_SENONE))
    assert torch.equal(out[0, :, 1], out[0, :, 3])  # labels 2 and 4 share senone 1
    assert torch.equal(out[0, 0], 0.5 * torch.tensor([0.0, 1, 2, 1, 3]))
    # the decoder reads B's second state (label 4) from senone 1, as A's second state
    hyps = CpuDecoder(graph, DecodeConfig()).decode(*batch(senone_scores([2, 1])))
    assert hyps[0].words == [2, 1]


def insertion_case() -> np.ndarray:
    """'A B' with one frame between them that favours the one-label word C by 20.

    A and B last long enough (6 frames a state) that dropping either costs more than any
    word insertion penalty of the grid saves.
    """
    a, b = senone_scores([1], 6), senone_scores([2], 6)
    middle = np.full((1, NUM_SENONES), -20.0, dtype=np.float32)
    middle[0, 3] = 0.0  # senone of C
    return np.concatenate([a, middle, b])


def test_sweep_word_insertion_penalty_removes_an_insertion(graph):
    # inserting C costs WORD_COST + wip and saves 20 / lm_weight of acoustic cost and the
    # self-loop the middle frame would otherwise take
    hyp = CpuDecoder(graph, DecodeConfig()).decode(*batch(insertion_case()))[0]
    assert hyp.words == [1, 3, 2]  # decode point (10, 0): 2.0 > 1.1
    assert hyp.sweep[(10.0, 0.0)] == [1, 3, 2]
    assert hyp.sweep[(17.0, 0.0)] == [1, 3, 2]  # 1.18 > 1.10
    assert hyp.sweep[(17.0, 0.5)] == [1, 2]  # 1.18 < 1.60
    assert hyp.sweep[(12.0, 1.0)] == [1, 2]  # 1.67 < 2.10
    assert hyp.sweep[(6.0, 1.0)] == [1, 3, 2]  # 3.33 > 2.10
    for (lmwt, wip), words in hyp.sweep.items():
        assert (words == [1, 3, 2]) == (20.0 / lmwt + LOOP_COST > WORD_COST + wip)


def test_lattice_best_path_matches_kaldi_one_best_on_noisy_scores():
    rng = np.random.default_rng(3)
    prons = {w: list(range(3 * w - 2, 3 * w + 1)) for w in range(1, 21)}
    label_to_senone = rng.integers(0, 12, size=60)
    noisy = TinyGraph(
        word_loop_fst(prons, math.log(20)), label_to_senone=label_to_senone,
        words={i: f"W{i}" for i in range(21)}, num_senones=12,
    )  # fmt: skip
    scores = rng.normal(0, 3, size=(4, 60, 12)).astype(np.float32)
    lengths = torch.tensor([60, 45, 30, 12])
    lattice_hyps = CpuDecoder(noisy, DecodeConfig(beam=20)).decode(
        torch.from_numpy(scores), lengths
    )
    best_hyps = CpuDecoder(noisy, DecodeConfig(beam=20, lattice=False)).decode(
        torch.from_numpy(scores), lengths
    )
    assert [h.words for h in lattice_hyps] == [h.words for h in best_hyps]
    assert any(len(h.words) > 1 for h in best_hyps)


def test_parallel_decoding_equals_in_process(graph):
    utts = [[1, 2], [3], [2, 2, 1], [1]]
    scores = batch(*(senone_scores(u) for u in utts))
    with make_executor(2) as executor:
        hyps = CpuDecoder(graph, DecodeConfig(), executor=executor).decode(*scores)
    assert [h.words for h in hyps] == utts


class RecordingExecutor(ThreadPoolExecutor):
    """A thread pool that records the frames of each utterance it is handed."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.frames: list[int] = []

    def submit(self, fn, job, *args, **kwargs):
        self.frames.append(len(job.scores))
        return super().submit(fn, job, *args, **kwargs)


def test_submit_hands_the_longest_utterance_first_and_keeps_batch_order(graph):
    utts = [[1], [3, 1, 2], [2, 2], [1, 2, 3, 1]]
    scores = batch(*(senone_scores(u) for u in utts))
    with RecordingExecutor() as executor:
        decoder = CpuDecoder(graph, DecodeConfig(), executor=executor)  # owns the graph file
        futures = decoder.submit(*scores)
        hyps = [f.result() for f in futures]
    assert [h.words for h in hyps] == utts
    assert executor.frames == sorted(scores[1].tolist(), reverse=True)


def test_overlapped_batches_give_the_in_process_result(stage_inputs, tmp_path):
    """Several batches in flight on worker processes: the same hypotheses, in cut order."""
    _, graph_dir, priors = stage_inputs
    (tmp_path / "more").mkdir()
    words = [[1, 2], [3, 1, 2], [2], [2, 3], [1], [3, 1], [2, 1], [1, 3], [3], [2, 3, 1]]
    cuts = make_cuts(tmp_path / "more", words)
    oracle = functools.partial(oracle_score_fn, num_senones=NUM_SENONES)
    config = DecodeConfig(batch_size=1)  # chunks of 4 cuts (4 x num_jobs): 3 batches
    alone = decode_cuts(cuts, oracle, graph_dir, priors, tmp_path / "a", config)
    with make_executor(2) as executor:
        spread = decode_cuts(cuts, oracle, graph_dir, priors, tmp_path / "b", config,
                             num_jobs=1, executor=executor)  # fmt: skip
    assert spread["sweep"] == alone["sweep"] and spread["wer"] == 0.0
    hyps = (tmp_path / "b" / "hyp.txt").read_text().splitlines()
    assert [h.split()[0] for h in hyps] == [c.id for c in cuts]
    assert (tmp_path / "a" / "hyp.txt").read_text() == (tmp_path / "b" / "hyp.txt").read_text()


def test_make_decoder_auto_falls_back_to_cpu_without_cuda(graph):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: auto may pick the GPU decoder")
    assert isinstance(make_decoder(graph, DecodeConfig(device="auto")), CpuDecoder)


def test_make_decoder_auto_keeps_the_one_best_decoder_on_cpu(graph, monkeypatch):
    """lattice=false (tiny, the 3% models) stays on the CPU under auto on a GPU machine."""
    import asr_kd.decode.base as base

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(base, "_riva_available", lambda: True)
    config = DecodeConfig(device="auto", lattice=False)
    assert isinstance(make_decoder(graph, config), CpuDecoder)
    # asked for explicitly, the GPU's 1-best decoder is built (here: refused without riva)
    try:
        decoder = make_decoder(graph, DecodeConfig(device="cuda", lattice=False))
    except ConfigError as e:
        assert "riva-asrlib-decoder" in str(e) or "no CUDA device" in str(e)
    else:
        assert decoder.device == "cuda"


def test_one_best_decoder_refuses_a_sweep(graph):
    decoder = CpuDecoder(graph, DecodeConfig(lattice=False))
    with pytest.raises(ConfigError, match="without lattices"):
        decoder.decode(*batch(senone_scores([1])), points=[(12.0, 0.5)])


def test_compact_lattice_archive_is_rescored():
    # utt1: "A" (1 word, acoustic 30) or "B C" (2 words, acoustic 10), graph costs 1 each word
    text = (
        "utt1 \n0\t1\t1\t1,3,1_1_2\n0\t2\t2\t1,0.5,3_3\n2\t1\t3\t1,0.5,4\n1\t0,0,\n\n"
        "utt2 \n0\t1\t2\n1\n\n"
    )
    lattices = read_compact_lattice_archive(text, acoustic_scale=0.1)
    assert sorted(lattices) == ["utt1", "utt2"]
    one, two = lattices["utt1"], lattices["utt2"]
    # cost("A") = 1 + 30/lm + wip, cost("B C") = 2 + 10/lm + 2 wip: "B C" iff 20/lm > 1 + wip
    assert one.best_paths([(10.0, 0.0), (10.0, 1.5), (25.0, 0.0)]) == [[2, 3], [1], [1]]
    assert two.best_paths([(10.0, 0.0)]) == [[2]]
    assert Lattice.empty().best_paths([(10.0, 0.0)]) == [[]]


# ---------------------------------------------------------------------------
# Scores and checks


def test_pseudo_log_likelihoods_subtract_priors_for_numpy_and_torch():
    post = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]], dtype=np.float32))
    priors = np.log(np.array([0.5, 0.4, 0.1]))
    out = pseudo_log_likelihoods(post, priors)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out, post - priors, atol=1e-6)
    batched = pseudo_log_likelihoods(torch.from_numpy(np.stack([post, post])), priors)
    assert isinstance(batched, torch.Tensor) and batched.shape == (2, 2, 3)
    np.testing.assert_allclose(batched[1].numpy(), post - priors, atol=1e-6)
    with pytest.raises(BadInputError, match="2 senones but the scores have 3"):
        pseudo_log_likelihoods(post, priors[:2])


def test_unseen_senones_are_pushed_down_not_up():
    log_prior = decoder_log_priors(np.array([10.0, 0.0, 30.0]), floor=1e-10)
    np.testing.assert_allclose(log_prior[[0, 2]], np.log([0.25, 0.75]))
    assert log_prior[1] == UNSEEN_LOG_PRIOR > 40


def test_width_mismatch_names_both_numbers(graph):
    scores = torch.zeros(1, 5, NUM_SENONES + 3)
    with pytest.raises(BadInputError, match=r"7 senone columns .* 4 senones.*another tree"):
        CpuDecoder(graph, DecodeConfig()).decode(scores, torch.tensor([5]))


def test_nan_scores_name_the_utterance(graph):
    good, bad = senone_scores([1]), senone_scores([2])
    bad[2, 1] = np.nan
    with pytest.raises(BadInputError, match="utt-bad"):
        CpuDecoder(graph, DecodeConfig()).decode(*batch(good, bad), utt_ids=["utt-ok", "utt-bad"])
    # NaN in padding beyond an utterance's length is harmless
    scores, lengths = batch(senone_scores([1, 2]), senone_scores([3]))
    scores[1, int(lengths[1]) :] = float("nan")
    assert [h.words for h in CpuDecoder(graph, DecodeConfig()).decode(scores, lengths)] == [
        [1, 2],
        [3],
    ]


def test_empty_utterance_is_an_error(graph):
    scores, _ = batch(senone_scores([1]), senone_scores([2]))
    with pytest.raises(BadInputError, match="utterance u2 has no frames"):
        CpuDecoder(graph, DecodeConfig()).decode(scores, torch.tensor([6, 0]), ["u1", "u2"])


def write_words(lang: Path, words: dict[int, str]) -> Path:
    lang.mkdir(parents=True, exist_ok=True)
    (lang / "words.txt").write_text("".join(f"{w} {i}\n" for i, w in words.items()))
    return lang


def test_graph_from_another_lang_or_tree_is_refused(graph, tmp_path):
    check_graph(graph, write_words(tmp_path / "same", WORDS), graph.tree_id)
    other = write_words(tmp_path / "other", {**WORDS, 4: "D"})
    with pytest.raises(BadInputError, match="another lang directory"):
        check_graph(graph, other)
    with pytest.raises(BadInputError, match="tree tree0123456789ab .* tree ffff"):
        check_graph(graph, tree_id="ffff")


def test_config_rejects_bad_values():
    with pytest.raises(ValueError):
        DecodeConfig(device="tpu")
    with pytest.raises(ValueError):
        DecodeConfig(lm_weights=())
    assert DecodeConfig().grid()[:2] == [(6.0, 0.0), (6.0, 0.5)]
    assert len(DecodeConfig().grid()) == 36


# ---------------------------------------------------------------------------
# The stage


def make_cuts(tmp: Path, texts: list[list[int]]) -> list[MonoCut]:
    cuts = []
    with NumpyHdf5Writer(tmp / "senones.h5") as writer:
        for i, words in enumerate(texts):
            senones = np.array(
                [LABEL_TO_SENONE[k - 1] for w in words for k in PRONS[w] for _ in range(3)],
                dtype=np.int32,
            )
            cut_id = f"utt{i}"
            array = writer.store_array(cut_id, senones, frame_shift=0.01, temporal_dim=0)
            sup = SupervisionSegment(
                id=cut_id, recording_id=cut_id, start=0.0, duration=len(senones) / 100,
                text=" ".join(WORDS[w].lower() for w in words),
            )  # fmt: skip
            cuts.append(
                MonoCut(cut_id, 0.0, len(senones) / 100, 0, supervisions=[sup],
                        custom={"senones": array})
            )  # fmt: skip
    return cuts


@pytest.fixture()
def stage_inputs(graph, tmp_path, monkeypatch):
    graph_dir = tmp_path / "graph"
    graph_dir.mkdir()
    graph.fst.write(str(graph_dir / "HCLG.fst"))
    monkeypatch.setattr(decode_stage, "_load_graph", lambda _: graph)
    priors = tmp_path / "priors.json"
    write_priors(priors, np.array([10.0, 20.0, 10.0, 5.0]))
    cuts = make_cuts(tmp_path, [[1, 2], [3, 1, 2], [2], [2, 3]])
    return cuts, graph_dir, priors


def test_oracle_decode_stage_writes_a_perfect_result(stage_inputs, tmp_path):
    cuts, graph_dir, priors = stage_inputs
    out = tmp_path / "exp" / "dnn" / "decode_dev"
    oracle = functools.partial(oracle_score_fn, num_senones=NUM_SENONES)
    lang = write_words(tmp_path / "lang", WORDS)
    report = decode_cuts(cuts, oracle, graph_dir, priors, out, lang_dir=lang, scores_id="oracle")
    assert report["wer"] == 0.0 and report["words"] == 8 and report["num_utts"] == 4
    assert report["selected_by"] == "best_on_this_set" and report["device"] == "cpu"
    assert len(report["sweep"]) == 36 and report["rtf"] > 0
    assert {"lm_weight", "word_ins_penalty", "wer", "ins", "del", "sub"} <= set(report["sweep"][0])
    assert json.loads((out / "wer.json").read_text()) == report
    assert (out / "hyp.txt").read_text().splitlines() == [
        "utt0 A B", "utt1 C A B", "utt2 B", "utt3 B C"
    ]  # fmt: skip
    summary = (out / "wer_summary.txt").read_text()
    assert summary.startswith("%WER 0.00 [ 0 / 8, 0 ins, 0 del, 0 sub ] lm_weight=")
    assert "utt1 op  C C C" in (out / "errs.txt").read_text()
    # a rerun with the same inputs is skipped and returns the same report
    again = decode_cuts(cuts, oracle, graph_dir, priors, out, lang_dir=lang, scores_id="oracle")
    assert again == report


def test_batch_scoring_gives_the_per_cut_result(stage_inputs, tmp_path):
    cuts, graph_dir, priors = stage_inputs
    oracle = functools.partial(oracle_score_fn, num_senones=NUM_SENONES)
    calls = []

    def batch_oracle(batch):
        calls.append(len(batch))
        return pad_batch([oracle(c) for c in batch])

    config = DecodeConfig(batch_size=3)
    per_cut = decode_cuts(cuts, oracle, graph_dir, priors, tmp_path / "a", config)
    batched = decode_cuts(cuts, None, graph_dir, priors, tmp_path / "b", config,
                          batch_score_fn=batch_oracle)  # fmt: skip
    assert calls == [3, 1]
    assert batched["sweep"] == per_cut["sweep"] and batched["wer"] == 0.0
    assert (tmp_path / "a" / "hyp.txt").read_text() == (tmp_path / "b" / "hyp.txt").read_text()
    with pytest.raises(ConfigError, match="one of score_fn and batch_score_fn"):
        decode_cuts(cuts, oracle, graph_dir, priors, tmp_path / "c", batch_score_fn=batch_oracle)

    def wrong(batch):
        return torch.zeros(len(batch) + 1, 5, NUM_SENONES), torch.full((len(batch) + 1,), 5)

    with pytest.raises(BadInputError, match=r"batch scores must be \[3, frames, senones\]"):
        decode_cuts(cuts, None, graph_dir, priors, tmp_path / "d", config, batch_score_fn=wrong)


def test_stage_applies_given_weights_and_picks_the_best_otherwise(stage_inputs, tmp_path):
    cuts, graph_dir = stage_inputs[0][:1], stage_inputs[1]
    flat_priors = tmp_path / "flat.json"
    write_priors(flat_priors, np.ones(NUM_SENONES))

    def score_fn(cut):  # 'A B' with a frame that invites the insertion of C
        return insertion_case()

    dev = decode_cuts(cuts, score_fn, graph_dir, flat_priors, tmp_path / "decode_dev")
    assert dev["wer"] == 0.0 and dev["word_ins_penalty"] > 0
    test = decode_cuts(
        cuts, score_fn, graph_dir, flat_priors, tmp_path / "decode_test",
        lm_weight=10.0, word_ins_penalty=0.0,
    )  # fmt: skip
    assert test["selected_by"] == "given"
    assert (test["lm_weight"], test["word_ins_penalty"]) == (10, 0)
    assert test["summary"] == "%WER 50.00 [ 1 / 2, 1 ins, 0 del, 0 sub ]"
    assert (tmp_path / "decode_test" / "hyp.txt").read_text() == "utt0 A C B\n"


def test_stage_refuses_priors_of_another_tree(stage_inputs, tmp_path):
    cuts, graph_dir, _ = stage_inputs
    priors = tmp_path / "other.json"
    write_priors(priors, np.ones(7))
    oracle = functools.partial(oracle_score_fn, num_senones=NUM_SENONES)
    with pytest.raises(BadInputError, match="7 senones but the graph 4"):
        decode_cuts(cuts, oracle, graph_dir, priors, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------
# GPU (verified on a GPU machine; skipped here)


def needs_gpu_decoder():
    pytest.importorskip("riva.asrlib.decoder.python_decoder")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from asr_kd.decode.gpu import GpuDecoder

    return GpuDecoder


def noisy_word_loop(count: int = 64, seed: int = 0):
    """A 40-word loop graph, ``count`` noisy utterances, and their reference texts."""
    rng = np.random.default_rng(seed)
    num_words, num_senones = 40, 30
    prons = {w: list(range(3 * w - 2, 3 * w + 1)) for w in range(1, num_words + 1)}
    label_to_senone = rng.integers(0, num_senones, size=3 * num_words)
    noisy = TinyGraph(
        word_loop_fst(prons, math.log(num_words)), label_to_senone=label_to_senone,
        words={i: f"W{i}" for i in range(num_words + 1)}, num_senones=num_senones,
    )  # fmt: skip
    refs, matrices = {}, []
    for i in range(count):
        words = rng.integers(1, num_words + 1, size=rng.integers(1, 8)).tolist()
        senones = [label_to_senone[k - 1] for w in words for k in prons[w] for _ in range(3)]
        scores = np.full((len(senones), num_senones), -6.0, dtype=np.float32)
        scores[np.arange(len(senones)), senones] = 0.0
        matrices.append(scores + rng.normal(0, 2, scores.shape).astype(np.float32))
        refs[f"u{i}"] = " ".join(f"W{w}" for w in words)
    return noisy, refs, batch(*matrices)


def test_gpu_and_cpu_decoders_agree():
    GpuDecoder = needs_gpu_decoder()
    from asr_kd.scoring import compute_wer

    noisy, refs, (log_likes, lengths) = noisy_word_loop()
    config = DecodeConfig(batch_size=16)
    cpu = CpuDecoder(noisy, config).decode(log_likes, lengths)
    gpu = GpuDecoder(noisy, config).decode(log_likes, lengths)
    same = [c.words == g.words for c, g in zip(cpu, gpu, strict=True)]
    assert sum(same) / len(same) >= 0.99

    def wer(hyps):
        texts = {
            f"u{i}": " ".join(f"W{w}" for w in h.sweep[(10.0, 0.0)]) for i, h in enumerate(hyps)
        }
        return compute_wer(refs, texts).wer

    assert abs(wer(cpu) - wer(gpu)) <= 0.1


def test_gpu_binary_and_text_archives_give_the_same_lattices():
    GpuDecoder = needs_gpu_decoder()
    noisy, _, (log_likes, lengths) = noisy_word_loop(32, seed=1)
    config = DecodeConfig(batch_size=16)
    binary = GpuDecoder(noisy, config, keep_lattices=True).decode(log_likes, lengths)
    text = GpuDecoder(noisy, config, keep_lattices=True, archive="text").decode(log_likes, lengths)
    same = [b.sweep[p] == t.sweep[p] for b, t in zip(binary, text, strict=True) for p in b.sweep]
    assert sum(same) / len(same) >= 0.99  # text costs have 6 digits: a near tie may flip
    for b, t in zip(binary, text, strict=True):
        assert (b.lattice.num_states, b.lattice.num_arcs) == (
            t.lattice.num_states,
            t.lattice.num_arcs,
        )
        costs = [np.sort(h.lattice.acoustic_cost) for h in (b, t)]
        np.testing.assert_allclose(*costs, rtol=1e-5, atol=1e-3)  # text: 6 digits


def test_gpu_one_best_agrees_with_the_cpu_one_best():
    GpuDecoder = needs_gpu_decoder()
    noisy, _, (log_likes, lengths) = noisy_word_loop(64, seed=2)
    config = DecodeConfig(batch_size=16, lattice=False)
    cpu = CpuDecoder(noisy, config).decode(log_likes, lengths)
    gpu_decoder = GpuDecoder(noisy, config)
    gpu = gpu_decoder.decode(log_likes, lengths)
    same = [c.words == g.words for c, g in zip(cpu, gpu, strict=True)]
    assert sum(same) / len(same) >= 0.99
    assert gpu_decoder.timings["search"] > 0
    with pytest.raises(ConfigError, match="without lattices"):
        gpu_decoder.decode(log_likes[:1], lengths[:1], points=[(12.0, 0.5)])


def test_cuts_without_a_reference_transcript_are_refused(stage_inputs, tmp_path):
    from lhotse.utils import fastcopy

    cuts, graph_dir, priors = stage_inputs
    silent = fastcopy(cuts[1], supervisions=[fastcopy(cuts[1].supervisions[0], text=" ")])
    oracle = functools.partial(oracle_score_fn, num_senones=NUM_SENONES)
    with pytest.raises(
        BadInputError, match=rf"1 of 4 cuts have no reference transcript \({silent.id}\)"
    ):
        decode_cuts([cuts[0], silent, *cuts[2:]], oracle, graph_dir, priors, tmp_path / "out")
    assert not (tmp_path / "out").exists()
