"""CPU back-end: Kaldi's decoders from ``kaldi-decoder`` (0.2.11).

With ``config.lattice`` (the default) each utterance is decoded once by
``LatticeSimpleDecoder``; its raw state-level lattice keeps graph and acoustic costs
apart, so :meth:`~asr_kd.decode.base.Lattice.best_paths` rescores it for every
(LM weight, WIP) of the sweep without decoding again. (``kaldi_hmm_gmm``'s
``LatticeFasterDecoder`` would be faster, but its Python wrapper returns only the best
path, and needs a transition model.) ``LatticeSimpleDecoder`` has no ``max_active``: the
beam alone bounds the search.

With ``config.lattice=False``, ``FasterDecoder`` gives the 1-best path at the decode
point only (about 3-4x faster; no sweep).

Utterances run in worker processes when an executor is given. Each worker reads
``HCLG.fst`` once and keeps it (cached by path and modification time).
"""

from __future__ import annotations

import functools
import os
import shutil
import struct
import tempfile
import weakref
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path

import kaldi_decoder
import kaldifst
import numpy as np
import torch

from asr_kd.decode.base import (
    DecodeConfig,
    GraphLike,
    Hypothesis,
    Lattice,
    Point,
    check_scores,
    hypothesis_from_lattice,
)
from asr_kd.parallel import map_progress

_FST_CACHE: dict[str, tuple[int, kaldifst.StdVectorFst]] = {}


def load_fst(path: Path | str) -> kaldifst.StdVectorFst:
    """Read ``HCLG.fst`` once per process (re-read if the file changed)."""
    path = str(path)
    stamp = os.stat(path).st_mtime_ns
    cached = _FST_CACHE.get(path)
    if cached is None or cached[0] != stamp:
        _FST_CACHE.clear()  # one graph per worker at a time
        _FST_CACHE[path] = (stamp, kaldifst.StdVectorFst.read(path))
    return _FST_CACHE[path][1]


@dataclass(frozen=True)
class UtteranceJob:
    """One utterance for a worker (picklable: the graph travels as a path)."""

    utt_id: str
    scores: np.ndarray  # [T, S] float32 unscaled pseudo log-likelihoods
    label_to_senone: np.ndarray  # [L] int64
    config: DecodeConfig
    points: tuple[Point, ...]
    fst_path: str | None = None
    keep_lattice: bool = False


def run_job(job: UtteranceJob, fst: kaldifst.StdVectorFst | None = None) -> Hypothesis:
    """Decode one utterance (in a worker, or in-process with ``fst`` given)."""
    if fst is None:
        assert job.fst_path is not None
        fst = load_fst(job.fst_path)
    scale = np.float32(job.config.acoustic_scale)
    scaled = np.take(job.scores, job.label_to_senone, axis=1) * scale
    return decode_matrix(fst, scaled, job.config, job.points, job.keep_lattice)


def decode_matrix(
    fst: kaldifst.StdVectorFst,
    scaled: np.ndarray,
    config: DecodeConfig,
    points: Sequence[Point],
    keep_lattice: bool = False,
) -> Hypothesis:
    """Decode a ``[T, L]`` matrix of scaled scores (column ``k-1`` for graph label ``k``)."""
    decodable = kaldi_decoder.DecodableCtc(np.ascontiguousarray(scaled, dtype=np.float32))
    if not config.lattice:
        opts = kaldi_decoder.FasterDecoderOptions()
        opts.beam, opts.max_active, opts.min_active = (
            config.beam, config.max_active, config.min_active,
        )  # fmt: skip
        decoder = kaldi_decoder.FasterDecoder(fst, opts)
        decoder.decode(decodable)
        ok, best = decoder.get_best_path(use_final_probs=True)
        words = list(kaldifst.get_linear_symbol_sequence(best)[2]) if ok else []
        return Hypothesis(
            words=words,
            sweep={p: words for p in points},
            reached_final=bool(decoder.reached_final()),
        )
    opts = kaldi_decoder.LatticeSimpleDecoderConfig()
    opts.beam, opts.lattice_beam = config.beam, config.lattice_beam
    decoder = kaldi_decoder.LatticeSimpleDecoder(fst, opts)
    reached_final = bool(decoder.decode(decodable))
    ok, raw = decoder.get_raw_lattice(use_final_probs=True)
    if ok:
        lattice = lattice_from_kaldifst(raw, config.acoustic_scale)
    else:
        lattice = Lattice.empty()
    return hypothesis_from_lattice(lattice, config, points, reached_final, keep_lattice)


class CpuDecoder:
    """Kaldi CPU decoding of padded batches, utterances spread over an executor.

    Args:
        graph: the decoding graph (``fst``, ``label_to_senone``, ``num_senones``).
        config: beams, scales, the sweep grid.
        executor: worker processes (or a Dask cluster); ``None`` decodes in-process.
        fst_path: ``HCLG.fst`` of ``graph`` on disk, read by the workers. With an
            executor and no path, the graph is written to a temporary file (local
            workers only: a Dask cluster needs a path it can read).
        keep_lattices: return each :class:`~asr_kd.decode.base.Lattice` too.
    """

    def __init__(
        self,
        graph: GraphLike,
        config: DecodeConfig,
        executor: Executor | None = None,
        fst_path: Path | str | None = None,
        keep_lattices: bool = False,
    ) -> None:
        self.graph = graph
        self.config = config
        self.executor = executor
        self.keep_lattices = keep_lattices
        self.label_to_senone = np.asarray(graph.label_to_senone, dtype=np.int64)
        self.fst_path = str(fst_path) if fst_path is not None else None
        if executor is not None and self.fst_path is None:
            tmp = tempfile.mkdtemp(prefix="asr-kd-hclg-")
            weakref.finalize(self, shutil.rmtree, tmp, ignore_errors=True)
            self.fst_path = os.path.join(tmp, "HCLG.fst")
            graph.fst.write(self.fst_path)

    @property
    def device(self) -> str:
        return "cpu"

    def decode(
        self,
        log_likes: torch.Tensor,
        lengths: torch.Tensor,
        utt_ids: Sequence[str] | None = None,
        points: Sequence[Point] | None = None,
    ) -> list[Hypothesis]:
        """Decode a padded batch; see :class:`~asr_kd.decode.base.Decoder`."""
        jobs = self._jobs(log_likes, lengths, utt_ids, points)
        fst = None if self.executor is not None else self.graph.fst
        return map_progress(functools.partial(run_job, fst=fst), jobs, self.executor, "decode")

    def submit(
        self,
        log_likes: torch.Tensor,
        lengths: torch.Tensor,
        utt_ids: Sequence[str] | None = None,
        points: Sequence[Point] | None = None,
    ) -> list[Future[Hypothesis]]:
        """Start decoding a padded batch on the executor and return at once.

        The futures are in batch order; the longest utterances are handed to the workers
        first, so that a short one, not a long one, ends the batch. With the next batch
        submitted before this one is collected, the workers never wait for the slowest
        utterance of a batch (the decode stage keeps two batches in flight). Without an
        executor the batch is decoded here and the futures are already done.
        """
        jobs = self._jobs(log_likes, lengths, utt_ids, points)
        if self.executor is None:
            done: list[Future[Hypothesis]] = []
            for job in jobs:
                fut: Future[Hypothesis] = Future()
                fut.set_result(run_job(job, self.graph.fst))
                done.append(fut)
            return done
        order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i].scores))
        futures: dict[int, Future[Hypothesis]] = {}
        for i in order:
            futures[i] = self.executor.submit(run_job, jobs[i])
        return [futures[i] for i in range(len(jobs))]

    def _jobs(
        self,
        log_likes: torch.Tensor,
        lengths: torch.Tensor,
        utt_ids: Sequence[str] | None,
        points: Sequence[Point] | None,
    ) -> list[UtteranceJob]:
        names = check_scores(log_likes, lengths, self.graph.num_senones, utt_ids)
        points = tuple(points) if points is not None else tuple(self.config.grid())
        if not self.config.lattice:
            self.config.check_one_best_points(points)
        scores = log_likes.detach().to("cpu", torch.float32).numpy()
        return [
            UtteranceJob(
                utt_id=name,
                scores=scores[i, :n],
                label_to_senone=self.label_to_senone,
                config=self.config,
                points=points,
                fst_path=self.fst_path if self.executor is not None else None,
                keep_lattice=self.keep_lattices,
            )
            for i, (name, n) in enumerate(zip(names, lengths.tolist(), strict=True))
        ]


# ---------------------------------------------------------------------------
# Raw lattices out of kaldifst

_ARC = np.dtype(
    [("ilabel", "<i4"), ("olabel", "<i4"), ("graph", "<f4"), ("acoustic", "<f4"),
     ("nextstate", "<i4")]
)  # fmt: skip
_STATE = struct.Struct("<ffq")  # final weight (graph, acoustic), number of arcs
_FST_MAGIC = 2125659606
_FAST_TMP = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def lattice_from_kaldifst(lattice: kaldifst.Lattice, acoustic_scale: float) -> Lattice:
    """Convert a ``kaldifst.Lattice`` (words on the output side) to arrays.

    Python cannot iterate a ``kaldifst.Lattice``'s arcs and printing it as text is slow,
    so it is written to a temporary file in OpenFst's binary format and read with numpy.

    Args:
        acoustic_scale: the scale the decoder applied; divided out of the costs.
    """
    with tempfile.TemporaryDirectory(prefix="asr-kd-lat-", dir=_FAST_TMP) as tmp:
        path = os.path.join(tmp, "lat.fst")
        if not lattice.write(path):
            raise OSError(f"could not write a lattice to {path}")
        data = Path(path).read_bytes()
    return lattice_from_openfst_binary(data, acoustic_scale)


def lattice_from_openfst_binary(data: bytes, acoustic_scale: float) -> Lattice:
    """Parse a binary OpenFst VectorFst of Kaldi's ``lattice4`` arcs."""
    pos, start, num_states = _read_fst_header(data)
    finals = np.empty((num_states, 2), dtype=np.float32)
    counts = np.empty(num_states, dtype=np.int64)
    bases = np.empty(num_states, dtype=np.int64)
    for s in range(num_states):  # states are variable-length records
        g, a, n = _STATE.unpack_from(data, pos)
        finals[s] = g, a
        counts[s], bases[s] = n, pos + _STATE.size
        pos += _STATE.size + _ARC.itemsize * n
    total = int(counts.sum())
    within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    first_byte = np.repeat(bases, counts) + _ARC.itemsize * within
    raw = np.frombuffer(data, dtype=np.uint8)
    arcs = raw[first_byte[:, None] + np.arange(_ARC.itemsize)].view(_ARC).reshape(-1)
    is_final = np.isfinite(finals[:, 0])  # a non-final state's weight is Zero = (inf, inf)
    return Lattice(
        num_states=num_states,
        start=start,
        src=np.repeat(np.arange(num_states), counts),
        dst=arcs["nextstate"].astype(np.int64),
        word=arcs["olabel"].astype(np.int64),
        graph_cost=arcs["graph"].astype(np.float64),
        acoustic_cost=arcs["acoustic"].astype(np.float64) / acoustic_scale,
        final_state=np.flatnonzero(is_final),
        final_graph_cost=finals[is_final, 0].astype(np.float64),
        final_acoustic_cost=finals[is_final, 1].astype(np.float64) / acoustic_scale,
    )


def _read_fst_header(data: bytes) -> tuple[int, int, int]:
    """(offset of the first state, start state, number of states) of a binary VectorFst."""
    magic, size = struct.unpack_from("<ii", data, 0)
    pos = 8 + size
    fst_type = data[8:pos]
    (size,) = struct.unpack_from("<i", data, pos)
    arc_type = data[pos + 4 : pos + 4 + size]
    pos += 4 + size
    if magic != _FST_MAGIC or fst_type != b"vector" or arc_type != b"lattice4":
        raise ValueError(f"not a binary VectorFst of lattice4 arcs ({fst_type!r}, {arc_type!r})")
    _version, flags, _props, start, num_states, _num_arcs = struct.unpack_from("<iiQqqq", data, pos)
    if flags & 0b11:  # symbol tables follow the header
        raise ValueError("lattices with symbol tables are not supported")
    return pos + 40, start, num_states
