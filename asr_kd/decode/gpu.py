"""GPU back-end: NVIDIA's CUDA WFST decoder (``riva-asrlib-decoder`` 0.4.4).

``BatchedMappedDecoderCuda(config, hclg_path, words_path, num_labels)`` decodes a
padded batch of CUDA scores ``[B, T, L]``, reading column ``k-1`` for graph input label
``k`` (the same convention as Kaldi's ``DecodableCtc``), and writes one determinized
CompactLattice per utterance to a Kaldi archive. Its lattice post-processor is turned
off so the lattices keep raw (graph, acoustic) costs; they are read back and rescored
for the whole (LM weight, WIP) grid exactly as on CPU
(:meth:`~asr_kd.decode.base.Lattice.best_paths`).

The decoder reads the graph and word list from disk and has no acoustic scale: the
scores are multiplied by ``acoustic_scale`` here, and divided out of the lattices.
Install with ``pip install 'asr-kd[gpu]'``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr_kd.decode.base import (
    DecodeConfig,
    GraphLike,
    Hypothesis,
    Lattice,
    Point,
    check_scores,
    graph_scores,
    hypothesis_from_lattice,
    word_table,
)
from asr_kd.errors import ConfigError


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


def riva_config(module: Any, config: DecodeConfig) -> Any:
    """``BatchedMappedDecoderCudaConfig`` for a :class:`DecodeConfig`."""
    cfg = module.BatchedMappedDecoderCudaConfig()
    cfg.n_input_per_chunk = 50  # frames per step of each utterance
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
    online.num_post_processing_worker_threads = os.cpu_count() or 1
    online.num_decoder_copy_threads = 2
    return cfg


class GpuDecoder:
    """Batched CUDA decoding with lattices for the LM-weight/WIP sweep.

    Args:
        graph: the decoding graph.
        config: beams, scales, batch size, the sweep grid.
        fst_path: ``HCLG.fst`` on disk; the graph is written to a temporary file if
            not given.
        keep_lattices: return each :class:`~asr_kd.decode.base.Lattice` too.
    """

    def __init__(
        self,
        graph: GraphLike,
        config: DecodeConfig,
        fst_path: Path | str | None = None,
        keep_lattices: bool = False,
    ) -> None:
        module = import_riva()
        if not torch.cuda.is_available():
            raise ConfigError("decode.device=cuda but torch sees no CUDA device")
        self.graph = graph
        self.config = config
        self.keep_lattices = keep_lattices
        self._tmp = tempfile.mkdtemp(prefix="asr-kd-riva-")
        weakref.finalize(self, shutil.rmtree, self._tmp, ignore_errors=True)
        if fst_path is None:
            fst_path = os.path.join(self._tmp, "HCLG.fst")
            graph.fst.write(str(fst_path))
        words_path = os.path.join(self._tmp, "words.txt")
        table = word_table(graph.words)
        Path(words_path).write_text("".join(f"{w} {i}\n" for i, w in sorted(table.items())))
        label_to_senone = np.asarray(graph.label_to_senone, dtype=np.int64)
        self._label_index = torch.as_tensor(label_to_senone, device="cuda")
        self._decoder = module.BatchedMappedDecoderCuda(
            riva_config(module, config), str(fst_path), words_path, len(label_to_senone)
        )

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
        scores = graph_scores(
            log_likes.to("cuda", torch.float32), self._label_index, self.config.acoustic_scale
        ).contiguous()
        lengths_cpu = lengths.to("cpu", torch.int64).contiguous()
        keys = [f"utt{i}" for i in range(len(names))]  # archive keys must have no spaces
        archive = os.path.join(self._tmp, "lattices.ark")
        self._decoder.decode_write_lattice(scores, lengths_cpu, keys, f"ark,t:{archive}")
        text = Path(archive).read_text()
        lattices = read_compact_lattice_archive(text, self.config.acoustic_scale)
        os.remove(archive)
        # riva reports no "reached a final state" flag; a missing lattice counts as not
        empty = Lattice.empty()
        return [
            hypothesis_from_lattice(
                lattices.get(key, empty), self.config, points, key in lattices, self.keep_lattices
            )
            for key in keys
        ]


# ---------------------------------------------------------------------------
# CompactLattices out of a Kaldi text archive


def read_compact_lattice_archive(text: str, acoustic_scale: float) -> dict[str, Lattice]:
    """Parse a Kaldi text archive of CompactLattices (``ark,t:``), keyed by utterance."""
    out = {}
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.strip().split("\n", 1)
        if lines[0].strip():
            body = lines[1] if len(lines) > 1 else ""
            out[lines[0].split()[0]] = lattice_from_compact_text(body, acoustic_scale)
    return out


def lattice_from_compact_text(text: str, acoustic_scale: float) -> Lattice:
    """Parse one CompactLattice as Kaldi prints it in a text archive.

    Lines are ``src dst word [graph,acoustic,tids]`` (arcs) or ``state
    [graph,acoustic,tids]`` (final states); a weight of One is not printed. The start
    state is 0.

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
    if not arcs and not finals:
        return Lattice.empty()
    arc = np.array(arcs, dtype=np.float64).reshape(-1, 5)
    fin = np.array(finals, dtype=np.float64).reshape(-1, 3)
    num_states = int(max(arc[:, :2].max(initial=-1), fin[:, 0].max(initial=-1))) + 1
    return Lattice(
        num_states=num_states,
        start=0,
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
