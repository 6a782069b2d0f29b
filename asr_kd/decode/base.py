"""Decoder configuration, interface, score preparation and graph checks.

A hybrid model gives senone log-posteriors ``log p(s|x)``. The decoder wants
likelihoods, so the priors are divided out (:func:`pseudo_log_likelihoods`):
``log p(x|s) = log p(s|x) - log p(s) + const``. Where each scale is applied:

* :func:`pseudo_log_likelihoods` returns *unscaled* scores.
* The back-ends multiply them by ``DecodeConfig.acoustic_scale`` before the beam
  search (:func:`graph_scores`), so ``beam`` and ``lattice_beam`` are in the usual
  Kaldi units (acoustic scale 0.1).
* The lattices keep unscaled acoustic costs (the back-ends divide the scale back
  out, as Kaldi's ``latgen`` does), and :meth:`~asr_kd.decode.lattice.Lattice.best_paths`
  rescores them for the sweep (:mod:`asr_kd.decode.lattice`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from asr_kd.decode.lattice import Lattice, Point
from asr_kd.errors import BadInputError, ConfigError
from asr_kd.tree.priors import PRIOR_SOURCES, log_priors

#: log(sqrt(FLT_MAX)): the log-prior Kaldi's nnet1 ``PdfPrior`` gives senones whose prior is
#: below the floor, so that their likelihood is pushed far down instead of up.
UNSEEN_LOG_PRIOR = 0.5 * math.log(np.finfo(np.float32).max)


@dataclass(frozen=True)
class DecodeConfig:
    """Decoder and scoring settings (the ``decode`` section of a recipe config).

    Args:
        beam: search beam (in scaled cost units, as Kaldi's ``--beam``).
        max_active: most active tokens per frame (GPU and the 1-best CPU decoder;
            Kaldi's lattice-simple decoder has no such limit). 50,000, not Kaldi's
            7000: the CUDA decoder meets its cap by narrowing the beam, and at 7000 it
            lost paths that the CPU lattice decoder keeps (dev WER 7.16 vs 6.90, 96.7%
            same words, on an H100; 50,000: 100%, see bench/RESULTS.md).
        min_active: fewest active tokens per frame (1-best CPU decoder only).
        lattice_beam: pruning beam of the lattices the LM-weight sweep rescores.
        acoustic_scale: scale of the acoustic scores during search (Kaldi's ``--acwt``).
        lm_weights: LM weights swept when scoring (Kaldi's ``LMWT``; acoustic costs are
            scaled by ``1/LMWT`` at rescoring).
        word_ins_penalties: word insertion penalties swept when scoring.
        prior_floor: priors below this are treated as unseen senones (see
            :func:`decoder_log_priors`).
        priors: the priors divided out: ``counts`` (the training alignments' senone
            counts, ``senone-targets``) or ``posteriors`` (the model's averaged
            posteriors, ``adjust-priors``; Kaldi's ``nnet3-am-adjust-priors``).
        prior_frames: training frames ``adjust-priors`` averages posteriors over
            (Kaldi's ``--prior-subset-size``).
        device: ``"auto"`` (CUDA when available and riva is installed), ``"cpu"``, ``"cuda"``.
        batch_size: utterances scored and decoded together (the GPU decoder's batch).
        lattice: decode lattices (needed for the sweep). ``False`` gives the 1-best path
            only (Kaldi's FasterDecoder on CPU, the CUDA search without lattices on GPU):
            faster, but only ``(1/acoustic_scale, 0)`` can be scored (search at LM weight
            ``w`` with ``acoustic_scale = 1/w``; a WIP needs lattices).
    """

    beam: float = 13.0
    max_active: int = 50_000
    min_active: int = 200
    lattice_beam: float = 6.0
    acoustic_scale: float = 0.1
    lm_weights: tuple[float, ...] = tuple(range(6, 18))
    word_ins_penalties: tuple[float, ...] = (0.0, 0.5, 1.0)
    prior_floor: float = 1e-10
    priors: str = "counts"
    prior_frames: int = 20_000
    device: str = "auto"
    batch_size: int = 32
    lattice: bool = True

    def __post_init__(self) -> None:
        if self.beam <= 0 or self.lattice_beam <= 0:
            raise ValueError("beam and lattice_beam must be positive")
        if not 0 < self.min_active <= self.max_active:
            raise ValueError("need 0 < min_active <= max_active")
        if self.acoustic_scale <= 0:
            raise ValueError(f"acoustic_scale must be positive, got {self.acoustic_scale}")
        if not self.lm_weights or any(w <= 0 for w in self.lm_weights):
            raise ValueError("lm_weights must be a non-empty list of positive numbers")
        if not self.word_ins_penalties:
            raise ValueError("word_ins_penalties must not be empty")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not 0 < self.prior_floor < 1:
            raise ValueError("prior_floor must lie in (0, 1)")
        if self.priors not in PRIOR_SOURCES:
            raise ValueError(
                f"priors must be one of {', '.join(PRIOR_SOURCES)}, got {self.priors!r}"
            )
        if self.prior_frames < 1:
            raise ValueError("prior_frames must be at least 1")

    @property
    def decode_point(self) -> Point:
        """The (LM weight, WIP) the search itself used: ``(1/acoustic_scale, 0)``."""
        return (1.0 / self.acoustic_scale, 0.0)

    def check_one_best_points(self, points: Sequence[Point]) -> None:
        """Without lattices only the decode point can be scored; ConfigError otherwise."""
        if set(points) - {self.decode_point}:
            raise ConfigError(
                "without lattices (decode.lattice=false) only lm_weight="
                f"{self.decode_point[0]:g} (1/acoustic_scale) and word_ins_penalty=0 "
                "can be scored"
            )

    def grid(self) -> list[Point]:
        """The sweep: every (LM weight, WIP) pair; just the decode point without lattices."""
        if not self.lattice:
            return [self.decode_point]
        return [(float(w), float(p)) for w in self.lm_weights for p in self.word_ins_penalties]


@dataclass
class Hypothesis:
    """One utterance's result.

    Attributes:
        words: word ids of the best path at the decode point ``(1/acoustic_scale, 0)``.
        sweep: word ids of the best path at each requested (LM weight, WIP).
        reached_final: whether the search ended in a final state of the graph (if not,
            the best partial path is given, as Kaldi does, and a warning is due).
        lattice: the lattice itself, when the caller asked to keep it.
    """

    words: list[int]
    sweep: dict[Point, list[int]] = field(default_factory=dict)
    reached_final: bool = True
    lattice: Lattice | None = None


class GraphLike(Protocol):
    """What the decoders need from :class:`asr_kd.graph.Graph`."""

    fst: Any  # kaldifst.StdVectorFst
    label_to_senone: np.ndarray
    words: Mapping[int, str] | Sequence[str]
    num_senones: int
    tree_id: str
    words_sha: str


class Decoder(Protocol):
    """A WFST decoder back-end (:class:`~asr_kd.decode.cpu.CpuDecoder`, ``GpuDecoder``)."""

    def decode(
        self,
        log_likes: torch.Tensor,
        lengths: torch.Tensor,
        utt_ids: Sequence[str] | None = None,
        points: Sequence[Point] | None = None,
    ) -> list[Hypothesis]:
        """Decode a padded batch.

        Args:
            log_likes: ``[B, T, S]`` unscaled pseudo log-likelihoods over the graph's
                senones (:func:`pseudo_log_likelihoods`).
            lengths: ``[B]`` valid frames per utterance.
            utt_ids: names used in error messages.
            points: (LM weight, WIP) pairs to rescore; default ``config.grid()``.
        """
        ...


# ---------------------------------------------------------------------------
# Scores


def decoder_log_priors(counts: np.ndarray, floor: float = 1e-10) -> np.ndarray:
    """``log p(s)`` for the decoder from senone frame counts (``priors.json``).

    Senones whose prior is below ``floor`` (never seen in training) get a log-prior of
    ``+log(sqrt(FLT_MAX))`` (Kaldi nnet1's rule), which pushes their pseudo-likelihood far
    down. Flooring the prior instead would *raise* their score by ``-log(floor)`` and
    let a senone the model never learned win frames.
    """
    counts = np.asarray(counts, dtype=np.float64)
    out = log_priors(counts, floor)
    out[counts / counts.sum() < floor] = UNSEEN_LOG_PRIOR
    return out


def pseudo_log_likelihoods(
    log_posteriors: torch.Tensor | np.ndarray, log_priors: torch.Tensor | np.ndarray
) -> torch.Tensor | np.ndarray:
    """Scaled likelihoods ``log p(x|s) + const = log p(s|x) - log p(s)``, unscaled.

    The acoustic scale is applied later, by the decoder (see the module doc).

    Args:
        log_posteriors: ``[T, S]`` or ``[B, T, S]`` (torch or numpy).
        log_priors: ``[S]``.

    Returns:
        float32, the type and shape of ``log_posteriors``.
    """
    width = log_posteriors.shape[-1]
    if len(log_priors) != width:
        raise BadInputError(
            f"the priors cover {len(log_priors)} senones but the scores have {width} "
            "columns: model and priors come from different trees"
        )
    if isinstance(log_posteriors, torch.Tensor):
        priors = torch.as_tensor(log_priors, dtype=torch.float32, device=log_posteriors.device)
        return log_posteriors.float() - priors
    return np.asarray(log_posteriors, dtype=np.float32) - np.asarray(log_priors, np.float32)


def check_scores(
    log_likes: torch.Tensor,
    lengths: torch.Tensor,
    num_senones: int,
    utt_ids: Sequence[str] | None = None,
) -> list[str]:
    """Check a padded batch before decoding; returns the utterance names used.

    Raises:
        BadInputError: wrong width (another tree), an empty utterance, a length
            beyond the padding, or a NaN/Inf score (named by utterance).
    """
    if log_likes.dim() != 3:
        raise BadInputError(f"scores must be [batch, frames, senones], got {list(log_likes.shape)}")
    batch, frames, width = log_likes.shape
    names = list(utt_ids) if utt_ids is not None else [f"#{i}" for i in range(batch)]
    if len(names) != batch or len(lengths) != batch:
        raise BadInputError(f"{batch} score rows, {len(lengths)} lengths, {len(names)} names")
    if width != num_senones:
        raise BadInputError(
            f"the scores have {width} senone columns but the graph has {num_senones} senones: "
            "the model was trained for another tree (retrain it on this tree's senone "
            "targets, or decode with the graph built from its tree)"
        )
    lengths = lengths.to("cpu")
    for name, n in zip(names, lengths.tolist(), strict=True):
        if n < 1:
            raise BadInputError(f"utterance {name} has no frames to decode")
        if n > frames:
            raise BadInputError(f"utterance {name}: length {n} beyond the {frames} padded frames")
    valid = (
        torch.arange(frames, device=log_likes.device)[None, :]
        < lengths.to(log_likes.device)[:, None]
    )
    bad = (~torch.isfinite(log_likes)).any(dim=-1) & valid
    if bool(bad.any()):
        which = [names[i] for i in torch.nonzero(bad.any(dim=1)).flatten().tolist()]
        raise BadInputError(
            f"NaN or Inf scores in utterance(s) {', '.join(which[:5])}"
            f"{' ...' if len(which) > 5 else ''}: check the model's output (a diverged "
            "model) or the priors"
        )
    return names


def graph_scores(log_likes: torch.Tensor, label_index: torch.Tensor, scale: float) -> torch.Tensor:
    """Scores per graph input label: column ``k-1`` holds label ``k``'s senone, times ``scale``.

    Args:
        log_likes: ``[..., S]`` senone scores.
        label_index: ``[L]`` int64, ``label_to_senone`` on ``log_likes``'s device.
    """
    return log_likes.index_select(-1, label_index) * scale


def pad_batch(scores: Sequence[np.ndarray | torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad ``[T_i, S]`` score matrices to ``[B, T_max, S]``; returns (scores, lengths)."""
    tensors = [torch.as_tensor(s, dtype=torch.float32) for s in scores]
    lengths = torch.tensor([len(t) for t in tensors], dtype=torch.int64)
    return torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True), lengths


# ---------------------------------------------------------------------------
# Graph checks


def word_table(words: Mapping[int, str] | Sequence[str]) -> dict[int, str]:
    """The graph's id -> word table as a dict."""
    return dict(words.items()) if isinstance(words, Mapping) else dict(enumerate(words))


def words_to_text(ids: Sequence[int], table: Mapping[int, str]) -> str:
    return " ".join(table.get(i, f"<id:{i}>") for i in ids)


def check_graph(
    graph: GraphLike, lang_dir: Path | str | None = None, tree_id: str | None = None
) -> None:
    """Check that a graph belongs to the lang directory and tree the rest of the run uses.

    Args:
        lang_dir: the ``prepare-lang`` output whose words the references are in.
        tree_id: the tree id of the senone targets / model (``info.json``'s ``tree_id``).

    Raises:
        BadInputError: the graph was built with another lang directory or tree.
    """
    if tree_id is not None and graph.tree_id != tree_id:
        raise BadInputError(
            f"the graph was built for tree {graph.tree_id} but the model/senone targets use "
            f"tree {tree_id}: rebuild the graph ('make-graph') with the model's tree"
        )
    if lang_dir is None:
        return
    path = Path(lang_dir) / "words.txt"
    if not path.is_file():
        raise BadInputError(f"{path} does not exist: run the 'prepare-lang' stage first")
    if getattr(graph, "words_sha", None) == hashlib.sha256(path.read_bytes()).hexdigest()[:16]:
        return
    theirs = _read_words(path)
    ours = word_table(graph.words)
    if ours != theirs:
        diff = sorted(set(ours.items()) ^ set(theirs.items()))[:3]
        raise BadInputError(
            f"the graph (words_sha {graph.words_sha}, {len(ours)} words) was built with "
            f"another lang directory than {lang_dir} ({len(theirs)} words; first "
            f"differences {diff}): rebuild the graph from this lang directory"
        )


def _read_words(path: Path) -> dict[int, str]:
    table = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            table[int(parts[1])] = parts[0]
    return table


def make_decoder(
    graph: GraphLike,
    config: DecodeConfig,
    executor: Executor | None = None,
    fst_path: Path | str | None = None,
) -> Decoder:
    """The decoder ``config.device`` asks for.

    ``"auto"`` takes the GPU (riva) decoder when CUDA is available and
    ``riva-asrlib-decoder`` is installed, otherwise the CPU (Kaldi) decoder. For the
    1-best decoder (``lattice=False``) ``"auto"`` takes the CPU: the GPU's 1-best path
    comes from riva's partial-hypothesis traceback (see :mod:`asr_kd.decode.gpu`) and is
    used only when asked for (``device: cuda``).

    Args:
        executor: CPU decoder only: decodes utterances in worker processes.
        fst_path: the graph's ``HCLG.fst`` on disk (workers read it instead of
            receiving the graph; the GPU decoder reads it too). Written to a temporary
            file when not given.
    """
    device = config.device
    if device == "auto":
        gpu = config.lattice and torch.cuda.is_available() and _riva_available()
        device = "cuda" if gpu else "cpu"
    if device == "cuda":
        from asr_kd.decode.gpu import GpuDecoder

        return GpuDecoder(graph, config, fst_path=fst_path)
    from asr_kd.decode.cpu import CpuDecoder

    return CpuDecoder(graph, config, executor=executor, fst_path=fst_path)


def _riva_available() -> bool:
    try:
        return importlib.util.find_spec("riva.asrlib.decoder") is not None
    except ModuleNotFoundError:
        return False


# ---------------------------------------------------------------------------
# Hypotheses out of lattices


def hypothesis_from_lattice(
    lattice: Lattice,
    config: DecodeConfig,
    points: Sequence[Point],
    reached_final: bool,
    keep_lattice: bool = False,
) -> Hypothesis:
    """Best paths at the decode point and at every requested point."""
    wanted = list(dict.fromkeys([config.decode_point, *points]))
    paths = dict(zip(wanted, lattice.best_paths(wanted), strict=True))
    return Hypothesis(
        words=paths[config.decode_point],
        sweep={p: paths[p] for p in points},
        reached_final=reached_final,
        lattice=lattice if keep_lattice else None,
    )
