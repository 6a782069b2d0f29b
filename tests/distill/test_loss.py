"""The distillation loss against hand computations in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from asr_kd.distill import SparseTargets, kd_loss, top_k

S = 6


def _inputs(seed: int = 0, batch: int = 2, frames: int = 5):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, frames, S, generator=g, dtype=torch.float64) * 2
    teacher_logits = torch.randn(batch, frames, S, generator=g, dtype=torch.float64) * 3
    hard = torch.randint(0, S, (batch, frames), generator=g)
    hard[1, 3:] = -100  # the second utterance is 3 frames long
    return z, teacher_logits, hard


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _by_hand(z, teacher_logits, hard, T, alpha):
    """Loss and gradient frame by frame with NumPy, straight from the definitions."""
    z, tl, hard = z.numpy(), teacher_logits.numpy(), hard.numpy()
    loss, grad = 0.0, np.zeros_like(z)
    for b in range(z.shape[0]):
        for t in range(z.shape[1]):
            if hard[b, t] == -100:
                continue
            p, q_T, q = _softmax(tl[b, t] / T), _softmax(z[b, t] / T), _softmax(z[b, t])
            kl = float(np.sum(p * (np.log(p) - np.log(q_T))))
            ce = float(-np.log(q[hard[b, t]]))
            loss += alpha * T**2 * kl + (1 - alpha) * ce
            onehot = np.eye(S)[hard[b, t]]
            # d(T^2 KL)/dz = T^2 * (q_T - p) / T = T (q_T - p); d CE/dz = q - onehot
            grad[b, t] = alpha * T * (q_T - p) + (1 - alpha) * (q - onehot)
    return loss, grad


@pytest.mark.parametrize("T", [1.0, 2.0, 5.0, 10.0])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_value_and_gradient_match_the_hand_computation(T, alpha):
    z, tl, hard = _inputs()
    z.requires_grad_(True)
    teacher = torch.log_softmax(tl / T, dim=-1)
    loss, stats = kd_loss(z, teacher, hard, T, alpha)
    loss.backward()
    want_loss, want_grad = _by_hand(z.detach(), tl, hard, T, alpha)
    assert loss.item() == pytest.approx(want_loss, rel=1e-12)
    np.testing.assert_allclose(z.grad.numpy(), want_grad, rtol=1e-10, atol=1e-12)
    assert not z.grad[1, 3:].any()  # padding frames get no gradient
    # The stats are the unweighted frame sums.
    assert (alpha * T**2 * stats["kl"] + (1 - alpha) * stats["ce"]).item() == pytest.approx(
        want_loss, rel=1e-12
    )


def test_the_soft_gradient_scales_with_T_and_gradcheck_passes():
    z, tl, hard = _inputs(seed=3)
    for T in (2.0, 5.0):
        teacher = torch.log_softmax(tl / T, dim=-1)

        def f(x, teacher=teacher, T=T):
            return kd_loss(x, teacher, hard, T, 0.7)[0]

        assert torch.autograd.gradcheck(f, (z.clone().requires_grad_(True),))
    # Without the T^2 factor the soft gradient would shrink as 1/T: check it does not.
    z1 = z.clone().requires_grad_(True)
    teacher = torch.log_softmax(tl / 10.0, dim=-1)
    kd_loss(z1, teacher, hard, 10.0, 1.0)[0].backward()
    valid = hard != -100
    q_T = torch.softmax(z[valid] / 10.0, -1)
    torch.testing.assert_close(z1.grad[valid], 10.0 * (q_T - teacher[valid].exp()))


def test_alpha_zero_is_cross_entropy_and_alpha_one_is_T2_KL():
    z, tl, hard = _inputs(seed=1)
    T = 5.0
    teacher = torch.log_softmax(tl / T, -1)
    ce = F.cross_entropy(z.flatten(0, 1), hard.flatten(), ignore_index=-100, reduction="sum")
    assert kd_loss(z, teacher, hard, T, 0.0)[0].item() == pytest.approx(ce.item(), rel=1e-12)
    valid = hard != -100
    kl = F.kl_div(
        torch.log_softmax(z[valid] / T, -1), teacher[valid], log_target=True, reduction="sum"
    )
    assert kd_loss(z, teacher, hard, T, 1.0)[0].item() == pytest.approx(T**2 * kl.item(), 1e-12)


def test_sparse_targets_with_k_equal_S_give_the_dense_loss_and_gradient():
    z, tl, hard = _inputs(seed=2)
    T = 2.0
    teacher = torch.log_softmax(tl / T, -1)
    idx, probs, mass = top_k(teacher, S)
    torch.testing.assert_close(mass, torch.ones_like(mass))
    za, zb = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    dense, _ = kd_loss(za, teacher, hard, T, 0.5)
    sparse, _ = kd_loss(zb, SparseTargets(idx, probs), hard, T, 0.5)
    dense.backward()
    sparse.backward()
    assert sparse.item() == pytest.approx(dense.item(), rel=1e-12)
    torch.testing.assert_close(zb.grad, za.grad, rtol=1e-10, atol=1e-12)


def test_sparse_top_k_is_the_kl_over_the_kept_senones_renormalised():
    z, tl, hard = _inputs(seed=4)
    T, k = 2.0, 3
    teacher = torch.log_softmax(tl / T, -1)
    idx, probs, _ = top_k(teacher, k)
    # float16 storage: rows no longer sum to 1 exactly; the loss renormalises them.
    loss, stats = kd_loss(z, SparseTargets(idx.int(), probs.half() * 1.01), hard, T, 1.0)
    want = 0.0
    for b, t in zip(*np.nonzero(hard.numpy() != -100), strict=True):
        p = teacher[b, t].exp().numpy()
        keep = np.argsort(-p)[:k]
        p_k = p[keep] / p[keep].sum()
        log_q = np.log(_softmax(z[b, t].numpy() / T))
        want += float(np.sum(p_k * (np.log(p_k) - log_q[keep])))
    assert stats["kl"].item() == pytest.approx(want, rel=1e-3)  # float16 probabilities
    assert loss.item() == pytest.approx(T**2 * stats["kl"].item(), rel=1e-12)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"temperature": 0.0}, "temperature must be positive"),
        ({"alpha": 1.5}, "alpha"),
        ({"teacher": torch.zeros(2, 5, S + 1)}, "share frames and senones"),
        ({"hard": torch.zeros(2, 4, dtype=torch.int64)}, "hard targets"),
        ({"teacher": SparseTargets(torch.zeros(2, 5, 3), torch.zeros(2, 5, 3))}, "integer"),
        ({"teacher": SparseTargets(torch.zeros(2, 5, 3).long(), torch.zeros(2, 5, 2))}, "k]"),
    ],
)
def test_bad_inputs_are_refused(change, message):
    z, tl, hard = _inputs()
    args = {"teacher": torch.log_softmax(tl, -1), "hard": hard, "temperature": 2.0, "alpha": 0.5}
    args.update(change)
    with pytest.raises(ValueError, match=message):
        kd_loss(z, args["teacher"], args["hard"], args["temperature"], args["alpha"])


def test_sparse_top_k_with_its_mass_is_the_dense_loss_against_a_uniform_tail():
    """tail: uniform: the k kept senones at their true probabilities, the rest of the
    teacher's mass spread evenly over the other senones; value and gradient."""
    z, tl, hard = _inputs(seed=5)
    T, k = 2.0, 3
    teacher = torch.log_softmax(tl / T, -1)
    idx, probs, mass = top_k(teacher, k)
    full = torch.zeros_like(teacher).scatter(-1, idx, probs * mass[..., None])
    full = full + (full == 0) * ((1 - mass) / (S - k))[..., None]  # the completed target
    za, zb = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    dense, _ = kd_loss(za, full.log(), hard, T, 0.5)
    sparse, _ = kd_loss(zb, SparseTargets(idx, probs, mass, "uniform"), hard, T, 0.5)
    dense.backward()
    sparse.backward()
    assert sparse.item() == pytest.approx(dense.item(), rel=1e-10)
    torch.testing.assert_close(zb.grad, za.grad, rtol=1e-8, atol=1e-10)
    # Dropping the tail (renormalise) is another, larger-gradient target.
    renorm, _ = kd_loss(z, SparseTargets(idx, probs), hard, T, 0.5)
    assert renorm.item() != pytest.approx(sparse.item(), rel=1e-3)


def test_sparse_top_k_grouped_tail_is_the_kl_of_the_k_plus_one_class_distributions():
    """tail: group: KL between [p_1..p_k, 1 - mass] and [q_1..q_k, sum of the rest of q]."""
    z, tl, hard = _inputs(seed=6)
    T, k = 2.0, 3
    teacher = torch.log_softmax(tl / T, -1)
    idx, probs, mass = top_k(teacher, k)
    loss, stats = kd_loss(z, SparseTargets(idx, probs, mass, "group"), hard, T, 1.0)
    want = 0.0
    for b, t in zip(*np.nonzero(hard.numpy() != -100), strict=True):
        p = teacher[b, t].exp().numpy()
        keep = np.argsort(-p)[:k]
        q = _softmax(z[b, t].numpy() / T)
        p_c = np.append(p[keep], 1 - p[keep].sum())
        q_c = np.append(q[keep], 1 - q[keep].sum())
        want += float(np.sum(p_c * (np.log(p_c) - np.log(q_c))))
    assert stats["kl"].item() == pytest.approx(want, rel=1e-6)
    assert loss.item() == pytest.approx(T**2 * want, rel=1e-6)
    # A student that matches the teacher's kept senones and their total is at zero KL,
    # however it shares the rest among the other senones.
    match = torch.full_like(teacher, -30.0).scatter(-1, idx, probs.log() + mass.log()[..., None])
    other = ~torch.zeros_like(teacher, dtype=torch.bool).scatter(-1, idx, True)
    shares = torch.rand_like(teacher).masked_fill(~other, 0)
    shares = shares / shares.sum(-1, keepdim=True) * (1 - mass)[..., None]
    student = torch.where(other, shares.clamp_min(1e-30).log(), match) * T  # logits at T
    _, zero = kd_loss(student, SparseTargets(idx, probs, mass, "group"), hard, T, 1.0)
    assert zero["kl"].item() == pytest.approx(0.0, abs=1e-8)
