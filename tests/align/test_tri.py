"""Tri-phone GMM-HMM training (train_deltas.sh) and alignment through our training graphs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from lhotse import CutSet

from asr_kd.align.align import ALI_KEY, AlignConfig, align, load_gmm, phone_segments
from asr_kd.align.graphs import GmmScorer, GraphCompiler, viterbi_path
from asr_kd.align.shard import ViterbiOptions, min_lengths, transcript_ids
from asr_kd.align.tri import (
    TriConfig,
    TriModel,
    train_tri,
    transition_counts,
    update_topos,
)
from asr_kd.data.features import load_stats
from asr_kd.graph.h import parse_topology
from asr_kd.lang import Lang
from asr_kd.testing.synth import FAST_TRI, LENIENT_ALIGN
from asr_kd.tree.targets import senone_targets_stage

LENIENT = LENIENT_ALIGN


def _train(data, name: str, config: TriConfig = FAST_TRI):
    return train_tri(data / "mono_ali", data / "mfcc", data / "lang", data / "tree",
                     data / name, config)  # fmt: skip


def test_log_likelihood_rises_across_iterations(tri_dir):
    ll = json.loads((tri_dir / "log_likelihood.json").read_text())
    info = json.loads((tri_dir / "info.json").read_text())
    assert len(ll) == FAST_TRI.num_iters and info["realign_iters"] == FAST_TRI.schedule()
    # EM: never (more than rounding and a mixing-up perturbation) worse than the pass before
    assert all(b >= a - 0.05 for a, b in zip(ll, ll[1:], strict=False)), ll
    assert ll[1] > ll[0] + 5  # one Gaussian per senone beats the global Gaussian
    assert ll[-1] > ll[1] + 1  # realignment and mixing up keep improving it
    model = TriModel.load(tri_dir / "final.mdl")
    assert model.am.num_pdfs == model.tree.num_senones == info["num_pdfs"]
    assert model.am.num_pdfs < info["num_gaussians"] <= FAST_TRI.total_gaussians + 1
    assert info["failed"] == {}


def test_reruns_are_bit_identical(data, tri_dir):
    again = _train(data, "tri1_again")
    assert (again / "final.mdl").read_bytes() == (tri_dir / "final.mdl").read_bytes()
    assert (again / "log_likelihood.json").read_text() == (
        tri_dir / "log_likelihood.json"
    ).read_text()


def test_graph_senones_are_the_trees(data, tri_dir):
    """Each aligned frame's graph label carries the senone the tree gives its context."""
    model = TriModel.load(tri_dir / "final.mdl")
    lang = Lang.load(data / "lang")
    compiler = GraphCompiler(lang, model.tree, model.topos)
    scorer = GmmScorer(model.am)
    stats = load_stats(data / "mfcc")[1]
    cuts = CutSet.from_file(data / "mfcc" / "synth_cuts_dev.jsonl.gz")
    for cut in cuts:
        ids, why = transcript_ids(cut, lang, min_lengths(lang), "map")
        assert why is None
        graph = compiler.compile(ids)
        feats = model.features(cut, stats)
        path = viterbi_path(graph, scorer.label_scores(feats, graph.labels, 0.1), cut.id,
                            ViterbiOptions())  # fmt: skip
        assert path is not None and len(path) == cut.num_frames
        ali, senones = graph.frame_labels(path)
        np.testing.assert_array_equal(senones, model.tree.senones_for_alignment(ali))


def test_gmm_scorer_is_kaldis(tri_dir):
    model = TriModel.load(tri_dir / "final.mdl")
    x = np.random.default_rng(0).standard_normal((20, model.am.dim)).astype(np.float32)
    pdfs = np.array([3, 0, model.am.num_pdfs - 1, 3])
    got = GmmScorer(model.am)(x, pdfs)
    for j, p in enumerate(pdfs):
        ll = model.am.get_pdf(int(p)).log_likelihoods_matrix(x).astype(np.float64)
        want = np.log(np.exp(ll - ll.max(1, keepdims=True)).sum(1)) + ll.max(1)
        np.testing.assert_allclose(got[:, j], want, rtol=0, atol=1e-9)


def _boundaries(ali_dir) -> dict:
    return json.loads((ali_dir / "summary.json").read_text())


def test_tri_alignment_keeps_the_layout_and_finds_the_words(data, tri_dir):
    out = align(data / "mfcc", data / "lang", tri_dir, data / "tri1_ali", LENIENT)
    assert isinstance(load_gmm(tri_dir), TriModel)
    summary = _boundaries(out)
    for split in ("train", "dev", "test"):
        assert (out / f"failed_{split}.txt").read_text() == ""
        cuts = CutSet.from_file(out / f"synth_cuts_{split}.jsonl.gz")
        for cut in cuts:
            labels = cut.load_custom(ALI_KEY)
            assert labels.shape == (cut.num_frames, 2) and labels.dtype == np.int32
        wb = summary[split]["word_boundaries"]
        assert wb["unmatched_utterances"] == 0
        assert wb["start_within_50ms"] >= 0.9 and wb["end_within_50ms"] >= 0.85, wb


def test_no_inter_word_silence_keeps_silence_at_the_edges(data, tri_dir):
    config = AlignConfig(max_failed_share=0.5, inter_word_silence=False)
    out = align(data / "mfcc", data / "lang", tri_dir, data / "tri1_ali_nosil", config)
    lang = Lang.load(data / "lang")
    topos = parse_topology(lang.topo_text)
    last = {p: t.num_emitting - 1 for p, t in topos.items()}
    edges = 0
    for cut in CutSet.from_file(out / "synth_cuts_dev.jsonl.gz"):
        phones = [p for p, _, _ in phone_segments(cut.load_custom(ALI_KEY), last)]
        inner = phones[1:-1]
        assert lang.optional_silence not in inner, phones
        edges += lang.optional_silence in (phones[0], phones[-1])
    assert edges > 0  # the synthesiser's leading and trailing silences are still silence


def test_transition_counts_and_update():
    topos = parse_topology(
        "<Topology>\n<TopologyEntry>\n<ForPhones>\n3 4\n</ForPhones>\n"
        + "".join(
            f"<State> {s} <PdfClass> {s} <Transition> {s} 0.75 <Transition> {s + 1} 0.25 </State>\n"
            for s in range(3)
        )
        + "<State> 3 </State>\n</TopologyEntry>\n</Topology>\n"
    )
    # phone 3: states 0 0 1 2 2 2, then phone 4: 0 1 2, then phone 4 again: 0 1 2
    ali = np.array([[3, 0], [3, 0], [3, 1], [3, 2], [3, 2], [3, 2],
                    [4, 0], [4, 1], [4, 2], [4, 0], [4, 1], [4, 2]])  # fmt: skip
    counts = transition_counts(ali, topos, (5, 4, 4))
    assert counts[3, 0].tolist() == [1, 1, 0, 0]  # one self-loop, one forward
    assert counts[3, 2].tolist() == [0, 0, 2, 1]  # two self-loops, then the end
    assert counts[4, 2].tolist() == [0, 0, 0, 2]  # a repeated phone is a new instance
    new = update_topos(topos, counts, floor=0.01, min_count=2)
    assert new[3].transitions[2] == ((2, pytest.approx(2 / 3)), (3, pytest.approx(1 / 3)))
    assert new[3].transitions[0] == ((0, pytest.approx(0.5)), (1, pytest.approx(0.5)))
    assert new[3].transitions[1] == topos[3].transitions[1]  # seen once: kept
    assert new[4].transitions[2][0][1] == pytest.approx(0.01 / 1.01)  # floored


def test_model_whose_posteriors_are_the_reference_recovers_it(data, tri_dir, tmp_path):
    """``align --model``: posteriors peaked on the reference senones give its alignment."""
    ref_dir = align(data / "mfcc", data / "lang", tri_dir, data / "tri1_ali_ref", LENIENT)
    senone_dir = senone_targets_stage(ref_dir, data / "mfcc", data / "tree", data / "senones")
    info = json.loads((senone_dir / "info.json").read_text())
    num_senones = info["num_senones"]
    post_dir = tmp_path / "post"
    post_dir.mkdir()
    reference = {}
    for split in ("train", "dev", "test"):
        for cut in CutSet.from_file(senone_dir / f"synth_cuts_{split}.jsonl.gz"):
            senones = np.rint(cut.load_custom("senones")).astype(np.int64)
            logp = np.full((len(senones), num_senones), np.log(1e-6 / (num_senones - 1)))
            logp[np.arange(len(senones)), senones] = np.log1p(-1e-6)
            np.save(post_dir / f"{cut.id}.npy", logp.astype(np.float32))
        for cut in CutSet.from_file(ref_dir / f"synth_cuts_{split}.jsonl.gz"):
            reference[cut.id] = cut.load_custom(ALI_KEY)
    spec = tmp_path / "teacher.yaml"
    spec.write_text(
        f"posteriors: {post_dir}\ndomain: log\ntree_id: {info['tree_id']}\n"
        f"num_senones: {num_senones}\nframe_shift: 0.01\n"
    )
    out = align(data / "mfcc", data / "lang", senone_dir, data / "model_ali", LENIENT,
                model_spec=str(spec))  # fmt: skip
    tree = TriModel.load(tri_dir / "final.mdl").tree
    frames = same_senone = same_phone = 0
    for split in ("train", "dev", "test"):
        assert (out / f"failed_{split}.txt").read_text() == ""
        for cut in CutSet.from_file(out / f"synth_cuts_{split}.jsonl.gz"):
            got, want = cut.load_custom(ALI_KEY), reference[cut.id]
            frames += len(got)
            same_phone += int((got[:, 0] == want[:, 0]).sum())
            same_senone += int(
                (tree.senones_for_alignment(got) == tree.senones_for_alignment(want)).sum()
            )
    assert same_senone == frames and same_phone == frames
    summary = _boundaries(out)
    assert summary["dev"]["word_boundaries"] == _boundaries(ref_dir)["dev"]["word_boundaries"]


def test_senone_targets_leave_out_only_the_listed_failures(data, tri_dir, tmp_path):
    """A cut without an alignment is left out only when the align stage listed it."""
    import shutil

    from asr_kd.errors import BadInputError

    ref_dir = align(data / "mfcc", data / "lang", tri_dir, data / "tri1_ali_ref", LENIENT)
    ali = tmp_path / "ali"
    shutil.copytree(ref_dir, ali)
    (ali / ".outputs.json").unlink(missing_ok=True)  # an alignment from before the record
    manifest = ali / "synth_cuts_train.jsonl.gz"
    cuts = CutSet.from_file(manifest).to_eager()
    gone = cuts[0].id
    cuts.filter(lambda c: c.id != gone).to_file(manifest)
    with pytest.raises(BadInputError, match=rf"cut {gone} of the features has no alignment"):
        senone_targets_stage(ali, data / "mfcc", data / "tree", tmp_path / "a")
    assert not (tmp_path / "a").exists()
    with open(ali / "failed_train.txt", "a") as f:
        f.write(f"{gone} no path through the graph\n")
    out = senone_targets_stage(ali, data / "mfcc", data / "tree", tmp_path / "b")
    assert (out / "left_out_train.txt").read_text() == f"{gone} no path through the graph\n"
    info = json.loads((out / "info.json").read_text())
    assert info["train"]["left_out"] == 1 and info["train"]["cuts"] == len(cuts) - 1
