"""Combination of teachers' distributions, checked against hand computation."""

from __future__ import annotations

import math

import pytest
import torch

from asr_kd.teachers import combine_log_probs, normalise_weights

P1 = [0.7, 0.2, 0.1]
P2 = [0.1, 0.3, 0.6]


def _stack(*dists) -> torch.Tensor:
    return torch.tensor(dists, dtype=torch.float64).log()


def test_arithmetic_mean_of_probabilities():
    out = combine_log_probs(_stack(P1, P2), "arithmetic").exp()
    assert torch.allclose(out, torch.tensor([0.4, 0.25, 0.35], dtype=torch.float64))
    out = combine_log_probs(_stack(P1, P2), "arithmetic", weights=[3, 1]).exp()
    assert torch.allclose(out, torch.tensor([0.55, 0.225, 0.225], dtype=torch.float64))


def test_geometric_mean_is_renormalised():
    out = combine_log_probs(_stack(P1, P2), "geometric").exp()
    g = [math.sqrt(a * b) for a, b in zip(P1, P2, strict=True)]
    assert torch.allclose(out, torch.tensor([x / sum(g) for x in g], dtype=torch.float64))
    out = combine_log_probs(_stack(P1, P2), "geometric", weights=[0.3, 0.1]).exp()
    g = [a**0.75 * b**0.25 for a, b in zip(P1, P2, strict=True)]
    assert torch.allclose(out, torch.tensor([x / sum(g) for x in g], dtype=torch.float64))
    # the geometric mean is sharper where the teachers agree and lower where they do not
    arith = combine_log_probs(_stack(P1, P2), "arithmetic").exp()
    assert combine_log_probs(_stack(P1, P2), "geometric").exp()[0] < arith[0]


@pytest.mark.parametrize("method", ["arithmetic", "geometric"])
def test_batched_frames_sum_to_one_and_one_teacher_is_itself(method):
    torch.manual_seed(0)
    logits = torch.randn(4, 2, 5, 7)  # [N, B, T, S]
    logp = torch.log_softmax(logits, -1)
    out = combine_log_probs(logp, method)
    assert out.shape == (2, 5, 7) and out.dtype == torch.float32
    assert torch.allclose(out.exp().sum(-1), torch.ones(2, 5), atol=1e-6)
    assert torch.allclose(combine_log_probs(logp[:1], method), logp[0], atol=1e-6)
    # weight 0 leaves a teacher out, even one with impossible (-inf) entries
    broken = logp.clone()
    broken[3, :, :, 0] = -math.inf
    left_out = combine_log_probs(broken, method, weights=[1, 1, 1, 0])
    assert torch.allclose(left_out, combine_log_probs(logp[:3], method), atol=1e-6)
    assert combine_log_probs(logp.bfloat16(), method).dtype == torch.float32


def test_soft_targets_at_a_temperature_are_the_mean_of_softened_teachers():
    torch.manual_seed(1)
    logits, temperature = torch.randn(3, 10, 6) * 4, 2.5
    soft = combine_log_probs(torch.log_softmax(logits / temperature, -1), "arithmetic").exp()
    assert torch.allclose(soft, torch.softmax(logits / temperature, -1).mean(0), atol=1e-6)
    sharp = combine_log_probs(torch.log_softmax(logits, -1), "arithmetic").exp()
    entropy = lambda p: -(p * p.log()).sum(-1).mean()  # noqa: E731
    assert entropy(soft) > entropy(sharp)


def test_bad_arguments_are_refused():
    logp = _stack(P1, P2)
    with pytest.raises(ValueError, match="method must be one of arithmetic, geometric"):
        combine_log_probs(logp, "harmonic")
    with pytest.raises(ValueError, match="3 weights for 2 teachers"):
        combine_log_probs(logp, weights=[1, 1, 1])
    with pytest.raises(ValueError, match="non-negative"):
        combine_log_probs(logp, weights=[1, -1])
    with pytest.raises(ValueError, match="not all zero"):
        combine_log_probs(logp, weights=[0, 0])
    with pytest.raises(ValueError, match=r"\[teachers, ..., senones\]"):
        combine_log_probs(torch.zeros(3))
    assert normalise_weights([2, 6], 2) == [0.25, 0.75]
    assert normalise_weights(None, 4) == [0.25] * 4
