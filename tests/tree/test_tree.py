import json
import math

import numpy as np
import pytest
from tree_synth import ABSENT, DIM, PHONES, PLANTED_SHIFT, VOWELS, T, make_corpus

from asr_kd.errors import BadInputError, ConfigError
from asr_kd.tree import (
    ContextTree,
    TreeConfig,
    UnknownContextError,
    accumulate_stats,
    build_tree,
    frame_contexts,
    log_priors,
    read_priors,
    senone_priors,
    write_priors,
)
from asr_kd.tree.stats import gauss_objf

SIL, AA, B = PHONES["SIL"], PHONES["AA"], PHONES["B"]


@pytest.fixture(scope="module")
def tree(stats):
    return build_tree(stats, PHONES, TreeConfig(num_leaves=150, min_occupancy=50.0))


def _subtree_questions(tree: ContextTree, node: int) -> list:
    out, stack = [], [node]
    while stack:
        n = stack.pop()
        if tree.question[n] >= 0:
            out.append(tree.questions[tree.question[n]])
            stack += [int(tree.yes[n]), int(tree.no[n])]
    return out


def _is_left_vowel(question) -> bool:
    return question is not None and question.key == "left" and set(question.values) == VOWELS


# ---------------------------------------------------------------- statistics


def test_frame_contexts_split_repeated_phones_and_use_0_at_the_edges():
    # SIL(0,1) AA(0,1,2) AA(0,1,1,2) B(0,2)
    ali = np.array(
        [[SIL, 0], [SIL, 1], [AA, 0], [AA, 1], [AA, 2], [AA, 0], [AA, 1], [AA, 1], [AA, 2]]
        + [[B, 0], [B, 2]]
    )
    ctx = frame_contexts(ali)
    left, right = ctx[:, 0].tolist(), ctx[:, 2].tolist()
    assert left == [0, 0, SIL, SIL, SIL, AA, AA, AA, AA, AA, AA]
    assert right == [AA, AA, AA, AA, AA, B, B, B, B, 0, 0]
    assert (ctx[:, 1] == ali[:, 0]).all() and (ctx[:, 3] == ali[:, 1]).all()


def test_stats_are_per_context_gaussian_sums(corpus, stats):
    ali, feats = corpus[0]
    ctx = frame_contexts(ali)
    row = int(np.flatnonzero((stats.contexts == ctx[3]).all(1))[0])
    same = [f[(frame_contexts(a) == ctx[3]).all(1)].astype(np.float64) for a, f in corpus]
    frames = np.concatenate(same)
    assert stats.count[row] == len(frames)
    np.testing.assert_allclose(stats.total[row], frames.sum(0))
    np.testing.assert_allclose(stats.sumsq[row], (frames**2).sum(0))
    assert stats.num_frames == sum(len(a) for a, _ in corpus)
    assert stats.dim == DIM


def test_stats_of_shards_merge_to_the_stats_of_all(corpus, stats, tmp_path):
    merged = accumulate_stats(corpus[250:]).merge(accumulate_stats(corpus[:250]))
    assert (merged.contexts == stats.contexts).all()
    np.testing.assert_allclose(merged.total, stats.total)
    np.testing.assert_allclose(merged.sumsq, stats.sumsq)
    merged.save(tmp_path / "stats.npz")
    again = type(stats).load(tmp_path / "stats.npz")
    assert (again.contexts == merged.contexts).all() and (again.count == merged.count).all()


def test_accumulate_names_the_utterance_with_mismatched_frames(corpus):
    ali, feats = corpus[0]
    with pytest.raises(BadInputError, match="utt7.*frames"):
        accumulate_stats([("utt7", ali, feats[:-1])])
    with pytest.raises(BadInputError, match="phone 0"):
        accumulate_stats([(np.zeros_like(ali), feats)])


def test_objective_is_the_floored_gaussian_log_likelihood():
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, [1.0, 0.01, 3.0], size=(200, 3))
    floor = np.array([0.1, 0.1, 0.1])
    mean, var = x.mean(0), np.maximum(x.var(0), floor)
    direct = -0.5 * (np.log(2 * math.pi * var) + (x - mean) ** 2 / var).sum()
    objf = gauss_objf(np.array(200.0), x.sum(0), (x**2).sum(0), floor)
    assert objf == pytest.approx(direct, rel=1e-9)


# ---------------------------------------------------------------- building


def test_tree_splits_t_on_a_vowel_to_its_left(tree):
    for state in range(3):
        assert _is_left_vowel(tree.root_split(T, state)), tree.root_split(T, state)
    vowel, other = PHONES["IY"], PHONES["S"]
    for state in range(3):
        assert tree.senone(vowel, T, other, state) != tree.senone(other, T, other, state)


def test_shared_roots_ask_the_state_and_still_find_the_vowel_split(stats):
    config = TreeConfig(num_leaves=150, min_occupancy=50.0, share_roots="per_phone")
    tree = build_tree(stats, PHONES, config)
    root = tree.roots[(T, 0)]
    assert tree.roots[(T, 1)] == root == tree.roots[(T, 2)]
    questions = _subtree_questions(tree, root)
    assert any(q.key == "state" for q in questions)
    assert any(_is_left_vowel(q) for q in questions)
    senones = {tree.senone(PHONES["IY"], T, 0, s) for s in range(3)}
    assert len(senones) == 3  # the states of a frequent phone are told apart


def test_leaf_count_and_occupancy_respect_the_config(stats):
    config = TreeConfig(num_leaves=180, min_occupancy=80.0, cluster_thresh=0.0)
    tree = build_tree(stats, PHONES, config)
    assert len(tree.roots) == 38 * 3 + 5 + 3 and tree.num_senones == 180
    inner = np.flatnonzero(tree.question >= 0)
    children = np.concatenate([tree.yes[inner], tree.no[inner]])
    assert tree.count[children].min() >= 80.0
    assert tree.leaf_occupancy().sum() == pytest.approx(stats.num_frames)
    small = build_tree(stats, PHONES, TreeConfig(num_leaves=200, min_occupancy=400.0))
    assert 122 < small.num_senones < 200  # occupancy, not the leaf budget, stopped it


def test_every_split_gains_likelihood_and_clustering_only_merges(stats, tree):
    assert (tree.split_gains() > 0).all()
    assert tree.info["likelihood_gain"] == pytest.approx(tree.split_gains().sum())
    assert tree.info["leaves_before_clustering"] >= tree.num_senones
    assert tree.num_senones <= 150
    unclustered = build_tree(
        stats, PHONES, TreeConfig(num_leaves=150, min_occupancy=50.0, cluster_thresh=0.0)
    )
    assert unclustered.num_senones == tree.info["leaves_before_clustering"]


def test_split_gain_equals_the_likelihood_gain_on_raw_frames(corpus, tree):
    # Recompute the gain of T's first split (state 1) from the frames themselves.
    q = tree.root_split(T, 1)
    yes, no = [], []
    for ali, feats in corpus:
        ctx = frame_contexts(ali)
        here = (ctx[:, 1] == T) & (ctx[:, 3] == 1)
        answer = np.isin(ctx[:, 0], q.values)
        yes.append(feats[here & answer])
        no.append(feats[here & ~answer])
    yes, no = np.concatenate(yes).astype(float), np.concatenate(no).astype(float)
    all_frames = np.concatenate([yes, no])
    floor = np.maximum(tree.info["var_floor"] * _global_var(corpus), 1e-8)

    def loglik(x):
        var = np.maximum(x.var(0), floor)
        return -0.5 * (np.log(2 * math.pi * var) + (x - x.mean(0)) ** 2 / var).sum()

    expected = loglik(yes) + loglik(no) - loglik(all_frames)
    assert tree.gain[tree.roots[(T, 1)]] == pytest.approx(expected, rel=1e-6)
    # the planted shift of 3 on every dimension is worth about n * D * log(1 + 9/4) / 2
    assert expected > 0.25 * len(yes) * DIM * math.log(1 + PLANTED_SHIFT**2 / 4)


def _global_var(corpus) -> np.ndarray:
    feats = np.concatenate([f for _, f in corpus]).astype(float)
    return feats.var(0)


def test_silence_states_are_context_independent_leaves(tree):
    seen = set()
    for state in range(5):
        assert tree.root_split(SIL, state) is None
        senones = {tree.senone(left, SIL, right, state) for left in (0, AA, T) for right in (0, B)}
        assert len(senones) == 1
        seen |= senones
    assert len(seen) == 5


def test_building_is_deterministic(stats, tree):
    again = build_tree(stats, PHONES, TreeConfig(num_leaves=150, min_occupancy=50.0))
    assert again.to_json() == tree.to_json()


def test_auto_questions_give_a_working_tree(stats):
    tree = build_tree(
        stats, PHONES, TreeConfig(num_leaves=150, min_occupancy=50.0, questions="auto")
    )
    assert 100 < tree.num_senones <= 150
    assert all(
        q.name.startswith(("auto", "state", "boundary")) or len(q.values) == 1
        for q in tree.questions
    )
    # vowels share an offset in the synthetic data, so clustering finds them as a set
    assert _is_left_vowel(tree.root_split(T, 1))
    assert 0 <= tree.senone(PHONES["IY"], T, PHONES["#0"], 2) < tree.num_senones


@pytest.mark.parametrize(
    "bad",
    [
        {"num_leaves": 0},
        {"min_occupancy": -1.0},
        {"questions": "htk"},
        {"share_roots": "global"},
        {"var_floor": 0.0},
    ],
)
def test_bad_config_is_rejected(bad):
    with pytest.raises(ConfigError):
        TreeConfig(**bad)


def test_stats_with_phones_outside_phones_txt_are_rejected(stats):
    phones = {k: v for k, v in PHONES.items() if k != "AA"}
    with pytest.raises(BadInputError, match="phones.txt"):
        build_tree(stats, phones, TreeConfig(num_leaves=50))


# ---------------------------------------------------------------- lookups and files


def _all_contexts(tree: ContextTree) -> np.ndarray:
    sides = np.array(sorted(set(PHONES.values()) | {60}))  # 60: no such phone
    keys = np.array(list(tree.roots))
    grid = np.stack(np.meshgrid(sides, np.arange(len(keys)), sides, indexing="ij"), -1)
    grid = grid.reshape(-1, 3)
    return np.column_stack([grid[:, 0], keys[grid[:, 1], 0], grid[:, 2], keys[grid[:, 1], 1]])


def test_save_load_gives_the_same_tree_and_the_same_file(tree, tmp_path):
    tree.save(tmp_path / "tree.json")
    loaded = ContextTree.load(tmp_path / "tree.json")
    contexts = _all_contexts(tree)
    assert (loaded.senones(contexts) == tree.senones(contexts)).all()
    assert loaded.num_senones == tree.num_senones
    loaded.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == (tmp_path / "tree.json").read_text()
    doc = json.loads((tmp_path / "tree.json").read_text())
    assert (
        doc["num_senones"] == tree.num_senones and doc["info"]["share_roots"] == "per_phone_state"
    )
    np.testing.assert_array_equal(loaded.leaf_occupancy(), tree.leaf_occupancy())


def test_load_rejects_a_damaged_file(tree, tmp_path):
    doc = json.loads(tree.to_json())
    inner = next(n for n in doc["nodes"] if "question" in n)
    inner["yes"] = inner["id"]  # a cycle
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(BadInputError, match="bad.json"):
        ContextTree.load(tmp_path / "bad.json")
    with pytest.raises(BadInputError, match="missing.json"):
        ContextTree.load(tmp_path / "missing.json")


def test_unseen_contexts_get_valid_senones(tree, stats):
    seen = {tuple(c) for c in stats.contexts.tolist()}
    contexts = _all_contexts(tree)
    unseen = np.array([c for c in contexts.tolist() if tuple(c) not in seen])
    assert len(unseen) > len(contexts) // 2
    senones = tree.senones(unseen)
    assert senones.min() >= 0 and senones.max() < tree.num_senones
    # an unseen triphone follows the questions: a vowel on the left of T still matters
    assert tree.senone(PHONES["OY"], T, ABSENT, 1) == tree.senone(PHONES["AA"], T, ABSENT, 1)
    assert 0 <= tree.senone(60, AA, PHONES["#0"], 0) < tree.num_senones


def test_unseen_centre_phone_or_state_raises_naming_it(tree):
    with pytest.raises(UnknownContextError, match=r"ZH"):
        tree.senone(AA, ABSENT, AA, 0)
    with pytest.raises(ValueError, match=r"state 3.*states \[0, 1, 2\]"):
        tree.senone(AA, AA, AA, 3)
    with pytest.raises(ValueError):
        tree.senones_for_alignment(np.array([[AA, 0], [ABSENT, 0]]))


def test_unseen_states_share_the_nearest_seen_states_root(tree, tmp_path):
    # AA has states 0-2 in the data; a 5-state topology adds 3 and 4
    filled, added = tree.with_all_states({AA: 5, T: 3, ABSENT: 3})
    assert added == [(AA, 3), (AA, 4)]  # ABSENT has no state at all: it stays unknown
    for left, right in ((0, T), (T, AA), (SIL, 0)):
        assert filled.senone(left, AA, right, 3) == filled.senone(left, AA, right, 2)
        assert filled.senone(left, AA, right, 4) == tree.senone(left, AA, right, 2)
        assert filled.senone(left, AA, right, 1) == tree.senone(left, AA, right, 1)
    assert filled.num_senones == tree.num_senones
    with pytest.raises(UnknownContextError):
        filled.senone(AA, ABSENT, AA, 0)
    filled.save(tmp_path / "tree.json")
    assert ContextTree.load(tmp_path / "tree.json").senone(0, AA, T, 4) == filled.senone(
        0, AA, T, 4
    )
    assert tree.with_all_states({AA: 3}) == (tree, [])


def test_senones_for_alignment_equals_per_frame_lookups(tree, corpus):
    ali = np.array([[AA, 0], [AA, 1], [AA, 2], [AA, 0], [AA, 2], [T, 0], [T, 1], [T, 2], [SIL, 0]])
    ali = np.concatenate([ali, corpus[3][0]])
    ctx = frame_contexts(ali)
    expected = [tree.senone(*map(int, c)) for c in ctx]
    got = tree.senones_for_alignment(ali)
    assert got.dtype == np.int32 and got.tolist() == expected
    # the second AA has AA on its left: same senone as any AA after AA, not after <eps>
    assert got[3] == tree.senone(AA, AA, T, 0)
    assert got[0] == tree.senone(0, AA, AA, 0)


def test_priors_count_every_frame(tree, corpus, tmp_path):
    targets = [tree.senones_for_alignment(ali) for ali, _ in corpus]
    counts = senone_priors(targets, tree.num_senones)
    assert counts.dtype == np.float64 and counts.sum() == sum(len(a) for a, _ in corpus)
    np.testing.assert_allclose(counts, tree.leaf_occupancy())
    write_priors(tmp_path / "priors.json", counts)
    np.testing.assert_array_equal(read_priors(tmp_path / "priors.json"), counts)
    assert np.exp(log_priors(counts)).sum() == pytest.approx(1.0)
    with pytest.raises(BadInputError, match="another tree"):
        senone_priors([np.array([tree.num_senones])], tree.num_senones)


def test_a_corpus_without_frames_is_an_error():
    with pytest.raises(BadInputError, match="no aligned frames"):
        accumulate_stats([(np.zeros((0, 2), np.int32), np.zeros((0, DIM)))])


def test_different_corpus_sizes_still_split_t(tmp_path):
    stats = accumulate_stats(make_corpus(150, seed=5))
    tree = build_tree(stats, PHONES, TreeConfig(num_leaves=160, min_occupancy=30.0))
    assert _is_left_vowel(tree.root_split(T, 1))


def test_a_tree_without_splits_maps_every_state_and_round_trips(tmp_path):
    stats = accumulate_stats(make_corpus(30, seed=2))
    tree = build_tree(stats, PHONES, TreeConfig(num_leaves=1))
    assert tree.num_senones == len(tree.roots) and not tree.questions
    tree.save(tmp_path / "tree.json")
    loaded = ContextTree.load(tmp_path / "tree.json")
    assert loaded.senone(T, AA, B, 2) == tree.senone(0, AA, 0, 2)
    assert loaded.senones_for_alignment(np.zeros((0, 2), np.int32)).shape == (0,)


@pytest.mark.parametrize(
    "counts, message",
    [
        ([3.0, -5.0, 0.0], r"1 counts are negative or not finite \(senone 1: -5.0\)"),
        ([3.0, float("nan")], "negative or not finite"),
        ([0.0, 0.0], "the counts sum to 0"),
    ],
)
def test_priors_with_impossible_counts_are_refused(tmp_path, counts, message):
    from asr_kd.tree.priors import write_priors

    write_priors(tmp_path / "priors.json", np.array(counts))
    with pytest.raises(BadInputError, match=message) as e:
        read_priors(tmp_path / "priors.json")
    assert "priors.json" in str(e.value) and "'senone-targets'" in str(e.value)
