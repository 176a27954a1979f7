"""Scale consistency: Seq Scale Std, within-sequence CV and the pose-depth scale ratio vs analytic values."""

import math

import numpy as np
import pytest
import torch

from sa4depth.eval.scale_consistency import (
    pose_depth_ratio_summary,
    pose_depth_scale_ratio,
    scale_consistency,
)


def test_known_scales_give_analytic_values():
    r = scale_consistency({"a": [1.0, 3.0], "b": [2.0, 2.0], "c": [3.0, 3.0]})
    # Sequence means 2, 2, 3: mean 7/3, population std sqrt(((1/3)^2 * 2 + (2/3)^2) / 3) = sqrt(2)/3.
    assert r["seq_means"] == {"a": 2.0, "b": 2.0, "c": 3.0}
    assert r["seq_scale_std"] == pytest.approx((math.sqrt(2) / 3) / (7 / 3))
    # Within-sequence CVs: a: std 1 / mean 2 = 0.5; b, c: 0.
    assert r["seq_cv"] == {"a": 0.5, "b": 0.0, "c": 0.0}
    assert r["within_seq_cv"] == pytest.approx(0.5 / 3)
    assert (r["num_sequences"], r["num_frames"]) == (3, 6)


def test_population_std_is_used():
    r = scale_consistency({"a": [1.0], "b": [3.0]})
    assert r["seq_scale_std"] == pytest.approx(0.5)  # ddof=0: std 1 / mean 2 (ddof=1 would give 0.707)


def test_a_consistent_model_scores_zero():
    per_frame = {f"seq{k}": np.full(110, 25.0) for k in range(13)}
    r = scale_consistency(per_frame)
    assert r["seq_scale_std"] == 0.0 and r["within_seq_cv"] == 0.0


def test_torch_inputs_and_empty_inputs():
    r = scale_consistency({"a": torch.tensor([2.0, 2.0]), "b": np.array([4.0])})
    assert r["seq_scale_std"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        scale_consistency({})
    with pytest.raises(ValueError, match="'a'"):
        scale_consistency({"a": []})


def test_pose_depth_ratio_is_one_when_scales_agree():
    rng = np.random.default_rng(0)
    t_gt = rng.normal(size=(50, 3))
    s_depth = rng.uniform(0.5, 30.0, size=50)
    t_pred = t_gt / s_depth[:, None]  # the pose net uses the depth net's scale
    np.testing.assert_allclose(pose_depth_scale_ratio(t_gt, t_pred, s_depth), 1.0, rtol=1e-12)
    # A pose net whose translations are half as long: its scene is twice as small -> ratio 2.
    np.testing.assert_allclose(pose_depth_scale_ratio(t_gt, 0.5 * t_pred, s_depth), 2.0, rtol=1e-12)


def test_pose_depth_ratio_accepts_pose_matrices_and_torch():
    T_gt = np.tile(np.eye(4), (2, 1, 1))
    T_gt[:, :3, 3] = [[0.0, 0.0, 1.0], [3.0, 0.0, 4.0]]
    T_pred = torch.tensor(T_gt)
    T_pred[:, :3, 3] /= 4.0
    ratio = pose_depth_scale_ratio(T_gt, T_pred, torch.tensor(2.0))
    np.testing.assert_allclose(ratio, [2.0, 2.0])
    with pytest.raises(ValueError, match="pairs"):
        pose_depth_scale_ratio(np.ones((3, 3)), np.ones((2, 3)), 1.0)


def test_ratio_summary():
    s = pose_depth_ratio_summary([2.0, 0.5, 1.0, np.inf, 0.0])
    assert (s["count"], s["n_dropped"]) == (3, 2)
    assert s["mean"] == pytest.approx(3.5 / 3) and s["median"] == 1.0
    assert s["std"] == pytest.approx(np.std([2.0, 0.5, 1.0]))
    assert s["mean_abs_log"] == pytest.approx(2 * math.log(2) / 3)
    assert math.isnan(pose_depth_ratio_summary([np.nan])["mean"])
