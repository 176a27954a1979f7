"""Eigen depth metrics: hand-computed values, median scaling, masks, crops, resizing, per-image averaging."""

import math

import numpy as np
import pytest
import torch

from sa4depth.eval.depth_metrics import (
    DEPTH_METRIC_KEYS,
    DepthMetricAccumulator,
    compute_depth_metrics,
    eigen_errors,
)
from sa4depth.eval.protocols import CITYSCAPES, KITTI_EIGEN, KITTI_IMPROVED_MD2, NYU, SYNTHETIC, DepthProtocol

METRIC = DepthProtocol("metric", min_depth=0.1, max_depth=10.0, median_scaling=False)


def test_twice_the_depth_is_perfect_after_median_scaling():
    gt = np.array([[1.0, 2.0], [4.0, 8.0]])
    m = compute_depth_metrics(2.0 * gt, gt, SYNTHETIC)
    for key in ("abs_rel", "sq_rel", "rmse", "rmse_log"):
        assert m[key] == pytest.approx(0.0, abs=1e-12)
    assert (m["a1"], m["a2"], m["a3"]) == (1.0, 1.0, 1.0)
    assert m["scale"] == 0.5 and m["n_valid"] == 4


def test_twice_the_depth_without_scaling():
    gt = np.array([[0.5, 1.0], [2.0, 4.0]])  # 2 gt stays below max_depth = 10
    m = compute_depth_metrics(2.0 * gt, gt, METRIC)
    assert m["abs_rel"] == pytest.approx(1.0)  # |gt - 2 gt| / gt
    assert m["sq_rel"] == pytest.approx(np.mean(gt))  # gt^2 / gt
    assert m["rmse"] == pytest.approx(math.sqrt(np.mean(gt**2)))
    assert m["rmse_log"] == pytest.approx(math.log(2.0))
    # The ratio 2 fails every threshold, including 1.25^3 = 1.953.
    assert (m["a1"], m["a2"], m["a3"]) == (0.0, 0.0, 0.0)
    assert m["scale"] == 0.5  # reported even when not applied


def test_hand_worked_four_pixels():
    gt = np.array([[1.0, 2.0], [4.0, 5.0]])
    pred = np.array([[1.2, 1.5], [4.0, 8.0]])
    m = compute_depth_metrics(pred, gt, METRIC)
    # gt - pred = [-0.2, 0.5, 0, -3]
    assert m["abs_rel"] == pytest.approx((0.2 / 1 + 0.5 / 2 + 0 + 3 / 5) / 4)  # 0.2625
    assert m["sq_rel"] == pytest.approx((0.04 / 1 + 0.25 / 2 + 0 + 9 / 5) / 4)  # 0.49125
    assert m["rmse"] == pytest.approx(math.sqrt((0.04 + 0.25 + 0 + 9) / 4))  # 1.5240
    logs = [math.log(1.2), math.log(4 / 3), 0.0, math.log(1.6)]
    assert m["rmse_log"] == pytest.approx(math.sqrt(sum(v * v for v in logs) / 4))
    # max ratios 1.2, 1.333, 1.0, 1.6 against 1.25, 1.5625, 1.953
    assert (m["a1"], m["a2"], m["a3"]) == (0.5, 0.75, 1.0)
    assert m["scale"] == pytest.approx(3.0 / 2.75)  # median(gt) = 3, median(pred) = 2.75

    scaled = compute_depth_metrics(pred, gt, DepthProtocol("mono", 0.1, 10.0))
    expected = eigen_errors(gt.ravel(), pred.ravel() * 3.0 / 2.75)
    for key in DEPTH_METRIC_KEYS:
        assert scaled[key] == pytest.approx(expected[key])


def test_prediction_clamped_to_range_after_scaling():
    gt = np.array([[5.0, 5.0]])
    pred = np.array([[100.0, 5.0]])  # clamped to max_depth = 10
    m = compute_depth_metrics(pred, gt, METRIC)
    assert m["abs_rel"] == pytest.approx((5.0 / 5.0 + 0.0) / 2)


def test_valid_mask_is_open_interval():
    gt = np.array([[0.0, 0.1, 2.0, 10.0, 12.0, np.nan]])  # only 2.0 is strictly inside (0.1, 10)
    pred = np.full_like(gt, 2.0)
    m = compute_depth_metrics(pred, gt, METRIC)
    assert m["n_valid"] == 1 and m["abs_rel"] == 0.0
    # Monodepth2's improved-GT evaluation only requires gt > 0 (80+ m pixels count too).
    m = compute_depth_metrics(np.array([[1.0, 1.0]]), np.array([[1.0, 90.0]]), KITTI_IMPROVED_MD2)
    assert m["n_valid"] == 2


def test_garg_crop_ignores_errors_outside_the_box():
    gt = np.full((375, 1242), 10.0)
    pred = np.full_like(gt, 20.0)
    pred[153:371, 44:1197] = 10.0  # correct only inside the Garg box
    protocol = DepthProtocol("kitti_metric", 1e-3, 80.0, crop="garg", median_scaling=False)
    m = compute_depth_metrics(pred, gt, protocol)
    assert m["abs_rel"] == 0.0 and m["n_valid"] == (371 - 153) * (1197 - 44)
    pred[153, 44] = 20.0  # first pixel inside the box
    assert compute_depth_metrics(pred, gt, protocol)["abs_rel"] > 0
    no_crop = DepthProtocol("kitti_nocrop", 1e-3, 80.0, median_scaling=False)
    assert compute_depth_metrics(pred, gt, no_crop)["n_valid"] == 375 * 1242


def test_nyu_crop_and_cap():
    gt = np.full((480, 640), 5.0)
    gt[100, 100] = 11.0  # beyond the 10 m cap
    m = compute_depth_metrics(np.ones_like(gt), gt, NYU)
    assert m["n_valid"] == (471 - 45) * (601 - 41) - 1
    assert m["abs_rel"] == pytest.approx(0.0) and m["scale"] == 5.0


def test_cityscapes_prediction_covers_top_three_quarters():
    gt = np.full((64, 128), 20.0)
    gt[48:] = 1.0  # the ego car's bonnet: outside the prediction and the crop
    pred = np.full((48, 128), 2.0)
    pred[:16] = 50.0  # above the crop (rows 16:48), ignored
    pred[:, :12] = 50.0  # left of the crop (cols 12:116), ignored
    m = compute_depth_metrics(pred, gt, CITYSCAPES)
    assert m["n_valid"] == (48 - 16) * (116 - 12)
    assert m["abs_rel"] == pytest.approx(0.0) and m["scale"] == pytest.approx(10.0)


def test_prediction_resized_to_gt_and_torch_accepted():
    gt = np.full((8, 12), 6.0)
    pred = torch.full((1, 1, 4, 6), 3.0)
    m = compute_depth_metrics(pred, gt, SYNTHETIC)
    assert m["abs_rel"] == pytest.approx(0.0) and m["scale"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="resizing is off"):
        compute_depth_metrics(pred, gt, DepthProtocol("fixed", 0.1, 80.0, resize_pred_to_gt=False))


def test_disparity_input_is_inverted():
    gt = np.array([[0.5, 1.0], [2.0, 4.0]])
    m = compute_depth_metrics(0.5 / gt, gt, METRIC, disparity=True)  # depth = 2 gt
    assert m["abs_rel"] == pytest.approx(1.0)


def test_resized_quantity_follows_the_protocol():
    """A 5 m | 50 m edge resized from 1 x 2 to 1 x 4: cv2's half-pixel centres weigh 0.75 / 0.25 inside."""
    pred = np.array([[5.0, 50.0]])
    from_disparity = 1 / np.array([0.2, 0.75 * 0.2 + 0.25 * 0.02, 0.25 * 0.2 + 0.75 * 0.02, 0.02])
    from_depth = np.array([5.0, 0.75 * 5 + 0.25 * 50, 0.25 * 5 + 0.75 * 50, 50.0])  # 16.25, 38.75
    for quantity, expected in (("disparity", from_disparity), ("depth", from_depth)):
        protocol = DepthProtocol("edge", 0.1, 100.0, median_scaling=False, resized_quantity=quantity)
        for given, is_disparity in ((pred, False), (1 / pred, True)):
            m = compute_depth_metrics(given, expected[None], protocol, disparity=is_disparity)
            assert m["abs_rel"] == pytest.approx(0.0, abs=1e-6), (quantity, is_disparity)
    # The two differ by 2.5x between the edge pixels (6.45 m vs 16.25 m).
    protocol = DepthProtocol("edge", 0.1, 100.0, median_scaling=False, resized_quantity="depth")
    assert compute_depth_metrics(pred, from_disparity[None], protocol)["abs_rel"] > 0.5


def test_no_valid_pixel_gives_nan():
    m = compute_depth_metrics(np.ones((2, 2)), np.zeros((2, 2)), KITTI_EIGEN)
    assert m["n_valid"] == 0 and math.isnan(m["abs_rel"]) and math.isnan(m["scale"])


def test_accumulator_averages_per_image_not_per_pixel():
    acc = DepthMetricAccumulator(METRIC)
    a = acc.update(np.full((2, 2), 2.0), np.full((2, 2), 1.0), sequence="s1")  # 4 pixels, AbsRel 1
    b = acc.update(np.array([[1.0]]), np.array([[1.0]]), sequence="s2")  # 1 pixel, AbsRel 0
    acc.update(np.ones((2, 2)), np.zeros((2, 2)), sequence="s2")  # no valid GT: skipped
    assert (a["abs_rel"], b["abs_rel"]) == (1.0, 0.0)
    r = acc.compute()
    assert r["abs_rel"] == pytest.approx(0.5)  # pixel-weighted would be 0.8
    assert (r["count"], r["n_skipped"]) == (2, 1)
    # Scale ratios 0.5 and 1.0: population std 0.25.
    assert r["scale_mean"] == pytest.approx(0.75) and r["scale_std"] == pytest.approx(0.25)
    assert r["scale_median"] == pytest.approx(0.75)
    assert r["scale_rel_std"] == pytest.approx(0.25 / 0.75)
    assert acc.scales_by_sequence() == {"s1": [0.5], "s2": [1.0]}


def test_accumulator_batch_update_and_empty_state():
    acc = DepthMetricAccumulator(SYNTHETIC)
    assert math.isnan(acc.compute()["abs_rel"]) and acc.compute()["count"] == 0
    gt = torch.rand(3, 1, 6, 8) * 10 + 1
    acc.update_batch(gt * 0.1, gt, sequences=["a", "a", "b"])
    r = acc.compute()
    assert r["count"] == 3 and r["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert r["scale_mean"] == pytest.approx(10.0) and r["scale_std"] == pytest.approx(0.0, abs=1e-5)
    assert sorted(acc.scales_by_sequence()) == ["a", "b"]
    acc.reset()
    assert acc.compute()["count"] == 0
