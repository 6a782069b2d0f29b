"""Build a phonetic decision tree from tree statistics, as Kaldi's ``build-tree`` does.

1. Roots: one per (centre phone, HMM state) or one per centre phone, with the state
   as a question (``TreeConfig.share_roots``). Each silence phone state is one leaf
   that is never split (silence is context-independent).
2. Greedy splitting: a priority queue holds the best split of every leaf, the
   question (about the left phone, the right phone, or the state when roots are
   shared) with the largest gain in log-likelihood under one diagonal Gaussian per
   leaf, both children holding at least ``min_occupancy`` frames. The best split of
   all is made until there are ``num_leaves`` leaves or no split gains more than
   ``min_gain``.
3. Clustering (Kaldi's ``ClusterEventMapRestrictedByMap``): leaves of the same root
   whose merging costs less than ``cluster_thresh`` (by default the smallest gain of
   any split made) become one senone, bottom-up, cheapest first.
4. Senones are numbered 0..S-1 in a preorder walk of the roots in (phone, state)
   order, "yes" before "no", so the same statistics always give the same tree.
"""

from __future__ import annotations

import heapq
import logging
import time
from dataclasses import dataclass

import numpy as np

from asr_kd.errors import BadInputError, ConfigError
from asr_kd.lang.phone_classes import arpabet_phone_sets
from asr_kd.tree.context_tree import ContextTree
from asr_kd.tree.questions import Question, auto_phone_sets, make_questions, state_sets
from asr_kd.tree.stats import CENTRE, LEFT, RIGHT, STATE, TreeStats, gauss_objf

logger = logging.getLogger(__name__)

_COLUMN = {"left": LEFT, "right": RIGHT, "state": STATE}
_ABSOLUTE_VAR_FLOOR = 1e-8


@dataclass(frozen=True)
class TreeConfig:
    """How to build the tree.

    Attributes:
        num_leaves: stop splitting at this many leaves (Kaldi's ``--max-leaves``);
            clustering may then merge some, so ``num_senones <= num_leaves``.
        min_occupancy: frames each child of a split must hold at least.
        questions: ``"arpabet"`` (phonetic classes) or ``"auto"`` (phone sets
            clustered from the statistics, as Kaldi's ``cluster-phones``).
        share_roots: ``"per_phone_state"`` (default: every HMM state of every phone
            keeps at least its own senone, so the tree refines the monophone system
            the alignments came from, and the few frames of a rare phone are never
            pooled across its states) or ``"per_phone"`` (Kaldi's default: one root
            per phone, the state is one more question, so states of rare phones may
            share a senone).
        silence_phones: context-independent phones: each of their states is one leaf.
        min_gain: a split must gain more than this (Kaldi's ``--thresh``).
        var_floor: variance floor as a fraction of the global variance per dimension.
        cluster_thresh: merge leaves of one root when merging costs less than this;
            negative: the smallest gain of any split made (Kaldi's default); 0: never.
    """

    num_leaves: int = 500
    min_occupancy: float = 100.0
    questions: str = "arpabet"
    share_roots: str = "per_phone_state"
    silence_phones: tuple[int, ...] = (1, 2)
    min_gain: float = 0.0
    var_floor: float = 0.01
    cluster_thresh: float = -1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "silence_phones", tuple(int(p) for p in self.silence_phones))
        if self.num_leaves < 1:
            raise ConfigError(f"tree num_leaves must be >= 1, got {self.num_leaves}")
        if self.min_occupancy < 0 or self.min_gain < 0:
            raise ConfigError("tree min_occupancy and min_gain must be >= 0")
        if self.questions not in ("arpabet", "auto"):
            raise ConfigError(f"tree questions must be 'arpabet' or 'auto', not {self.questions!r}")
        if self.share_roots not in ("per_phone_state", "per_phone"):
            raise ConfigError(
                f"tree share_roots must be 'per_phone_state' or 'per_phone', "
                f"not {self.share_roots!r}"
            )
        if not self.var_floor > 0:
            raise ConfigError(f"tree var_floor must be > 0, got {self.var_floor}")


def build_tree(
    stats: TreeStats, phones: dict[str, int], config: TreeConfig | None = None
) -> ContextTree:
    """Build a decision tree that maps tri-phone HMM states to senones.

    Args:
        stats: statistics from :func:`~asr_kd.tree.accumulate_stats`.
        phones: phone symbol -> id, as in ``data/lang/phones.txt``.
        config: how to build it (defaults: :class:`TreeConfig`).

    Returns:
        The tree; ``tree.num_senones`` is the number of senones.

    Raises:
        BadInputError: empty statistics, or phones missing from ``phones``.
    """
    config = config or TreeConfig()
    start = time.perf_counter()
    _check_inputs(stats, phones)
    floor = variance_floor(stats, config.var_floor)
    builder = _Builder(stats, _questions(stats, phones, config, floor), config, floor)
    builder.split()
    groups = builder.cluster()
    tree = builder.finish(phones, groups)
    logger.info(
        "tree: %d senones (%d leaves before clustering) from %.0f frames; "
        "splits gained %.3f log-likelihood per frame; %.2f s",
        tree.num_senones,
        builder.num_leaves,
        stats.num_frames,
        builder.total_gain / max(stats.num_frames, 1.0),
        time.perf_counter() - start,
    )
    return tree


def variance_floor(stats: TreeStats, scale: float) -> np.ndarray:
    """``[D]`` floor: ``scale`` times the global variance of each dimension."""
    n = max(stats.num_frames, 1.0)
    mean = stats.total.sum(0) / n
    var = stats.sumsq.sum(0) / n - mean * mean
    return np.maximum(scale * var, _ABSOLUTE_VAR_FLOOR)


def _check_inputs(stats: TreeStats, phones: dict[str, int]) -> None:
    if len(stats) == 0 or stats.num_frames <= 0:
        raise BadInputError("tree statistics are empty: the alignments held no frames")
    known = set(phones.values())
    used = np.unique(stats.contexts[:, [LEFT, CENTRE, RIGHT]])
    missing = sorted(int(p) for p in used if int(p) not in known and p != 0)
    if missing:
        raise BadInputError(
            f"tree statistics use phone ids {missing[:10]} that phones.txt does not have; "
            "the alignments and data/lang must come from the same 'lang' stage"
        )


def _questions(
    stats: TreeStats, phones: dict[str, int], config: TreeConfig, floor: np.ndarray
) -> list[Question]:
    if config.questions == "auto":
        phone_sets = auto_phone_sets(stats, phones, config.silence_phones, floor)
    else:
        phone_sets = arpabet_phone_sets(phones, config.silence_phones)
    states = []
    if config.share_roots == "per_phone":
        states = state_sets([int(s) for s in np.unique(stats.contexts[:, STATE])])
    return make_questions(phone_sets, states)


class _Builder:
    """The growing tree: node statistics, the split queue, then clustering."""

    def __init__(
        self, stats: TreeStats, questions: list[Question], config: TreeConfig, floor: np.ndarray
    ) -> None:
        self.ctx = stats.contexts
        self.data = np.concatenate([stats.count[:, None], stats.total, stats.sumsq], axis=1)
        self.dim = stats.dim
        self.questions = questions
        self.config = config
        self.floor = floor
        self.masks = self._question_masks()
        self.rows: list[np.ndarray] = []
        self.sums: list[np.ndarray] = []
        self.objf: list[float] = []
        self.split_of: dict[int, tuple[int, int, int, float]] = {}  # node -> q, yes, no, gain
        self.roots: dict[tuple[int, int], int] = {}
        self.splittable: list[int] = []
        self.total_gain = 0.0
        self.smallest_gain = np.inf
        self._make_roots()

    def _question_masks(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        width = 1 + max([int(self.ctx.max())] + [max(q.values) for q in self.questions])
        masks = {}
        for key in ("left", "right", "state"):
            ids = [i for i, q in enumerate(self.questions) if q.key == key]
            if ids:
                mask = np.zeros((len(ids), width))
                for row, i in enumerate(ids):
                    mask[row, list(self.questions[i].values)] = 1.0
                masks[key] = (np.array(ids), mask)
        return masks

    def _new_node(self, rows: np.ndarray) -> int:
        sums = self.data[rows].sum(0)
        self.rows.append(rows)
        self.sums.append(sums)
        self.objf.append(float(self._objf(sums[None])[0]))
        return len(self.rows) - 1

    def _objf(self, sums: np.ndarray) -> np.ndarray:
        d = self.dim
        return gauss_objf(sums[:, 0], sums[:, 1 : 1 + d], sums[:, 1 + d :], self.floor)

    def _make_roots(self) -> None:
        centre, state = self.ctx[:, CENTRE], self.ctx[:, STATE]
        per_phone = self.config.share_roots == "per_phone"
        for c in np.unique(centre):
            silence = int(c) in self.config.silence_phones
            if per_phone and not silence:
                rows = np.flatnonzero(centre == c)
                node = self._new_node(rows)
                self.splittable.append(node)
                for s in np.unique(state[rows]):
                    self.roots[(int(c), int(s))] = node
                continue
            for s in np.unique(state[centre == c]):
                node = self._new_node(np.flatnonzero((centre == c) & (state == s)))
                self.roots[(int(c), int(s))] = node
                if not silence:
                    self.splittable.append(node)

    @property
    def num_leaves(self) -> int:
        return len(self.rows) - len(self.split_of)

    def best_split(self, node: int) -> tuple[float, int] | None:
        """(gain, question) of the best allowed split of a leaf, or None."""
        rows = self.rows[node]
        data = self.data[rows]
        min_count = max(self.config.min_occupancy, 1e-9)
        best: tuple[float, int] | None = None
        for key, (ids, mask) in self.masks.items():
            values = self.ctx[rows, _COLUMN[key]]
            order = np.argsort(values, kind="stable")
            sorted_values = values[order]
            starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
            if len(starts) < 2:
                continue  # every context has the same value for this key
            by_value = np.add.reduceat(data[order], starts, axis=0)
            m = mask[:, sorted_values[starts]]
            yes, no = m @ by_value, (1.0 - m) @ by_value
            ok = (yes[:, 0] >= min_count) & (no[:, 0] >= min_count)
            if not ok.any():
                continue
            gain = np.where(ok, self._objf(yes) + self._objf(no) - self.objf[node], -np.inf)
            j = int(np.argmax(gain))
            if best is None or gain[j] > best[0]:
                best = (float(gain[j]), int(ids[j]))
        return best

    def split(self) -> None:
        """Greedy best-first splitting until ``num_leaves`` or no gain > ``min_gain``."""
        if self.num_leaves > self.config.num_leaves:
            logger.warning(
                "tree: %d roots already exceed num_leaves=%d; no context splits made",
                self.num_leaves,
                self.config.num_leaves,
            )
        queue: list[tuple[float, int, int]] = []
        for node in self.splittable:
            self._push(queue, node)
        while queue and self.num_leaves < self.config.num_leaves:
            neg_gain, node, q = heapq.heappop(queue)
            values = self.ctx[self.rows[node], _COLUMN[self.questions[q].key]]
            answer = np.isin(values, self.questions[q].values)
            yes = self._new_node(self.rows[node][answer])
            no = self._new_node(self.rows[node][~answer])
            self.split_of[node] = (q, yes, no, -neg_gain)
            self.total_gain -= neg_gain
            self.smallest_gain = min(self.smallest_gain, -neg_gain)
            self._push(queue, yes)
            self._push(queue, no)

    def _push(self, queue: list[tuple[float, int, int]], node: int) -> None:
        best = self.best_split(node)
        if best is not None and best[0] > self.config.min_gain:
            heapq.heappush(queue, (-best[0], node, best[1]))

    def leaves_under(self, node: int) -> list[int]:
        """Leaves below ``node`` in preorder, "yes" first."""
        if node not in self.split_of:
            return [node]
        _, yes, no, _ = self.split_of[node]
        return self.leaves_under(yes) + self.leaves_under(no)

    def cluster(self) -> dict[int, int]:
        """Leaf -> representative leaf after merging cheap leaves within each root."""
        thresh = self.config.cluster_thresh
        if thresh < 0:
            thresh = self.smallest_gain if self.split_of else 0.0
        group: dict[int, int] = {}
        merged = 0
        for root in dict.fromkeys(self.roots.values()):
            leaves = self.leaves_under(root)
            labels = list(range(len(leaves)))
            if thresh > 0 and len(leaves) > 1:
                labels = _cluster_bottom_up(
                    np.array([self.sums[n] for n in leaves]), thresh, self._objf
                )
            merged += len(leaves) - len(set(labels))
            group |= {leaf: leaves[label] for leaf, label in zip(leaves, labels, strict=True)}
        if merged:
            logger.info("tree: clustering (threshold %.1f) merged %d leaves", thresh, merged)
        return group

    def finish(self, phones: dict[str, int], group: dict[int, int]) -> ContextTree:
        """Number nodes in preorder and senones in order of first appearance."""
        order: list[int] = []
        for root in dict.fromkeys(self.roots[k] for k in sorted(self.roots)):
            stack = [root]
            while stack:
                node = stack.pop()
                order.append(node)
                if node in self.split_of:
                    _, yes, no, _ = self.split_of[node]
                    stack += [no, yes]
        new_id = {old: new for new, old in enumerate(order)}
        n = len(order)
        question, yes, no = np.full(n, -1), np.full(n, -1), np.full(n, -1)
        senone, gain = np.full(n, -1), np.zeros(n)
        count = np.array([self.sums[old][0] for old in order])
        senone_of_group: dict[int, int] = {}
        for new, old in enumerate(order):
            if old in self.split_of:
                q, y, o, g = self.split_of[old]
                question[new], yes[new], no[new], gain[new] = q, new_id[y], new_id[o], g
            else:
                senone[new] = senone_of_group.setdefault(group[old], len(senone_of_group))
        used = sorted({int(q) for q in question if q >= 0})
        remap = {q: i for i, q in enumerate(used)}
        question = np.array([remap.get(int(q), -1) for q in question])
        return ContextTree(
            phones=phones,
            questions=[self.questions[q] for q in used],
            roots={key: new_id[node] for key, node in self.roots.items()},
            question=question,
            yes=yes,
            no=no,
            senone=senone,
            gain=gain,
            count=count,
            info=self._info(),
        )

    def _info(self) -> dict[str, object]:
        config = self.config
        return {
            "num_leaves": config.num_leaves,
            "min_occupancy": config.min_occupancy,
            "questions": config.questions,
            "share_roots": config.share_roots,
            "silence_phones": list(config.silence_phones),
            "min_gain": config.min_gain,
            "var_floor": config.var_floor,
            "cluster_thresh": config.cluster_thresh,
            "num_frames": float(self.data[:, 0].sum()),
            "leaves_before_clustering": self.num_leaves,
            "likelihood_gain": self.total_gain,
        }


def _cluster_bottom_up(sums: np.ndarray, thresh: float, objf) -> list[int]:
    """Merge the cheapest pair while merging costs less than ``thresh``.

    Args:
        sums: ``[k, 1 + 2D]`` statistics (count, sum, sumsq) per item.
        thresh: the largest log-likelihood loss a merge may cost.
        objf: statistics ``[n, 1 + 2D]`` -> ``[n]`` log-likelihoods.

    Returns:
        Per item, the index of the item its cluster is represented by (the smallest).
    """
    k = len(sums)
    sums = sums.copy()
    own = objf(sums)
    cost = np.full((k, k), np.inf)
    for i in range(k - 1):
        cost[i, i + 1 :] = own[i] + own[i + 1 :] - objf(sums[i] + sums[i + 1 :])
    label = np.arange(k)
    while True:
        i, j = np.unravel_index(int(np.argmin(cost)), cost.shape)
        if not cost[i, j] < thresh:
            break
        sums[i] += sums[j]  # i < j: the upper triangle holds every pair
        own[i] = objf(sums[i : i + 1])[0]
        label[label == j] = i
        cost[j, :] = cost[:, j] = np.inf
        alive = np.flatnonzero(label == np.arange(k))
        alive = alive[alive != i]
        if len(alive):
            row = own[i] + own[alive] - objf(sums[i] + sums[alive])
            before, after = alive[alive < i], alive[alive > i]
            cost[before, i] = row[alive < i]
            cost[i, after] = row[alive > i]
    return label.tolist()
