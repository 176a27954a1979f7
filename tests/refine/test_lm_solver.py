"""Tests of `sa4depth.refine.solver`: robust kernels, normal equations, `lm_step` failures, damping."""

import math

import pytest
import torch

from sa4depth.refine.solver import Damping, build_system, lm_step, robust_cost

D = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("kind", ["l2", "huber", "cauchy"])
def test_robust_weight_is_the_derivative_of_the_cost(kind):
    s = torch.tensor([0.0, 1e-4, 0.005, 0.01, 0.02, 0.5, 3.0], dtype=D, requires_grad=True)
    rho, weight = robust_cost(s, kind, 0.1)
    (grad,) = torch.autograd.grad(rho.sum(), s, retain_graph=True)
    torch.testing.assert_close(grad, weight.detach())
    assert weight[0] == 1.0 and rho[0] == 0.0
    # The weight's own gradient is finite at s = 0 (Huber's sqrt branch is clamped).
    if weight.requires_grad:
        (grad_w,) = torch.autograd.grad(weight.sum(), s)
        assert torch.isfinite(grad_w).all()


def test_robust_known_values():
    s = torch.tensor([0.04], dtype=D)
    assert robust_cost(s, "cauchy", 0.1)[0].item() == pytest.approx(0.01 * math.log(5.0))
    assert robust_cost(s, "huber", 0.1)[0].item() == pytest.approx(2 * 0.1 * 0.2 - 0.01)
    assert robust_cost(s, "huber", 0.1)[1].item() == pytest.approx(0.5)
    with pytest.raises(ValueError):
        robust_cost(s, "tukey", 0.1)


def test_build_system_matches_the_dense_normal_equations():
    B, N, C = 2, 7, 3
    J_feat, J_geom = torch.randn(B, 2, C, N, dtype=D), torch.randn(B, N, 2, 6, dtype=D)
    r, w = torch.randn(B, C, N, dtype=D), torch.rand(B, N, dtype=D)
    g, H = build_system(J_feat, J_geom, r, w)
    J = torch.einsum("bkcn,bnkp->bncp", J_feat, J_geom)  # dense (B, N, C, 6)
    for b in range(B):
        Jb = J[b].reshape(-1, 6)
        wb = w[b].repeat_interleave(C)
        torch.testing.assert_close(g[b], Jb.T @ (wb * r[b].T.reshape(-1)))
        torch.testing.assert_close(H[b], Jb.T @ (wb[:, None] * Jb))


def test_lm_step_known_answer_and_marquardt_damping():
    H = torch.diag_embed(torch.tensor([[1.0, 2, 3, 4, 5, 6]], dtype=D))
    g = torch.ones(1, 6, dtype=D)
    delta, failed = lm_step(g, H, 0.0, eps=1e-12)
    torch.testing.assert_close(delta, -1.0 / H.diagonal(dim1=-2, dim2=-1), rtol=1e-9, atol=0)
    # Marquardt damping scales the diagonal: (1 + lambda) H for a diagonal H.
    delta, _ = lm_step(g, H, 0.5)
    torch.testing.assert_close(delta, -1.0 / (1.5 * H.diagonal(dim1=-2, dim2=-1)))
    # Per-parameter damping broadcasts over (B, 6).
    lam = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0], dtype=D)
    delta, _ = lm_step(g, H, lam, eps=1e-12)
    torch.testing.assert_close(delta, -1.0 / ((1 + lam) * H.diagonal(dim1=-2, dim2=-1)), rtol=1e-9, atol=0)
    assert not failed.any()


@pytest.mark.parametrize("lambda_", [0.0, 1e-3, 1e-1])
def test_lm_step_fails_per_element_without_nan(lambda_):
    A = torch.randn(6, 10, 6, dtype=D)
    H = (A.transpose(-1, -2) @ A).requires_grad_()  # (6, 6, 6) PD
    g = torch.randn(6, 6, dtype=D, requires_grad=True)
    H_in = H.clone()
    H_in[1] = 0.0  # no information (textureless)
    H_in[2] = -H_in[2]  # not positive definite
    H_in[3, 0, 0] = float("nan")  # non-finite Hessian
    g_in = g.clone()
    g_in[4, 2] = float("inf")  # non-finite gradient
    mask = torch.tensor([True, True, True, True, True, False])  # element 5: too few points
    delta, failed = lm_step(g_in, H_in, lambda_, mask=mask)
    assert failed.tolist() == [False, True, True, True, True, True]
    assert (delta[1:] == 0).all() and torch.isfinite(delta).all()
    expected = -torch.linalg.solve(H[0] + torch.diag((lambda_ * H[0].diagonal()).clamp(min=1e-6)), g[0])
    torch.testing.assert_close(delta[0], expected)
    delta.sum().backward()
    assert torch.isfinite(H.grad).all() and torch.isfinite(g.grad).all()
    assert (g.grad[1:] == 0).all() and (H.grad[1:3] == 0).all()
    assert g.grad[0].abs().sum() > 0


def test_lm_step_gradient_matches_finite_differences():
    # H = A^T A as in the LM (Cholesky reads one triangle, so an unsymmetric perturbation of H itself
    # would not be a meaningful finite difference).
    A = torch.randn(2, 8, 6, dtype=D, requires_grad=True)
    g = torch.randn(2, 6, dtype=D, requires_grad=True)
    lam = torch.full((6,), 1e-2, dtype=D, requires_grad=True)

    def step(g, A, lam):
        return lm_step(g, A.transpose(-1, -2) @ A, lam)[0]

    assert torch.autograd.gradcheck(step, (g, A, lam))


def test_damping_fixed_and_learned():
    fixed = Damping(3, 1e-2)
    assert list(fixed.parameters()) == []
    torch.testing.assert_close(fixed(2), torch.full((6,), 1e-2))
    learned = Damping(3, 1e-3, learned=True, log_range=(-6.0, 5.0))
    torch.testing.assert_close(learned(0), torch.full((6,), 1e-3))
    learned(1).sum().backward()
    assert learned.logit.grad[1].abs().min() > 0 and (learned.logit.grad[[0, 2]] == 0).all()
    with torch.no_grad():
        learned.logit.fill_(1e3)
    assert learned(0).max().item() == pytest.approx(1e5)
    with pytest.raises(ValueError):
        Damping(3, 0.0, learned=True)
    with pytest.raises(ValueError):
        Damping(3, -1.0)
