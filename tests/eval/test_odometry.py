"""Odometry metrics on synthetic trajectories with analytic answers and on real KITTI GT poses (09, 10)."""

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sa4depth.data.layout import read_poses
from sa4depth.eval.odometry import (
    align_trajectory,
    integrate_relative_poses,
    kitti_odometry_metrics,
    kitti_segment_errors,
    plot_trajectory,
    relative_poses,
    snippet_ate,
    snippet_error,
    umeyama_alignment,
)
from sa4depth.geometry import Pose


def rot(axis_angle) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(axis_angle, dtype=np.float64))[0]


def yaw(angle: float) -> np.ndarray:
    """Rotation about the camera/world y axis (vertical in KITTI): a heading change."""
    return rot([0.0, angle, 0.0])


def transform(R=None, t=(0.0, 0.0, 0.0)) -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = t
    if R is not None:
        T[:3, :3] = R
    return T


def straight_line(n: int, step: float = 1.0) -> np.ndarray:
    """``T_world_cam`` of a camera driving forward (+z) ``step`` metres per frame."""
    return np.stack([transform(t=(0.0, 0.0, step * i)) for i in range(n)])


@pytest.fixture(scope="module")
def kitti_gt():
    folder = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "kitti_odometry_gt_poses"
    if not folder.is_dir():
        pytest.skip(f"KITTI odometry GT poses not found at {folder}")
    return {seq: read_poses(folder / f"{seq}.txt") for seq in ("09", "10")}


# --- Umeyama -------------------------------------------------------------------------------------------


def test_umeyama_recovers_a_known_similarity():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(40, 3)) * 5.0
    R, s, t = rot([0.3, -1.2, 0.7]), 1.7, np.array([3.0, -2.0, 10.0])
    s_hat, R_hat, t_hat = umeyama_alignment(src, s * src @ R.T + t, "sim3")
    assert s_hat == pytest.approx(s, abs=1e-12)
    np.testing.assert_allclose(R_hat, R, atol=1e-12)
    np.testing.assert_allclose(t_hat, t, atol=1e-10)


def test_umeyama_rigid_and_scale_modes():
    rng = np.random.default_rng(2)
    src = rng.normal(size=(10, 3))
    R, t = rot([0.0, 0.5, 0.1]), np.array([1.0, 2.0, 3.0])
    s_hat, R_hat, t_hat = umeyama_alignment(src, 3.0 * src @ R.T + t, "se3")
    assert s_hat == 1.0 and np.linalg.det(R_hat) == pytest.approx(1.0)
    s_hat, R_hat, t_hat = umeyama_alignment(src, 0.25 * src, "scale")
    assert s_hat == pytest.approx(0.25) and np.array_equal(R_hat, np.eye(3)) and not t_hat.any()


def test_umeyama_never_returns_a_reflection():
    src = np.random.default_rng(3).normal(size=(20, 3))
    mirrored = src * np.array([1.0, 1.0, -1.0])
    _, R_hat, _ = umeyama_alignment(src, mirrored, "sim3")
    assert np.linalg.det(R_hat) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        umeyama_alignment(np.zeros((4, 3)), np.ones((4, 3)), "sim3")


# --- integration and the pose convention ---------------------------------------------------------------


def test_relative_poses_follow_the_t_src_tgt_convention():
    G = straight_line(3, step=0.8)
    rel = relative_poses(G)
    # T_{i+1}_i maps frame-i points into frame i+1: camera i's centre is 0.8 m behind camera i+1.
    np.testing.assert_allclose(rel[0][:3, 3], [0.0, 0.0, -0.8])
    # Same as the geometry package's T_src_tgt = T_world_src.inv() @ T_world_tgt (src = i+1, tgt = i).
    G_t = Pose.from_4x4mat(torch.tensor(G))
    T_src_tgt = (G_t[1].inv() @ G_t[0]).matrix().numpy()
    np.testing.assert_allclose(rel[0], T_src_tgt, atol=1e-12)
    np.testing.assert_allclose(integrate_relative_poses(rel), G, atol=1e-12)


def test_integration_round_trip_on_kitti(kitti_gt):
    G = kitti_gt["09"]
    rel = relative_poses(G)
    assert rel[0][2, 3] < 0  # the car drives forward (+z): the previous centre is behind
    np.testing.assert_allclose(integrate_relative_poses(rel, G[0]), G, atol=1e-9)
    # Network outputs arrive as a torch batch of poses.
    traj = integrate_relative_poses(torch.tensor(rel[:10], dtype=torch.float64))
    np.testing.assert_allclose(traj, np.linalg.inv(G[0]) @ G[:11], atol=1e-9)


# --- KITTI devkit segment errors --------------------------------------------------------------------


def test_segment_selection_on_a_straight_line():
    G = straight_line(300)
    seg = kitti_segment_errors(G, G, lengths=(100, 200), step=10)
    # dist[last] must EXCEED dist[first] + L, so last = first + L + 1; segments past the end are skipped.
    expected_first = [f for f in range(0, 300, 10) for L in (100, 200) if f + L + 1 < 300]
    assert list(seg["first_frame"]) == expected_first
    np.testing.assert_array_equal(seg["last_frame"] - seg["first_frame"], seg["length"] + 1)
    assert len(seg["length"]) == 20 + 10


def test_scaled_straight_line_without_alignment():
    G = straight_line(300)
    P = G.copy()
    P[:, :3, 3] *= 1.1
    seg = kitti_segment_errors(G, P, lengths=(100, 200))
    # Translation error 0.1 * chord, chord = L + 1 m on a line.
    np.testing.assert_allclose(seg["t_err"], 0.1 * (seg["length"] + 1) / seg["length"], rtol=1e-12)
    m = kitti_odometry_metrics(G, P, alignment="none", lengths=(100, 200))
    assert m["t_err"] == pytest.approx(100 * np.mean(0.1 * (seg["length"] + 1) / seg["length"]))
    assert m["r_err"] == 0.0
    assert kitti_odometry_metrics(G, P, alignment="scale", lengths=(100, 200))["t_err"] < 1e-10


def test_constant_yaw_drift_on_a_straight_line():
    eps = 1e-3  # rad per frame
    G = straight_line(300)
    P = np.stack([transform(yaw(eps * i)) @ G[i] for i in range(300)])
    m = kitti_odometry_metrics(G, P, alignment="none", lengths=(100,), step=10)
    # Every 100 m segment spans 101 frames: 101 eps rad over 100 m.
    assert m["r_err"] == pytest.approx(101 * eps / 100 * 180 / math.pi * 100, rel=1e-9)


def test_kitti_gt_against_itself_is_zero(kitti_gt):
    for G in kitti_gt.values():  # full sequences: 1591 and 1201 poses
        m = kitti_odometry_metrics(G, G, alignment="none")
        assert m["n_segments"] > 400
        for key in ("t_err", "r_err", "ate", "rpe_trans", "rpe_rot"):
            assert m[key] == pytest.approx(0.0, abs=1e-9), key


def test_kitti_scaled_gt(kitti_gt):
    G = kitti_gt["09"]
    P = G.copy()
    P[:, :3, 3] *= 1.1
    seg = kitti_segment_errors(G, P)
    chord = np.linalg.norm(G[seg["last_frame"], :3, 3] - G[seg["first_frame"], :3, 3], axis=1)
    # rtol 1e-6: the file's rotations are orthonormal to ~2e-7 only, so R^-1 changes lengths that much.
    np.testing.assert_allclose(seg["t_err"], 0.1 * chord / seg["length"], rtol=1e-6)
    none = kitti_odometry_metrics(G, P, alignment="none")
    # 10% of the chord, which on 09's curves is shorter than the path: 9.4% at 100 m, 7.6% over all.
    assert 9.0 < none["t_err_by_length"][100] < 10.0
    assert none["t_err"] == pytest.approx(100 * np.mean(0.1 * chord / seg["length"]))
    assert none["r_err"] == pytest.approx(0.0, abs=1e-9)
    # A rigid alignment cannot fix scale and leaves the devkit error unchanged (it uses relative poses).
    assert kitti_odometry_metrics(G, P, alignment="6dof")["t_err"] == pytest.approx(none["t_err"])
    for alignment in ("scale", "7dof"):
        m = kitti_odometry_metrics(G, P, alignment=alignment)
        assert m["align_scale"] == pytest.approx(1 / 1.1)
        assert m["t_err"] < 1e-9 and m["ate"] < 1e-9


def test_kitti_yaw_drift_gives_the_analytic_rotation_error(kitti_gt):
    eps = 2e-4
    G = kitti_gt["10"]
    P = np.stack([transform(yaw(eps * i)) @ G[i] for i in range(len(G))])
    seg = kitti_segment_errors(G, P)
    # Rotating frame k by k eps about the world vertical conjugates the segment rotation:
    # the error angle is exactly (last - first) eps.
    expected = (seg["last_frame"] - seg["first_frame"]) * eps / seg["length"]
    np.testing.assert_allclose(seg["r_err"], expected, rtol=1e-6)
    m = kitti_odometry_metrics(G, P, alignment="none")
    assert m["r_err"] == pytest.approx(np.mean(expected) * 180 / math.pi * 100, rel=1e-6)


def test_seven_dof_alignment_undoes_a_global_similarity(kitti_gt):
    G = kitti_gt["10"][:400]
    S = transform(rot([0.1, 0.4, -0.2]), (5.0, 1.0, -3.0))
    P = np.stack([S @ T for T in G])
    P[:, :3, 3] = (P[:, :3, 3] - P[0, :3, 3]) * 0.37
    gt0, aligned, info = align_trajectory(G, P, "7dof")
    np.testing.assert_allclose(aligned, gt0, atol=1e-8)
    assert info["scale"] == pytest.approx(1 / 0.37)


# --- snippet ATE (Monodepth2) ----------------------------------------------------------------------


def test_snippet_error_hand_computed():
    step = transform(t=(0.0, 0.0, -1.0))  # GT positions z = 0, 1, 2, 3, 4
    gt = np.stack([step] * 4)
    pred = gt.copy()
    pred[3] = transform(t=(-math.sqrt(6.0), 0.0, -1.0))  # last position (sqrt 6, 0, 4)
    # s = 30 / 36; residuals -k/6 (k = 1..3) and (5 sqrt6 / 6, 0, -2/3): squared sum 180/36 = 5.
    assert snippet_error(gt, pred) == pytest.approx(math.sqrt(5.0) / 5)
    assert snippet_error(gt, pred, error="rmse") == pytest.approx(1.0)
    # Without rotations Monodepth2's chain order only flips every position's sign: same error.
    assert snippet_error(gt, pred, monodepth2_chain=True) == pytest.approx(math.sqrt(5.0) / 5)


def test_snippet_ate_on_kitti(kitti_gt):
    rel = relative_poses(kitti_gt["09"][:301])
    r = snippet_ate(rel, rel)
    assert r["count"] == 300 and r["mean"] == pytest.approx(0.0, abs=1e-12)
    scaled = rel.copy()
    scaled[:, :3, 3] *= 0.3  # monocular scale: corrected per snippet
    assert snippet_ate(rel, scaled)["mean"] == pytest.approx(0.0, abs=1e-9)
    noisy = scaled.copy()
    noisy[:, 0, 3] += 0.01
    r = snippet_ate(rel, noisy)
    assert r["mean"] > 1e-3 and r["std"] > 0
    # The last 3 snippets are truncated (4, 3, 2 frames), as in Monodepth2.
    assert r["per_snippet"][-1] == pytest.approx(snippet_error(rel[-1:], noisy[-1:]))


# --- plot ------------------------------------------------------------------------------------------


def test_plot_trajectory_writes_a_png_atomically(tmp_path, kitti_gt):
    out = tmp_path / "plots" / "traj.png"
    G = kitti_gt["10"][::10]
    plot_trajectory(G, G[:, :3, 3] * 1.05, out, title="seq 10")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["traj.png"]  # no temporary file left behind
