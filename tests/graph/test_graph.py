"""HCLG for the tri-phone models: built tiny, decoded with kaldi-decoder."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from types import SimpleNamespace

import kaldi_decoder
import kaldifst
import numpy as np
import pytest
from click.testing import CliRunner

from asr_kd.cli.graph import make_graph as make_graph_cmd
from asr_kd.errors import AsrKdError, BadInputError, MissingInputError
from asr_kd.graph import GraphConfig, build_h, load_graph, make_graph, parse_topology
from asr_kd.graph.fst_ops import (
    Arcs,
    add_self_loops,
    make_preceding_labels_same,
    read_arcs,
    remove_input_symbols,
    to_fst,
)
from asr_kd.graph.h import classify_windows
from asr_kd.lang import Lang, prepare_lang, train_lm
from asr_kd.stage import stage_output
from asr_kd.tree import ContextTree, TreeConfig, accumulate_stats, build_tree
from asr_kd.tree.context_tree import tree_id as targets_tree_id

SUBJECTS = ["THE CAT", "A CAT", "THE DOG", "A MAN"]
VERBS = ["SAT ON", "RAN TO", "SAW"]
OBJECTS = ["THE MAT", "A HAT", "THE DOG", "THE CAT"]
TEST_SENTENCES = ["THE CAT SAT ON THE MAT", "A MAN SAW THE DOG", "THE DOG RAN TO A HAT"]


def lm_sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}" for _ in range(n)]


def phone_sequence(lang: Lang, words: list[str], rng: np.random.Generator, sil_prob: float):
    """SIL, the words' pronunciations (drawn at random) with optional SIL between them, SIL."""
    sil = lang.optional_silence
    seq = [sil]
    for word in words:
        prons = lang.lexicon[word]
        seq += [lang.phones[p] for p in prons[int(rng.integers(len(prons)))]]
        if rng.random() < sil_prob:
            seq.append(sil)
    return seq if seq[-1] == sil else [*seq, sil]


def num_states(lang: Lang, phone: int) -> int:
    return 5 if phone in lang.silence_phones else 3


def synthetic_tree(lang: Lang, sentences: list[str], exclude: str | None = None) -> ContextTree:
    """A tree from Gaussian features around a mean per (phone, state), left phone shifting it.

    Sentences with a word whose pronunciation uses the phone ``exclude`` are left out, so
    the tree has no root for that phone. Utterances end with SPN, so <UNK> is covered.
    """
    rng = np.random.default_rng(0)
    dim = 6
    means = rng.normal(0.0, 2.0, size=(max(lang.phones.values()) + 1, 5, dim))
    utterances = []
    for sentence in sentences:
        seq = phone_sequence(lang, sentence.split(), rng, 0.3)
        if exclude is not None and lang.phones[exclude] in seq:
            continue
        seq.insert(-1, lang.phones["SPN"])
        ali, feats = [], []
        for i, phone in enumerate(seq):
            left = seq[i - 1] if i else 0
            for state in range(num_states(lang, phone)):
                n = int(rng.integers(1, 4))
                ali += [(phone, state)] * n
                mean = means[phone, state] + 0.5 * means[left, 0]
                feats.append(mean + rng.normal(0.0, 0.5, size=(n, dim)))
        utterances.append((np.array(ali, np.int32), np.concatenate(feats)))
    stats = accumulate_stats(utterances)
    return build_tree(stats, lang.phones, TreeConfig(num_leaves=60, min_occupancy=20.0))


def write_tree_dir(tree: ContextTree, out: Path) -> Path:
    with stage_output(out, "build-tree", {"test": True}) as tmp:
        tree.save(tmp / "tree.json")
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("graph")
    sentences = lm_sentences(300, seed=0)
    (root / "lm.txt").write_text("\n".join(sentences) + "\n")
    lang_dir = prepare_lang([w for s in sentences for w in s.split()], root / "lang")
    lm_dir = train_lm(root / "lm.txt", lang_dir, root / "lm")
    lang = Lang.load(lang_dir)
    tree = synthetic_tree(lang, sentences)
    tree_dir = write_tree_dir(tree, root / "tree")
    graph_dir = make_graph(lang_dir, lm_dir, tree_dir, root / "graph")
    return SimpleNamespace(
        root=root,
        lang=lang,
        lm_dir=lm_dir,
        tree=tree,
        tree_dir=tree_dir,
        graph_dir=graph_dir,
        graph=load_graph(graph_dir),
        sentences=sentences,
    )


def senone_path(lang: Lang, tree: ContextTree, words: list[str], seed: int) -> np.ndarray:
    """Per-frame senones of a sentence: tri-phone contexts, 1-4 frames per HMM state."""
    rng = np.random.default_rng(seed)
    seq = phone_sequence(lang, words, rng, 0.5)
    frames = []
    for i, phone in enumerate(seq):
        left = seq[i - 1] if i else 0
        right = seq[i + 1] if i + 1 < len(seq) else 0
        for state in range(num_states(lang, phone)):
            frames += [tree.senone(left, phone, right, state)] * int(rng.integers(1, 5))
    return np.array(frames)


def decode(graph, senones: np.ndarray, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Best words and per-frame graph labels for scores that favour ``senones``."""
    rng = np.random.default_rng(seed)
    loglikes = rng.normal(-10.0, 1.0, size=(len(senones), graph.num_senones))
    loglikes[np.arange(len(senones)), senones] = 0.0
    decoder = kaldi_decoder.FasterDecoder(graph.fst, kaldi_decoder.FasterDecoderOptions(beam=20))
    decoder.decode(kaldi_decoder.DecodableCtc(graph.label_scores(loglikes)))
    assert decoder.reached_final()
    ok, best = decoder.get_best_path()
    assert ok
    ok, labels, words, _ = kaldifst.get_linear_symbol_sequence(best)
    assert ok
    return [graph.words[w] for w in words], np.array(labels)


# ------------------------------------------------------------------ the graph


def test_graph_directory_holds_the_contract(tiny):
    names = {p.name for p in tiny.graph_dir.iterdir()}
    assert {"HCLG.fst", "words.txt", "labels.json", "info.json", ".done.json"} <= names
    assert (tiny.graph_dir / "words.txt").read_text() == (tiny.lang.dir / "words.txt").read_text()
    labels = json.loads((tiny.graph_dir / "labels.json").read_text())
    info = json.loads((tiny.graph_dir / "info.json").read_text())
    assert labels["num_senones"] == tiny.tree.num_senones == tiny.graph.num_senones
    assert (
        len(labels["label_to_senone"]) == len(labels["label_phone_state"]) == labels["num_labels"]
    )
    assert info["tree_id"] == labels["tree_id"] == tiny.graph.tree_id
    assert info["tree_id"] == targets_tree_id(tiny.tree_dir / "tree.json")
    assert info["states"] == tiny.graph.fst.num_states > 0
    assert set(info["steps"]) == {"LG", "CLG", "Ha", "HCLGa", "HCLG"}
    assert info["config"] == {"self_loop_scale": 0.1, "transition_scale": 1.0}
    assert info["dropped_phones"] == [] and info["unreachable_words"] == []


def test_labels_are_unique_per_phone_state_senone_and_agree_with_the_tree(tiny):
    labels = json.loads((tiny.graph_dir / "labels.json").read_text())
    pairs, senones = labels["label_phone_state"], labels["label_to_senone"]
    triples = [(p, s, n) for (p, s), n in zip(pairs, senones, strict=True)]
    assert len(set(triples)) == len(triples)
    for phone, state, senone in triples:
        assert state in tiny.tree.phone_states[phone]
        assert 0 <= senone < tiny.tree.num_senones


def test_hclg_inputs_are_labels_and_outputs_are_words(tiny):
    arcs = read_arcs(tiny.graph.fst)
    num_labels = len(tiny.graph.label_to_senone)
    assert arcs.ilabel.min() >= 0 and arcs.ilabel.max() <= num_labels  # no disambiguation
    assert set(np.unique(arcs.ilabel[arcs.ilabel > 0])) == set(range(1, num_labels + 1))
    words = set(tiny.graph.words) - {tiny.lang.words[w] for w in ("#0", "<s>", "</s>")}
    assert set(np.unique(arcs.olabel)) <= words
    output = {tiny.graph.words[w] for w in np.unique(arcs.olabel) if w}
    assert output == {w for s in tiny.sentences for w in s.split()}


def test_self_loops_carry_the_topology_probabilities(tiny):
    arcs = read_arcs(tiny.graph.fst)
    loop = (arcs.src == arcs.dst) & (arcs.ilabel > 0)
    assert loop.any() and (arcs.olabel[loop] == 0).all()
    phone = np.array(json.loads((tiny.graph_dir / "labels.json").read_text())["label_phone_state"])
    nonsilence = ~np.isin(phone[arcs.ilabel[loop] - 1, 0], tiny.lang.silence_phones)
    expected = -0.1 * math.log(0.75)
    assert np.allclose(arcs.weight[loop][nonsilence], expected, atol=1e-6)


@pytest.mark.parametrize("seed", range(len(TEST_SENTENCES)))
def test_decoding_a_known_state_sequence_gives_its_words(tiny, seed):
    words = TEST_SENTENCES[seed].split()
    senones = senone_path(tiny.lang, tiny.tree, words, seed)
    hyp, labels = decode(tiny.graph, senones, seed)
    assert hyp == words
    assert len(labels) == len(senones)
    assert (tiny.graph.label_to_senone[labels - 1] == senones).all()


def test_graph_build_is_deterministic(tiny):
    again = make_graph(tiny.lang.dir, tiny.lm_dir, tiny.tree_dir, tiny.root / "graph2")
    for name in ("HCLG.fst", "labels.json"):
        assert (again / name).read_bytes() == (tiny.graph_dir / name).read_bytes()


def test_rerun_skips_and_another_config_is_refused(tiny):
    before = (tiny.graph_dir / "HCLG.fst").stat().st_mtime_ns
    make_graph(tiny.lang.dir, tiny.lm_dir, tiny.tree_dir, tiny.graph_dir)
    assert (tiny.graph_dir / "HCLG.fst").stat().st_mtime_ns == before
    with pytest.raises(AsrKdError, match="another configuration"):
        config = GraphConfig(self_loop_scale=1.0)
        make_graph(tiny.lang.dir, tiny.lm_dir, tiny.tree_dir, tiny.graph_dir, config)


def test_cli_builds_the_graph_with_overrides(tiny):
    out = tiny.root / "graph_cli"
    args = [str(tiny.lang.dir), str(tiny.lm_dir), str(tiny.tree_dir), str(out)]
    result = CliRunner().invoke(make_graph_cmd, [*args, "--set", "self_loop_scale=0.5"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "info.json").read_text())["config"]["self_loop_scale"] == 0.5


# ------------------------------------------------------------------ refusals


def test_load_graph_names_the_stage_when_missing(tmp_path):
    with pytest.raises(MissingInputError, match="make-graph"):
        load_graph(tmp_path / "nothing")


def test_labels_json_shorter_than_the_graph_is_refused(tiny, tmp_path):
    """A labels.json cut short would let the decoder read past its score matrix."""
    import shutil

    copy = tmp_path / "graph"
    shutil.copytree(tiny.graph_dir, copy)
    (copy / ".outputs.json").unlink(missing_ok=True)  # as a graph from before the record
    labels = json.loads((copy / "labels.json").read_text())
    labels["label_to_senone"] = labels["label_to_senone"][:-5]
    (copy / "labels.json").write_text(json.dumps(labels))
    n = labels["num_labels"]
    with pytest.raises(BadInputError, match=rf"maps {n - 5} labels, but the graph has {n}"):
        load_graph(copy)


def test_graph_from_another_lang_or_tree_is_refused(tiny):
    other = prepare_lang(["A", "CAT", "ON", "THE", "MAT", "BIRD"], tiny.root / "other_lang")
    tiny.graph.check(lang_dir=tiny.lang.dir, tree_id=tiny.graph.tree_id, num_senones=None)
    with pytest.raises(BadInputError, match="another lang directory"):
        tiny.graph.check(lang_dir=other)
    with pytest.raises(BadInputError, match="another lang directory"):
        load_graph(tiny.graph_dir, lang_dir=other)
    with pytest.raises(BadInputError, match="tree"):
        tiny.graph.check(tree_id="0123456789abcdef")
    with pytest.raises(BadInputError, match="senones"):
        tiny.graph.check(num_senones=tiny.graph.num_senones + 1)
    with pytest.raises(ValueError, match="senone scores"):
        tiny.graph.label_scores(np.zeros((3, tiny.graph.num_senones + 1)))


def test_lm_of_another_lang_is_refused(tiny):
    other_lang = prepare_lang(tiny.lang.lexicon, tiny.root / "lang_sil", sil_prob=0.2)
    other_lm = train_lm(tiny.root / "lm.txt", other_lang, tiny.root / "lm_other")
    with pytest.raises(BadInputError, match="another lang directory"):
        make_graph(tiny.lang.dir, other_lm, tiny.tree_dir, tiny.root / "graph_bad")
    assert not (tiny.root / "graph_bad").exists()


def test_phones_without_senones_drop_their_words(tiny):
    tree = synthetic_tree(tiny.lang, tiny.sentences, exclude="HH")  # HH: only in HAT
    assert tiny.lang.phones["HH"] not in tree.phone_states
    tree_dir = write_tree_dir(tree, tiny.root / "tree_no_hh")
    graph_dir = make_graph(tiny.lang.dir, tiny.lm_dir, tree_dir, tiny.root / "graph_no_hh")
    info = json.loads((graph_dir / "info.json").read_text())
    assert info["dropped_phones"] == ["HH"] and info["unreachable_words"] == ["HAT"]
    graph = load_graph(graph_dir)
    assert tiny.lang.words["HAT"] not in set(read_arcs(graph.fst).olabel.tolist())
    words = TEST_SENTENCES[0].split()
    assert decode(graph, senone_path(tiny.lang, tree, words, 0))[0] == words


# ------------------------------------------------------------------ pieces


def test_topology_of_the_lang(tiny):
    topos = parse_topology(tiny.lang.topo_text)
    cat = topos[tiny.lang.phones["K"]]
    assert cat.num_emitting == 3 and cat.final == 3 and cat.self_loop(1) == 0.75
    sil = topos[tiny.lang.optional_silence]
    assert sil.num_emitting == 5 and sil.self_loop(0) == 0.25
    with pytest.raises(BadInputError):
        parse_topology("<Topology> </Topology>")


def test_h_has_a_path_per_window_and_loops_for_disambiguation(tiny):
    phones, tree = tiny.lang.phones, tiny.tree
    k, ae, t = phones["K"], phones["AE"], phones["T"]
    ilabels = [[], [0], [0, k, ae], [-phones["#1"]], [k, ae, t], [ae, t, 0]]
    assert classify_windows(ilabels, tiny.lang.disambig_phones) == ([2, 4, 5], [1, 3])
    topos = parse_topology(tiny.lang.topo_text)
    H = build_h(ilabels, tree, topos, tiny.lang.disambig_phones)
    n = H.labels.num_labels
    assert H.num_windows == 3 and H.disambig.tolist() == [n + 1, n + 2]
    arcs = read_arcs(H.fst)
    # each window: 3 arcs, the first with the window as output; 2 disambiguation loops
    assert sorted(arcs.olabel[arcs.olabel > 0].tolist()) == [1, 2, 3, 4, 5]
    loops = (arcs.src == 0) & (arcs.dst == 0)
    assert sorted(arcs.ilabel[loops].tolist()) == [n + 1, n + 2]
    window = arcs.ilabel[arcs.olabel == 4][0] - 1
    assert H.labels.phone[window] == ae and H.labels.state[window] == 0
    assert H.labels.senone[window] == tree.senone(k, ae, t, 0)


def small_arcs() -> Arcs:
    """0 -1-> 1, 0 -2-> 1, 1 -3-> 2 (final), 2 -1-> 0: rows of (src, ilabel, olabel, dst)."""
    rows = np.array([[0, 1, 1, 1], [0, 2, 0, 1], [1, 3, 0, 2], [2, 1, 0, 0]])
    return Arcs(
        start=0,
        final=np.array([np.inf, np.inf, 0.5], np.float32),
        src=rows[:, 0].astype(np.int32),
        ilabel=rows[:, 1].astype(np.int32),
        olabel=rows[:, 2].astype(np.int32),
        weight=np.array([0.25, 1.5, 0.0, 2.0], np.float32),
        dst=rows[:, 3].astype(np.int32),
    )


def test_arc_arrays_round_trip_through_openfst_exactly():
    arcs = small_arcs()
    arcs.weight[0] = np.float32(1 / 3)
    fst = to_fst(arcs)
    seen = []
    for s in range(fst.num_states):
        it = kaldifst.ArcIterator(fst, s)
        while not it.done:
            a = it.value
            seen.append((s, a.ilabel, a.olabel, np.float32(a.weight.value), a.nextstate))
            it.next()
    expected = list(zip(*(x.tolist() for x in (arcs.src, arcs.ilabel, arcs.olabel)),
                        arcs.weight, arcs.dst.tolist(), strict=True))  # fmt: skip
    assert seen == expected
    back = read_arcs(fst)
    for name in ("src", "ilabel", "olabel", "weight", "dst", "final"):
        assert np.array_equal(getattr(back, name), getattr(arcs, name)), name
    assert remove_input_symbols(back, np.array([2, 3])) == 2
    assert back.ilabel.tolist() == [1, 0, 0, 1]


def test_preceding_labels_are_made_the_same_by_splitting_states():
    out, label_in = make_preceding_labels_same(small_arcs())
    # State 0 (the start, so entered by epsilon) is also entered by label 1: that arc
    # moves to new state 3, which has an epsilon arc to 0. State 1 is entered by labels 1
    # and 2: each moves to a new state (4, 5) with an epsilon arc to 1.
    assert out.num_states == 6
    for s in range(out.num_states):
        assert len(set(out.ilabel[out.dst == s].tolist())) <= 1
    assert label_in.tolist() == [0, 0, 3, 1, 1, 2]
    assert out.dst.tolist() == [4, 5, 2, 3, 0, 1, 1]
    assert out.ilabel.tolist() == [1, 2, 3, 1, 0, 0, 0]


def test_self_loops_follow_each_labelled_arc():
    loop_prob = np.array([0.0, 0.75, 0.5, 0.0])
    out = add_self_loops(small_arcs(), loop_prob, self_loop_scale=0.1)
    loops = out.src == out.dst
    pairs = sorted(zip(out.src[loops].tolist(), out.ilabel[loops].tolist(), strict=True))
    assert pairs == [(3, 1), (4, 1), (5, 2)]
    assert np.allclose(out.weight[loops], -0.1 * np.log([0.75, 0.75, 0.5]))
    leaving = [out.weight[(out.src == s) & ~loops] for s in (3, 4, 5)]
    assert np.allclose(np.concatenate(leaving), -0.1 * np.log([0.25, 0.25, 0.5]))
    assert out.final[2] == np.float32(0.5)  # entered by label 3 (no self-loop): unchanged
    assert out.weight[out.src == 1].tolist() == [0.0]  # entered by epsilon: unchanged
