"""The HMM transducer H (without self-loops) for the context windows of a CLG.

H maps HMM labels to the context windows that :func:`kaldifst.compose_context` put on
CLG's input side. An HMM label stands for one (phone, HMM state, senone): label ``k``
(``1..N``) emits one frame of that HMM state, scored by senone ``label_to_senone[k-1]``.
Labels are unique per phone as Kaldi's transition-ids are, so two phones that share a
senone still have different labels and HCLG stays functional and determinisable.

For every window ``(left, centre, right)`` H has a path through the centre phone's HMM
topology, as Kaldi's ``GetHTransducer`` builds it: one arc per non-self-loop transition
``h -> h'``, labelled with the label of ``h`` (the frame is emitted by the state the
transition leaves) and weighted ``-transition_scale * log(p(h->h') / (1 - p(h->h)))``.
The arcs leaving the entry state carry the window's id as output label. Windows with the
same centre phone and the same labels share every state after the entry. The self-loops
are added to the finished graph (:func:`asr_kd.graph.fst_ops.add_self_loops`).

Disambiguation windows (``#-1`` written ``[0]``, and ``[-d]`` for ``#d``) become
``D:window`` self-loops on H's start state, with their own input labels ``N+1, N+2, ...``
that the graph removes after determinisation.

A centre phone (or one of its HMM states) without a root in the tree cannot be scored:
its windows get no path in H, so every pronunciation through it, and every word that has
no other pronunciation, drops out of the graph (the caller logs them).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import kaldifst
import numpy as np

from asr_kd.errors import BadInputError
from asr_kd.graph.fst_ops import Arcs, to_fst
from asr_kd.tree import ContextTree


@dataclass(frozen=True)
class HmmTopo:
    """One phone's HMM: emitting states ``0..num_emitting-1``, entry 0, one final state.

    Attributes:
        num_emitting: number of emitting states.
        final: index of the non-emitting final state.
        transitions: per emitting state, ``(destination, probability)`` pairs,
            self-loop included.
    """

    num_emitting: int
    final: int
    transitions: tuple[tuple[tuple[int, float], ...], ...]

    def self_loop(self, state: int) -> float:
        """Probability of staying in ``state``."""
        return sum(p for dst, p in self.transitions[state] if dst == state)


def parse_topology(text: str) -> dict[int, HmmTopo]:
    """Read Kaldi ``HmmTopology`` text (``data/lang/topo``) into phone -> :class:`HmmTopo`.

    Supports ``<PdfClass>`` states (not ``<ForwardPdfClass>``/``<SelfLoopPdfClass>``),
    emitting states numbered first and one final state without a pdf class.

    Raises:
        BadInputError: the text is not such a topology.
    """
    out: dict[int, HmmTopo] = {}
    for body in re.findall(r"<TopologyEntry>(.*?)</TopologyEntry>", text, re.S):
        phones = re.search(r"<ForPhones>(.*?)</ForPhones>", body, re.S)
        states = re.findall(r"<State>(.*?)</State>", body, re.S)
        if phones is None or not states or "<ForwardPdfClass>" in body:
            raise BadInputError(f"unsupported HMM topology entry: {body.strip()[:200]!r}")
        topo = _parse_entry(states)
        for phone in phones.group(1).split():
            out[int(phone)] = topo
    if not out:
        raise BadInputError("the HMM topology has no <TopologyEntry>; rerun 'prepare-lang'")
    return out


def _parse_entry(states: list[str]) -> HmmTopo:
    transitions: list[tuple[tuple[int, float], ...]] = []
    for i, state in enumerate(states):
        tokens = state.split()
        if int(tokens[0]) != i:
            raise BadInputError(f"HMM topology states must be numbered 0, 1, ...: {state!r}")
        if "<PdfClass>" not in tokens:
            if i != len(states) - 1 or len(tokens) != 1:
                raise BadInputError(f"only the last HMM state may be non-emitting: {state!r}")
            continue
        pairs = re.findall(r"<Transition>\s+(\d+)\s+(\S+)", state)
        transitions.append(tuple((int(d), float(p)) for d, p in pairs))
    final = len(states) - 1
    topo = HmmTopo(num_emitting=len(transitions), final=final, transitions=tuple(transitions))
    for h, arcs in enumerate(topo.transitions):
        if not any(d != h for d, _ in arcs) or not 0 <= topo.self_loop(h) < 1:
            raise BadInputError(f"HMM state {h} has no way out or a bad self-loop: {arcs}")
        if any(d == 0 for d, _ in arcs if h != 0):
            raise BadInputError("HMM topologies that re-enter the entry state are not supported")
    if len(states) == len(transitions):
        raise BadInputError("an HMM topology entry lacks its final (non-emitting) state")
    return topo


@dataclass(frozen=True)
class HmmLabels:
    """The graph's input labels: label ``i + 1`` is ``(phone[i], state[i], senone[i])``.

    Attributes:
        phone: ``[N]`` int32 phone ids.
        state: ``[N]`` int32 HMM state indices.
        senone: ``[N]`` int64 senones (the score column of each label).
        loop_prob: ``[N + 1]`` float64 self-loop probability per label (index 0 unused).
    """

    phone: np.ndarray
    state: np.ndarray
    senone: np.ndarray
    loop_prob: np.ndarray

    @property
    def num_labels(self) -> int:
        return len(self.phone)


@dataclass
class HTransducer:
    """H without self-loops and what the graph needs to know about it.

    Attributes:
        fst: H, output-label sorted.
        labels: the HMM labels ``1..N``.
        disambig: ``[D]`` int32 input labels of the disambiguation windows (``> N``).
        dropped_phones: centre phones whose windows have no path (no tree root).
        num_windows: context windows with a path.
    """

    fst: kaldifst.StdVectorFst
    labels: HmmLabels
    disambig: np.ndarray
    dropped_phones: list[int]
    num_windows: int


def classify_windows(
    ilabels: Sequence[Sequence[int]], disambig_phones: Sequence[int]
) -> tuple[list[int], list[int]]:
    """Split CLG's input symbols into phone windows and disambiguation windows.

    Returns:
        (ids of phone windows ``(left, centre, right)``, ids of disambiguation windows).
        Index 0 (epsilon, the empty window) is in neither.
    """
    disambig = set(disambig_phones)
    phone_windows, disambig_windows = [], []
    for k, window in enumerate(ilabels):
        if k == 0 or len(window) == 0:
            continue
        real = len(window) == 3 and window[1] > 0 and all(x >= 0 for x in window)
        if real and not disambig.intersection(window):
            phone_windows.append(k)
        else:
            disambig_windows.append(k)
    return phone_windows, disambig_windows


def covered_phones(tree: ContextTree, topos: dict[int, HmmTopo]) -> set[int]:
    """Phones whose every HMM state has a root in the tree."""
    states = tree.phone_states
    return {
        p
        for p, topo in topos.items()
        if p in states and set(range(topo.num_emitting)) <= set(states[p])
    }


def build_h(
    ilabels: Sequence[Sequence[int]],
    tree: ContextTree,
    topos: dict[int, HmmTopo],
    disambig_phones: Sequence[int],
    transition_scale: float = 1.0,
) -> HTransducer:
    """Build H (no self-loops) for exactly the windows of ``ilabels``.

    Args:
        ilabels: ``ilabels[k]`` is CLG input symbol ``k``'s window, as returned by
            ``kaldifst.compose_context(disambig, 3, 1, LG)``.
        tree: maps (left, centre, right, HMM state) to a senone.
        topos: phone -> HMM topology (:func:`parse_topology`).
        disambig_phones: the ``#N`` phone ids.
        transition_scale: scale of the non-self-loop transition log-probabilities.

    Raises:
        BadInputError: a window's centre phone has no HMM topology.
    """
    phone_windows, disambig_windows = classify_windows(ilabels, disambig_phones)
    unknown = sorted({ilabels[k][1] for k in phone_windows} - set(topos))
    if unknown:
        raise BadInputError(f"phones {unknown} of L have no HMM topology in the lang's topo")
    covered = covered_phones(tree, topos)
    kept = [k for k in phone_windows if ilabels[k][1] in covered]
    dropped = sorted({ilabels[k][1] for k in phone_windows} - covered)
    labels, window_labels = _window_labels(ilabels, kept, tree, topos)
    builder = _HBuilder(topos, transition_scale)
    for k, labs in zip(kept, window_labels, strict=True):
        builder.add_window(k, ilabels[k][1], labs)
    disambig = labels.num_labels + 1 + np.arange(len(disambig_windows), dtype=np.int32)
    for k, d in zip(disambig_windows, disambig.tolist(), strict=True):
        builder.add_arc(0, 0, d, k, 0.0)
    fst = to_fst(builder.arcs())
    kaldifst.arcsort(fst, sort_type="olabel")
    return HTransducer(fst, labels, disambig, dropped, len(kept))


def _window_labels(
    ilabels: Sequence[Sequence[int]],
    windows: list[int],
    tree: ContextTree,
    topos: dict[int, HmmTopo],
) -> tuple[HmmLabels, list[tuple[int, ...]]]:
    """Number the (phone, state, senone) triples of the windows' states 1..N, sorted."""
    rows = [
        (ilabels[k][0], ilabels[k][1], ilabels[k][2], h)
        for k in windows
        for h in range(topos[ilabels[k][1]].num_emitting)
    ]
    contexts = np.array(rows, dtype=np.int64).reshape(-1, 4)
    senones = tree.senones(contexts).astype(np.int64) if len(rows) else np.zeros(0, np.int64)
    triples = np.stack([contexts[:, 1], contexts[:, 3], senones], axis=1)
    unique, inverse = np.unique(triples, axis=0, return_inverse=True)
    unique = unique.reshape(-1, 3)
    loop = [0.0] + [topos[int(p)].self_loop(int(h)) for p, h, _ in unique]
    labels = HmmLabels(
        phone=unique[:, 0].astype(np.int32),
        state=unique[:, 1].astype(np.int32),
        senone=unique[:, 2].astype(np.int64),
        loop_prob=np.array(loop, dtype=np.float64),
    )
    label_of_row = (inverse.reshape(-1) + 1).tolist()
    out, i = [], 0
    for k in windows:
        n = topos[ilabels[k][1]].num_emitting
        out.append(tuple(label_of_row[i : i + n]))
        i += n
    return labels, out


class _HBuilder:
    """Collects H's arcs; state 0 is start and final (between windows)."""

    def __init__(self, topos: dict[int, HmmTopo], transition_scale: float) -> None:
        self.topos = topos
        self.scale = transition_scale
        self.num_states = 1
        self.rows: list[tuple[int, int, int, int, float]] = []
        self.shared: dict[tuple[int, tuple[int, ...]], list[int]] = {}

    def add_arc(self, src: int, dst: int, ilabel: int, olabel: int, cost: float) -> None:
        self.rows.append((src, dst, ilabel, olabel, cost))

    def cost(self, topo: HmmTopo, h: int, p: float) -> float:
        return -self.scale * math.log(p / (1.0 - topo.self_loop(h)))

    def add_window(self, window: int, phone: int, labels: tuple[int, ...]) -> None:
        topo = self.topos[phone]
        fst_state = self._states(phone, labels)
        for dst, p in topo.transitions[0]:
            if dst != 0 and p > 0:
                self.add_arc(0, fst_state[dst], labels[0], window, self.cost(topo, 0, p))

    def _states(self, phone: int, labels: tuple[int, ...]) -> list[int]:
        """FST states of the HMM states (0 for entry and final), built once per key."""
        key = (phone, labels)
        if key in self.shared:
            return self.shared[key]
        topo = self.topos[phone]
        states = [0] + list(range(self.num_states, self.num_states + topo.num_emitting - 1))
        states += [0] * (topo.final + 1 - len(states))
        self.num_states += topo.num_emitting - 1
        for h in range(1, topo.num_emitting):
            for dst, p in topo.transitions[h]:
                if dst != h and p > 0:
                    self.add_arc(states[h], states[dst], labels[h], 0, self.cost(topo, h, p))
        self.shared[key] = states
        return states

    def arcs(self) -> Arcs:
        rows = np.array([r[:4] for r in self.rows], dtype=np.int64).reshape(-1, 4)
        final = np.full(self.num_states, np.inf, dtype=np.float32)
        final[0] = 0.0
        return Arcs(
            start=0,
            final=final,
            src=rows[:, 0].astype(np.int32),
            ilabel=rows[:, 2].astype(np.int32),
            olabel=rows[:, 3].astype(np.int32),
            weight=np.array([r[4] for r in self.rows], dtype=np.float32),
            dst=rows[:, 1].astype(np.int32),
        )
