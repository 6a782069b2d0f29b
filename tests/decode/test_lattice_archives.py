"""Lattice archives of the GPU decoder, read on CPU: Kaldi text and binary CompactLattices.

The lattices come from the CPU decoder (Kaldi's LatticeSimpleDecoder): printed by
OpenFst's FstPrinter (the printer Kaldi's text archives use) and turned into the
CompactLattice form (word labels, transition ids in the weights), or written in Kaldi's
binary CompactLattice layout. Each parser must give back the lattice that the CPU path
reads from OpenFst's binary file (:func:`asr_kd.decode.cpu.lattice_from_kaldifst`).
"""

from __future__ import annotations

import math
import struct

import kaldi_decoder
import numpy as np
import pytest
from test_decode import LABEL_TO_SENONE, PRONS, WORD_COST, TinyGraph, senone_scores, word_loop_fst

from asr_kd.decode import DecodeConfig, Lattice
from asr_kd.decode.cpu import lattice_from_kaldifst
from asr_kd.decode.gpu import read_compact_lattice_archive, read_compact_lattice_binary
from asr_kd.errors import BadInputError

SCALE = 0.1
POINTS = DecodeConfig().grid()


def raw_lattices(count: int, seed: int = 0):
    """CPU raw lattices (kaldifst) of noisy scores of random word strings."""
    graph = TinyGraph(word_loop_fst(PRONS, WORD_COST))
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        words = rng.integers(1, 4, size=rng.integers(1, 5)).tolist()
        scores = senone_scores(words) + rng.normal(0, 3, (3 * 2 * len(words) + 9, 4))[
            : len(senone_scores(words))
        ].astype(np.float32)
        scaled = np.take(scores, LABEL_TO_SENONE, axis=1) * SCALE
        opts = kaldi_decoder.LatticeSimpleDecoderConfig()
        opts.beam, opts.lattice_beam = 13.0, 6.0
        decoder = kaldi_decoder.LatticeSimpleDecoder(graph.fst, opts)
        decoder.decode(kaldi_decoder.DecodableCtc(np.ascontiguousarray(scaled, np.float32)))
        ok, raw = decoder.get_raw_lattice(use_final_probs=True)
        assert ok
        out.append(raw)
    return out


def compact_text(raw) -> str:
    """A raw lattice in Kaldi's CompactLattice text form (``src dst word g,a,tids``)."""
    lines = []
    for line in raw.to_str(is_acceptor=False, fst_field_separator="\t").splitlines():
        f = line.split("\t")
        if len(f) >= 4:  # arc: src dst ilabel olabel [g,a]
            weight = f[4] if len(f) == 5 else "0,0"
            tids = f[2] if f[2] != "0" else ""
            one = len(f) == 4 and not tids
            lines.append("\t".join(f[:2] + [f[3]]) + ("" if one else f"\t{weight},{tids}"))
        else:  # final: state [g,a]
            lines.append(f[0] + (f"\t{f[1]}," if len(f) == 2 else ""))
    return "\n".join(lines) + "\n"


def text_archive(raws) -> str:
    return "".join(f"utt{i} \n{compact_text(r)}\n" for i, r in enumerate(raws))


def assert_same_lattice(a: Lattice, b: Lattice, rtol: float = 0.0) -> None:
    assert (a.num_states, a.start) == (b.num_states, b.start)
    key_a = np.lexsort((a.word, a.dst, a.src))
    key_b = np.lexsort((b.word, b.dst, b.src))
    for name in ("src", "dst", "word"):
        np.testing.assert_array_equal(getattr(a, name)[key_a], getattr(b, name)[key_b], name)
    for name in ("graph_cost", "acoustic_cost"):
        x, y = getattr(a, name)[key_a], getattr(b, name)[key_b]
        np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-4 if rtol else 0, err_msg=name)
    np.testing.assert_array_equal(a.final_state, b.final_state)
    np.testing.assert_allclose(a.final_graph_cost, b.final_graph_cost, rtol=rtol, atol=1e-4)
    np.testing.assert_allclose(a.final_acoustic_cost, b.final_acoustic_cost, rtol=rtol, atol=1e-3)


def test_text_archive_of_cpu_lattices_parses_as_the_cpu_path():
    raws = raw_lattices(6)
    text = read_compact_lattice_archive(text_archive(raws), SCALE)
    assert list(text) == [f"utt{i}" for i in range(6)]
    for i, raw in enumerate(raws):
        cpu = lattice_from_kaldifst(raw, SCALE)
        assert_same_lattice(text[f"utt{i}"], cpu, rtol=1e-5)  # the printer's 6 digits
        assert text[f"utt{i}"].best_paths(POINTS) == cpu.best_paths(POINTS)
    assert sum(lat.num_arcs for lat in text.values()) > 100


def test_text_archive_edge_cases():
    # an empty lattice, a final state of weight One (no weight printed), an arc of weight
    # One, a dead state printed with weight Zero, and a start state that is not 0
    text = "a \n\nb \n3\t1\t7\t1,3,1_1\n3\t2\t8\n1\n2\t2,2,\n0\tInfinity,Infinity,\n\nc \n0\n\n"
    lat = read_compact_lattice_archive(text, 0.5)
    assert list(lat) == ["a", "b", "c"]
    assert lat["a"].num_states == 0 and lat["a"].best_paths([(10.0, 0.0)]) == [[]]
    b = lat["b"]
    assert (b.num_states, b.start) == (4, 3)
    assert b.word.tolist() == [7, 8] and b.acoustic_cost.tolist() == [6.0, 0.0]
    assert b.final_state.tolist() == [1, 2]  # state 0 is dead (weight Zero)
    assert b.final_acoustic_cost.tolist() == [0.0, 4.0]
    assert b.best_paths([(10.0, 0.0)]) == [[7]]
    assert lat["c"].best_paths([(10.0, 0.0)]) == [[]] and lat["c"].final_state.tolist() == [0]
    with pytest.raises(BadInputError, match="not a CompactLattice line"):
        read_compact_lattice_archive("u \n0\t1\t2\t3\t4\n\n", 0.1)


# ---------------------------------------------------------------------------
# Binary: Kaldi's WriteCompactLattice(binary=true) = OpenFst's VectorFst::Write of
# compactlattice44 arcs (fstext/lattice-weight.h, lat/kaldi-lattice.cc)


def _string(s: bytes) -> bytes:
    return struct.pack("<i", len(s)) + s


def _weight(graph: float, acoustic: float, tids: list[int]) -> bytes:
    return struct.pack(f"<ffi{len(tids)}i", graph, acoustic, len(tids), *tids)


def binary_compact_lattice(lat: Lattice, tids: list[list[int]], scale: float) -> bytes:
    """``lat`` (acoustic costs unscaled) as Kaldi writes a binary CompactLattice."""
    out = [struct.pack("<i", 2125659606), _string(b"vector"), _string(b"compactlattice44")]
    out.append(struct.pack("<iiQqqq", 2, 0, 0, lat.start, lat.num_states, lat.num_arcs))
    costs = zip(lat.final_graph_cost, lat.final_acoustic_cost, strict=True)
    final = dict(zip(lat.final_state.tolist(), costs, strict=True))
    for s in range(lat.num_states):
        g, a = final.get(s, (math.inf, math.inf / scale))
        out.append(_weight(g, a * scale, []))
        arcs = np.flatnonzero(lat.src == s)
        out.append(struct.pack("<q", len(arcs)))
        for i in arcs:
            word = int(lat.word[i])
            out.append(struct.pack("<ii", word, word))
            out.append(_weight(lat.graph_cost[i], lat.acoustic_cost[i] * scale, tids[i]))
            out.append(struct.pack("<i", int(lat.dst[i])))
    return b"".join(out)


def test_binary_archive_of_cpu_lattices_reads_back_exactly():
    raws = raw_lattices(5, seed=1)
    cpu = [lattice_from_kaldifst(raw, SCALE) for raw in raws]
    rng = np.random.default_rng(0)
    # Kaldi's CompactLatticeHolder writes "key " and the FST, no "\0B" marker; the
    # reader takes a marker too (the last entry)
    archive = b"".join(
        f"utt{i} ".encode()
        + binary_compact_lattice(lat, [rng.integers(1, 9, rng.integers(0, 4)).tolist()
                                       for _ in range(lat.num_arcs)], SCALE)
        for i, lat in enumerate(cpu)
    )  # fmt: skip
    empty = Lattice.empty()
    archive += b"none \0B" + binary_compact_lattice(empty, [], SCALE)
    read = read_compact_lattice_binary(archive, SCALE)
    assert list(read) == [f"utt{i}" for i in range(5)] + ["none"]
    for i, lat in enumerate(cpu):
        assert_same_lattice(read[f"utt{i}"], lat, rtol=1e-6)  # float32 on disk
        assert read[f"utt{i}"].best_paths(POINTS) == lat.best_paths(POINTS)
    assert read["none"].num_states == 0
    with pytest.raises(BadInputError, match="not a Kaldi binary archive"):
        read_compact_lattice_binary(b"utt0 xx", SCALE)
    bad = archive.replace(b"compactlattice44", b"compactlattice48", 1)
    with pytest.raises(BadInputError, match="lattice utt0: not a VectorFst"):
        read_compact_lattice_binary(bad, SCALE)
