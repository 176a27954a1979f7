"""The folder-layout dataset: sample fields, intrinsics after resize, flips, and one-line input errors."""

import numpy as np
import pytest
import torch

from sa4depth.data import layout
from sa4depth.data.folder import FolderDataset
from sa4depth.data.transforms import flip_sample
from sa4depth.errors import InputError
from sa4depth.geometry import Camera, Pose, warp_frame

K = np.array([[64.0, 0, 63.5], [0, 64.0, 31.5], [0, 0, 1]])


def make_dataset(root, frames=5, size=(64, 128)):
    rng = np.random.default_rng(0)
    seq = layout.sequence_dir(root, "seq0")
    poses = []
    for i in range(frames):
        layout.write_image(
            seq / "images" / f"{layout.frame_name(i)}.png", rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        )
        layout.write_depth(seq / "depth" / f"{layout.frame_name(i)}.npz", np.full(size, 5.0 + i, np.float32))
        T = np.eye(4)
        T[2, 3] = 0.5 * i  # moves forward 0.5 m per frame
        poses.append(T)
    layout.write_poses(seq / "poses.txt", np.stack(poses))
    layout.write_cam(seq / "cam.txt", K)
    layout.write_split(root / "splits" / "train.txt", [("seq0", i) for i in range(1, frames - 1)])
    return root


def test_sample_fields_and_resized_intrinsics(tmp_path):
    ds = FolderDataset(make_dataset(tmp_path), "train", height=32, width=64)
    s = ds[0]
    assert s["images"].shape == (3, 3, 32, 64) and s["images"].dtype == torch.float32
    assert 0 <= s["images"].min() and s["images"].max() <= 1
    # Halved resolution with the pixel-centre convention: c' = (c + 0.5) / 2 - 0.5.
    np.testing.assert_allclose(s["K"].numpy(), [[32, 0, 31.5], [0, 32, 15.5], [0, 0, 1]], atol=1e-5)
    assert s["has_depth"] and s["depth"][0, 0, 0] == pytest.approx(6.0)
    # Target 1 at z=0.5, source 0 at z=0, source 2 at z=1: a target point 10 m ahead is 10.5 / 9.5 m away.
    X = torch.tensor([[0.0, 0.0, 10.0, 1.0]])
    assert (s["T_src_tgt"][0] @ X.T)[2].item() == pytest.approx(10.5)
    assert (s["T_src_tgt"][1] @ X.T)[2].item() == pytest.approx(9.5)


def test_flip_keeps_warping_consistent():
    """Warping a flipped source with the flipped pose and camera equals flipping the warped source."""
    rng = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 16, 32, generator=rng)
    K_t = torch.tensor([[20.0, 0, 14.0], [0, 20.0, 7.5], [0, 0, 1]])
    T = Pose.from_aa(torch.tensor([0.01, 0.03, 0.02]), torch.tensor([0.2, 0.05, -0.3])).matrix()
    sample = {"images": images, "K": K_t, "T_src_tgt": T[None], "depth": torch.rand(1, 16, 32) + 4}
    flipped = flip_sample(sample)

    def warp(s):
        cam = Camera.from_K(s["K"][None], 32, 16)
        return warp_frame(s["images"][1:2], s["depth"][None], Pose.from_4x4mat(s["T_src_tgt"][:1]), cam)

    w, v = warp(sample)
    wf, vf = warp(flipped)
    both = v.flip(-1) & vf
    torch.testing.assert_close(wf[both.expand_as(wf)], w.flip(-1)[both.expand_as(wf)], atol=1e-4, rtol=0)


def test_errors_name_the_file_and_problem(tmp_path):
    root = make_dataset(tmp_path)
    with pytest.raises(InputError, match="not a dataset root"):
        FolderDataset(tmp_path / "nope", "train", 32, 64)
    (root / "splits" / "bad.txt").write_text("seq0 1\nseq0 two\n")
    with pytest.raises(InputError, match=r"bad.txt: line 2"):
        FolderDataset(root, "bad", 32, 64)
    (root / "splits" / "edge.txt").write_text("seq0 4\n")
    with pytest.raises(InputError, match=r"frame 5 does not exist"):
        FolderDataset(root, "edge", 32, 64)
    (root / "splits" / "ghost.txt").write_text("seq9 1\n")
    with pytest.raises(InputError, match=r"sequence 'seq9' not found"):
        FolderDataset(root, "ghost", 32, 64)
    frame = layout.sequence_dir(root, "seq0") / "images" / "000002.png"
    frame.write_bytes(frame.read_bytes()[:100])
    with pytest.raises(InputError, match=r"000002.png: cannot decode image"):
        FolderDataset(root, "train", 32, 64)[0]
    (layout.sequence_dir(root, "seq0") / "cam.txt").write_text("1 2 3\n")
    with pytest.raises(InputError, match=r"cam.txt: calibration must be 9 finite numbers"):
        FolderDataset(root, "train", 32, 64)
