"""Decoding graphs: H from the senone tree, and HCLG for the tri-phone models.

The stage is :func:`make_graph` (``asr-kd make-graph``); decoders read its output with
:func:`load_graph` and score graph input label ``k`` with senone
``graph.label_to_senone[k - 1]`` (:meth:`Graph.label_scores`).
"""

from asr_kd.graph.h import HmmLabels, HmmTopo, build_h, parse_topology
from asr_kd.graph.hclg import (
    Graph,
    GraphConfig,
    compile_hclg,
    load_graph,
    make_graph,
)

__all__ = [
    "Graph",
    "GraphConfig",
    "HmmLabels",
    "HmmTopo",
    "build_h",
    "compile_hclg",
    "load_graph",
    "make_graph",
    "parse_topology",
]
