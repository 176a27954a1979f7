"""Feature-alignment residuals of one pyramid level and their analytic Jacobians w.r.t. the pose update.

First layer of the LM refinement: pose-independent level data (`build_level`), then per iteration the
residuals ``r_p = F_s(p'(T)) - F_t(p)``, weights, validity and ``dr/d delta`` (`residual_jacobian`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sa4depth.geometry import Camera, Pose
from sa4depth.geometry.warp import backproject_depth, sample_at

DEPTH_POOLS = ("inverse_area", "area", "min")

# Depths below this are treated as missing (also keeps 1 / depth finite for the inverse-area pool).
_DEPTH_MIN = 1e-6


@dataclass
class LevelProblem:
    """Pose-independent data of one pyramid level, flattened over the ``N = h * w`` target pixels.

    Attributes:
        points: target-camera points ``X_p`` ``(B, N, 3)``, finite everywhere.
        point_valid: ``(B, N)`` bool, the level depth is finite and positive.
        feat_tgt: target features ``F_t(p)`` ``(B, C, N)``.
        conf_tgt: target confidence ``W_t(p)`` ``(B, N)``.
        source: ``(B, 3C + 1, h, w)``: source features, their u- and v-derivatives and the source
            confidence stacked, so that one bilinear lookup per iteration reads all of them.
        camera: intrinsics ``(B,)`` of this level.
    """

    points: torch.Tensor
    point_valid: torch.Tensor
    feat_tgt: torch.Tensor
    conf_tgt: torch.Tensor
    source: torch.Tensor
    camera: Camera

    @property
    def channels(self) -> int:
        return self.feat_tgt.shape[1]


def downsample_depth(
    depth: torch.Tensor, size: tuple[int, int], mode: str = "inverse_area"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample a z-depth map ``(B, 1, H, W)`` to ``size = (h, w)`` and say where it is valid.

    Pixels with non-finite or non-positive depth are missing; a level pixel is valid only if its whole
    footprint is (so no level point mixes real depth with a placeholder). Modes:

    * ``"inverse_area"`` (default): area average of inverse depth. ``1 / z`` of a plane is affine in
      the pixel coordinates, so the block average is exactly the inverse depth at the block centre,
      which is where `Camera.scale` puts the level pixel; at occlusion edges it leans to the nearer
      surface (a harmonic mean is <= the mean) without snapping to it as ``"min"`` does.
    * ``"area"``: area average of depth (exact only for fronto-parallel planes).
    * ``"min"``: the nearest depth of the footprint.

    Returns:
        The level depth ``(B, 1, h, w)`` (finite; 1 where invalid) and its ``(B, 1, h, w)`` bool mask.

    Example:
        >>> d, ok = downsample_depth(torch.full((1, 1, 4, 4), 2.0), (2, 2))
        >>> d.flatten().tolist(), bool(ok.all())
        ([2.0, 2.0, 2.0, 2.0], True)
    """
    if mode not in DEPTH_POOLS:
        raise ValueError(f"depth pooling must be one of {DEPTH_POOLS}, got {mode!r}")
    valid = torch.isfinite(depth) & (depth > _DEPTH_MIN)
    # where() (not masking by multiplication) so that inf/NaN depth cannot leak NaN into gradients.
    safe = torch.where(valid, depth, torch.ones_like(depth))
    if tuple(depth.shape[-2:]) == tuple(size):
        return safe, valid
    all_valid = -F.adaptive_max_pool2d(-valid.to(depth.dtype), size) > 0.5
    if mode == "inverse_area":
        level = 1.0 / F.adaptive_avg_pool2d(1.0 / safe, size)
    elif mode == "area":
        level = F.adaptive_avg_pool2d(safe, size)
    else:
        level = -F.adaptive_max_pool2d(-safe, size)
    return level, all_valid


def feature_gradients(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Derivatives of ``(B, C, H, W)`` features along u (columns) and v (rows), each ``(B, C, H, W)``.

    Central differences inside, one-sided at the border; bilinearly sampled at ``p'`` they approximate
    ``dF_s/dp'`` smoothly (the exact derivative of bilinear interpolation is piecewise constant).
    """
    if min(features.shape[-2:]) < 2:
        zero = torch.zeros_like(features)
        return zero, zero
    d_v, d_u = torch.gradient(features, dim=(-2, -1))
    return d_u, d_v


def build_level(
    feat_tgt: torch.Tensor,
    conf_tgt: torch.Tensor | None,
    feat_src: torch.Tensor,
    conf_src: torch.Tensor | None,
    depth_tgt: torch.Tensor,
    camera: Camera,
    depth_pool: str = "inverse_area",
) -> LevelProblem:
    """Gather what one level's LM iterations need and that does not depend on the pose.

    Args:
        feat_tgt: target features ``(B, C, h, w)``.
        conf_tgt: target confidence ``(B, 1, h, w)`` in [0, 1], or None for all ones.
        feat_src: source features ``(B, C, h, w)``.
        conf_src: source confidence ``(B, 1, h, w)``, or None for all ones.
        depth_tgt: target z-depth ``(B, 1, H, W)`` at the full resolution of ``camera``.
        camera: intrinsics ``(B,)`` of the ``H x W`` image; the level camera is
            ``camera.scale((w / W, h / H))``, so any level stride works.
        depth_pool: how depth is brought to the level, see `downsample_depth`.
    """
    B, C, h, w = feat_tgt.shape
    H, W = depth_tgt.shape[-2:]
    level_cam = camera.scale((w / W, h / H))
    depth, depth_valid = downsample_depth(depth_tgt, (h, w), depth_pool)
    points = backproject_depth(depth, level_cam)
    ones = feat_tgt.new_ones(B, 1, h, w)
    conf_tgt = ones if conf_tgt is None else conf_tgt
    conf_src = ones if conf_src is None else conf_src
    d_u, d_v = feature_gradients(feat_src)
    return LevelProblem(
        points=points,
        point_valid=depth_valid.reshape(B, -1),
        feat_tgt=feat_tgt.reshape(B, C, -1),
        conf_tgt=conf_tgt.reshape(B, -1),
        source=torch.cat([feat_src, d_u, d_v, conf_src], dim=1),
        camera=level_cam,
    )


@dataclass
class Linearization:
    """The cost of one level linearised at the current pose (channel-first, as sampled).

    The Jacobian of the residuals w.r.t. ``delta`` is kept factored, ``dr/d delta = dF_s/dp' dp'/d delta``,
    because the normal equations only need ``J_geom^T (J_feat^T J_feat) J_geom``: ``C / 2`` times less
    work than with the dense ``(B, N, C, 6)`` Jacobian.

    Attributes:
        residuals: ``r_p = F_s(p') - F_t(p)`` ``(B, C, N)``.
        J_feat: feature image derivatives at ``p'`` along u and v, ``(B, 2, C, N)``.
        J_geom: ``dp'/d delta`` ``(B, N, 2, 6)``.
        weights: ``W_t(p) W_s(p')`` on valid points, 0 elsewhere, ``(B, N)``.
        valid: ``(B, N)`` bool.
    """

    residuals: torch.Tensor
    J_feat: torch.Tensor
    J_geom: torch.Tensor
    weights: torch.Tensor
    valid: torch.Tensor

    def jacobian(self) -> torch.Tensor:
        """The dense Jacobian ``dr_p/d delta`` ``(B, N, C, 6)`` (for tests and inspection)."""
        return torch.einsum("bkcn,bnkp->bncp", self.J_feat, self.J_geom)


def residual_jacobian(
    T_src_tgt: Pose, level: LevelProblem, use_confidence: bool = True, margin: float = 0.5
) -> Linearization:
    """Residuals, Jacobians, weights and validity at the current pose.

    The pose update is the left retraction ``T <- Pose.from_aa(omega, v) @ T`` with
    ``delta = (omega_x, omega_y, omega_z, v_x, v_y, v_z)`` (rotation first, radians, then translation
    in depth units), so at ``delta = 0``: ``dX'/d omega = -[X']_x`` and ``dX'/dv = I`` with
    ``X' = T * X`` the point in the source camera. The weights are treated as constant in the
    Jacobian (as in IRLS); they still carry gradients to the confidence maps.

    A point is valid if its level depth is valid, ``X'`` is in front of the source camera
    (``z > 1e-3``, `Camera.project`) and ``p'`` lies ``margin`` pixels inside the image, i.e. within
    the bilinear interpolation domain for the default 0.5. Invalid points get weight 0, and their
    residual and Jacobian are finite (they read pixel (0, 0)).

    Args:
        T_src_tgt: current pose ``(B,)``, target-camera points into the source camera.
        level: the level data from `build_level`.
        use_confidence: weight by ``W_t(p) * W_s(p')``; otherwise the weight is 1 on valid points.
        margin: distance in pixels that ``p'`` keeps from the pixel-centre image extent.

    Returns:
        The `Linearization` at ``T_src_tgt``.
    """
    C = level.channels
    points_src = T_src_tgt.transform(level.points)
    uv, in_front = level.camera.project(points_src)
    valid = level.point_valid & in_front & level.camera.in_image(uv, margin)
    # Invalid points (possibly far outside, or projected from behind the camera) read pixel (0, 0),
    # which keeps every forward value, hence every backward value, finite.
    uv = torch.where(valid[..., None], uv, torch.zeros_like(uv))
    feat_src, d_uv, conf_src = sample_at(level.source, uv).split([C, 2 * C, 1], dim=1)

    # dp'/d(omega, v) = dp'/dX' [-[X']_x | I]; a row a of dp'/dX' gives a^T (-[X']_x) = (X' x a)^T,
    # computed elementwise (batches of tiny matmuls dominate the run time otherwise).
    J_proj = level.camera.J_project(points_src)  # (B, N, 2, 3)
    J_geom = torch.cat([torch.linalg.cross(points_src[..., None, :], J_proj, dim=-1), J_proj], dim=-1)

    weights = valid.to(feat_src.dtype)
    if use_confidence:
        weights = weights * level.conf_tgt * conf_src[:, 0]
    return Linearization(
        residuals=feat_src - level.feat_tgt,
        J_feat=d_uv.unflatten(1, (2, C)),
        J_geom=J_geom,
        weights=weights,
        valid=valid,
    )
