"""Known-answer tests of the pose convention, the camera model and view warping."""

import math

import numpy as np
import pytest
import torch

from sa4depth.geometry import Camera, Pose, backproject_depth, pixel_grid, warp_frame
from sa4depth.geometry.warp import sample_at


def kitti_like_camera(batch=1, width=64, height=32, dtype=torch.float64):
    K = torch.tensor([[40.0, 0, 31.5], [0, 40.0, 15.5], [0, 0, 1]], dtype=dtype)
    return Camera.from_K(K.expand(batch, 3, 3), width, height)


class TestPose:
    def test_compose_and_inverse(self):
        T_a_b = Pose.from_aa(torch.tensor([0.1, -0.2, 0.3]), torch.tensor([1.0, 2.0, 3.0]))
        T_b_c = Pose.from_aa(torch.tensor([-0.3, 0.1, 0.05]), torch.tensor([0.5, -1.0, 0.2]))
        X_c = torch.randn(5, 3)
        T_a_c = T_a_b @ T_b_c
        torch.testing.assert_close(T_a_c * X_c, T_a_b * (T_b_c * X_c))
        torch.testing.assert_close((T_a_c.inv() @ T_a_c).matrix(), torch.eye(4), atol=1e-6, rtol=0)

    def test_matrix_round_trip_and_magnitude(self):
        T = Pose.from_aa(torch.tensor([[0.0, 0.0, math.radians(30)]]), torch.tensor([[3.0, 4.0, 0.0]]))
        torch.testing.assert_close(Pose.from_4x4mat(T.matrix()).data, T.data)
        deg, dist = T.magnitude()
        assert deg.item() == pytest.approx(30.0, abs=1e-4)
        assert dist.item() == pytest.approx(5.0)

    def test_exp_gradient_at_zero_equals_generators(self):
        """d(R(w) x)/dw at w=0 is -[x]_x: kornia's exp must not zero the gradient at the singularity."""
        x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
        for eps in (0.0, 1e-9, 1e-5):
            w0 = torch.full((3,), eps, dtype=torch.float64)

            def rotate(w):
                return Pose.from_aa(w, torch.zeros(3, dtype=torch.float64)) * x[None]

            J = torch.autograd.functional.jacobian(rotate, w0)[0]
            skew = torch.tensor([[0, -3.0, 2.0], [3.0, 0, -1.0], [-2.0, 1.0, 0]], dtype=torch.float64)
            torch.testing.assert_close(J, -skew, atol=1e-4, rtol=0)

    @pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
    def test_exp_equals_kornia_on_both_sides_of_the_taylor_switch(self, dtype):
        """Our Rodrigues exp (the LM's update, for speed) and kornia's So3.exp: same R and dR/dw."""
        from kornia.geometry.liegroup import So3

        axis = torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64)
        axis = axis / axis.norm()
        for theta in (0.0, 1e-9, 1e-5, 0.999e-3, 1.001e-3, 0.1, 1.0, math.pi - 1e-6):
            w = (theta * axis).to(dtype)

            def ours(w):
                return Pose.from_aa(w, torch.zeros_like(w)).R

            def kornia(w):
                return So3.exp(w[None]).matrix()[0]

            tol = {"atol": 1e-12, "rtol": 0} if dtype == torch.float64 else {"atol": 1e-6, "rtol": 0}
            torch.testing.assert_close(ours(w), kornia(w), **tol)
            J = torch.autograd.functional.jacobian(ours, w)
            torch.testing.assert_close(J, torch.autograd.functional.jacobian(kornia, w), **tol)

    def test_world_poses_to_relative(self):
        """poses.txt rows are T_world_cam; T_src_tgt = T_world_src^-1 T_world_tgt maps tgt points to src."""
        T_world_tgt = Pose.from_aa(torch.zeros(3), torch.tensor([0.0, 0.0, 0.0]))
        T_world_src = Pose.from_aa(torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))  # camera moved 1 m forward
        T_src_tgt = T_world_src.inv() @ T_world_tgt
        point_in_tgt = torch.tensor([[0.0, 0.0, 10.0]])
        torch.testing.assert_close(T_src_tgt * point_in_tgt, torch.tensor([[0.0, 0.0, 9.0]]))


class TestCamera:
    def test_project_backproject_round_trip(self):
        cam = kitti_like_camera(batch=2)
        uv = pixel_grid(32, 64, dtype=torch.float64).expand(2, -1, -1)
        depth = torch.rand(2, uv.shape[1], dtype=torch.float64) * 50 + 1
        uv2, valid = cam.project(cam.backproject(uv, depth))
        assert valid.all()
        torch.testing.assert_close(uv2, uv)

    def test_scale_keeps_pixel_centres(self):
        """Halving the resolution: old pixels 0 and 1 merge into new pixel 0, centre 0.5 -> 0."""
        cam = Camera.from_K(torch.tensor([[100.0, 0, 0.5], [0, 100.0, 0.5], [0, 0, 1]]), 64, 32)
        half = cam.scale(0.5)
        torch.testing.assert_close(half.c, torch.tensor([0.0, 0.0]))
        torch.testing.assert_close(half.f, torch.tensor([50.0, 50.0]))
        torch.testing.assert_close(half.size, torch.tensor([32.0, 16.0]))
        torch.testing.assert_close(cam.resize_to(32, 16).data, half.data)

    def test_crop_and_flip(self):
        cam = Camera.from_K(torch.tensor([[100.0, 0, 30.0], [0, 100.0, 20.0], [0, 0, 1]]), 64, 32)
        crop = cam.crop(10, 5, 40, 20)
        torch.testing.assert_close(crop.c, torch.tensor([20.0, 15.0]))
        torch.testing.assert_close(cam.flip_horizontal().c, torch.tensor([33.0, 20.0]))

    def test_jacobian_matches_autograd(self):
        cam = kitti_like_camera()
        X = torch.tensor([[[0.3, -0.2, 4.0]]], dtype=torch.float64)
        J = torch.autograd.functional.jacobian(lambda p: cam.project(p)[0], X)[0, 0, :, 0, 0, :]
        torch.testing.assert_close(cam.J_project(X)[0, 0], J)


class TestWarp:
    def test_translation_moves_pixels_the_expected_way(self):
        """The source camera is 1 m to the right (+x) of the target: a point at depth z appears f/z
        pixels further LEFT in the source image, so the target samples the source at u - f/z."""
        cam = kitti_like_camera()
        depth = torch.full((1, 1, 32, 64), 8.0, dtype=torch.float64)
        T_src_tgt = Pose.from_aa(
            torch.zeros(1, 3, dtype=torch.float64), torch.tensor([[-1.0, 0.0, 0.0]], dtype=torch.float64)
        )
        points = T_src_tgt.transform(backproject_depth(depth, cam))
        uv, _ = cam.project(points)
        shift = uv[0, :, 0] - pixel_grid(32, 64, dtype=torch.float64)[:, 0]
        torch.testing.assert_close(shift, torch.full_like(shift, -40.0 / 8.0))

    def test_sampling_is_exact_at_pixel_centres(self):
        image = torch.arange(12.0).reshape(1, 1, 3, 4)
        uv = torch.tensor([[[0.0, 0.0], [3.0, 2.0], [1.5, 1.0]]])
        torch.testing.assert_close(sample_at(image, uv)[0, 0], torch.tensor([0.0, 11.0, 5.5]))

    def test_gt_warp_reproduces_target_on_synthetic_plane(self):
        """Source = a textured fronto-parallel plane seen from a moved camera; warping it back
        with the true depth and pose reproduces the target up to interpolation error."""
        cam = kitti_like_camera(width=96, height=48)
        rng = np.random.default_rng(0)
        texture = torch.tensor(rng.random((1, 1, 24, 48)))
        texture = torch.nn.functional.interpolate(
            texture, size=(400, 800), mode="bicubic", align_corners=False
        )

        def render(T_cam_world):
            # Plane z = 10 in world; intersect each ray of this camera with it.
            T_world_cam = T_cam_world.inv()
            uv = pixel_grid(48, 96, dtype=torch.float64)[None]
            rays = T_world_cam.R @ cam.backproject(uv, torch.ones(1, uv.shape[1], dtype=torch.float64))[0].T
            origin = T_world_cam.t[0]
            s = (10.0 - origin[2]) / rays[0, 2]
            hit = origin[:, None] + rays[0] * s
            tex_uv = torch.stack([(hit[0] + 20) * 20, (hit[1] + 10) * 20], dim=-1)[None]
            image = sample_at(texture, tex_uv).reshape(1, 1, 48, 96)
            depth = (T_cam_world.transform(hit.T[None]))[..., 2].reshape(1, 1, 48, 96)
            return image, depth

        T_tgt_world = Pose.identity(1, dtype=torch.float64)
        T_src_world = Pose.from_aa(
            torch.tensor([[0.0, 0.02, 0.01]], dtype=torch.float64),
            torch.tensor([[0.3, 0.1, -0.5]], dtype=torch.float64),
        )
        target, depth_tgt = render(T_tgt_world)
        source, _ = render(T_src_world)
        warped, valid = warp_frame(source, depth_tgt, T_src_world @ T_tgt_world.inv(), cam)
        err_warp = (warped - target).abs()[valid].mean()
        err_none = (source - target).abs()[valid].mean()
        assert valid.float().mean() > 0.7
        assert err_warp < 0.1 * err_none


def test_warp_geometry_stays_float32_under_bf16_autocast():
    """bf16-mixed training hands the warp bfloat16 depth and poses: the projection must not be rounded
    to bfloat16 (a 640-px border pixel would move by up to ~1 px), only the inputs are."""
    torch.manual_seed(0)
    H, W = 48, 160
    camera = Camera(torch.tensor([[W, H, 0.58 * W, 1.92 * H, (W - 1) / 2, (H - 1) / 2]]))
    source = torch.rand(1, 3, H, W)
    depth = (5.0 + 20.0 * torch.rand(1, 1, H, W)).bfloat16()
    T = Pose.from_aa(torch.tensor([[0.01, -0.02, 0.005]]), torch.tensor([[0.1, 0.02, -0.9]])).to(
        torch.bfloat16
    )
    reference, ref_valid = warp_frame(source, depth.float(), T.to(torch.float32), camera)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        warped, valid = warp_frame(source, depth, T, camera)
    assert warped.dtype == torch.float32
    assert torch.equal(valid, ref_valid)
    torch.testing.assert_close(warped, reference, rtol=0, atol=1e-6)
