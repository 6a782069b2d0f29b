"""WFST decoding of hybrid-model scores: Kaldi on CPU, NVIDIA's CUDA decoder on GPU.

Typical use::

    log_likes = pseudo_log_likelihoods(log_posteriors, decoder_log_priors(counts))
    decoder = make_decoder(graph, DecodeConfig(device="auto"))
    hyps = decoder.decode(log_likes, lengths)       # [B, T, S], [B] -> list[Hypothesis]
    hyps[0].words, hyps[0].sweep[(10.0, 0.5)]       # word ids: decode point, any sweep point

    decode_cuts(cuts, score_fn, graph_dir, priors_path, "exp/dnn/decode_dev", config)
    decode_dev_test(dev_cuts, test_cuts, score_fn, graph_dir, priors_path, "exp/dnn")

Modules: :mod:`~.base` (config, decoder interface, scores, graph checks),
:mod:`~.lattice` (lattices as arrays, the sweep's rescoring), :mod:`~.cpu` and
:mod:`~.gpu` (the back-ends; the GPU one is imported only when used), :mod:`~.stage`.
"""

from asr_kd.decode.base import (
    DecodeConfig,
    Decoder,
    Hypothesis,
    check_graph,
    decoder_log_priors,
    make_decoder,
    pseudo_log_likelihoods,
)
from asr_kd.decode.cpu import CpuDecoder
from asr_kd.decode.lattice import Lattice
from asr_kd.decode.stage import decode_cuts, decode_dev_test, oracle_score_fn, reference_text

__all__ = [
    "CpuDecoder",
    "DecodeConfig",
    "Decoder",
    "Hypothesis",
    "Lattice",
    "check_graph",
    "decode_cuts",
    "decode_dev_test",
    "decoder_log_priors",
    "make_decoder",
    "oracle_score_fn",
    "pseudo_log_likelihoods",
    "reference_text",
]
