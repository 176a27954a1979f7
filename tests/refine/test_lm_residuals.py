"""Tests of `sa4depth.refine.residuals`: level depth, residuals, validity and the analytic Jacobian."""

import pytest
import torch

from sa4depth.geometry import Camera, Pose
from sa4depth.geometry.warp import pixel_grid
from sa4depth.refine.residuals import (
    build_level,
    downsample_depth,
    feature_gradients,
    residual_jacobian,
)

D = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def plane_depth(camera: Camera, H: int, W: int) -> torch.Tensor:
    """Z-depth ``(1, 1, H, W)`` of the slanted plane ``0.1 x - 0.2 y + z = 3`` seen by ``camera``."""
    uv = pixel_grid(H, W, dtype=D)
    xy = (uv - camera.c[0]) / camera.f[0]
    return (3.0 / (1.0 + 0.1 * xy[:, 0] - 0.2 * xy[:, 1])).reshape(1, 1, H, W)


def test_inverse_area_depth_of_a_plane_is_exact_at_level_centres():
    """1/z of a plane is affine in pixels, so the block mean of 1/z is 1/z at the level pixel centre."""
    cam = Camera(torch.tensor([[32.0, 16.0, 20.0, 20.0, 15.5, 7.5]], dtype=D))
    depth = plane_depth(cam, 16, 32)
    level, valid = downsample_depth(depth, (4, 8), "inverse_area")
    expected = plane_depth(cam.scale(0.25), 4, 8)
    torch.testing.assert_close(level, expected, rtol=1e-12, atol=0)
    assert valid.all()
    # A plain average is biased for a slanted plane.
    assert (downsample_depth(depth, (4, 8), "area")[0] - expected).abs().max() > 1e-4


def test_level_depth_is_invalid_where_any_footprint_pixel_is_missing():
    depth = torch.full((1, 1, 8, 8), 2.0, dtype=D)
    depth[0, 0, 0, 0] = float("inf")
    depth[0, 0, 7, 7] = -1.0
    depth[0, 0, 4, 0] = float("nan")
    for mode in ("inverse_area", "area", "min"):
        level, valid = downsample_depth(depth, (2, 2), mode)
        assert valid[0, 0].tolist() == [[False, True], [False, False]]
        assert torch.isfinite(level).all()
        assert level[0, 0, 0, 1] == 2.0


def test_feature_gradients_of_a_linear_map_are_exact():
    v, u = torch.meshgrid(torch.arange(5, dtype=D), torch.arange(7, dtype=D), indexing="ij")
    feats = torch.stack([2 * u - 3 * v, 0.5 * v + 1])[None]
    d_u, d_v = feature_gradients(feats)
    torch.testing.assert_close(d_u[0, 0], torch.full((5, 7), 2.0, dtype=D))
    torch.testing.assert_close(d_v[0, 0], torch.full((5, 7), -3.0, dtype=D))
    torch.testing.assert_close(d_u[0, 1], torch.zeros(5, 7, dtype=D))
    torch.testing.assert_close(d_v[0, 1], torch.full((5, 7), 0.5, dtype=D))


def _problem(feats_src: torch.Tensor, H: int = 12, W: int = 16):
    cam = Camera(torch.tensor([[W, H, 14.0, 14.0, (W - 1) / 2, (H - 1) / 2]], dtype=D))
    depth = plane_depth(cam, H, W)
    feats_tgt = torch.rand_like(feats_src)
    conf_t, conf_s = torch.rand(1, 1, H, W, dtype=D), torch.rand(1, 1, H, W, dtype=D)
    level = build_level(feats_tgt, conf_t, feats_src, conf_s, depth, cam)
    aa, t = torch.tensor([[0.02, -0.03, 0.01]], dtype=D), torch.tensor([[0.1, -0.05, 0.08]], dtype=D)
    T = Pose.from_aa(aa, t)
    return level, T


def _autograd_jacobian(level, T):
    def residuals_of(delta):
        T_new = Pose.from_aa(delta[None, :3], delta[None, 3:]) @ T
        return residual_jacobian(T_new, level).residuals.transpose(1, 2)  # (B, N, C)

    return torch.autograd.functional.jacobian(residuals_of, torch.zeros(6, dtype=D))


def test_jacobian_equals_autograd_on_linear_features():
    """For affine features the bilinear lookup and the finite-difference gradient are exact, so the
    analytic chain ``dF/dp' dp'/dX' dX'/d(omega, v)`` must equal autograd to rounding."""
    H, W = 12, 16
    v, u = torch.meshgrid(torch.arange(H, dtype=D), torch.arange(W, dtype=D), indexing="ij")
    feats_src = torch.stack([0.3 * u - 0.2 * v, 0.1 * u + 0.4 * v + 1.0, -0.5 * u])[None]
    level, T = _problem(feats_src, H, W)
    lin = residual_jacobian(T, level)
    J, valid = lin.jacobian(), lin.valid
    assert valid.float().mean() > 0.7
    J_auto = _autograd_jacobian(level, T)
    torch.testing.assert_close(J[valid], J_auto[valid], rtol=1e-9, atol=1e-12)


def test_jacobian_close_to_autograd_on_smooth_features():
    H, W = 24, 32
    v, u = torch.meshgrid(torch.arange(H, dtype=D), torch.arange(W, dtype=D), indexing="ij")
    feats_src = torch.stack([torch.sin(0.1 * u + 0.05 * v), torch.cos(0.06 * u - 0.1 * v + 1.0)])[None]
    level, T = _problem(feats_src, H, W)
    lin = residual_jacobian(T, level)
    J, valid = lin.jacobian(), lin.valid
    J_auto = _autograd_jacobian(level, T)
    # Central differences vs the piecewise-constant derivative of bilinear interpolation: O(k) apart
    # for a wave number k (rad / px); here k <= 0.12.
    rel = (J[valid] - J_auto[valid]).norm() / J_auto[valid].norm()
    assert rel < 0.05


def test_pose_update_order_rotation_then_translation():
    """With features F = (u, v) the residual Jacobian is dp'/d delta, known in closed form at T = I."""
    H, W = 13, 16  # odd H: the row through the principal point has y = 0
    v, u = torch.meshgrid(torch.arange(H, dtype=D), torch.arange(W, dtype=D), indexing="ij")
    level, _ = _problem(torch.stack([u, v])[None], H, W)
    lin = residual_jacobian(Pose.identity(1, dtype=D), level)
    J, valid = lin.jacobian(), lin.valid
    x, y, z = level.points[0].unbind(-1)
    f = 14.0
    # Translation (columns 3..5): du/dv_x = f / z, dv/dv_y = f / z, du/dv_z = -f x / z^2.
    torch.testing.assert_close(J[0, :, 0, 3][valid[0]], (f / z)[valid[0]])
    torch.testing.assert_close(J[0, :, 1, 4][valid[0]], (f / z)[valid[0]])
    torch.testing.assert_close(J[0, :, 0, 5][valid[0]], (-f * x / z**2)[valid[0]])
    # Rotation (columns 0..2) about the optical axis moves a point on y = 0 along v by f x / z.
    on_axis_row = valid[0] & (y.abs() < 1e-12) & (x > 0)
    assert on_axis_row.any()
    torch.testing.assert_close(J[0, on_axis_row, 1, 2], (f * x / z)[on_axis_row])
    torch.testing.assert_close(J[0, on_axis_row, 0, 2], torch.zeros_like(x[on_axis_row]))


def test_invalid_points_have_zero_weight_and_finite_values():
    H, W = 8, 10
    cam = Camera(torch.tensor([[W, H, 10.0, 10.0, 4.5, 3.5]], dtype=D))
    depth = torch.full((1, 1, H, W), 2.0, dtype=D)
    depth[..., :2, :] = float("nan")  # missing depth
    feats = torch.rand(1, 4, H, W, dtype=D)
    level = build_level(feats, None, feats, None, depth, cam)
    # The source camera 1 m to the right of depth-2 points: p' moves 5 px left, columns 0-4 leave.
    T = Pose.from_aa(torch.zeros(1, 3, dtype=D), torch.tensor([[-1.0, 0.0, 0.0]], dtype=D))
    lin = residual_jacobian(T, level)
    w = lin.weights
    assert torch.isfinite(lin.residuals).all() and torch.isfinite(lin.jacobian()).all()
    valid = lin.valid.reshape(H, W)
    assert not valid[:2].any() and not valid[:, :5].any() and valid[2:, 5:].all()
    assert (w.reshape(H, W)[~valid] == 0).all() and (w.reshape(H, W)[valid] == 1).all()
    # Behind the camera: nothing valid.
    T_behind = Pose.from_aa(torch.zeros(1, 3, dtype=D), torch.tensor([[0.0, 0.0, -5.0]], dtype=D))
    lin = residual_jacobian(T_behind, level)
    assert not lin.valid.any() and (lin.weights == 0).all() and torch.isfinite(lin.jacobian()).all()
