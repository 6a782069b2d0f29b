"""FST operations that kaldifst 1.7.17 lacks, done on arc arrays with numpy.

kaldifst has no ``fstrmsymbols`` and no way to add HMM self-loops to a graph whose
input labels are our own (phone, HMM state, senone) labels, and a Python loop over the
millions of arcs of an HCLG through its arc iterators is slow. So an FST is moved into
numpy arrays (:class:`Arcs`) through OpenFst's binary VectorFst format, edited with
vectorised code, and moved back. The binary format keeps the weights exactly (the text
format of ``to_str`` keeps six significant digits).

OpenFst ``VectorFst`` binary layout (version 2; what ``StdVectorFst.write`` writes)::

    header   int32 magic 2125659606, string "vector", string "standard" (int32 length +
             bytes), int32 version 2, int32 flags, uint64 properties, int64 start,
             int64 num_states, int64 num_arcs; symbol tables if flags & 3
    states   per state: float32 final weight, int64 num_arcs, then its arcs:
             int32 ilabel, int32 olabel, float32 weight, int32 nextstate
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import kaldifst
import numpy as np

_MAGIC = 2125659606
_VERSION = 2
_PROPERTIES = 0x3  # kExpanded | kMutable: nothing else claimed in the file
_ALL_PROPERTIES = 0xFFFFFFFFFFFF
# FSTs pass through temporary files: in memory where there is a tmpfs (per-utterance
# training graphs make thousands of them).
_TMP_DIR = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
_STATE_WORDS, _ARC_WORDS = 3, 4  # 32-bit words per state header and per arc


@dataclass
class Arcs:
    """An FST as arrays; arcs are kept in the order given (sorted by ``src`` on writing).

    Attributes:
        start: the start state.
        final: ``[S]`` float32 final weights, ``inf`` for non-final states.
        src: ``[A]`` int32 source state of each arc.
        ilabel: ``[A]`` int32 input labels.
        olabel: ``[A]`` int32 output labels.
        weight: ``[A]`` float32 weights (tropical: costs).
        dst: ``[A]`` int32 destination states.
    """

    start: int
    final: np.ndarray
    src: np.ndarray
    ilabel: np.ndarray
    olabel: np.ndarray
    weight: np.ndarray
    dst: np.ndarray

    @property
    def num_states(self) -> int:
        return len(self.final)

    @property
    def num_arcs(self) -> int:
        return len(self.src)


def fst_size(fst: kaldifst.StdVectorFst) -> tuple[int, int]:
    """(states, arcs) of an FST."""
    return fst.num_states, sum(fst.num_arcs(s) for s in range(fst.num_states))


def write_arcs(arcs: Arcs, path: Path | str) -> None:
    """Write arc arrays as an OpenFst binary ``VectorFst`` (readable by ``StdVectorFst.read``)."""
    order = np.argsort(arcs.src, kind="stable")
    src = arcs.src[order].astype(np.int64)
    num_states, num_arcs = arcs.num_states, arcs.num_arcs
    counts = np.bincount(src, minlength=num_states).astype(np.int64)
    first_arc = np.concatenate([[0], np.cumsum(counts)[:-1]])
    body = np.zeros(_STATE_WORDS * num_states + _ARC_WORDS * num_arcs, dtype="<u4")
    head = _STATE_WORDS * np.arange(num_states) + _ARC_WORDS * first_arc
    body[head] = np.asarray(arcs.final, dtype="<f4").view("<u4")
    body[head + 1] = (counts & 0xFFFFFFFF).astype("<u4")
    body[head + 2] = (counts >> 32).astype("<u4")
    pos = _STATE_WORDS * (src + 1) + _ARC_WORDS * np.arange(num_arcs)
    body[pos] = arcs.ilabel[order].astype("<i4").view("<u4")
    body[pos + 1] = arcs.olabel[order].astype("<i4").view("<u4")
    body[pos + 2] = arcs.weight[order].astype("<f4").view("<u4")
    body[pos + 3] = arcs.dst[order].astype("<i4").view("<u4")
    header = struct.pack("<i", _MAGIC) + _string("vector") + _string("standard")
    # num_arcs is written as 0, as OpenFst does for a VectorFst.
    header += struct.pack("<iiQqqq", _VERSION, 0, _PROPERTIES, arcs.start, num_states, 0)
    with open(path, "wb") as f:
        f.write(header)
        f.write(body.tobytes())


def _string(s: str) -> bytes:
    return struct.pack("<i", len(s)) + s.encode()


def read_arcs(fst: kaldifst.StdVectorFst) -> Arcs:
    """The arcs of an FST as arrays (through its binary file; weights exact)."""
    num_states = fst.num_states
    counts = np.fromiter((fst.num_arcs(s) for s in range(num_states)), np.int64, num_states)
    with tempfile.TemporaryDirectory(dir=_TMP_DIR) as tmp:
        path = os.path.join(tmp, "fst")
        if not fst.write(path):
            raise OSError(f"could not write a temporary FST to {path}")
        data = Path(path).read_bytes()
    num_arcs = int(counts.sum())
    size = 4 * (_STATE_WORDS * num_states + _ARC_WORDS * num_arcs)
    magic, type_len = struct.unpack_from("<ii", data)
    if magic != _MAGIC or data[8 : 8 + type_len] != b"vector" or len(data) < size:
        raise ValueError("not an OpenFst VectorFst binary file")
    # The states come last, so the body starts `size` bytes before the end of the file
    # (this skips symbol tables, should the FST carry any).
    body = np.frombuffer(data, dtype="<u4", offset=len(data) - size)
    first_arc = np.concatenate([[0], np.cumsum(counts)[:-1]])
    head = _STATE_WORDS * np.arange(num_states) + _ARC_WORDS * first_arc
    src = np.repeat(np.arange(num_states, dtype=np.int64), counts)
    pos = _STATE_WORDS * (src + 1) + _ARC_WORDS * np.arange(num_arcs)
    return Arcs(
        start=fst.start,
        final=body[head].view("<f4").astype(np.float32),
        src=src.astype(np.int32),
        ilabel=body[pos].view("<i4").astype(np.int32),
        olabel=body[pos + 1].view("<i4").astype(np.int32),
        weight=body[pos + 2].view("<f4").astype(np.float32),
        dst=body[pos + 3].view("<i4").astype(np.int32),
    )


def to_fst(arcs: Arcs) -> kaldifst.StdVectorFst:
    """Arc arrays as a ``StdVectorFst`` (arcs of a state in the order given).

    Its properties (sorted, epsilons, acyclic, ...) are computed once, so a file written
    from it carries them like one written after OpenFst's own operations.
    """
    with tempfile.TemporaryDirectory(dir=_TMP_DIR) as tmp:
        path = os.path.join(tmp, "fst")
        write_arcs(arcs, path)
        fst = kaldifst.StdVectorFst.read(path)
    if fst is None:
        raise ValueError("kaldifst could not read back an FST written from arc arrays")
    fst.properties(_ALL_PROPERTIES, True)  # compute and store them, as OpenFst's own ops do
    return fst


def remove_input_symbols(arcs: Arcs, symbols: np.ndarray) -> int:
    """Replace the input labels in ``symbols`` by epsilon, in place (``fstrmsymbols``).

    Returns:
        The number of arcs changed.
    """
    hit = np.isin(arcs.ilabel, symbols)
    arcs.ilabel[hit] = 0
    return int(hit.sum())


def make_preceding_labels_same(arcs: Arcs) -> tuple[Arcs, np.ndarray]:
    """Split states so that all arcs entering a state carry the same input label.

    Kaldi's ``MakePrecedingInputSymbolsSame`` with the start state counted as entered
    by epsilon. For a state entered by several labels, the arcs labelled ``k`` (k > 0)
    are redirected to a new state that has one epsilon arc into the old state: one new
    state per (state, label), not per arc as Kaldi does.

    Returns:
        The new arcs and ``[S']`` int32 label entering each state (0 for epsilon,
        the start state and states without incoming arcs).
    """
    num_states = arcs.num_states
    radix = int(arcs.ilabel.max(initial=0)) + 1
    key = arcs.dst.astype(np.int64) * radix + arcs.ilabel
    pairs = np.unique(key)
    pair_state, pair_label = pairs // radix, pairs % radix
    labels_in = np.bincount(pair_state, minlength=num_states)
    labels_in[arcs.start] += int(not np.any((pair_state == arcs.start) & (pair_label == 0)))
    bad = (labels_in > 1)[pair_state] & (pair_label > 0)
    split_state = pair_state[bad]
    new_ids = num_states + np.arange(len(split_state), dtype=np.int64)
    # Redirect every arc (dst=s, ilabel=k) of a split pair to the new state for (s, k).
    where = np.searchsorted(pairs, key)
    new_of_pair = np.full(len(pairs), -1, dtype=np.int64)
    new_of_pair[np.flatnonzero(bad)] = new_ids
    redirect = new_of_pair[where]
    dst = np.where(redirect >= 0, redirect, arcs.dst).astype(np.int32)
    num_new = len(new_ids)
    out = Arcs(
        start=arcs.start,
        final=np.concatenate([arcs.final, np.full(num_new, np.inf, np.float32)]),
        src=np.concatenate([arcs.src, new_ids.astype(np.int32)]),
        ilabel=np.concatenate([arcs.ilabel, np.zeros(num_new, np.int32)]),
        olabel=np.concatenate([arcs.olabel, np.zeros(num_new, np.int32)]),
        weight=np.concatenate([arcs.weight, np.zeros(num_new, np.float32)]),
        dst=np.concatenate([dst, split_state.astype(np.int32)]),
    )
    label_in = np.zeros(out.num_states, dtype=np.int32)
    label_in[out.dst] = out.ilabel  # now one label per destination
    label_in[out.start] = 0
    return out, label_in


def add_self_loops(arcs: Arcs, loop_prob: np.ndarray, self_loop_scale: float) -> Arcs:
    """Add the HMM self-loops to a graph without them (Kaldi's ``add-self-loops --reorder``).

    The graph's input labels are HMM labels: arc ``k`` emits one frame of the HMM state
    of label ``k``. After :func:`make_preceding_labels_same`, a state entered by label
    ``k`` (with self-loop probability ``p = loop_prob[k] > 0``) gets a ``k:eps`` self-loop
    of cost ``-scale*log(p)``, and its outgoing arcs and final weight get
    ``-scale*log(1-p)``, so the state lasts one frame or more and the graph stays
    stochastic where it was.

    Args:
        arcs: the graph without self-loops; input labels 0 or ``1..len(loop_prob)-1``.
        loop_prob: ``[N+1]`` self-loop probability of every label (index 0 unused).
        self_loop_scale: scale of the self-loop and forward log-probabilities (0.1 in
            Kaldi's mkgraph.sh).

    Returns:
        The graph with self-loops (a new :class:`Arcs`).
    """
    loop_prob = np.asarray(loop_prob, dtype=np.float64)
    if arcs.num_arcs and int(arcs.ilabel.max()) >= len(loop_prob):
        raise ValueError(f"input label {int(arcs.ilabel.max())} has no self-loop probability")
    if ((loop_prob < 0) | (loop_prob >= 1)).any():
        raise ValueError("self-loop probabilities must be in [0, 1)")
    out, label_in = make_preceding_labels_same(arcs)
    looping = loop_prob > 0
    loop_cost = (-self_loop_scale * np.log(np.where(looping, loop_prob, 1.0))).astype(np.float32)
    forward_cost = (-self_loop_scale * np.log1p(-loop_prob)).astype(np.float32)
    state_cost = np.where(label_in > 0, forward_cost[label_in], 0.0).astype(np.float32)
    out.weight = out.weight + state_cost[out.src]
    out.final = np.where(np.isinf(out.final), out.final, out.final + state_cost).astype(np.float32)
    looped = np.flatnonzero((label_in > 0) & looping[label_in]).astype(np.int32)
    label = label_in[looped]
    out.src = np.concatenate([out.src, looped])
    out.ilabel = np.concatenate([out.ilabel, label])
    out.olabel = np.concatenate([out.olabel, np.zeros(len(looped), np.int32)])
    out.weight = np.concatenate([out.weight, loop_cost[label]])
    out.dst = np.concatenate([out.dst, looped])
    return out
