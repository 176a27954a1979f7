"""The LM under autocast (bf16-mixed training): normal equations, solve and refinement stay float32.

CPU autocast supports bfloat16, so these run the same code path a GPU's bf16-mixed step takes.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from sa4depth.geometry import Camera, Pose
from sa4depth.geometry.warp import pixel_grid
from sa4depth.refine import LMConfig, LMRefiner, build_system, image_pyramid_features, lm_step

pytestmark = pytest.mark.usefixtures("one_thread")

BF16 = torch.bfloat16


def bf16_autocast():
    return torch.autocast("cpu", dtype=BF16)


def texture(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A smooth three-channel texture on the plane, ``(3, ...)`` from metric coordinates ``(...)``."""
    return torch.stack(
        [
            0.5 + 0.25 * torch.sin(7 * x + 2 * y) + 0.2 * torch.cos(5 * y),
            0.5 + 0.3 * torch.cos(6 * x - 4 * y),
            0.5 + 0.2 * torch.sin(9 * y) * torch.cos(3 * x) + 0.2 * torch.sin(4 * x + 4 * y),
        ]
    )


def view_of_wall(camera: Camera, T_cam_tgt: Pose, dist: float) -> torch.Tensor:
    """Exact image ``(1, 3, H, W)`` of the textured plane ``z = dist`` (target frame) seen from a camera
    at ``T_cam_tgt``: each pixel's ray is intersected with the plane and the texture read there."""
    W, H = (int(v) for v in camera.size[0].tolist())
    rays = camera.backproject(pixel_grid(H, W)[None], torch.ones(1, H * W))[0]
    T_tgt_cam = T_cam_tgt.inv()
    origin, dirs = T_tgt_cam.t[0], rays @ T_tgt_cam.R[0].T
    lam = (dist - origin[2]) / dirs[:, 2]
    X = origin + lam[:, None] * dirs
    return texture(X[:, 0], X[:, 1]).reshape(1, 3, H, W)


@pytest.fixture(scope="module")
def wall():
    """Target and source views (64 x 96) of a textured wall 3 m away, the true pose and a start 2 deg off."""
    W, H, f = 96, 64, 80.0
    camera = Camera(torch.tensor([[W, H, f, f, (W - 1) / 2, (H - 1) / 2]]))
    T_gt = Pose.from_aa(torch.tensor([[0.01, -0.02, 0.005]]), torch.tensor([[0.15, -0.03, 0.08]]))
    image_tgt = view_of_wall(camera, Pose.identity(1), 3.0)
    image_src = view_of_wall(camera, T_gt, 3.0)
    depth = torch.full((1, 1, H, W), 3.0)
    T_init = (
        Pose.from_aa(torch.tensor([[0.0, math.radians(2.0), 0.0]]), torch.tensor([[0.02, 0.01, 0.0]])) @ T_gt
    )
    return image_tgt, image_src, depth, camera, T_gt, T_init


def pose_error(T: Pose, T_ref: Pose) -> tuple[float, float]:
    """Rotation difference (deg) and translation difference relative to ``|t_ref|``.

    The angle comes from the skew part of the relative rotation, ``|vee(R - R^T)| / 2 = sin(angle)``,
    which resolves small angles (``acos`` of the trace cannot below ~0.03 deg in float32).
    """
    rel = T.to(torch.float64).inv() @ T_ref.to(torch.float64)
    S = rel.R - rel.R.transpose(-1, -2)
    sin = torch.stack([S[..., 2, 1], S[..., 0, 2], S[..., 1, 0]], -1).norm(dim=-1) / 2
    return math.degrees(math.asin(sin.item())), (rel.t.norm(dim=-1) / T_ref.t.norm(dim=-1)).item()


def test_build_system_under_autocast_is_the_float32_system():
    """Autocast would run the einsums (bmm) in bfloat16; the guard keeps g and H float32 and unchanged."""
    B, C, N = 2, 8, 500
    J_feat, residuals = torch.randn(B, 2, C, N), torch.randn(B, C, N)
    J_geom, weights = torch.randn(B, N, 2, 6) * 50, torch.rand(B, N)
    g_ref, H_ref = build_system(J_feat, J_geom, residuals, weights)
    with bf16_autocast():
        g, H = build_system(J_feat, J_geom, residuals, weights)
    assert g.dtype == H.dtype == torch.float32
    torch.testing.assert_close(g, g_ref, rtol=1e-6, atol=0)
    torch.testing.assert_close(H, H_ref, rtol=1e-6, atol=0)


def test_lm_step_solves_bfloat16_systems_in_float32():
    """bfloat16 g and H (what autocast hands over) are solved in float32: Cholesky has no bf16 kernel."""
    A = torch.randn(3, 40, 6)
    H = (A.transpose(1, 2) @ A).to(BF16)
    g = torch.randn(3, 6).to(BF16)
    delta_ref, failed_ref = lm_step(g.float(), H.float(), 1e-2)
    with bf16_autocast():
        delta, failed = lm_step(g, H, 1e-2)
    assert delta.dtype == torch.float32 and not failed.any() and not failed_ref.any()
    torch.testing.assert_close(delta, delta_ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("checkpoint", [False, True])
def test_refinement_under_autocast_is_float32_and_matches_the_float32_solve(wall, checkpoint):
    """bfloat16 inputs, as a feature net and pose net under autocast give them, refine in float32.

    The autocast result differs from the float32 one only through the inputs' bfloat16 rounding.
    With activation checkpointing the backward pass recomputes the steps in float32 too.
    """
    image_tgt, image_src, depth, camera, T_gt, T_init = wall
    feats_t, conf_t = image_pyramid_features(image_tgt, 3)
    feats_s, conf_s = image_pyramid_features(image_src, 3)
    lm = LMRefiner(LMConfig(levels=3, iterations=5, checkpoint_lm=checkpoint))
    T_ref, info_ref = lm(feats_t, conf_t, feats_s, conf_s, depth, camera, T_init)

    half = lambda xs: [x.to(BF16).requires_grad_() for x in xs]  # noqa: E731
    feats_t16, feats_s16, conf_t16, conf_s16 = half(feats_t), half(feats_s), half(conf_t), half(conf_s)
    with bf16_autocast():
        T, info = lm(feats_t16, conf_t16, feats_s16, conf_s16, depth.to(BF16), camera, T_init.to(BF16))
    assert T.dtype == torch.float32 and all(c.dtype == torch.float32 for c in info["cost"])
    assert not info["failed"].any() and not info_ref["failed"].any()
    # Both recover the pose from 2 deg / 15 % off. Measured against T_gt: float32 0.005 deg / 0.17 %,
    # autocast 0.002 deg / 0.18 %; between the two 0.005 deg / 0.18 %.
    for T_a, T_b in ((T_ref, T_gt), (T, T_gt), (T, T_ref)):
        deg, rel = pose_error(T_a, T_b)
        assert deg < 0.05 and rel < 0.01, (deg, rel)

    T.data.sum().backward()
    for x in (*feats_t16, *feats_s16, *conf_t16, *conf_s16):
        assert x.grad is not None and x.grad.dtype == BF16 and torch.isfinite(x.grad).all()
    assert any(x.grad.abs().sum() > 0 for x in feats_s16)


def test_autocast_does_not_touch_the_refinement_of_float32_inputs(wall):
    """With float32 inputs the whole refinement (residuals, Jacobians, solve) ignores autocast: the
    result is the float32 one to rounding, not the ~0.1 % a bfloat16 point transform would cause."""
    image_tgt, image_src, depth, camera, _, T_init = wall
    feats_t, conf_t = image_pyramid_features(image_tgt, 3)
    feats_s, conf_s = image_pyramid_features(image_src, 3)
    lm = LMRefiner(LMConfig(levels=3, iterations=5))
    T_ref, info_ref = lm(feats_t, conf_t, feats_s, conf_s, depth, camera, T_init)
    with bf16_autocast():
        T, info = lm(feats_t, conf_t, feats_s, conf_s, depth, camera, T_init)
    torch.testing.assert_close(T.data, T_ref.data, rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.stack(info["cost"]), torch.stack(info_ref["cost"]), rtol=1e-5, atol=0)


def test_refinement_keeps_float64():
    """The guard never lowers precision: float64 inputs (the gradient checks') are solved in float64."""
    image = F.avg_pool2d(torch.rand(1, 3, 32, 32, dtype=torch.float64), 2)
    feats, confs = image_pyramid_features(image, 2)
    camera = Camera(torch.tensor([[16.0, 16, 16, 16, 7.5, 7.5]], dtype=torch.float64))
    depth = torch.full((1, 1, 16, 16), 2.0, dtype=torch.float64)
    with bf16_autocast():
        T, _ = LMRefiner(LMConfig(levels=2, iterations=1))(
            feats, confs, feats, confs, depth, camera, Pose.identity(1, dtype=torch.float64)
        )
    assert T.dtype == torch.float64
