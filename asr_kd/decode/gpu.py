"""GPU back-end: NVIDIA's CUDA WFST decoder (``riva-asrlib-decoder`` 0.4.4).

Two modes, chosen by ``DecodeConfig.lattice``:

* **Lattices** (the default, the LM-weight/WIP sweep): ``BatchedMappedDecoderCuda(config,
  hclg_path, words_path, num_labels)`` decodes a padded batch of CUDA scores ``[B, T, L]``
  (column ``k-1`` for graph input label ``k``, as Kaldi's ``DecodableCtc``), and its CPU
  worker threads determinize one CompactLattice per utterance and write it to a Kaldi
  archive (``decode_write_lattice``). Its lattice post-processor is off, so the lattices
  keep raw (graph, acoustic) costs; they are read back (binary archive by default,
  :func:`read_compact_lattice_binary`; text with ``archive="text"``) and rescored for the
  whole grid exactly as on CPU (:meth:`~asr_kd.decode.lattice.Lattice.best_paths`).
* **1-best** (``lattice: false``): ``BatchedMappedOnlineDecoderCuda.decode_batch`` runs the
  search alone, each utterance as one chunk, and returns each channel's best path
  (``PartialHypothesisEx``: traced back on the host from the best token of the last
  decoded frame) with no lattice, determinization or archive. What it cannot do: the
  sweep. The search point is ``(1/acoustic_scale, 0)``; another LM weight ``w`` is
  searched with ``acoustic_scale = 1/w`` (the beams are in scaled units, so they narrow
  with it), and a word insertion penalty would need a graph with the penalty on every
  word arc: neither is a rescoring, so tune them with lattices on dev. Upstream Kaldi
  builds this path from the previous frame's best token and without final costs (the
  CPU 1-best decoder uses final costs): ``bench/decode.py`` measures its agreement with
  the CPU decoders before it is trusted (``device: auto`` keeps ``lattice: false`` on
  the CPU).

The decoder reads the graph and word list from disk and has no acoustic scale: the
scores are multiplied by ``acoustic_scale`` here (on the device), and divided out of the
lattices. :attr:`GpuDecoder.timings` accumulates seconds per step for ``bench/decode.py
--profile``: ``to_device`` (copy, label gather, scale), then ``search`` (1-best) or
``search_determinize_write`` (riva's call: the search, its CPU threads' determinization
and archive writing), ``read``, ``parse`` and ``rescore``.
Install with ``pip install 'asr-kd[gpu]'``.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import tempfile
import time
import weakref
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr_kd.decode.base import (
    DecodeConfig,
    GraphLike,
    Hypothesis,
    check_scores,
    graph_scores,
    hypothesis_from_lattice,
    word_table,
)
from asr_kd.decode.cpu import _FAST_TMP  # /dev/shm where writable: the lattice archives
from asr_kd.decode.lattice import Lattice, Point
from asr_kd.errors import BadInputError, ConfigError

ARCHIVES = ("binary", "text")


def import_riva() -> Any:
    """``riva.asrlib.decoder.python_decoder``, or a ConfigError saying how to install it."""
    try:
        from riva.asrlib.decoder import python_decoder
    except ImportError as e:
        raise ConfigError(
            f"the GPU decoder needs riva-asrlib-decoder ({e}): pip install 'asr-kd[gpu]', "
            "or decode on CPU with decode.device=cpu"
        ) from None
    return python_decoder


def riva_config(module: Any, config: DecodeConfig, chunk_frames: int = 50) -> Any:
    """``BatchedMappedDecoderCudaConfig`` for a :class:`DecodeConfig`.

    Args:
        chunk_frames: frames of each utterance per batch step of the lattice decoder
            (``n_input_per_chunk``; it changes the speed, not the result).
    """
    cfg = module.BatchedMappedDecoderCudaConfig()
    cfg.n_input_per_chunk = chunk_frames
    online = cfg.online_opts
    online.decoder_opts.default_beam = config.beam
    online.decoder_opts.lattice_beam = config.lattice_beam
    online.decoder_opts.max_active = config.max_active
    for name in ("blank_penalty", "length_penalty"):  # CTC extras: off for HMM graphs
        if hasattr(online.decoder_opts, name):
            setattr(online.decoder_opts, name, 0.0)
    online.determinize_lattice = True
    online.use_lattice_postprocessor = False  # keep raw (graph, acoustic) lattice costs
    online.max_batch_size = config.batch_size
    online.num_channels = 2 * config.batch_size
    online.frame_shift_seconds = 0.01  # must be set; only used for word times
    online.num_post_processing_worker_threads = os.cpu_count() or 1  # determinization
    online.num_decoder_copy_threads = 2
    return cfg


class GpuDecoder:
    """Batched CUDA decoding: lattices for the LM-weight/WIP sweep, or the 1-best path.

    Args:
        graph: the decoding graph.
        config: beams, scales, batch size, the sweep grid; ``lattice=False``: 1-best.
        fst_path: ``HCLG.fst`` on disk; the graph is written to a temporary file if
            not given.
        keep_lattices: return each :class:`~asr_kd.decode.lattice.Lattice` too.
        archive: how riva hands the lattices over: ``"binary"`` (Kaldi's binary
            archive, the fast path) or ``"text"`` (``ark,t:``).
        chunk_frames: see :func:`riva_config`.
    """

    def __init__(
        self,
        graph: GraphLike,
        config: DecodeConfig,
        fst_path: Path | str | None = None,
        keep_lattices: bool = False,
        archive: str = "binary",
        chunk_frames: int = 50,
    ) -> None:
        if archive not in ARCHIVES:
            raise ConfigError(f"archive must be one of {ARCHIVES}, got {archive!r}")
        module = import_riva()
        if not torch.cuda.is_available():
            raise ConfigError("decode.device=cuda but torch sees no CUDA device")
        self.graph = graph
        self.config = config
        self.keep_lattices = keep_lattices
        self.archive = archive
        self.timings: Counter[str] = Counter()
        self._tmp = tempfile.mkdtemp(prefix="asr-kd-riva-", dir=_FAST_TMP)
        weakref.finalize(self, shutil.rmtree, self._tmp, ignore_errors=True)
        if fst_path is None:
            fst_path = os.path.join(self._tmp, "HCLG.fst")
            graph.fst.write(str(fst_path))
        words_path = os.path.join(self._tmp, "words.txt")
        self._table = word_table(graph.words)
        self._ids = {w: i for i, w in self._table.items()}
        Path(words_path).write_text("".join(f"{w} {i}\n" for i, w in sorted(self._table.items())))
        label_to_senone = np.asarray(graph.label_to_senone, dtype=np.int64)
        self._label_index = torch.as_tensor(label_to_senone, device="cuda")
        cfg = riva_config(module, config, chunk_frames)
        args = (str(fst_path), words_path, len(label_to_senone))
        if config.lattice:
            self._decoder = module.BatchedMappedDecoderCuda(cfg, *args)
        else:
            self._decoder = module.BatchedMappedOnlineDecoderCuda(cfg.online_opts, *args)
            self._next_corr_id = 0

    @property
    def device(self) -> str:
        return "cuda"

    def decode(
        self,
        log_likes: torch.Tensor,
        lengths: torch.Tensor,
        utt_ids: Sequence[str] | None = None,
        points: Sequence[Point] | None = None,
    ) -> list[Hypothesis]:
        """Decode a padded batch; see :class:`~asr_kd.decode.base.Decoder`."""
        names = check_scores(log_likes, lengths, self.graph.num_senones, utt_ids)
        points = tuple(points) if points is not None else tuple(self.config.grid())
        if not self.config.lattice:
            self.config.check_one_best_points(points)
        start = time.perf_counter()
        scores = graph_scores(
            log_likes.to("cuda", torch.float32, non_blocking=True), self._label_index,
            self.config.acoustic_scale,
        ).contiguous()  # fmt: skip
        lengths_cpu = lengths.to("cpu", torch.int64).contiguous()
        torch.cuda.synchronize()
        self.timings["to_device"] += time.perf_counter() - start
        if not self.config.lattice:
            return self._one_best(scores, lengths_cpu, points)
        return self._lattices(scores, lengths_cpu, len(names), points)

    def _lattices(
        self, scores: torch.Tensor, lengths: torch.Tensor, batch: int, points: tuple[Point, ...]
    ) -> list[Hypothesis]:
        keys = [f"utt{i}" for i in range(batch)]  # archive keys must have no spaces
        archive = os.path.join(self._tmp, "lattices.ark")
        spec = f"ark:{archive}" if self.archive == "binary" else f"ark,t:{archive}"
        start = time.perf_counter()
        self._decoder.decode_write_lattice(scores, lengths, keys, spec)
        read = time.perf_counter()
        data = Path(archive).read_bytes()
        os.remove(archive)
        parse = time.perf_counter()
        if self.archive == "binary":
            lattices = read_compact_lattice_binary(data, self.config.acoustic_scale)
        else:
            lattices = read_compact_lattice_archive(data.decode(), self.config.acoustic_scale)
        rescore = time.perf_counter()
        # riva reports no "reached a final state" flag; a missing lattice counts as not
        empty = Lattice.empty()
        out = [
            hypothesis_from_lattice(
                lattices.get(key, empty), self.config, points, key in lattices, self.keep_lattices
            )
            for key in keys
        ]
        end = time.perf_counter()
        self.timings.update(
            search_determinize_write=read - start, read=parse - read, parse=rescore - parse,
            rescore=end - rescore,
        )  # fmt: skip
        return out

    def _one_best(
        self, scores: torch.Tensor, lengths: torch.Tensor, points: tuple[Point, ...]
    ) -> list[Hypothesis]:
        out = []
        start = time.perf_counter()
        size = self.config.batch_size  # the decoder's lanes
        for first in range(0, len(lengths), size):
            n = lengths[first : first + size].tolist()
            ids = list(range(self._next_corr_id, self._next_corr_id + len(n)))
            self._next_corr_id += len(n)
            for corr_id in ids:
                if not self._decoder.try_init_corr_id(corr_id, 1_000_000):
                    raise RuntimeError("the CUDA decoder has no free channel after 1 s")
            logits = [scores[first + i, :t] for i, t in enumerate(n)]  # contiguous views
            every = [True] * len(n)  # each utterance is its first and last chunk
            _, best = self._decoder.decode_batch(ids, logits, every, every)
            for hyp in best:
                words = self._word_ids(hyp.words)
                out.append(Hypothesis(words=words, sweep={p: words for p in points}))
        self.timings["search"] += time.perf_counter() - start
        return out

    def _word_ids(self, words: Sequence[int | str]) -> list[int]:
        """Word ids of a riva hypothesis (ids, or symbols read back through the table)."""
        if not words or isinstance(words[0], int):
            return [int(w) for w in words if w != 0]
        return [self._ids[w] for w in words]


# ---------------------------------------------------------------------------
# CompactLattices out of a Kaldi text archive (``ark,t:``)


def read_compact_lattice_archive(text: str, acoustic_scale: float) -> dict[str, Lattice]:
    """Parse a Kaldi text archive of CompactLattices (``ark,t:``), keyed by utterance.

    A line at a time in Python (about 4 us an arc on the development machine; the binary
    archive reads 3-4x faster, see bench/RESULTS.md): the reference that
    :func:`read_compact_lattice_binary` is checked against.
    """
    out = {}
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.strip().split("\n", 1)
        if lines[0].strip():
            body = lines[1] if len(lines) > 1 else ""
            out[lines[0].split()[0]] = lattice_from_compact_text(body, acoustic_scale)
    return out


def lattice_from_compact_text(text: str, acoustic_scale: float) -> Lattice:
    """Parse one CompactLattice as Kaldi prints it in a text archive.

    Kaldi prints it with OpenFst's FstPrinter (an acceptor, tab-separated, a weight of
    One not printed), the start state's lines first: arcs ``src dst word
    [graph,acoustic,tids]`` and final states ``state [graph,acoustic,tids]``. A dead
    state is printed as a final state of weight Zero (infinite costs) and dropped.

    Args:
        acoustic_scale: the scale the decoder applied; divided out of the costs.
    """
    arcs: list[tuple[float, ...]] = []
    finals: list[tuple[float, ...]] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) in (3, 4):
            g, a = _costs(fields[3]) if len(fields) == 4 else (0.0, 0.0)
            arcs.append((int(fields[0]), int(fields[1]), int(fields[2]), g, a))
        elif len(fields) in (1, 2):
            g, a = _costs(fields[1]) if len(fields) == 2 else (0.0, 0.0)
            finals.append((int(fields[0]), g, a))
        elif fields:
            raise BadInputError(f"not a CompactLattice line in a Kaldi text archive: {line!r}")
    if not arcs and not finals:
        return Lattice.empty()
    arc = np.array(arcs, dtype=np.float64).reshape(-1, 5)
    fin = np.array(finals, dtype=np.float64).reshape(-1, 3)
    num_states = int(max(arc[:, :2].max(initial=-1), fin[:, 0].max(initial=-1))) + 1
    start = int(text.split(None, 1)[0])
    fin = fin[np.isfinite(fin[:, 1])]
    return Lattice(
        num_states=num_states,
        start=start,
        src=arc[:, 0].astype(np.int64),
        dst=arc[:, 1].astype(np.int64),
        word=arc[:, 2].astype(np.int64),
        graph_cost=arc[:, 3],
        acoustic_cost=arc[:, 4] / acoustic_scale,
        final_state=fin[:, 0].astype(np.int64),
        final_graph_cost=fin[:, 1],
        final_acoustic_cost=fin[:, 2] / acoustic_scale,
    )


def _costs(weight: str) -> tuple[float, float]:
    graph, acoustic = weight.split(",")[:2]
    return float(graph), float(acoustic)


# ---------------------------------------------------------------------------
# CompactLattices out of a Kaldi binary archive (``ark:``)

# Each entry: ``key ``, then the lattice as OpenFst writes a VectorFst of
# ``compactlattice44`` arcs (Kaldi's CompactLatticeHolder writes no "\0B" binary marker,
# so that a lattice in a file of its own is an OpenFst file): a header, then per state
# its final weight and its arcs.
# A weight is (graph f32, acoustic f32, n i32, n transition ids i32); an arc is
# (ilabel i32, olabel i32, weight, nextstate i32); a state's arc count is an int64.
_HEADER_TAIL = struct.Struct("<iiQqqq")  # version, flags, properties, start, states, arcs
_FST_MAGIC = 2125659606
_MAGIC_BYTES = struct.pack("<i", _FST_MAGIC)


def read_compact_lattice_binary(data: bytes, acoustic_scale: float) -> dict[str, Lattice]:
    """Parse a Kaldi binary archive of CompactLattices (``ark:``), keyed by utterance.

    The records have variable length (each weight carries its transition ids), so one
    Python pass finds where each state and arc starts (two integer reads an arc); the
    fields are then gathered by numpy.
    """
    out = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        start = space + 1
        if data[start : start + 2] == b"\0B":  # Kaldi's binary marker (other holders write it)
            start += 2
        if space < 0 or data[start : start + 4] != _MAGIC_BYTES:
            raise BadInputError(f"not a Kaldi binary archive of CompactLattices at byte {pos}")
        key = data[pos:space].decode()
        lattice, pos = _read_compact_fst(data, start, acoustic_scale, key)
        out[key] = lattice
    return out


def _read_compact_fst(data: bytes, pos: int, acoustic_scale: float, key: str):
    magic, size = struct.unpack_from("<ii", data, pos)
    fst_type = data[pos + 8 : pos + 8 + size]
    pos += 8 + size
    (size,) = struct.unpack_from("<i", data, pos)
    arc_type = data[pos + 4 : pos + 4 + size]
    pos += 4 + size
    if magic != _FST_MAGIC or fst_type != b"vector" or arc_type != b"compactlattice44":
        raise BadInputError(
            f"lattice {key}: not a VectorFst of compactlattice44 arcs ({fst_type!r}, {arc_type!r})"
        )
    _version, flags, _props, start, num_states, _num_arcs = _HEADER_TAIL.unpack_from(data, pos)
    if flags & 0b11:
        raise BadInputError(f"lattice {key}: symbol tables in a lattice are not supported")
    pos += _HEADER_TAIL.size
    if num_states <= 0:
        return Lattice.empty(), pos
    # one int32 view of the states; the lattice's length is not known before the walk
    words = memoryview(data)[pos : pos + 4 * ((len(data) - pos) // 4)].cast("i")
    finals, arcs, counts = [], [], []
    at = 0
    for _ in range(num_states):
        finals.append(at)
        at += 3 + words[at + 2]
        num = words[at]  # int64 arc count (its high word is 0)
        at += 2
        counts.append(num)
        for _ in range(num):
            arcs.append(at)
            at += 6 + words[at + 4]
    ints = np.frombuffer(data, dtype="<i4", count=at, offset=pos)
    floats = ints.view("<f4")
    fin = np.asarray(finals, dtype=np.int64)
    arc = np.asarray(arcs, dtype=np.int64)
    string_len = ints[arc + 4]
    final_graph = floats[fin].astype(np.float64)
    final_acoustic = floats[fin + 1].astype(np.float64) / acoustic_scale
    is_final = np.isfinite(final_graph)  # a non-final state's weight is Zero (inf, inf)
    lattice = Lattice(
        num_states=num_states,
        start=start,
        src=np.repeat(np.arange(num_states), counts),
        dst=ints[arc + 5 + string_len].astype(np.int64),
        word=ints[arc + 1].astype(np.int64),
        graph_cost=floats[arc + 2].astype(np.float64),
        acoustic_cost=floats[arc + 3].astype(np.float64) / acoustic_scale,
        final_state=np.flatnonzero(is_final),
        final_graph_cost=final_graph[is_final],
        final_acoustic_cost=final_acoustic[is_final],
    )
    return lattice, pos + 4 * at
