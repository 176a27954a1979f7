"""Robust kernels, normal equations, the LM damping and one batched LM step with per-element failure.

Second and third layers of the LM refinement; kept small (cf. pixloc's ``optimizer_step``).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

ROBUST_KERNELS = ("l2", "huber", "cauchy")


def solve_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype the LM computes in: float64 if any input is float64, otherwise float32.

    Never bfloat16 / float16, which is what features, depth and poses are under autocast
    (``trainer.precision=bf16-mixed``), and autocast itself would run `build_system`'s einsums in
    bfloat16 even on float32 inputs. bfloat16 keeps ~3 significant digits, too few for the 6 x 6
    normal equations (condition number ~3000, entries summed over ``N ~ 10^4`` points): measured on
    the textured plane of tests/refine/test_autocast.py, a bfloat16 ``H`` has its smallest eigenvalue
    8 % off and the damped step is 3 % off (10 % without damping). The Cholesky solve is not autocast
    safe either: on CUDA it is not on autocast's float32 list and torch.linalg has no bfloat16
    kernels (CPU autocast does upcast it, but only after ``H`` was rounded).

    Example:
        >>> solve_dtype(torch.ones(1, dtype=torch.bfloat16), torch.ones(1))
        torch.float32
    """
    return functools.reduce(torch.promote_types, (t.dtype for t in tensors), torch.float32)


def robust_cost(
    sq_norm: torch.Tensor, kind: str = "cauchy", scale: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Robust cost ``rho(s)`` and its derivative ``rho'(s)`` (the IRLS weight) of squared norms ``s``.

    ``scale`` is the residual norm ``c`` at which the kernel leaves the quadratic:
    ``l2: s``; ``huber: s if s <= c^2 else 2 c sqrt(s) - c^2``; ``cauchy: c^2 log(1 + s / c^2)``.
    All three have ``rho'(0) = 1``.

    Args:
        sq_norm: squared residual norms ``(...)``, non-negative.
        kind: one of `ROBUST_KERNELS`.
        scale: ``c > 0`` (unused for ``l2``).

    Returns:
        ``rho(s)`` and ``rho'(s)``, each ``(...)``.

    Example:
        >>> rho, w = robust_cost(torch.tensor([0.0, 0.01]), "cauchy", 0.1)
        >>> [round(x, 4) for x in w.tolist()]
        [1.0, 0.5]
    """
    if kind == "l2":
        return sq_norm, torch.ones_like(sq_norm)
    c2 = scale**2
    if kind == "cauchy":
        return c2 * torch.log1p(sq_norm / c2), 1.0 / (1.0 + sq_norm / c2)
    if kind == "huber":
        inlier = sq_norm <= c2
        # Clamped so the branch that where() discards never has sqrt'(0) = inf, which would turn
        # its zero gradient into NaN.
        root = sq_norm.clamp(min=c2).sqrt()
        rho = torch.where(inlier, sq_norm, 2 * scale * root - c2)
        return rho, torch.where(inlier, torch.ones_like(sq_norm), scale / root)
    raise ValueError(f"robust kernel must be one of {ROBUST_KERNELS}, got {kind!r}")


def build_system(
    J_feat: torch.Tensor, J_geom: torch.Tensor, residuals: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Newton gradient and Hessian ``g = sum_p w J^T r``, ``H = sum_p w J^T J``.

    The Jacobian of point p is factored, ``J_p = A_p G_p`` with ``A_p = J_feat[:, :, :, p]^T``
    ``(C, 2)`` and ``G_p = J_geom[:, p]`` ``(2, P)``, so the channels are contracted first
    (``A^T A`` is 2 x 2): ``O(N C) + O(N P^2)`` work instead of ``O(N C P^2)``.

    Args:
        J_feat: feature derivatives along u and v ``(B, 2, C, N)``.
        J_geom: pixel Jacobians ``(B, N, 2, P)``.
        residuals: ``(B, C, N)``.
        weights: per-point weights ``(B, N)`` (confidence times robust weight; 0 for invalid points).

    Returns:
        ``g`` ``(B, P)`` and ``H`` ``(B, P, P)``, in `solve_dtype` (float32 under autocast).
    """
    dtype = solve_dtype(J_feat, J_geom, residuals, weights)
    # Autocast would run the einsums below (bmm) in bfloat16 even on float32 inputs; see `solve_dtype`.
    with torch.autocast(J_geom.device.type, enabled=False):
        return _build_system(*(t.to(dtype) for t in (J_feat, J_geom, residuals, weights)))


def _build_system(J_feat, J_geom, residuals, weights) -> tuple[torch.Tensor, torch.Tensor]:
    """`build_system` on inputs already in the solve dtype, autocast off."""
    d_u, d_v = J_feat.unbind(1)
    Ar = torch.stack([(d_u * residuals).sum(1), (d_v * residuals).sum(1)], dim=-1) * weights[..., None]
    uu, uv, vv = (((a * b).sum(1) * weights)[..., None] for a, b in ((d_u, d_u), (d_u, d_v), (d_v, d_v)))
    G_u, G_v = J_geom.unbind(-2)  # (B, N, P) each
    AAG = torch.stack([uu * G_u + uv * G_v, uv * G_u + vv * G_v], dim=-2)  # w A^T A G, (B, N, 2, P)
    g = torch.einsum("bnk,bnkp->bp", Ar, J_geom)
    H = torch.einsum("bnkp,bnkq->bpq", J_geom, AAG)
    return g, H


def lm_step(
    g: torch.Tensor,
    H: torch.Tensor,
    lambda_: float | torch.Tensor = 0.0,
    mask: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One damped step ``delta = -(H + clamp(lambda * diag(H), min=eps))^-1 g`` per batch element.

    An element fails (and gets ``delta`` exactly 0, with exactly zero gradients flowing through its
    solve) if it is masked out, ``g`` or ``H`` is not finite, ``trace(H) <= eps`` (no more information
    than the damping floor, e.g. a textureless image), the damped matrix is not positive definite,
    or the step is not finite. Nothing raises and nothing leaves the device.

    Args:
        g: gradients ``(B, P)``.
        H: Gauss-Newton Hessians ``(B, P, P)``.
        lambda_: damping, a number or a tensor broadcastable to ``(B, P)`` (e.g. per parameter).
            0 gives Gauss-Newton with an ``eps`` ridge.
        mask: ``(B,)`` bool, elements allowed to move (e.g. enough valid points); None for all.
        eps: floor of the added diagonal.

    Returns:
        ``delta`` ``(B, P)`` in `solve_dtype` (float32 under autocast) and ``failed`` ``(B,)`` bool.

    Example:
        >>> H = torch.stack([2 * torch.eye(2), torch.zeros(2, 2)])
        >>> delta, failed = lm_step(torch.ones(2, 2), H)
        >>> delta.round(decimals=4).tolist(), failed.tolist()
        ([[-0.5, -0.5], [0.0, 0.0]], [False, True])
    """
    dtype = solve_dtype(g, H)
    # A bfloat16 H gives a step several % off, and CUDA's Cholesky has no bfloat16 kernel (`solve_dtype`):
    # the damped solve always runs in float32 (or float64), autocast off.
    with torch.autocast(H.device.type, enabled=False):
        return _lm_step(g.to(dtype), H.to(dtype), lambda_, mask, eps)


def _lm_step(g, H, lambda_, mask, eps) -> tuple[torch.Tensor, torch.Tensor]:
    """`lm_step` on ``g`` and ``H`` already in the solve dtype, autocast off."""
    P = g.shape[-1]
    eye = torch.eye(P, device=H.device, dtype=H.dtype)
    ok = torch.isfinite(H).all(dim=(-1, -2)) & torch.isfinite(g).all(dim=-1)
    ok = ok & (H.diagonal(dim1=-2, dim2=-1).sum(-1) > eps)
    if mask is not None:
        ok = ok & mask
    lambda_ = lambda_.to(H) if isinstance(lambda_, torch.Tensor) else H.new_tensor(lambda_)
    H_damped = H + torch.diag_embed((H.diagonal(dim1=-2, dim2=-1) * lambda_).clamp(min=eps))
    # Failed elements solve I delta = 0. Which elements are not positive definite is found by a first
    # factorisation without autograd: the backward pass of a failed factorisation can be NaN even when
    # its output is discarded, so the differentiable factorisation below only ever sees PD matrices.
    with torch.no_grad():
        _, info = torch.linalg.cholesky_ex(torch.where(ok[..., None, None], H_damped, eye))
    ok = ok & (info == 0)
    H_damped = torch.where(ok[..., None, None], H_damped, eye)
    g = torch.where(ok[..., None], g, torch.zeros_like(g))
    L, _ = torch.linalg.cholesky_ex(H_damped)
    delta = -torch.cholesky_solve(g[..., None], L)[..., 0]
    ok = ok & torch.isfinite(delta).all(dim=-1)
    return torch.where(ok[..., None], delta, torch.zeros_like(delta)), ~ok


class Damping(nn.Module):
    """The LM damping ``lambda`` per pyramid level and pose parameter, fixed or learned.

    Learned damping lives in a bounded log range, ``lambda = 10^(lo + sigmoid(x) (hi - lo))``
    (as PixLoc's DampingNet), initialised at ``init``.

    Args:
        levels: number of pyramid levels.
        init: the (initial) damping, ``>= 0``; ``> 0`` and inside the range when learned.
        learned: make ``lambda`` a trained parameter of shape ``(levels, 6)``.
        log_range: ``(lo, hi)`` bounds of ``log10(lambda)`` when learned.

    Example:
        >>> lam = Damping(2, 1e-2, learned=True)(1)
        >>> lam.shape, torch.allclose(lam, torch.full((6,), 1e-2))
        (torch.Size([6]), True)
    """

    def __init__(
        self,
        levels: int,
        init: float = 1e-2,
        learned: bool = False,
        log_range: tuple[float, float] = (-6.0, 5.0),
    ):
        super().__init__()
        self.learned = learned
        self.log_range = (float(log_range[0]), float(log_range[1]))
        if learned:
            lo, hi = self.log_range
            if not (init > 0 and lo < math.log10(init) < hi):
                raise ValueError(f"learned damping needs 10^{lo} < init < 10^{hi}, got {init}")
            x = (math.log10(init) - lo) / (hi - lo)
            self.logit = nn.Parameter(torch.full((levels, 6), math.log(x / (1 - x))))
        else:
            if init < 0:
                raise ValueError(f"damping must be >= 0, got {init}")
            self.register_buffer("value", torch.full((levels, 6), float(init)), persistent=False)

    def forward(self, level: int) -> torch.Tensor:
        """The damping ``(6,)`` of ``level`` (0 = coarsest used level)."""
        if not self.learned:
            return self.value[level]
        lo, hi = self.log_range
        return 10.0 ** (lo + torch.sigmoid(self.logit[level]) * (hi - lo))
