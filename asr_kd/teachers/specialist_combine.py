"""Specialist heads and the KL combination at inference (a specialist system's teacher).

A specialist for cluster ``S_m`` (``n_m`` senones) is the generalist with a new output
layer of ``n_m + 1`` classes: class 0 is the *dustbin* (every senone outside ``S_m``),
class ``1 + i`` is the cluster's ``i``-th senone. Its rows start as the generalist's
rows for those senones; the dustbin row as the mean of the other rows, with the log
of their number added to its bias (the softmax mass of many similar logits). Training
them is the ``train-specialists`` stage (:mod:`asr_kd.specialists`).

At inference (:func:`kl_combine`) the generalist's distribution ``p_g`` over all
senones and the active specialists' ``p_m`` over ``S_m ∪ {dustbin}`` are combined
into the full distribution ``q`` that minimises::

    KL(p_g ‖ q) + Σ_m KL(p_m ‖ q_m),   q_m(c) = q(c) for c ∈ S_m,   q_m(dustbin) = Σ_{c ∉ S_m} q(c)

The paper minimised it by gradient descent. It is the log-likelihood of a categorical
``q`` given soft observations, some of them censored (a dustbin observation only says
"somewhere outside S_m"), so expectation-maximisation solves it with no step size:
the E-step spreads each ``p_m(dustbin)`` over the senones outside ``S_m`` in proportion
to ``q``, the M-step renormalises the expected counts. The objective is concave in
``q``, EM never lowers it, and it converges to the minimiser (checked against a closed
form and a direct minimisation in the tests). Frames with no active specialist keep
``p_g``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn

from asr_kd.errors import BadInputError

__all__ = [
    "active_specialists",
    "combine_objective",
    "kl_combine",
    "make_specialist",
    "output_layer",
]


def output_layer(model: nn.Module, num_outputs: int) -> tuple[str, nn.Linear]:
    """The model's output layer: ``model.output`` (every registry model), else the last
    ``nn.Linear`` with ``num_outputs`` outputs.

    Raises:
        BadInputError: no such layer (a specialist needs a linear output layer to replace).
    """
    out = getattr(model, "output", None)
    if isinstance(out, nn.Linear) and out.out_features == num_outputs:
        return "output", out
    found = [(n, m) for n, m in model.named_modules()
             if isinstance(m, nn.Linear) and m.out_features == num_outputs]  # fmt: skip
    if not found:
        raise BadInputError(
            f"{type(model).__name__} has no nn.Linear output layer of {num_outputs} units; a "
            "specialist replaces the generalist's output layer"
        )
    return found[-1]


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def make_specialist(
    generalist: nn.Module, num_senones: int, cluster: Sequence[int], width: int | None = None
) -> nn.Module:
    """A copy of ``generalist`` whose output layer predicts ``[dustbin, *cluster]``.

    Args:
        generalist: outputs ``num_senones`` logits per frame.
        cluster: the specialist's senone ids.
        width: the new layer's size, ``len(cluster) + 1`` or more (extra rows are padding
            for stacking specialists of different sizes; callers mask them).
    """
    name, old = output_layer(generalist, num_senones)
    n = len(cluster)
    width = n + 1 if width is None else width
    if width < n + 1:
        raise ValueError(f"width {width} < cluster size {n} + 1")
    model = copy.deepcopy(generalist)
    new = nn.Linear(old.in_features, width, bias=True).to(old.weight.device, old.weight.dtype)
    idx = torch.as_tensor(list(cluster), dtype=torch.long, device=old.weight.device)
    others = torch.ones(num_senones, dtype=torch.bool, device=old.weight.device)
    others[idx] = False
    bias = old.bias if old.bias is not None else torch.zeros(num_senones, device=idx.device)
    with torch.no_grad():
        new.weight.zero_()
        new.bias.zero_()
        new.weight[1 : n + 1] = old.weight[idx]
        new.bias[1 : n + 1] = bias[idx]
        if others.any():
            new.weight[0] = old.weight[others].mean(0)
            new.bias[0] = bias[others].mean() + math.log(int(others.sum()))
    _set_module(model, name, new)
    return model


def active_specialists(
    gen_probs: torch.Tensor, cluster_of: torch.Tensor, num_specialists: int, top_n: int
) -> torch.Tensor:
    """``[N, M]`` bool: specialist ``m`` is active on a frame whose generalist top-``top_n``
    senones include one of its cluster (``cluster_of[s]``: the specialist of senone s, or -1).
    """
    top = gen_probs.topk(min(top_n, gen_probs.shape[-1]), dim=-1).indices  # [N, n]
    owner = cluster_of.to(gen_probs.device)[top]  # [N, n]
    active = torch.zeros(gen_probs.shape[0], num_specialists + 1, dtype=torch.bool,
                         device=gen_probs.device)  # fmt: skip
    active.scatter_(1, (owner + 1).clamp(min=0), True)  # column 0 collects "no specialist"
    return active[:, 1:]


def _check_specialist(j: int, p: torch.Tensor, frames: int, size: int) -> None:
    if p.shape != (frames, size + 1):
        raise BadInputError(
            f"specialist {j}: distribution of shape {tuple(p.shape)}, expected "
            f"[{frames}, {size + 1}] (its cluster of {size} senones and the dustbin)"
        )


def _expand(
    spec_probs: Sequence[torch.Tensor], clusters: Sequence[torch.Tensor], num_senones: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Specialist distributions on the full inventory: ``(inside [N, M, S], dustbin [N, M],
    member [M, S] float 0/1)``."""
    n, m = spec_probs[0].shape[0], len(spec_probs)
    device = spec_probs[0].device
    inside = torch.zeros(n, m, num_senones, dtype=torch.float64, device=device)
    member = torch.zeros(m, num_senones, dtype=torch.float64, device=device)
    dust = torch.empty(n, m, dtype=torch.float64, device=device)
    for j, (p, c) in enumerate(zip(spec_probs, clusters, strict=True)):
        c = c.to(device)
        _check_specialist(j, p, n, len(c))
        inside[:, j, c] = p[:, 1:].double()
        dust[:, j] = p[:, 0].double()
        member[j, c] = 1.0
    return inside, dust, member


def kl_combine(
    gen_probs: torch.Tensor,
    spec_probs: Sequence[torch.Tensor],
    clusters: Sequence[torch.Tensor],
    active: torch.Tensor,
    iters: int = 100,
    tol: float = 1e-7,
    weight: float = 1.0,
) -> torch.Tensor:
    """The ``q`` minimising ``KL(p_g‖q) + w Σ_active KL(p_m‖q_m)`` per frame (module doc;
    the paper's ``w = 1``).

    Args:
        gen_probs: ``[N, S]`` generalist distributions.
        spec_probs: per specialist ``[N, n_m + 1]`` distributions, dustbin first.
        clusters: per specialist its ``n_m`` senone ids.
        active: ``[N, M]`` bool (:func:`active_specialists`).
        iters, tol: EM iterations at most; stop when no probability moves by ``tol``.
        weight: ``w``, each specialist's term against the generalist's (EM weighs its
            observations by it).

    Returns:
        ``[N, S]`` float32 distributions (float64 inside).
    """
    p_g = gen_probs.double()
    if not spec_probs:
        return gen_probs.float()
    flat = torch.cat([torch.as_tensor(c).reshape(-1) for c in clusters])
    if len(flat.unique()) == len(flat):
        return _kl_combine_disjoint(p_g, spec_probs, clusters, active * weight, iters, tol)
    inside, dust, member = _expand(spec_probs, clusters, p_g.shape[1])
    a = active.to(p_g.device, torch.float64) * weight  # [N, M]
    observed = p_g + torch.einsum("nm,nms->ns", a, inside)  # uncensored expected counts
    total = 1.0 + a.sum(1, keepdim=True)
    outside = 1.0 - member  # [M, S]
    censored = a * dust  # [N, M] mass each active specialist puts "outside its cluster"
    q = p_g.clone()
    for _ in range(iters):
        mass_out = (q @ outside.T).clamp(min=1e-300)  # [N, M]
        spread = q * ((censored / mass_out) @ outside)  # E-step for the dustbin mass
        new = (observed + spread) / total
        done = (new - q).abs().max() < tol
        q = new
        if done:
            break
    return q.float()


def _kl_combine_disjoint(p_g, spec_probs, clusters, active, iters, tol) -> torch.Tensor:
    """:func:`kl_combine` for disjoint clusters, in O(frames x clusters) per iteration;
    ``active`` holds ``[N, M]`` weights (0 for an inactive specialist).

    With disjoint clusters the EM fixed point has a closed form inside each group of
    senones (each cluster, and the senones of no cluster): ``q(c) ∝ o(c)``, the
    uncensored counts ``p_g(c) + a_m p_m(c)``, because every censored dustbin mass that
    reaches a group is proportional to ``q`` there. So EM runs on the group masses
    ``Q_g`` alone (the EM of the coarse problem), and ``q(c) = o(c) Q_g / O_g``.
    """
    n, s = p_g.shape
    m = len(clusters)
    device = p_g.device
    a = active.to(device, torch.float64)  # [N, M]
    group = torch.full((s,), m, dtype=torch.long, device=device)  # group m: no cluster
    observed = p_g.clone()
    dust = torch.empty(n, m, dtype=torch.float64, device=device)
    for j, (p, c) in enumerate(zip(spec_probs, clusters, strict=True)):
        c = torch.as_tensor(c, dtype=torch.long, device=device)
        _check_specialist(j, p, n, len(c))
        group[c] = j
        observed[:, c] += a[:, j : j + 1] * p[:, 1:].double()
        dust[:, j] = p[:, 0].double()
    big_o = torch.zeros(n, m + 1, dtype=torch.float64, device=device)
    big_o.index_add_(1, group, observed)  # [N, G]: uncensored counts per group
    total = 1.0 + a.sum(1, keepdim=True)
    censored = torch.cat([a * dust, torch.zeros(n, 1, dtype=torch.float64, device=device)], 1)
    q = torch.zeros_like(big_o).index_add_(1, group, p_g)  # start: the generalist's masses
    for _ in range(iters):
        share = censored / (1.0 - q).clamp(min=1e-300)  # [N, G]: dustbin mass per unit
        new = (big_o + q * (share.sum(1, keepdim=True) - share)) / total
        done = (new - q).abs().max() < tol
        q = new
        if done:
            break
    scale = torch.where(big_o > 0, q / big_o.clamp(min=1e-300), torch.zeros_like(q))
    return (observed * scale[:, group]).float()


def combine_objective(
    q: torch.Tensor,
    gen_probs: torch.Tensor,
    spec_probs: Sequence[torch.Tensor],
    clusters: Sequence[torch.Tensor],
    active: torch.Tensor,
) -> torch.Tensor:
    """``KL(p_g‖q) + Σ_active KL(p_m‖q_m)`` per frame ``[N]`` (for tests and checks)."""
    eps = 1e-300
    q = q.double()
    p_g = gen_probs.double()
    kl = (p_g * ((p_g + eps).log() - (q + eps).log())).sum(-1)
    for j, (p, c) in enumerate(zip(spec_probs, clusters, strict=True)):
        p = p.double()
        q_m = torch.cat([1 - q[:, c].sum(-1, keepdim=True), q[:, c]], dim=-1).clamp(min=eps)
        term = (p * ((p + eps).log() - q_m.log())).sum(-1)
        kl = kl + active[:, j].double() * term
    return kl
