"""HCLG for the tied-state tri-phone models (``asr-kd make-graph``), as Kaldi's mkgraph.sh.

Steps (each timed and sized in ``info.json``)::

    LG    = minimize_encoded(determinize_star(L_disambig o G, log semiring))
    CLG   = compose_context(#N phones, width 3, centre 1, LG), ilabel-sorted
    Ha    = H without self-loops for exactly CLG's windows (asr_kd.graph.h)
    HCLGa = minimize_encoded(rmsymbols(determinize_star(Ha o CLG, log semiring)))
    HCLG  = add_self_loops(HCLGa)   (after minimisation, as mkgraph.sh does)

kaldifst 1.7.17 has no ``fstpushspecial`` and no ``fstrmepslocal``: LG is not pushed
(the graph is as correct, only a little less friendly to beam pruning) and the epsilons
left by removing the disambiguation symbols are not removed locally. Transition
probabilities are the lang topology's initial values (0.75 stay / 0.25 leave for
nonsilence phones; 0.25 each for silence), with ``transition_scale`` 1.0 and
``self_loop_scale`` 0.1 as in mkgraph.sh.

Output contract::

    <graph>/HCLG.fst     OpenFst binary StdVectorFst; input label k >= 1 is an HMM label,
                         output labels are word ids of words.txt
    <graph>/words.txt    the lang directory's words.txt
    <graph>/labels.json  {"num_senones", "tree_id", "num_labels", "label_to_senone": [N],
                          "label_phone_state": [[phone, state], ...]}; index i is label i+1
    <graph>/info.json    states, arcs, seconds/states/arcs per step, tree_id, words_sha256
                         (first 16 hex digits, as tree_id), config, dropped phones and the
                         words they make unreachable

A decoder scores label k with column ``label_to_senone[k-1]`` of the senone scores
(:meth:`Graph.label_scores`); kaldi-decoder's ``DecodableCtc`` reads label k from
column k-1 of the matrix it is given.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kaldifst
import numpy as np

from asr_kd.checked import open_fst, read_json, read_text
from asr_kd.config import to_dict
from asr_kd.errors import BadInputError, ConfigError
from asr_kd.graph import fst_ops
from asr_kd.graph.h import HmmLabels, HTransducer, build_h, parse_topology
from asr_kd.lang import Lang
from asr_kd.lang.lang_dir import read_symbols
from asr_kd.stage import file_digest, read_marker, require_done, require_file, stage_output
from asr_kd.tree import ContextTree
from asr_kd.tree.context_tree import tree_id

logger = logging.getLogger(__name__)

STAGE = "make-graph"
TREE_STAGE = "build-tree"
FILES = ("HCLG.fst", "words.txt", "labels.json", "info.json")
CONTEXT_WIDTH, CENTRAL_POSITION = 3, 1


@dataclass(frozen=True)
class GraphConfig:
    """Graph-building options (mkgraph.sh's).

    Attributes:
        self_loop_scale: scale of the HMM self-loop and forward log-probabilities.
        transition_scale: scale of the other transition log-probabilities.
    """

    self_loop_scale: float = 0.1
    transition_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.self_loop_scale < 0 or self.transition_scale < 0:
            raise ConfigError("graph self_loop_scale and transition_scale must be >= 0")


class _Steps:
    """Times and sizes of the build steps, for info.json and the log."""

    def __init__(self) -> None:
        self.info: dict[str, dict[str, float]] = {}
        self.start = time.perf_counter()

    def done(self, name: str, fst: kaldifst.StdVectorFst) -> None:
        """Record a finished step (timed from the previous one)."""
        seconds = time.perf_counter() - self.start
        states, arcs = fst_ops.fst_size(fst)
        self.info[name] = {"seconds": round(seconds, 2), "states": states, "arcs": arcs}
        logger.info("%s: %s: %d states, %d arcs, %.1f s", STAGE, name, states, arcs, seconds)
        self.start = time.perf_counter()


def compose_lg(L: kaldifst.StdVectorFst, G: kaldifst.StdVectorFst) -> kaldifst.StdVectorFst:
    """min(det(L_disambig o G)), determinised in the log semiring (L olabel-sorted)."""
    LG = kaldifst.compose(L, G)
    _determinize(LG, "L o G")
    kaldifst.minimize_encoded(LG)
    return LG


def _determinize(fst: kaldifst.StdVectorFst, what: str) -> None:
    if fst.num_states == 0:
        raise BadInputError(f"{STAGE}: {what} is empty (no word sequence survives)")
    if kaldifst.determinize_star(fst, use_log=True):  # True: stopped early
        raise BadInputError(f"{STAGE}: determinizing {what} stopped before it finished")


def compose_clg(LG: kaldifst.StdVectorFst, disambig: list[int]):
    """(CLG ilabel-sorted, ilabels): C o LG for tri-phones (``fstcomposecontext``)."""
    CLG, ilabels = kaldifst.compose_context(disambig, CONTEXT_WIDTH, CENTRAL_POSITION, LG)
    kaldifst.arcsort(CLG, sort_type="ilabel")
    return CLG, ilabels


def compose_hclga(H: HTransducer, CLG: kaldifst.StdVectorFst) -> kaldifst.StdVectorFst:
    """min(rmsymbols(det(Ha o CLG))): the graph without self-loops or disambiguation."""
    HCLGa = kaldifst.compose(H.fst, CLG)
    if HCLGa.num_states == 0:
        raise BadInputError(
            f"{STAGE}: Ha o CLG is empty: no word of the LM can be pronounced with the phones "
            "the tree has senones for"
        )
    _determinize(HCLGa, "Ha o CLG")
    arcs = fst_ops.read_arcs(HCLGa)
    del HCLGa
    fst_ops.remove_input_symbols(arcs, H.disambig)
    HCLGa = fst_ops.to_fst(arcs)
    del arcs
    kaldifst.minimize_encoded(HCLGa)
    return HCLGa


def add_self_loops(
    HCLGa: kaldifst.StdVectorFst, labels: HmmLabels, self_loop_scale: float
) -> kaldifst.StdVectorFst:
    """HCLG: HCLGa with the HMM self-loops (``add-self-loops --reorder=true``)."""
    arcs = fst_ops.add_self_loops(fst_ops.read_arcs(HCLGa), labels.loop_prob, self_loop_scale)
    return fst_ops.to_fst(arcs)


def compile_hclg(
    lang: Lang, G: kaldifst.StdVectorFst, tree: ContextTree, config: GraphConfig
) -> tuple[kaldifst.StdVectorFst, HmmLabels, dict[str, Any]]:
    """Build HCLG in memory.

    Returns:
        (HCLG, its input labels, build information: steps, windows, dropped phones,
        unreachable words).
    """
    check_tree_phones(tree, lang)
    topos = parse_topology(lang.topo_text)
    steps = _Steps()
    LG = compose_lg(lang.L_disambig(), G)
    steps.done("LG", LG)
    CLG, ilabels = compose_clg(LG, list(lang.disambig_phones))
    del LG
    steps.done("CLG", CLG)
    H = build_h(ilabels, tree, topos, lang.disambig_phones, config.transition_scale)
    steps.done("Ha", H.fst)
    HCLGa = compose_hclga(H, CLG)
    del CLG
    steps.done("HCLGa", HCLGa)
    HCLG = add_self_loops(HCLGa, H.labels, config.self_loop_scale)
    del HCLGa
    steps.done("HCLG", HCLG)
    names = {i: p for p, i in lang.phones.items()}
    unreachable = unreachable_words(lang, set(H.dropped_phones))
    if H.dropped_phones:
        logger.warning(
            "%s: the tree has no senones for phones %s: their pronunciations are left out "
            "of the graph; %d words cannot be recognised (e.g. %s)",
            STAGE,
            ", ".join(names[p] for p in H.dropped_phones),
            len(unreachable),
            ", ".join(unreachable[:10]) or "none",
        )
    info = {
        "steps": steps.info,
        "context_windows": H.num_windows,
        "disambig_windows": len(H.disambig),
        "dropped_phones": [names[p] for p in H.dropped_phones],
        "unreachable_words": unreachable,
    }
    return HCLG, H.labels, info


def check_tree_phones(tree: ContextTree, lang: Lang) -> None:
    """Refuse a tree built with another phone table than the lang directory's."""

    def real(table: dict[str, int]) -> dict[str, int]:
        return {p: i for p, i in table.items() if not p.startswith("#")}

    if real(tree.phones) != real(lang.phones):
        raise BadInputError(
            f"{STAGE}: the tree was built with another phones.txt than {lang.dir}/phones.txt; "
            "rebuild the tree ('build-tree') with this lang directory"
        )


def unreachable_words(lang: Lang, dropped: set[int]) -> list[str]:
    """Words whose every pronunciation uses a phone in ``dropped``."""
    return sorted(
        word
        for word, prons in lang.lexicon.items()
        if all(any(lang.phones[p] in dropped for p in pron) for pron in prons)
    )


def check_lm_lang(lm_dir: Path, lang: Lang) -> None:
    """Refuse an LM trained with another lang directory (words.txt ids differ)."""
    lm_lang = read_marker(lm_dir).get("config", {}).get("lang_config")
    if lm_lang is not None and lm_lang != read_marker(lang.dir).get("config"):
        raise BadInputError(
            f"{STAGE}: {lm_dir} was trained with another lang directory than {lang.dir}; "
            "rerun 'train-lm' with this lang directory"
        )


def make_graph(
    lang_dir: Path | str,
    lm_dir: Path | str,
    tree_dir: Path | str,
    out_dir: Path | str,
    config: GraphConfig | None = None,
    force: bool = False,
) -> Path:
    """Build HCLG.fst for a lang directory, an LM and a tree (``asr-kd make-graph``).

    Args:
        lang_dir: a ``prepare-lang`` output.
        lm_dir: a ``train-lm`` output (its ``G.fst``), trained with ``lang_dir``.
        tree_dir: a ``build-tree`` output (its ``tree.json``).
        out_dir: the graph directory to write (atomically; see the module doc).
        config: scales (defaults: :class:`GraphConfig`).
        force: redo a finished output.

    Returns:
        ``out_dir``.
    """
    config = config or GraphConfig()
    lang = Lang.load(Path(lang_dir).resolve())
    lm_dir = require_done(Path(lm_dir).resolve(), "train-lm")
    tree_dir = require_done(Path(tree_dir).resolve(), TREE_STAGE)
    g_path = require_file(lm_dir / "G.fst", "train-lm")
    tree_path = require_file(tree_dir / "tree.json", TREE_STAGE)
    check_lm_lang(lm_dir, lang)
    words_sha = file_digest(lang.dir / "words.txt")
    tid = tree_id(tree_path)
    stage_config = {
        "lang_dir": str(lang.dir),
        "lm_dir": str(lm_dir),
        "tree_dir": str(tree_dir),
        "words_sha256": words_sha,
        "G_sha256": file_digest(g_path),
        "tree_id": tid,
        **to_dict(config),
    }
    with stage_output(out_dir, STAGE, stage_config, force=force) as tmp:
        if tmp is None:
            return Path(out_dir)
        start = time.perf_counter()
        G = open_fst(g_path, "train-lm")
        tree = ContextTree.load(tree_path)
        HCLG, labels, built = compile_hclg(lang, G, tree, config)
        info = {
            "states": built["steps"]["HCLG"]["states"],
            "arcs": built["steps"]["HCLG"]["arcs"],
            "num_labels": labels.num_labels,
            "num_senones": tree.num_senones,
            "tree_id": tid,
            "words_sha256": words_sha,
            "config": to_dict(config),
            **built,
            "seconds": round(time.perf_counter() - start, 2),
        }
        write_graph_dir(tmp, HCLG, lang, labels, info)
    logger.info(
        "%s: wrote %s: HCLG %d states, %d arcs, %d labels over %d senones, in %.1f s",
        STAGE, out_dir, info["states"], info["arcs"], labels.num_labels, tree.num_senones,
        info["seconds"],
    )  # fmt: skip
    return Path(out_dir)


def write_graph_dir(
    out: Path, HCLG: kaldifst.StdVectorFst, lang: Lang, labels: HmmLabels, info: dict[str, Any]
) -> None:
    """Write HCLG.fst, words.txt, labels.json and info.json (see the module doc)."""
    if not HCLG.write(str(out / "HCLG.fst")):
        raise OSError(f"could not write {out / 'HCLG.fst'}")
    shutil.copy(lang.dir / "words.txt", out / "words.txt")
    doc = {
        "num_senones": info["num_senones"],
        "tree_id": info["tree_id"],
        "num_labels": labels.num_labels,
        "label_to_senone": labels.senone.tolist(),
        "label_phone_state": np.stack([labels.phone, labels.state], axis=1).tolist(),
    }
    (out / "labels.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n")


@dataclass(eq=False)
class Graph:
    """A loaded graph directory (see the module doc).

    Attributes:
        dir: the graph directory.
        fst: HCLG.
        label_to_senone: ``[N]`` int64 senone of label ``i + 1``.
        words: word id -> word (words.txt).
        num_senones: the senone inventory size of the tree.
        tree_id: the tree the labels come from.
        words_sha: sha256 of the lang directory's words.txt.
    """

    dir: Path
    fst: kaldifst.StdVectorFst
    label_to_senone: np.ndarray
    words: dict[int, str]
    num_senones: int
    tree_id: str
    words_sha: str

    def check(
        self,
        lang_dir: Path | str | None = None,
        tree_id: str | None = None,
        num_senones: int | None = None,
    ) -> None:
        """Refuse a graph built with another lang directory, tree or senone inventory.

        Raises:
            BadInputError: naming what differs and the stage to rerun.
        """
        if lang_dir is not None:
            words = require_file(Path(lang_dir) / "words.txt", "prepare-lang")
            if file_digest(words) != self.words_sha:
                raise BadInputError(
                    f"graph {self.dir} was built with another lang directory than {lang_dir} "
                    f"(words.txt differs); rerun '{STAGE}' with it"
                )
        if tree_id is not None and tree_id != self.tree_id:
            raise BadInputError(
                f"graph {self.dir} was built with tree {self.tree_id}, not {tree_id}; "
                f"rerun '{STAGE}' with the model's tree"
            )
        if num_senones is not None and num_senones != self.num_senones:
            raise BadInputError(
                f"graph {self.dir} expects {self.num_senones} senones, the model gives "
                f"{num_senones}; rerun '{STAGE}' with the model's tree"
            )

    def label_scores(self, senone_scores: np.ndarray) -> np.ndarray:
        """The decoder's score matrix: column ``k-1`` scores graph input label ``k``.

        Args:
            senone_scores: ``[T, num_senones]`` (scaled) log-likelihoods per senone.

        Returns:
            ``[T, N]`` float32 C-contiguous, for ``kaldi_decoder.DecodableCtc``.
        """
        scores = np.asarray(senone_scores)
        if scores.ndim != 2 or scores.shape[1] != self.num_senones:
            raise ValueError(
                f"senone scores must be [T, {self.num_senones}], got {list(scores.shape)}"
            )
        return np.ascontiguousarray(scores[:, self.label_to_senone], dtype=np.float32)


def load_graph(
    graph_dir: Path | str,
    lang_dir: Path | str | None = None,
    tree_id: str | None = None,
    num_senones: int | None = None,
) -> Graph:
    """Load a graph directory written by ``asr-kd make-graph``, checked by :meth:`Graph.check`.

    Args:
        graph_dir: the ``make-graph`` output.
        lang_dir, tree_id, num_senones: when given, the lang directory, tree and senone
            count the graph must have been built with.

    Raises:
        MissingInputError: the directory is missing or unfinished.
        BadInputError: a file of the contract is missing or unreadable.
    """
    graph_dir = require_done(graph_dir, STAGE)
    for name in FILES:
        require_file(graph_dir / name, STAGE)
    fst = open_fst(graph_dir / "HCLG.fst", STAGE)
    labels = read_json(graph_dir / "labels.json", STAGE)
    info = read_json(graph_dir / "info.json", STAGE)
    read_text(graph_dir / "words.txt", STAGE)  # UTF-8, as make-graph wrote it
    try:
        label_to_senone = np.asarray(labels["label_to_senone"], dtype=np.int64)
        size = int(labels["num_senones"])
        tid, words_sha = str(labels["tree_id"]), str(info["words_sha256"])
        num_labels = {int(labels["num_labels"]), int(info.get("num_labels", labels["num_labels"]))}
    except (ValueError, KeyError, TypeError) as e:
        raise BadInputError(
            f"{graph_dir}: bad labels.json or info.json ({e}); rerun '{STAGE}'"
        ) from None
    if num_labels != {len(label_to_senone)}:
        raise BadInputError(
            f"{graph_dir}/labels.json maps {len(label_to_senone)} labels, but the graph has "
            f"{' / '.join(map(str, sorted(num_labels)))} (labels.json num_labels, info.json); "
            f"rerun '{STAGE}'"
        )
    if len(label_to_senone) and not 0 <= label_to_senone.min() <= label_to_senone.max() < size:
        raise BadInputError(f"{graph_dir}/labels.json maps labels outside 0..{size - 1}")
    if file_digest(graph_dir / "words.txt") != words_sha:
        raise BadInputError(f"{graph_dir}/words.txt does not match info.json; rerun '{STAGE}'")
    words = {i: w for w, i in read_symbols(graph_dir / "words.txt").items()}
    graph = Graph(graph_dir, fst, label_to_senone, words, size, tid, words_sha)
    graph.check(lang_dir, tree_id, num_senones)
    return graph
