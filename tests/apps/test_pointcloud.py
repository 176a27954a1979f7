"""Point clouds: back-projection known answers, binary/ASCII PLY round trips, and a checkpoint end to end."""

import numpy as np
import pytest
import torch

from sa4depth.apps.pointcloud import depth_to_points, export_point_cloud, predict_point_cloud, read_ply
from sa4depth.config import config_to_dict, load_config
from sa4depth.data import layout
from sa4depth.errors import InputError

K = np.array([[50.0, 0.0, 3.0], [0.0, 40.0, 2.0], [0.0, 0.0, 1.0]])


def scene(H=5, W=7, d=4.0):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8), np.full((H, W), d)


def test_principal_point_maps_to_optical_axis_and_others_follow_pinhole():
    image, depth = scene()
    depth[0, 6] = 8.0
    points, colors = depth_to_points(image, depth, K)
    assert points.shape == (35, 3) and colors.dtype == np.uint8
    # Row-major order: pixel (u=3, v=2) is index 2 * 7 + 3.
    np.testing.assert_allclose(points[2 * 7 + 3], [0.0, 0.0, 4.0])
    np.testing.assert_allclose(points[6], [(6 - 3) / 50 * 8.0, (0 - 2) / 40 * 8.0, 8.0], rtol=1e-6)
    np.testing.assert_array_equal(colors[2 * 7 + 3], image[2, 3])


def test_invalid_far_and_strided_pixels_are_dropped():
    image, depth = scene()
    depth[0, 0], depth[0, 1], depth[0, 2] = 0.0, np.nan, 100.0
    points, _ = depth_to_points(image, depth, K, max_depth=50.0)
    assert len(points) == 35 - 3 and np.isfinite(points).all() and points[:, 2].max() == 4.0
    strided, _ = depth_to_points(image, np.full((5, 7), 2.0), K, stride=2)
    assert len(strided) == 3 * 4  # rows 0, 2, 4 and columns 0, 2, 4, 6


@pytest.mark.parametrize("binary", [True, False])
def test_ply_round_trip(tmp_path, binary):
    image, depth = scene()
    out = tmp_path / "sub" / "cloud.ply"
    n = export_point_cloud(image, depth, K, out, binary=binary)
    assert n == 35
    text_header = out.read_bytes().split(b"end_header\n")[0].decode()
    assert ("binary_little_endian" in text_header) == binary and "element vertex 35" in text_header
    points, colors = read_ply(out)
    np.testing.assert_allclose(points[2 * 7 + 3], [0.0, 0.0, 4.0], atol=1e-6)
    np.testing.assert_array_equal(colors, image.reshape(-1, 3))
    assert sorted(p.name for p in out.parent.iterdir()) == ["cloud.ply"]  # no temp files left


def test_bad_arguments_raise():
    image, depth = scene()
    with pytest.raises(ValueError, match="does not match"):
        depth_to_points(image, depth[:, :3], K)
    with pytest.raises(ValueError, match="uint8"):
        depth_to_points(image.astype(np.float32), depth, K)
    with pytest.raises(ValueError, match="stride"):
        depth_to_points(image, depth, K, stride=0)


def test_read_ply_rejects_other_files(tmp_path):
    bad = tmp_path / "x.ply"
    bad.write_bytes(b"not a ply")
    with pytest.raises(InputError, match="not a PLY"):
        read_ply(bad)
    with pytest.raises(InputError, match="not found"):
        read_ply(tmp_path / "missing.ply")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A randomly initialised system saved in the training-checkpoint format, without a dataset on disk."""
    from sa4depth.train.system import DepthPoseSystem

    root = tmp_path_factory.mktemp("ckpt")
    cfg = load_config(None, ["data.height=64", "data.width=96", f"data.root={root / 'no_data'}"])
    path = root / "model.ckpt"
    torch.save(
        {"state_dict": DepthPoseSystem(cfg).state_dict(), "sa4depth_config": config_to_dict(cfg)}, path
    )
    return path


def test_predict_point_cloud_end_to_end(tmp_path, checkpoint):
    from sa4depth.apps.predict import DepthPredictor

    image = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    layout.write_image(tmp_path / "im.png", image)
    with pytest.raises(InputError, match="--fx or --fov"):  # no camera in the checkpoint or on disk
        predict_point_cloud(checkpoint, tmp_path / "im.png", tmp_path / "c.ply")
    n = predict_point_cloud(checkpoint, tmp_path / "im.png", tmp_path / "c.ply", fov=90.0, scale=2.0)
    points, colors = read_ply(tmp_path / "c.ply")
    assert n == 64 * 96 == len(points)
    depth = 2.0 * DepthPredictor.from_checkpoint(checkpoint).predict([image])[0]
    np.testing.assert_allclose(points[:, 2], depth.reshape(-1), rtol=1e-5)
    fx = 48.0 / np.tan(np.pi / 4)  # fov 90 deg over 96 px
    np.testing.assert_allclose(points[-1, 0], (95 - 47.5) / fx * depth[-1, -1], rtol=1e-5)
    np.testing.assert_array_equal(colors, image.reshape(-1, 3))
    with pytest.raises(InputError, match="not found"):
        predict_point_cloud(checkpoint, tmp_path / "missing.png", tmp_path / "c.ply", fov=90.0)
