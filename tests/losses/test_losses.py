"""Known-answer tests of SSIM, the photometric error, min-reprojection with auto-masking and smoothness."""

import pytest
import torch

from sa4depth.geometry import Camera, Pose
from sa4depth.losses.photometric import (
    PhotometricTarget,
    box_mean3,
    min_reprojection_loss,
    photometric_error,
    ssim,
)
from sa4depth.losses.sc_depth import depth_inconsistency
from sa4depth.losses.smoothness import edge_aware_smoothness


def test_ssim_hand_computed_constant_images():
    """Constant images a, b: sigmas are 0, so SSIM = (2ab + c1) / (a^2 + b^2 + c1)."""
    a, b, c1 = 0.2, 0.6, 0.01**2
    s = ssim(
        torch.full((1, 1, 5, 5), a, dtype=torch.float64), torch.full((1, 1, 5, 5), b, dtype=torch.float64)
    )
    torch.testing.assert_close(s, torch.full_like(s, (2 * a * b + c1) / (a * a + b * b + c1)))


def test_ssim_matches_the_definition_computed_window_by_window():
    """Each pixel's SSIM from its own reflection-padded 3x3 window (population variances), with and
    without the target's window statistics prepared once by `PhotometricTarget`."""
    torch.manual_seed(0)
    x, y = torch.rand(2, 1, 1, 5, 6, dtype=torch.float64)
    xp, yp = (torch.nn.functional.pad(v, (1, 1, 1, 1), mode="reflect")[0, 0] for v in (x, y))
    c1, c2 = 0.01**2, 0.03**2
    expected = torch.empty(5, 6, dtype=torch.float64)
    for i in range(5):
        for j in range(6):
            a, b = xp[i : i + 3, j : j + 3].flatten(), yp[i : i + 3, j : j + 3].flatten()
            cov = ((a - a.mean()) * (b - b.mean())).mean()
            num = (2 * a.mean() * b.mean() + c1) * (2 * cov + c2)
            den = (a.mean() ** 2 + b.mean() ** 2 + c1) * (a.var(unbiased=False) + b.var(unbiased=False) + c2)
            expected[i, j] = num / den
    torch.testing.assert_close(ssim(x, y)[0, 0], expected)
    reference = PhotometricTarget(y, alpha=1.0)
    torch.testing.assert_close(reference.error(x)[0, 0], ((1 - expected) / 2).clamp(0, 1))


def test_box_mean_equals_avg_pool_in_value_and_gradient():
    """SSIM's separable 3x3 box mean (for speed) is avg_pool2d(3, stride 1) to float32 rounding."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 66, 194, requires_grad=True)
    weights = torch.randn(2, 3, 64, 192)
    got, want = box_mean3(x), torch.nn.functional.avg_pool2d(x, 3, 1)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    (grad,) = torch.autograd.grad((got * weights).sum(), x)
    (grad_want,) = torch.autograd.grad((want * weights).sum(), x)
    torch.testing.assert_close(grad, grad_want, rtol=0, atol=1e-6)


def test_photometric_error_mixes_ssim_and_l1():
    x, y = (torch.full((1, 3, 4, 4), v, dtype=torch.float64) for v in (0.2, 0.6))
    s = (2 * 0.12 + 1e-4) / (0.4 + 1e-4)
    expected = 0.85 * (1 - s) / 2 + 0.15 * 0.4
    torch.testing.assert_close(
        photometric_error(x, y), torch.full((1, 1, 4, 4), expected, dtype=torch.float64)
    )


def _lean_and_autograd_errors(pred, target):
    """`photometric_error` by its hand-written backward (the target needs no gradient) and by autograd
    (a target that requires one takes the plain path), with the gradients of a weighted sum."""
    weights = torch.rand(
        pred.shape[0], 1, *pred.shape[-2:], dtype=pred.dtype, generator=torch.Generator().manual_seed(1)
    )
    out = []
    for t in (target, target.clone().requires_grad_()):
        x = pred.detach().clone().requires_grad_()
        error = photometric_error(x, t)
        (grad,) = torch.autograd.grad((error * weights).sum(), x)
        out.append((error, grad))
    return out


def test_photometric_error_hand_written_backward_passes_gradcheck():
    """Central differences in float64 on a small image, no pixel with pred == target (L1's kink)."""
    torch.manual_seed(0)
    target = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    pred = (target + 0.05 + 0.5 * torch.rand_like(target)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: photometric_error(x, target), (pred,))


@pytest.mark.parametrize("channels_last", [False, True])
def test_photometric_error_hand_written_backward_equals_autograd(channels_last):
    """Same error bit for bit and the same gradient to float32 rounding as the autograd formula."""
    torch.manual_seed(0)
    pred, target = torch.rand(2, 2, 3, 24, 40).unbind(0)
    if channels_last:
        pred, target = (v.contiguous(memory_format=torch.channels_last) for v in (pred, target))
    (lean, grad_lean), (plain, grad_plain) = _lean_and_autograd_errors(pred, target)
    assert torch.equal(lean, plain)
    torch.testing.assert_close(grad_lean, grad_plain, rtol=1e-5, atol=1e-6 * grad_plain.abs().max().item())


def test_photometric_error_keeps_four_image_sized_tensors_for_its_backward():
    """The point of the hand-written backward: what it keeps beyond the target's shared statistics is
    ``pred`` and three window statistics, where autograd keeps about a dozen image-sized tensors."""
    torch.manual_seed(0)
    pred, target = torch.rand(2, 1, 3, 16, 20).unbind(0)
    reference = PhotometricTarget(target)
    shared = {t.data_ptr() for t in (target, *reference.stats)}
    for lean in (True, False):
        kept = {}

        def pack(t, kept=kept):
            if t.data_ptr() not in shared and t.numel() >= pred.numel():
                kept[t.data_ptr()] = t
            return t

        x = pred.clone().requires_grad_()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            if lean:
                reference.error(x)
            else:
                photometric_error(x, target.clone().requires_grad_())
        if lean:
            assert len(kept) == 4
        else:
            assert len(kept) >= 10


def test_min_reprojection_takes_the_best_source_and_skips_invalid():
    target = torch.zeros(1, 3, 4, 4)
    good, bad = torch.full_like(target, 0.1), torch.full_like(target, 0.5)
    valid_all = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    loss, _ = min_reprojection_loss(target, [bad, good], [valid_all, valid_all])
    assert loss.item() == pytest.approx(photometric_error(good, target).mean().item())
    # Where the good source is invalid, the minimum falls back to the other one.
    valid_half = valid_all.clone()
    valid_half[..., :2] = False
    loss_half, _ = min_reprojection_loss(target, [bad, good], [valid_all, valid_half])
    e_good, e_bad = photometric_error(good, target).mean(), photometric_error(bad, target).mean()
    assert loss_half.item() == pytest.approx(((e_good + e_bad) / 2).item(), rel=1e-5)


def test_automask_removes_pixels_where_no_motion_explains_better():
    target = torch.rand(1, 3, 8, 8)
    static_source = target.clone()  # e.g. a frame where the camera did not move
    warped = torch.rand_like(target)  # a wrong warp
    valid = torch.ones(1, 1, 8, 8, dtype=torch.bool)
    loss, info = min_reprojection_loss(target, [warped], [valid], sources=[static_source])
    assert info["automask"].float().mean() == 0
    assert loss.item() == 0


def test_smoothness_zero_for_constant_and_scale_invariant():
    image = torch.rand(1, 3, 6, 6)
    disp = torch.rand(1, 1, 6, 6) + 0.1
    torch.testing.assert_close(edge_aware_smoothness(disp, image), edge_aware_smoothness(3 * disp, image))
    # Disparity step of 1 (relative to mean 0.5) across a flat image: exp(0) = 1 weights.
    step = torch.cat([torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)], dim=-1)
    flat = torch.zeros(1, 3, 2, 4)
    # x gradients: each of the 2 rows has one jump of 1 / 0.5 = 2 among its 3 pairs; y gradients are 0.
    assert edge_aware_smoothness(step, flat).item() == pytest.approx(2 * 2 / 6, rel=1e-5)


def test_depth_inconsistency_zero_for_consistent_depths():
    """A fronto-parallel plane at 10 m, camera moved 1 m forward: the source sees it at 9 m."""
    cam = Camera.from_K(torch.tensor([[[50.0, 0, 15.5], [0, 50.0, 7.5], [0, 0, 1]]]), 32, 16)
    T_src_tgt = Pose.from_aa(torch.zeros(1, 3), torch.tensor([[0.0, 0.0, -1.0]]))
    diff, valid = depth_inconsistency(
        torch.full((1, 1, 16, 32), 10.0), torch.full((1, 1, 16, 32), 9.0), T_src_tgt, cam
    )
    assert valid.float().mean() > 0.7
    assert diff[valid].abs().max() < 1e-5
    diff_bad, _ = depth_inconsistency(
        torch.full((1, 1, 16, 32), 10.0), torch.full((1, 1, 16, 32), 18.0), T_src_tgt, cam
    )
    assert diff_bad[valid].mean().item() == pytest.approx(9 / 27, rel=1e-4)
