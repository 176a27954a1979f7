"""The coarse-to-fine, batched, differentiable LM refinement of ``T_src_tgt`` on feature pyramids.

`LMRefiner` unrolls a fixed number of `lm_step` s per level; `image_pyramid_features` gives RGB pyramids.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from sa4depth.geometry import Camera, Pose
from sa4depth.refine.residuals import DEPTH_POOLS, LevelProblem, build_level, residual_jacobian
from sa4depth.refine.solver import (
    ROBUST_KERNELS,
    Damping,
    _build_system,
    _lm_step,
    robust_cost,
    solve_dtype,
)

logger = logging.getLogger(__name__)

#: How gradients pass the LM solve (`LMConfig.backward`).
BACKWARD_MODES = ("unrolled", "implicit")


@dataclass
class LMConfig:
    """Configuration of `LMRefiner`.

    Attributes:
        levels: pyramid levels used, the finest ``levels`` of those given (coarse to fine).
        iterations: LM steps per level.
        robust: robust kernel, one of ``l2``, ``huber``, ``cauchy``.
        robust_scale: residual norm where the kernel leaves the quadratic (feature units).
        damping: LM damping ``lambda`` (initial value if learned); 0 is Gauss-Newton.
        learned_damping: learn ``lambda`` per level and parameter in ``10^[damping_log_min, max]``.
        damping_log_min: lower bound of ``log10(lambda)`` when learned.
        damping_log_max: upper bound of ``log10(lambda)`` when learned.
        min_valid: an element with fewer valid points in a step does not move in that step.
        detach_between_levels: stop gradients through the pose passed from one level to the next.
        use_confidence: weight residuals by ``W_t(p) W_s(p')``; otherwise by 1 on valid points.
        depth_pool: how depth is brought to a level (see `downsample_depth`).
        eps: floor of the damping added to the Hessian diagonal.
        checkpoint_lm: keep only each step's inputs for the backward pass and recompute the rest there
            (activation checkpointing): much less memory for about one more LM forward pass.
        backward: how gradients pass the solve. ``unrolled``: through every step. ``implicit``: every
            step but the last runs without autograd, and the last starts from the detached pose, so the
            gradient is that of the implicit function theorem at the solution, ``-(H + lambda
            diag(H))^-1 dg/dtheta`` (Gauss-Newton ``H``; the damping shrinks it most along weakly
            constrained directions). One step's backward instead of ``levels x iterations``; ``T_init``
            and the coarser levels' features and confidences get no gradient (a converged solution does
            not depend on them). Cheaper, but it trained worse (docs/design.md).
    """

    levels: int = 3
    iterations: int = 5
    robust: str = "cauchy"
    robust_scale: float = 0.1
    damping: float = 1e-2
    learned_damping: bool = False
    damping_log_min: float = -6.0
    damping_log_max: float = 5.0
    min_valid: int = 10
    detach_between_levels: bool = False
    use_confidence: bool = True
    depth_pool: str = "inverse_area"
    eps: float = 1e-6
    checkpoint_lm: bool = False
    backward: str = "unrolled"

    def __post_init__(self):
        if self.levels < 1 or self.iterations < 0:
            raise ValueError(f"need levels >= 1 and iterations >= 0, got {self.levels}, {self.iterations}")
        if self.robust not in ROBUST_KERNELS:
            raise ValueError(f"robust must be one of {ROBUST_KERNELS}, got {self.robust!r}")
        if self.robust != "l2" and not self.robust_scale > 0:
            raise ValueError(f"robust_scale must be > 0, got {self.robust_scale}")
        if self.depth_pool not in DEPTH_POOLS:
            raise ValueError(f"depth_pool must be one of {DEPTH_POOLS}, got {self.depth_pool!r}")
        if self.backward not in BACKWARD_MODES:
            raise ValueError(f"backward must be one of {BACKWARD_MODES}, got {self.backward!r}")


class LMRefiner(nn.Module):
    """Refine ``T_src_tgt`` by Levenberg-Marquardt on feature-alignment residuals, coarse to fine.

    Each level minimises ``E(T) = sum_p w_p rho(|F_s(p'(T)) - F_t(p)|^2)`` with ``iterations`` LM
    steps from the previous level's result (the first from ``T_init``). The update is
    ``T <- Pose.from_aa(omega, v) @ T`` with ``delta = (omega, v)``, rotation first
    (see `residual_jacobian`). Every step is differentiable: gradients reach the features, the
    confidences, the depth, ``T_init`` and a learned damping (with ``backward="implicit"`` only
    through the last step; see `LMConfig`). An element whose step fails keeps
    its pose for that step (see `lm_step`); nothing here produces NaN from finite features,
    confidences and ``T_init`` (depth may hold inf/NaN/<= 0 where it is missing).

    Example:
        >>> lm = LMRefiner(LMConfig(levels=1, iterations=1))
        >>> img = torch.rand(1, 3, 8, 8)
        >>> T, info = lm([img], None, [img], None, torch.ones(1, 1, 8, 8),
        ...              Camera(torch.tensor([[8.0, 8, 8, 8, 3.5, 3.5]])), Pose.identity(1))
        >>> T.shape, info["failed"].tolist()
        (torch.Size([1]), [False])
    """

    def __init__(self, config: LMConfig | None = None):
        super().__init__()
        self.config = config or LMConfig()
        c = self.config
        self.damping = Damping(c.levels, c.damping, c.learned_damping, (c.damping_log_min, c.damping_log_max))

    def forward(
        self,
        feats_tgt: list[torch.Tensor],
        conf_tgt: list[torch.Tensor] | None,
        feats_src: list[torch.Tensor],
        conf_src: list[torch.Tensor] | None,
        depth_tgt: torch.Tensor,
        camera: Camera,
        T_init: Pose,
    ) -> tuple[Pose, dict]:
        """Refine the pose.

        Args:
            feats_tgt: target features per level, coarse to fine, each ``(B, C_l, h_l, w_l)``.
            conf_tgt: target confidences per level, each ``(B, 1, h_l, w_l)``, or None (all ones).
            feats_src: source features, shaped as ``feats_tgt``.
            conf_src: source confidences, shaped as ``conf_tgt``, or None.
            depth_tgt: target z-depth ``(B, 1, H, W)`` at the resolution of ``camera``.
            camera: intrinsics ``(B,)`` of the ``H x W`` image (both views).
            T_init: initial ``T_src_tgt`` ``(B,)`` (e.g. from the pose network).

        Returns:
            The refined ``T_src_tgt`` ``(B,)`` and ``info`` with ``failed`` ``(B,)`` bool (some step
            failed), ``failed_steps`` ``(B,)`` int, ``n_valid`` ``(B,)`` valid points in the last step,
            ``cost`` a list with one ``(B,)`` tensor per step (weighted mean robust cost before it) and
            ``lambda`` ``(levels, 6)``; all detached. The pose is float32 (float64 if an input is),
            also under autocast.
        """
        self._check_inputs(feats_tgt, conf_tgt, feats_src, conf_src, depth_tgt, camera, T_init)
        confs = [x for x in (conf_tgt, conf_src) if x is not None]
        dtype = solve_dtype(
            *feats_tgt, *feats_src, *(t for x in confs for t in x), depth_tgt, camera.data, T_init.data
        )
        # The whole refinement runs in float32 with autocast off (bf16-mixed training hands it bfloat16
        # features, depth and poses): the point transforms (matmuls autocast would run in bfloat16: ~1 cm
        # at 3 m), Jacobians and 6 x 6 normal equations need more than bfloat16's ~3 digits, and CUDA's
        # Cholesky has no bfloat16 kernel (see `solve_dtype`). The casts are differentiable, so
        # gradients return to the callers in their own dtypes.
        with torch.autocast(depth_tgt.device.type, enabled=False):
            return self._refine(
                [f.to(dtype) for f in feats_tgt],
                None if conf_tgt is None else [x.to(dtype) for x in conf_tgt],
                [f.to(dtype) for f in feats_src],
                None if conf_src is None else [x.to(dtype) for x in conf_src],
                depth_tgt.to(dtype),
                camera.to(dtype),
                T_init.to(dtype),
            )

    def _refine(
        self, feats_tgt, conf_tgt, feats_src, conf_src, depth_tgt, camera, T_init
    ) -> tuple[Pose, dict]:
        """`forward` on checked inputs of one float dtype, autocast off."""
        c = self.config
        B = depth_tgt.shape[0]
        first = len(feats_tgt) - c.levels
        use_conf = c.use_confidence
        T = T_init
        failed_steps = torch.zeros(B, dtype=torch.long, device=depth_tgt.device)
        n_valid = torch.zeros(B, dtype=torch.long, device=depth_tgt.device)
        costs, lambdas = [], []
        grad = torch.is_grad_enabled()
        step = self.step
        if c.checkpoint_lm and grad:
            step = functools.partial(torch.utils.checkpoint.checkpoint, self.step, use_reentrant=False)
        # Implicit backward: only the very last step records a graph (see `LMConfig.backward`).
        last = c.levels * c.iterations - 1 if grad and c.backward == "implicit" else None
        n = 0
        for k in range(c.levels):
            i = first + k
            with torch.set_grad_enabled(grad and (last is None or k == c.levels - 1)):
                level = build_level(
                    feats_tgt[i],
                    conf_tgt[i] if use_conf and conf_tgt is not None else None,
                    feats_src[i],
                    conf_src[i] if use_conf and conf_src is not None else None,
                    depth_tgt,
                    camera,
                    c.depth_pool,
                )
            lambda_ = self.damping(k)
            lambdas.append(lambda_.detach())
            for _ in range(c.iterations):
                if last is None:
                    T, failed, n_valid, cost = step(T, level, lambda_)
                elif n < last:
                    with torch.no_grad():
                        T, failed, n_valid, cost = self.step(T, level, lambda_)
                else:
                    T, failed, n_valid, cost = step(T.detach(), level, lambda_)
                n += 1
                failed_steps += failed.long()
                costs.append(cost.detach())
            if c.detach_between_levels and k < c.levels - 1:
                T = T.detach()
        if bool((failed_steps > 0).any()):
            logger.debug("LM: %d of %d elements had a failed step", int((failed_steps > 0).sum()), B)
        info = {
            "failed": failed_steps > 0,
            "failed_steps": failed_steps,
            "n_valid": n_valid,
            "cost": costs,
            "lambda": torch.stack(lambdas),
        }
        return T, info

    def step(
        self, T: Pose, level: LevelProblem, lambda_: torch.Tensor
    ) -> tuple[Pose, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One LM step on one level.

        Returns:
            The new pose ``(B,)`` (the old one where the step failed), ``failed`` ``(B,)`` bool,
            the number of valid points ``(B,)`` and the weighted mean robust cost ``(B,)`` at ``T``.
        """
        c = self.config
        lin = residual_jacobian(T, level, c.use_confidence)
        weights = lin.weights
        rho, rho_prime = robust_cost((lin.residuals**2).sum(1), c.robust, c.robust_scale)
        n_valid = (lin.valid & (weights > 0)).sum(-1)
        # `_refine` already runs in the solve dtype with autocast off, so the public functions' casts and
        # autocast guards are skipped (they were a measurable share of a step's operations).
        g, H = _build_system(lin.J_feat, lin.J_geom, lin.residuals, weights * rho_prime)
        delta, failed = _lm_step(g, H, lambda_, n_valid >= c.min_valid, c.eps)
        T_new = Pose.from_aa(delta[..., :3], delta[..., 3:]) @ T
        # Exactly the previous pose where the step failed (not I @ T, which could round).
        T_new = Pose(torch.where(failed[..., None], T.data, T_new.data))
        with torch.no_grad():  # a detached log: no autograd graph for it
            cost = (weights * rho).sum(-1) / weights.sum(-1).clamp(min=c.eps)
        return T_new, failed, n_valid, cost

    def _check_inputs(self, feats_tgt, conf_tgt, feats_src, conf_src, depth_tgt, camera, T_init) -> None:
        """Shape checks at the public edge: a mismatch is a programming error."""
        if depth_tgt.ndim != 4 or depth_tgt.shape[1] != 1:
            raise ValueError(f"depth_tgt must be (B, 1, H, W), got {tuple(depth_tgt.shape)}")
        B, _, H, W = depth_tgt.shape
        if tuple(camera.shape) != (B,) or tuple(T_init.shape) != (B,):
            raise ValueError(f"camera and T_init must have shape ({B},), got {camera.shape}, {T_init.shape}")
        if (camera.size - camera.size.new_tensor([float(W), float(H)])).abs().amax() > 1e-3:
            raise ValueError(f"camera size must be the depth size {W}x{H}, got {camera.size.tolist()}")
        n = len(feats_tgt)
        if len(feats_src) != n or n < self.config.levels:
            raise ValueError(
                f"need as many source as target levels, at least {self.config.levels}; "
                f"got {n} and {len(feats_src)}"
            )
        for name, confs in (("conf_tgt", conf_tgt), ("conf_src", conf_src)):
            if confs is not None and len(confs) != n:
                raise ValueError(f"{name} has {len(confs)} levels, features have {n}")
        for i in range(n):
            f_t, f_s = feats_tgt[i], feats_src[i]
            if f_t.ndim != 4 or f_t.shape != f_s.shape or f_t.shape[0] != B:
                raise ValueError(
                    f"level {i}: features must both be (B={B}, C, h, w), got "
                    f"{tuple(f_t.shape)} and {tuple(f_s.shape)}"
                )
            for confs in (conf_tgt, conf_src):
                if confs is not None and tuple(confs[i].shape) != (B, 1, *f_t.shape[-2:]):
                    raise ValueError(
                        f"level {i}: confidence must be (B, 1, h, w), got {tuple(confs[i].shape)}"
                    )

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())


def image_pyramid_features(
    image: torch.Tensor, levels: int, finest_stride: int = 1
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The image itself as features: area-averaged copies at strides ``finest_stride * 2^k``.

    Area averaging keeps the pixel-centre convention of `Camera.scale`, so the LM's level cameras
    match. For the raw-RGB ablation and for tests.

    Args:
        image: ``(B, C, H, W)``.
        levels: number of levels.
        finest_stride: stride of the finest level.

    Returns:
        Features ``(B, C, H / s, W / s)`` and confidences (ones) ``(B, 1, H / s, W / s)`` per level,
        coarse to fine.

    Example:
        >>> feats, confs = image_pyramid_features(torch.rand(2, 3, 16, 32), 3)
        >>> [tuple(f.shape[-2:]) for f in feats]
        [(4, 8), (8, 16), (16, 32)]
    """
    feats = []
    for k in reversed(range(levels)):
        s = finest_stride * 2**k
        feats.append(image if s == 1 else F.avg_pool2d(image, s))
    confs = [f.new_ones(f.shape[0], 1, *f.shape[-2:]) for f in feats]
    return feats, confs
