"""Word lattices as arrays, and their rescoring for the LM-weight/WIP sweep.

The back-ends' lattices keep unscaled acoustic costs (they divide the search's
acoustic scale back out, as Kaldi's ``latgen`` does). :meth:`Lattice.best_paths` weighs
them by ``1 / lm_weight`` and adds ``word_ins_penalty`` per word: Kaldi's
``lattice-scale --inv-acoustic-scale=LMWT | lattice-add-penalty --word-ins-penalty=WIP
| lattice-best-path``, for the whole grid in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Point = tuple[float, float]  # (lm_weight, word_ins_penalty)


@dataclass
class Lattice:
    """A word lattice as arrays, with separate graph and (unscaled) acoustic costs.

    Arcs go ``src -> dst`` with a word label (0: none); ``acoustic_cost`` is
    ``-log p(x|s)`` summed over the arc's frames, *without* the acoustic scale.
    The graph must be acyclic (Kaldi's lattices are).
    """

    num_states: int
    start: int
    src: np.ndarray
    dst: np.ndarray
    word: np.ndarray
    graph_cost: np.ndarray
    acoustic_cost: np.ndarray
    final_state: np.ndarray
    final_graph_cost: np.ndarray
    final_acoustic_cost: np.ndarray

    @property
    def num_arcs(self) -> int:
        return len(self.src)

    @classmethod
    def empty(cls) -> Lattice:
        """A lattice without states (no surviving path)."""
        i, f = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        return cls(0, 0, i, i, i, f, f, i, f, f)

    def best_paths(self, points: Sequence[Point]) -> list[list[int]]:
        """The best path's words at each (LM weight, WIP), in one pass over the lattice.

        Path cost: ``graph + acoustic / lm_weight + wip * num_words`` (Kaldi's
        ``lattice-scale --inv-acoustic-scale`` then ``lattice-add-penalty``). An empty
        lattice (no surviving path) gives empty word lists.
        """
        if self.num_states == 0 or len(self.final_state) == 0:
            return [[] for _ in points]
        inv = np.array([1.0 / w for w, _ in points])
        wip = np.array([p for _, p in points])
        alpha, back = self._forward(inv, wip)
        total = (
            alpha[self.final_state]
            + self.final_graph_cost[:, None]
            + self.final_acoustic_cost[:, None] * inv[None, :]
        )
        best = np.argmin(total, axis=0)
        reachable = np.isfinite(total[best, np.arange(len(points))])
        paths = self._trace_back(back, self.final_state[best])
        return [p if ok else [] for p, ok in zip(paths, reachable, strict=True)]

    def _forward(self, inv: np.ndarray, wip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Best cost into every state per grid point, and the arc it came by (-1: none).

        States are visited in topological order (Kahn), a whole wave of ready states at
        a time; the raw lattices of Kaldi's decoders are not numbered topologically.
        """
        n, g = self.num_states, len(inv)
        order = np.argsort(self.src, kind="stable")
        ptr = np.searchsorted(self.src[order], np.arange(n + 1))
        indegree = np.bincount(self.dst, minlength=n)
        alpha = np.full((n, g), np.inf)
        alpha[self.start] = 0.0
        back = np.full((n, g), -1, dtype=np.int64)
        is_word = (self.word != 0).astype(np.float64)
        ready = np.flatnonzero(indegree == 0)
        while len(ready):
            first, count = ptr[ready], ptr[ready + 1] - ptr[ready]
            total = int(count.sum())
            if total == 0:
                break
            if len(ready) == 1:
                arcs = order[first[0] : first[0] + total]
            else:
                arcs = order[np.repeat(first - np.cumsum(count) + count, count) + np.arange(total)]
            dst = self.dst[arcs]
            by_dst = np.argsort(dst, kind="stable")
            arcs, dst = arcs[by_dst], dst[by_dst]
            cand = alpha[self.src[arcs]] + (
                self.graph_cost[arcs, None]
                + self.acoustic_cost[arcs, None] * inv
                + is_word[arcs, None] * wip
            )
            # per destination state (a run of equal ``dst``): the best candidate
            run_start = np.empty(total, dtype=bool)
            run_start[0] = True
            np.not_equal(dst[1:], dst[:-1], out=run_start[1:])
            starts = run_start.nonzero()[0]
            states = dst[starts]
            alpha[states] = np.minimum(alpha[states], np.minimum.reduceat(cand, starts, axis=0))
            rows, cols = (cand == alpha[dst]).nonzero()
            back[dst[rows], cols] = arcs[rows]
            hits = np.empty_like(starts)
            np.subtract(starts[1:], starts[:-1], out=hits[:-1])
            hits[-1] = total - starts[-1]
            indegree[states] -= hits
            ready = states[indegree[states] == 0]
        if np.any(indegree > 0):
            raise ValueError("the lattice has a cycle")
        return alpha, back

    def _trace_back(self, back: np.ndarray, finals: np.ndarray) -> list[list[int]]:
        columns = np.arange(len(finals))
        state = finals.copy()
        words: list[list[int]] = [[] for _ in columns]
        while True:
            arc = back[state, columns]
            live = arc >= 0
            if not live.any():
                break
            arc = arc[live]
            cols = columns[live]
            labels = self.word[arc]
            has_word = labels != 0
            for col, label in zip(cols[has_word].tolist(), labels[has_word].tolist(), strict=True):
                words[col].append(label)
            state[cols] = self.src[arc]
        return [w[::-1] for w in words]
