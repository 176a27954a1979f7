"""KITTI odometry loader on a fixture in the exact KITTI format: samples, poses, split files, errors."""

import numpy as np
import pytest
import torch

from sa4depth.config import DataConfig
from sa4depth.data import layout
from sa4depth.data.datamodule import build_dataset
from sa4depth.data.kitti_odometry import KittiOdometryDataset, read_odometry_split
from sa4depth.errors import InputError
from sa4depth.geometry import Pose

K = np.array([[50.0, 0.0, 47.5], [0.0, 50.0, 15.5], [0.0, 0.0, 1.0]])
BASELINE = {0: 0.0, 1: -0.54, 2: 0.06, 3: -0.47}  # camera X sits at -t_X: P_X = K [I | (t_X, 0, 0)]


def yaw_pose(i: int) -> np.ndarray:
    """T_world_cam0 of frame i: 1 m forward per frame while turning 2 degrees per frame."""
    return Pose.from_aa(torch.tensor([0.0, np.radians(2.0 * i), 0.0]), torch.tensor([0.1 * i, 0.0, 1.0 * i]))


def make_odometry_root(root, name="09", frames=6, size=(32, 96)):
    seq = root / "sequences" / name
    seq.mkdir(parents=True)
    rows = []
    for cam, tx in BASELINE.items():
        P = K @ np.hstack([np.eye(3), [[tx], [0.0], [0.0]]])
        rows.append(f"P{cam}: " + " ".join(f"{v:.12e}" for v in P.ravel()))
    rows.append("Tr: " + " ".join(f"{v:.12e}" for v in np.eye(4)[:3].ravel()))
    (seq / "calib.txt").write_text("\n".join(rows) + "\n")
    rng = np.random.default_rng(0)
    for cam in (2, 3):
        for i in range(frames):
            image = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            layout.write_image(seq / f"image_{cam}" / f"{i:06d}.png", image)
    poses = np.stack([yaw_pose(i).matrix().double().numpy() for i in range(frames)])
    layout.write_poses(root / "poses" / f"{name}.txt", poses)
    return root


@pytest.fixture
def odom(tmp_path):
    return make_odometry_root(tmp_path / "dataset")


def test_sequence_split_gives_snippets_with_colour_camera_poses(odom):
    ds = KittiOdometryDataset(odom, "09", 32, 96)
    assert len(ds) == 4 and len(KittiOdometryDataset(odom, "9", 32, 96)) == 4  # frames 1..4 have both sources
    s = ds[1]
    assert s["sequence"] == "09" and s["frame"] == 2 and s["images"].shape == (3, 3, 32, 96)
    assert not s["has_depth"] and s["has_pose"]
    np.testing.assert_allclose(s["K"].numpy(), K, atol=1e-5)
    expected = layout.read_image(odom / "sequences/09/image_2/000001.png")
    np.testing.assert_allclose(s["images"][1].permute(1, 2, 0).numpy() * 255, expected, atol=1e-3)
    # Known answer: camera 2 = camera 0 moved by -t_2, so T_src_tgt(cam 2) = C T_src_tgt(cam 0) C^-1.
    C = np.eye(4)
    C[0, 3] = BASELINE[2]
    for j, src in enumerate((1, 3)):
        T0 = np.linalg.inv(yaw_pose(src).matrix().double().numpy()) @ yaw_pose(2).matrix().double().numpy()
        np.testing.assert_allclose(s["T_src_tgt"][j].numpy(), C @ T0 @ np.linalg.inv(C), atol=1e-5)
        # Same rotation as camera 0, translation differs by (I - R) t_2: under a millimetre here.
        assert 1e-4 < np.abs(s["T_src_tgt"][j, :3, 3].numpy() - T0[:3, 3]).max() < 3e-3
    # Half resolution: c' = (c + 0.5) / 2 - 0.5.
    half = KittiOdometryDataset(odom, "09", 16, 48)[0]["K"].numpy()
    np.testing.assert_allclose(half[:2, :], [[25, 0, 23.5], [0, 25, 7.5]], atol=1e-5)


def test_split_files_sides_and_sequence_ends(odom, tmp_path):
    split = tmp_path / "test_files.txt"
    split.write_text("9 0 l\n9 3 r\n9 5 l\n")  # Monodepth2's splits/odom format
    assert [it[:3] for it in read_odometry_split(split)] == [("09", 0, "l"), ("09", 3, "r"), ("09", 5, "l")]
    ds = KittiOdometryDataset(odom, split, 32, 96)
    # At the ends the missing source (offset -1 of frame 0, +1 of frame 5) repeats the target.
    first, last = ds[0], ds[2]
    assert not first["has_pose"] and torch.equal(first["images"][1], first["images"][0])
    assert not last["has_pose"] and torch.equal(last["images"][2], last["images"][0])
    right = ds[1]
    expected = layout.read_image(odom / "sequences/09/image_3/000003.png")
    np.testing.assert_allclose(right["images"][0].permute(1, 2, 0).numpy() * 255, expected, atol=1e-3)
    assert right["has_pose"]
    with pytest.raises(InputError, match=r"test_files.txt: line 1 \(09 0 l\): source frame -1 .* not found"):
        KittiOdometryDataset(odom, split, 32, 96, train=True)
    whole = tmp_path / "seqs.txt"
    whole.write_text("09\n")
    assert len(KittiOdometryDataset(odom, whole, 32, 96, offsets=(1,), train=True)) == 5


def test_input_errors_name_file_and_problem(odom, tmp_path):
    with pytest.raises(InputError, match="not a KITTI odometry root"):
        KittiOdometryDataset(tmp_path / "nowhere", "09", 32, 96)
    with pytest.raises(InputError, match=r"sequences/10: sequence folder not found"):
        KittiOdometryDataset(odom, "09,10", 32, 96)
    bad = tmp_path / "bad.txt"
    bad.write_text("9 1 l\n9 one l\n")
    with pytest.raises(InputError, match=r"bad.txt: line 2: expected '<sequence> <frame> \[l\|r\]'"):
        KittiOdometryDataset(odom, bad, 32, 96)
    poses = odom / "poses" / "09.txt"
    poses.write_text("\n".join(poses.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(InputError, match=r"09.txt: 5 poses for 6 frames"):
        KittiOdometryDataset(odom, "09", 32, 96)
    (odom / "sequences/09/calib.txt").unlink()
    with pytest.raises(InputError, match=r"calib.txt: calibration file not found"):
        KittiOdometryDataset(odom, "09", 32, 96)


def test_missing_frame_inside_a_sequence(odom, tmp_path):
    (odom / "sequences/09/image_2/000004.png").unlink()
    (odom / "poses/09.txt").unlink()  # no ground truth: sequences 11-21 are like this
    split = tmp_path / "s.txt"
    split.write_text("9 3 l\n")
    with pytest.raises(
        InputError, match=r"s.txt: line 1 \(09 3 l\): source frame 4 \(offset \+1\) not found"
    ):
        KittiOdometryDataset(odom, split, 32, 96)
    ds = KittiOdometryDataset(odom, "09", 32, 96)  # whole sequence: frames whose snippet fits
    assert [s["frame"] for s in ds] == [1, 2] and not ds[0]["has_pose"]


def test_registered_for_the_config(odom):
    cfg = DataConfig(dataset="kitti_odometry", root=str(odom), height=32, width=96)
    ds = build_dataset(cfg, "09", train=True)
    assert isinstance(ds, KittiOdometryDataset) and ds[0]["images_aug"].shape == (3, 3, 32, 96)
