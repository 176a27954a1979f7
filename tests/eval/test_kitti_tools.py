"""KITTI tools: ground-truth export, full-resolution depth evaluation and the odometry evaluation path."""

import dataclasses
import io
import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from sa4depth.apps.cli import main
from sa4depth.apps.odometry import evaluate_odometry
from sa4depth.config import config_to_dict, load_config
from sa4depth.data import layout
from sa4depth.data.kitti_calib import load_raw_calib
from sa4depth.data.kitti_raw import project_velodyne, read_depth_npz
from sa4depth.errors import InputError
from sa4depth.eval.depth_metrics import DEPTH_METRIC_KEYS, compute_depth_metrics
from sa4depth.eval.kitti_tools import (
    evaluate_depth_full_resolution,
    evaluate_depth_predictions,
    evaluate_trajectory_file,
    export_gt_depths,
    load_gt_depths,
    odometry_report,
    read_kitti_trajectory,
)
from sa4depth.eval.odometry import relative_poses
from sa4depth.eval.protocols import KITTI_EIGEN, crop_mask

DRIVE = "2011_09_26/2011_09_26_drive_0023_sync"


@pytest.fixture
def tiny(shared_data):
    root = shared_data / "kitti_tiny_0023"
    if not (root / "kitti_tiny.txt").is_file():
        pytest.skip(f"KITTI snippet not found at {root}")
    return root


@pytest.fixture
def gt_poses(shared_data):
    folder = shared_data / "kitti_odometry_gt_poses"
    if not (folder / "09.txt").is_file():
        pytest.skip(f"KITTI odometry poses not found at {folder}")
    return {name: layout.read_poses(folder / f"{name}.txt") for name in ("09", "10")}


# --- odometry metric path ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sequence", ["09", "10"])
def test_ground_truth_as_prediction_scores_zero(gt_poses, tmp_path, sequence):
    gt = gt_poses[sequence]
    report = odometry_report(gt, relative_poses(gt), tmp_path, sequence)
    k = report["kitti"]
    assert report["frames"] == len(gt) and k["n_segments"] > 400
    assert k["t_err"] < 1e-6 and k["r_err"] < 1e-6 and k["ate"] < 1e-6 and k["rpe_trans"] < 1e-9
    assert report["ate_5frame"]["mean"] < 1e-9 and report["ate_5frame"]["count"] == len(gt) - 1
    saved = json.loads((tmp_path / f"odometry_{sequence}.json").read_text())
    assert saved["kitti"]["t_err"] == pytest.approx(k["t_err"])
    assert (tmp_path / f"trajectory_{sequence}.png").stat().st_size > 10_000
    # The written trajectory is the prediction re-anchored at frame 0 (KITTI rows).
    np.testing.assert_allclose(
        layout.read_poses(tmp_path / f"poses_{sequence}.txt"), np.linalg.inv(gt[0]) @ gt, atol=1e-6
    )


def test_alignment_recovers_the_unknown_scale(gt_poses):
    gt = gt_poses["09"]
    rel = relative_poses(gt)
    rel[:, :3, 3] *= 0.3  # a monocular network's arbitrary scale
    for alignment in ("7dof", "scale"):
        report = odometry_report(gt, rel, alignment=alignment)
        assert report["kitti"]["t_err"] < 1e-4 and report["kitti"]["align_scale"] == pytest.approx(1 / 0.3)
    # Unaligned, each segment's error is 0.7 x its chord, which is shorter than its path length (53 %).
    assert 45.0 < odometry_report(gt, rel, alignment="none")["kitti"]["t_err"] < 70.0
    # The 5-frame ATE aligns each snippet's scale itself.
    assert odometry_report(gt, rel)["ate_5frame"]["mean"] < 1e-9
    noisy = rel.copy()
    noisy[:, :3, 3] += np.random.default_rng(0).normal(0, 0.02, (len(rel), 3))
    noisy_report = odometry_report(gt, noisy)  # measured: t_err 0.58 %, 5-frame ATE 0.058 m
    assert noisy_report["kitti"]["t_err"] > 0.3 and noisy_report["ate_5frame"]["mean"] > 0.02


def report_ate(gt, cam2):
    return odometry_report(gt, relative_poses(cam2))["ate_5frame"]["mean"]


def test_colour_camera_poses_differ_negligibly_from_camera_0(gt_poses):
    """Why the evaluation may use the devkit's camera-0 poses as they are for image_2 predictions."""
    t2 = np.array([0.0598, -3.6e-4, 2.75e-3])  # KITTI's camera 2 offset (2011_09_26 P_rect_02)
    C = np.eye(4)
    C[:3, 3] = t2
    for gt in gt_poses.values():
        cam2 = gt @ np.linalg.inv(C)
        k = odometry_report(gt, relative_poses(cam2))["kitti"]
        # Measured on 09 and 10: t_err 0.020 %, r_err 0 (same rotations), 5-frame ATE 1.4e-4 m; published
        # monocular results differ by whole percents.
        assert k["t_err"] < 0.03 and k["r_err"] < 1e-9 and report_ate(gt, cam2) < 3e-4


# --- trajectory files (evaluate-odometry --trajectory) ------------------------------------------------------


def pose_rows(poses, frames=None) -> str:
    rows = [" ".join(f"{v:.9e}" for v in T[:3].ravel()) for T in poses]
    if frames is not None:
        rows = [f"{f} {row}" for f, row in zip(frames, rows, strict=True)]
    return "\n".join(rows) + "\n"


def straight(n: int = 300) -> np.ndarray:
    """``T_world_cam`` of a camera driving 1 m per frame along +z with a slow yaw wobble."""
    T = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        a = 0.05 * np.sin(0.03 * i)
        T[i, :3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        T[i, 2, 3] = float(i)
    return T


@pytest.fixture
def gt_file(tmp_path):
    path = tmp_path / "gt.txt"
    path.write_text(pose_rows(straight()))
    return path


def run_cli(args, capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_trajectory_file_both_layouts_and_missing_frames(gt_file, tmp_path, capsys):
    G = straight()
    P = G.copy()
    P[:, :3, 3] *= 0.5  # a monocular scale: 7dof alignment makes it perfect
    twelve = tmp_path / "pred12.txt"
    twelve.write_text(pose_rows(P))
    frames, poses = read_kitti_trajectory(twelve)
    assert frames is None and poses.shape == (300, 4, 4)
    np.testing.assert_allclose(poses, P, atol=1e-9)
    # 13 columns, starting at frame 2 and with frames 100-104 missing.
    kept = np.setdiff1d(np.arange(2, 300), np.arange(100, 105))
    thirteen = tmp_path / "pred13.txt"
    thirteen.write_text(pose_rows(P[kept], kept))
    frames, poses = read_kitti_trajectory(thirteen)
    np.testing.assert_array_equal(frames, kept)

    out = tmp_path / "out"
    code, stdout, _ = run_cli(
        ["evaluate-odometry", "--trajectory", str(thirteen), "--gt", str(gt_file), "--output", str(out)],
        capsys,
    )
    assert code == 0 and "7 GT frames without prediction" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "trajectory.png"]  # no temporary file
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("t_err", "r_err", "ate", "rpe_trans", "rpe_rot"):
        assert saved[key] == pytest.approx(0.0, abs=1e-6), key
    assert (saved["alignment"], saved["angle"], saved["first_frame"], saved["missing_frames"]) == (
        "7dof",
        "ours",
        2,
        7,
    )
    assert saved["ate_5frame"] is None  # frames are not consecutive
    assert saved["align_scale"] == pytest.approx(2.0)
    # On this 1 m-per-frame line a segment from frame f of length L ends at f + L + 1: 20 segments of
    # 100 m (f = 0..190) and 10 of 200 m (f = 0..90). Frame 0 (two segments) and frame 100 (one) have
    # no prediction; no segment ends in 100-104, and starts stay at 10, 20, ... (not 2, 12, ...).
    full = evaluate_trajectory_file(twelve, gt_file)
    assert (full["n_segments"], saved["n_segments"]) == (30, 27) and full["ate_5frame"]["count"] == 299
    unaligned = evaluate_trajectory_file(thirteen, gt_file, alignment="none", angle="devkit")
    assert unaligned["t_err"] == pytest.approx(50.0, rel=0.02) and unaligned["angle"] == "devkit"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (
            "1 2 3 4 5 6 7 8 9 10 11\n",
            "line 1: expected 12 numbers (a 3x4 pose) or 13 (frame index + pose), found 11",
        ),
        ("1 0 0 0 0 1 0 0 0 0 1 0\n0 1 0 0 0 0 1 0 0 0 0 1 0\n", "line 2: 13 numbers, but line 1 has 12"),
        ("1 0 0 0 0 1 0 0 0 0 1 0\n\n1 0 0 nan 0 1 0 0 0 0 1 0\n", "line 3: NaN or Inf"),
        ("1 0 0 0 0 1 0 0 0 0 1 x\n", "line 1: not numbers"),
        (
            "1.1 0 0 0 0 1.1 0 0 0 0 1.1 0\n",
            "line 1: the 3x3 part is not a rotation: R^T R differs from I by 0.21",
        ),
        ("1 0 0 0 0 1 0 0 0 0 -1 0\n", "line 1: the 3x3 part is not a rotation: det(R) < 0, a reflection"),
        ("2.5 1 0 0 0 0 1 0 0 0 0 1 0\n", "line 1: frame index 2.5 is not a non-negative integer"),
        ("5 1 0 0 0 0 1 0 0 0 0 1 0\n3 1 0 0 0 0 1 0 0 0 0 1 0\n", "line 2: frame index 3 does not follow 5"),
        ("\n\n", "no poses (empty file)"),
        ("7 1 0 0 0 0 1 0 0 0 0 1 0\n", "a single pose: nothing to evaluate"),
        ("1 0 0 0 0 1 0 0 0 0 1 0\n" * 3, "3 poses but the GT has 300; with missing frames, start each line"),
        (
            "0 1 0 0 0 0 1 0 0 0 0 1 0\n300 1 0 0 0 0 1 0 0 0 0 1 0\n",
            "frame 300 is not in the GT (frames 0-299)",
        ),
        (
            pose_rows(straight()[:60], range(60)),
            "too short for the devkit: frames 0-59 cover 59.0 m of GT path",
        ),
    ],
)
def test_malformed_trajectory_is_a_one_line_error(gt_file, tmp_path, capsys, content, problem):
    pred = tmp_path / "pred.txt"
    pred.write_text(content)
    code, _, err = run_cli(
        [
            "evaluate-odometry",
            "--trajectory",
            str(pred),
            "--gt",
            str(gt_file),
            "--output",
            str(tmp_path / "o"),
        ],
        capsys,
    )
    assert code == 2 and err.startswith(f"error: {pred}: {problem}") and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_ground_truth_must_list_every_frame(tmp_path):
    G = straight()
    gt = tmp_path / "gt13.txt"
    gt.write_text(pose_rows(G[[0, 2, 3]], [0, 2, 3]))
    pred = tmp_path / "pred.txt"
    pred.write_text(pose_rows(G[:3]))
    with pytest.raises(
        InputError, match=r"gt13.txt: the GT must list every frame from 0; frame 1 is missing"
    ):
        evaluate_trajectory_file(pred, gt)
    gt.write_text(pose_rows(G, range(300)))  # 13 columns with every frame: accepted
    pred.write_text(pose_rows(G))
    assert evaluate_trajectory_file(pred, gt)["t_err"] == pytest.approx(0.0, abs=1e-9)
    pred.write_text(pose_rows(np.tile(np.eye(4), (300, 1, 1))))  # never moves: nothing to align
    with pytest.raises(InputError, match="pred.txt: cannot align the trajectory"):
        evaluate_trajectory_file(pred, gt)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "error: evaluate-odometry: give either --checkpoint (with --root) or --trajectory (with --gt)"),
        (
            ["--checkpoint", "c", "--trajectory", "t"],
            "error: evaluate-odometry: --checkpoint and --trajectory",
        ),
        (["--trajectory", "t"], "error: --gt: required with --trajectory"),
        (["--checkpoint", "c"], "error: --root: required with --checkpoint"),
        (["--checkpoint", "c", "--root", "r", "--gt", "g"], "error: --gt: only with --trajectory"),
        (["--trajectory", "t", "--gt", "g", "--sequence", "09"], "error: --sequence: only with --checkpoint"),
        (["--trajectory", "t", "--gt", "g", "--refine"], "error: --refine: only with --checkpoint"),
        (
            ["--trajectory", "t", "--gt", "g", "--batch-size", "4"],
            "error: --batch-size: only with --checkpoint",
        ),
        (["--trajectory", "t", "--gt", "g.txt"], "error: g.txt: file not found"),
    ],
)
def test_evaluate_odometry_options_are_consistent(tmp_path, capsys, args, message):
    code, _, err = run_cli(["evaluate-odometry", *args, "--output", str(tmp_path / "o")], capsys)
    assert code == 2 and err.startswith(message) and err.count("\n") == 1, err


# --- ground-truth depth export ------------------------------------------------------------------------------


def test_export_proj_depth_ground_truth(tiny, tmp_path):
    out = tmp_path / "gt" / "gt_depths.npz"
    assert export_gt_depths(tiny, tiny / "kitti_tiny.txt", out, source="proj_depth") == 5
    maps = load_gt_depths(out)
    folder = tiny / DRIVE / "proj_depth" / "velodyne" / "image_02"
    for i, depth in enumerate(maps, start=1):
        np.testing.assert_array_equal(depth, read_depth_npz(folder / f"{i:010d}.npz"))
    with np.load(out) as z:
        assert z["lines"][0] == f"{DRIVE} 1 l" and str(z["source"]) == "proj_depth"
    with pytest.raises(
        InputError, match=r"kitti_tiny.txt: line 1: no velodyne ground truth .*0000000001.bin"
    ):
        export_gt_depths(tiny, tiny / "kitti_tiny.txt", tmp_path / "x.npz", source="velodyne")
    with pytest.raises(InputError, match=r"line 1: no improved ground truth .*groundtruth/image_02"):
        export_gt_depths(tiny, tiny / "kitti_tiny.txt", tmp_path / "x.npz", source="improved")
    assert not (tmp_path / "x.npz").exists()


def test_export_velodyne_ground_truth_uses_the_eigen_projection(tiny, tmp_path):
    root = tmp_path / "raw"
    shutil.copytree(tiny / "2011_09_26", root / "2011_09_26", ignore=shutil.ignore_patterns("*_sync"))
    rng = np.random.default_rng(0)
    points = np.column_stack(
        [rng.uniform(-5, 60, 5000), rng.uniform(-15, 15, 5000), rng.uniform(-2, 1, 5000), np.ones(5000)]
    ).astype(np.float32)
    scan = root / DRIVE / "velodyne_points" / "data" / "0000000003.bin"
    scan.parent.mkdir(parents=True)
    points.tofile(scan)
    split = tmp_path / "test_files.txt"
    split.write_text(f"{DRIVE} 0000000003 l\n")
    export_gt_depths(root, split, tmp_path / "gt.npz")
    (depth,) = load_gt_depths(tmp_path / "gt.npz")
    expected = project_velodyne(points, load_raw_calib(root / "2011_09_26"), 2, projection="eigen")
    assert depth.shape == (375, 1242) and np.count_nonzero(depth) > 500
    np.testing.assert_array_equal(depth, expected)


def test_full_resolution_depth_evaluation_known_answer(tiny, tmp_path):
    """A constant prediction, median-scaled, becomes median(gt) everywhere: AbsRel is computable by hand."""
    export_gt_depths(tiny, tiny / "kitti_tiny.txt", tmp_path / "gt.npz", source="proj_depth")
    maps = load_gt_depths(tmp_path / "gt.npz")
    seen = []

    def predict(images):
        seen.append(images.shape)
        return torch.ones(len(images), 1, 64, 192)

    results = evaluate_depth_full_resolution(
        predict, tiny, tiny / "kitti_tiny.txt", maps, 64, 192, batch_size=4
    )
    assert seen == [(4, 3, 64, 192), (1, 3, 64, 192)]
    expected = []
    for gt in maps:
        valid = crop_mask("garg", *gt.shape) & (gt > 1e-3) & (gt < 80)
        g = gt[valid].astype(np.float64)
        expected.append(np.mean(np.abs(g - np.median(g)) / g))
    assert results["count"] == 5 and results["depth"]["abs_rel"] == pytest.approx(np.mean(expected), rel=1e-6)
    assert "scale_consistency" in results
    with pytest.raises(InputError, match="5 entries but 4 ground-truth maps"):
        evaluate_depth_full_resolution(predict, tiny, tiny / "kitti_tiny.txt", maps[:4], 64, 192)


def blocky_prediction(gt: np.ndarray, rows: int = 24, cols: int = 80, size=(192, 640)) -> np.ndarray:
    """A ``size`` depth map with sharp edges: the median LiDAR depth of each cell of a ``rows x cols``
    grid (80 m where a cell has no point, e.g. the sky), nearest-upsampled, at a monocular scale."""
    height, width = gt.shape
    row_of, col_of = np.arange(height) * rows // height, np.arange(width) * cols // width
    cells = np.full((rows, cols), 80.0)
    for i in range(rows):
        for j in range(cols):
            block = gt[row_of == i][:, col_of == j]
            if (block > 0).any():
                cells[i, j] = np.median(block[block > 0])
    return 0.03 * cv2.resize(cells, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def monodepth2_errors(pred_disp: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Monodepth2's evaluate_depth.py for one "eigen" image, re-stated (nianticlabs/monodepth2 @ b676244):
    resize the float32 disparity with cv2, invert, Garg crop, 1e-3 < gt < 80, median scaling, clamp."""
    height, width = gt.shape
    pred = 1 / cv2.resize(pred_disp.astype(np.float32), (width, height))
    crop = np.array([0.40810811 * height, 0.99189189 * height, 0.03594771 * width, 0.96405229 * width])
    crop = crop.astype(np.int32)
    crop_mask = np.zeros(gt.shape)
    crop_mask[crop[0] : crop[1], crop[2] : crop[3]] = 1
    mask = np.logical_and(np.logical_and(gt > 1e-3, gt < 80), crop_mask)
    g, p = gt[mask], pred[mask]
    p = np.clip(p * np.median(g) / np.median(p), 1e-3, 80)
    thresh = np.maximum(g / p, p / g)
    return np.array(
        [
            np.mean(np.abs(g - p) / g),
            np.mean((g - p) ** 2 / g),
            np.sqrt(np.mean((g - p) ** 2)),
            np.sqrt(np.mean((np.log(g) - np.log(p)) ** 2)),
            (thresh < 1.25).mean(),
            (thresh < 1.25**2).mean(),
            (thresh < 1.25**3).mean(),
        ]
    )


def test_full_resolution_evaluation_resizes_disparity_as_monodepth2(tiny, tmp_path):
    """192 x 640 predictions with sharp edges from the real LiDAR: equal to Monodepth2's formula to 1e-6."""
    export_gt_depths(tiny, tiny / "kitti_tiny.txt", tmp_path / "gt.npz", source="proj_depth")
    maps = load_gt_depths(tmp_path / "gt.npz")
    preds = [blocky_prediction(gt) for gt in maps]
    served = iter(preds)

    def predict(images):
        return torch.from_numpy(np.stack([next(served) for _ in images]))[:, None]

    results = evaluate_depth_full_resolution(predict, tiny, tiny / "kitti_tiny.txt", maps, 192, 640)
    expected = np.mean([monodepth2_errors(1 / p, gt) for p, gt in zip(preds, maps, strict=True)], axis=0)
    got = np.array([results["depth"][k] for k in DEPTH_METRIC_KEYS])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    # Resizing the depth instead moves AbsRel by 0.0017 (measured: 0.07689 vs 0.07862), 1700x the tolerance.
    depth_resized = dataclasses.replace(KITTI_EIGEN, resized_quantity="depth")
    pairs = zip(preds, maps, strict=True)
    wrong = np.mean([compute_depth_metrics(p, gt, depth_resized)["abs_rel"] for p, gt in pairs])
    assert wrong - expected[0] > 1e-3


def test_saved_predictions_are_scored_as_monodepth2(tiny, tmp_path, capsys):
    """Monodepth2's ``--ext_disp_to_eval`` through the CLI: 192 x 640 disparities with sharp edges from the
    real LiDAR, equal to the re-stated formula to 1e-6; the same maps saved as depth score the same."""
    gt_npz = tmp_path / "gt.npz"
    export_gt_depths(tiny, tiny / "kitti_tiny.txt", gt_npz, source="proj_depth")
    maps = load_gt_depths(gt_npz)
    disps = np.stack([1 / blocky_prediction(gt) for gt in maps]).astype(np.float32)
    np.save(tmp_path / "disps.npy", disps)
    out = tmp_path / "out" / "metrics.json"
    argv = ["evaluate-kitti", "--predictions", str(tmp_path / "disps.npy"), "--gt", str(gt_npz)]
    code, stdout, _ = run_cli([*argv, "--output", str(out)], capsys)
    assert code == 0 and stdout.endswith(f"metrics written to {out}\n")
    assert [p.name for p in out.parent.iterdir()] == ["metrics.json"]  # no temporary file left
    saved = json.loads(out.read_text())
    expected = np.mean([monodepth2_errors(d, gt) for d, gt in zip(disps, maps, strict=True)], axis=0)
    np.testing.assert_allclose([saved["depth"][k] for k in DEPTH_METRIC_KEYS], expected, rtol=0, atol=1e-6)
    assert (saved["count"], saved["protocol"], saved["pred_kind"]) == (5, "kitti_eigen", "disparity")

    np.save(tmp_path / "depths.npy", 1 / disps)
    as_depth = evaluate_depth_predictions(tmp_path / "depths.npy", gt_npz, pred_kind="depth")
    np.testing.assert_allclose([as_depth["depth"][k] for k in DEPTH_METRIC_KEYS], expected, rtol=0, atol=1e-6)
    # Depth read as disparity is upside down: far becomes near.
    wrong = evaluate_depth_predictions(tmp_path / "depths.npy", gt_npz)
    assert wrong["depth"]["abs_rel"] > 3 * expected[0]


def npy_bytes(maps: np.ndarray, npz: bool = False) -> bytes:
    buf = io.BytesIO()
    (np.savez if npz else np.save)(buf, maps)
    return buf.getvalue()


MAPS = np.full((3, 6, 20), 0.5, np.float32)
"""Three valid 6 x 20 disparity maps, for three 12 x 40 GT maps."""


def with_value(index: tuple, value: float) -> np.ndarray:
    maps = MAPS.copy()
    maps[index] = value
    return maps


PRED = ["--predictions", "{pred}", "--gt", "{gt}"]
CKPT = ["--checkpoint", "c.ckpt", "--root", "r", "--split", "s.txt", "--gt", "{gt}"]


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (npy_bytes(MAPS[:2]), PRED, "{pred}: 2 maps but {gt} has 3 ground-truth maps"),
        (npy_bytes(MAPS[0]), PRED, "{pred}: expected N maps (N, h, w), got shape (6, 20)"),
        (npy_bytes(MAPS[:, None]), PRED, "{pred}: expected N maps (N, h, w), got shape (3, 1, 6, 20)"),
        (npy_bytes(np.ones((3, 6, 20), np.int64)), PRED, "{pred}: expected floats, got int64"),
        (npy_bytes(with_value((1, 2, 3), np.nan)), PRED, "{pred}: map 1: NaN or Inf"),
        (npy_bytes(with_value((2, 0, 0), -np.inf)), PRED, "{pred}: map 2: NaN or Inf"),
        (npy_bytes(with_value((1, 5, 19), 0.0)), PRED, "{pred}: map 1: values <= 0 (min 0)"),
        (npy_bytes(with_value((0, 3, 3), -2.0)), PRED, "{pred}: map 0: values <= 0 (min -2)"),
        (b"0.5 0.5 0.5\n", PRED, "{pred}: cannot read as a .npy array (not numbers in numpy.save format)"),
        (npy_bytes(MAPS)[:200], PRED, "{pred}: cannot read as a .npy array (Failed to read all data"),
        (npy_bytes(MAPS, npz=True), PRED, "{pred}: an .npz archive, not a .npy array of N maps"),
        (None, PRED, "{pred}: file not found"),
        (
            npy_bytes(MAPS),
            [*PRED[:2], "--gt", "{pred}"],
            "{pred}: a .npy array, not an .npz archive of ground-truth maps",
        ),
        (npy_bytes(MAPS), [*PRED, "--protocol", "eigen"], "depth protocol: unknown name 'eigen'"),
        (npy_bytes(MAPS), [*PRED, "--root", "r"], "--root: only with --checkpoint, not with --predictions"),
        (npy_bytes(MAPS), [*PRED, "--split", "s"], "--split: only with --checkpoint, not with --predictions"),
        (
            npy_bytes(MAPS),
            [*PRED, "--checkpoint", "c.ckpt"],
            "evaluate-kitti: --checkpoint and --predictions exclude each other",
        ),
        (
            None,
            ["--gt", "{gt}"],
            "evaluate-kitti: give either --checkpoint (with --root, --split) or --predictions (with --gt)",
        ),
        (None, [*CKPT[:4], *CKPT[-2:]], "--split: required with --checkpoint"),
        (
            None,
            [*CKPT, "--pred-kind", "depth"],
            "--pred-kind: only with --predictions, not with --checkpoint",
        ),
    ],
)
def test_bad_predictions_or_options_are_one_line_errors(tmp_path, capsys, content, args, message):
    gt, pred, out = tmp_path / "gt.npz", tmp_path / "pred.npy", tmp_path / "out" / "metrics.json"
    np.savez(gt, **{f"depth_{i:05d}": np.full((12, 40), 10.0, np.float32) for i in range(3)})
    if content is not None:
        pred.write_bytes(content)
    argv = [a.format(pred=pred, gt=gt) for a in args]
    code, _, err = run_cli(["evaluate-kitti", *argv, "--output", str(out)], capsys)
    expected = "error: " + message.format(pred=pred, gt=gt)
    assert code == 2 and err.startswith(expected) and err.count("\n") == 1, err
    assert not out.parent.exists()


# --- evaluate_odometry end to end ---------------------------------------------------------------------------


def make_checkpoint(path, refine: bool):
    from sa4depth.train.system import DepthPoseSystem

    cfg = load_config(overrides=["data.height=64", "data.width=192", f"refine.enabled={str(refine).lower()}"])
    system = DepthPoseSystem(cfg)
    torch.save({"sa4depth_config": config_to_dict(cfg), "state_dict": system.state_dict()}, path)
    return path


def write_odometry_fixture(root, T_world_cam0, size=(64, 192)):
    """A KITTI odometry sequence 09 in the exact format: calib.txt, image_2 PNGs, poses/09.txt."""
    seq = root / "sequences" / "09"
    seq.mkdir(parents=True)
    K = np.array([[180.0, 0.0, 95.5], [0.0, 180.0, 31.5], [0.0, 0.0, 1.0]])
    rows = [f"P{c}: " + " ".join(f"{v:.6e}" for v in (K @ np.eye(3, 4)).ravel()) for c in range(4)]
    (seq / "calib.txt").write_text("\n".join(rows) + "\n")
    # Smooth random texture shifted a little per frame: something for the networks and the LM to see.
    rng = np.random.default_rng(0)
    base = np.kron(rng.integers(0, 255, (size[0] // 4 + 2, size[1] // 4 + 2, 3)), np.ones((4, 4, 1)))
    for i in range(len(T_world_cam0)):
        layout.write_image(
            seq / "image_2" / f"{i:06d}.png", base[i : i + size[0], i : i + size[1]].astype(np.uint8)
        )
    layout.write_poses(root / "poses" / "09.txt", T_world_cam0)
    return root


def test_evaluate_odometry_end_to_end(gt_poses, tmp_path):
    root = write_odometry_fixture(tmp_path / "dataset", gt_poses["09"][:6])
    plain = make_checkpoint(tmp_path / "plain.ckpt", refine=False)
    report = evaluate_odometry(plain, root, "9", tmp_path / "out", device="cpu")
    assert report["sequence"] == "09" and report["frames"] == 6 and not report["refine"]
    assert np.isfinite(report["kitti"]["ate"]) and report["ate_5frame"]["count"] == 5
    # 6 frames cover 5 m: no 100 m segment, so the devkit drift is undefined (null in the JSON).
    saved = json.loads((tmp_path / "out" / "odometry_09.json").read_text())
    assert saved["kitti"]["t_err"] is None and saved["checkpoint"] == str(plain)
    assert (tmp_path / "out" / "trajectory_09.png").is_file()
    assert layout.read_poses(tmp_path / "out" / "poses_09.txt").shape == (6, 4, 4)
    # The same through the command line, with the devkit's angle.
    argv = ["evaluate-odometry", "--checkpoint", str(plain), "--root", str(root), "--sequence", "9"]
    assert main([*argv, "--output", str(tmp_path / "cli"), "--angle", "devkit", "--batch-size", "4"]) == 0
    cli = json.loads((tmp_path / "cli" / "odometry_09.json").read_text())
    # Another batch size changes the network's float32 rounding (measured 2e-6 relative).
    assert cli["kitti"]["angle"] == "devkit" and cli["kitti"]["ate"] == pytest.approx(
        report["kitti"]["ate"], 1e-4
    )
    with pytest.raises(InputError, match="--refine needs a checkpoint trained with refine.enabled"):
        evaluate_odometry(plain, root, "09", tmp_path / "out2", refine=True)
    with pytest.raises(InputError, match=r"poses/11.txt: ground-truth poses not found"):
        evaluate_odometry(plain, root, "11", tmp_path / "out2")

    sa4 = make_checkpoint(tmp_path / "sa4.ckpt", refine=True)
    refined = evaluate_odometry(sa4, root, "09", tmp_path / "refined", refine=True, device="cpu")
    assert refined["refine"] and np.isfinite(refined["kitti"]["ate"])
    evaluate_odometry(sa4, root, "09", tmp_path / "net", device="cpu")
    poses_refined = layout.read_poses(tmp_path / "refined" / "poses_09.txt")
    poses_net = layout.read_poses(tmp_path / "net" / "poses_09.txt")
    assert np.isfinite(poses_refined).all() and not np.allclose(poses_refined, poses_net, atol=1e-4)
