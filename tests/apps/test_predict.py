"""Prediction for images, folders and videos: outputs match the depth net, units are labelled, the colour bar
labels both ends without overprinting, inputs unlike the training data are warned about once, bad input is
one line, and the ground-plane camera-height fit recovers known heights."""

import json
import logging

import cv2
import numpy as np
import pytest
import torch

from sa4depth.apps.predict import (
    NETWORK_UNITS,
    DepthPredictor,
    colorize_depth,
    disparity_range,
    fit_ground_height,
    intrinsics_from_fov,
    predict_paths,
    training_data,
)
from sa4depth.apps.predict.colormap import _depth_ticks, _legend_figure
from sa4depth.config import config_to_dict, load_config
from sa4depth.data import layout
from sa4depth.errors import InputError

H, W = 64, 96
K_TRAIN = np.array([[60.0, 0, 47.5], [0, 60.0, 31.5], [0, 0, 1]])


def frame(seed: int, size=(H, W)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A random-weight checkpoint whose training data (one sequence with cam.txt at 2x size) is on disk."""
    from sa4depth.train.system import DepthPoseSystem

    root = tmp_path_factory.mktemp("predict")
    data = root / "data"
    seq = layout.sequence_dir(data, "s")
    for i in range(3):
        layout.write_image(seq / "images" / f"{i:06d}.png", frame(i, (2 * H, 2 * W)))
    # The dataset camera at twice the training size: K must come back resized to H x W.
    K2 = np.array([[120.0, 0, 95.5], [0, 120.0, 63.5], [0, 0, 1]])
    layout.write_cam(seq / "cam.txt", K2)
    layout.write_split(data / "splits" / "test.txt", [("s", 1)])
    cfg = load_config(None, [f"data.height={H}", f"data.width={W}", f"data.root={data}"])
    system = DepthPoseSystem(cfg).eval()
    path = root / "model.ckpt"
    torch.save({"state_dict": system.state_dict(), "sa4depth_config": config_to_dict(cfg)}, path)
    return path, system.model.depth_net


def test_folder_outputs_match_depth_net_and_keep_sub_paths(tmp_path, setup):
    checkpoint, depth_net = setup
    images = tmp_path / "in"
    a, b, big = frame(10), frame(11), frame(12, (100, 150))
    layout.write_image(images / "cam0" / "000001.png", a)
    layout.write_image(images / "cam1" / "000001.png", b)  # same name, other folder
    layout.write_image(images / "big.jpg", big)
    out = tmp_path / "out"
    assert predict_paths(checkpoint, [images], out, batch_size=2, progress=False) == 3
    with torch.inference_mode():
        expected = depth_net.predict_depth(torch.from_numpy(np.stack([a, b])).permute(0, 3, 1, 2) / 255.0)
    np.testing.assert_allclose(np.load(out / "cam0" / "000001_depth.npy"), expected[0, 0].numpy(), rtol=1e-5)
    np.testing.assert_allclose(np.load(out / "cam1" / "000001_depth.npy"), expected[1, 0].numpy(), rtol=1e-5)
    assert np.load(out / "big_depth.npy").shape == (100, 150)  # back at the input's own size
    assert layout.read_image(out / "big_depth.png").shape == (100, 150, 3)
    manifest = json.loads((out / "predictions.json").read_text())
    assert manifest["units"].startswith("network units") and manifest["intrinsics_source"].startswith(
        "training"
    )
    entry = next(e for e in manifest["outputs"] if e["input"].endswith("big.jpg"))
    np.testing.assert_allclose(entry["K"], [[60 * 150 / 96, 0, 74.5], [0, 60 * 100 / 64, 49.5], [0, 0, 1]])
    assert not list(out.rglob(".*"))  # no temporary files left behind


def test_scale_factor_and_legend(tmp_path, setup):
    checkpoint, depth_net = setup
    layout.write_image(tmp_path / "a.png", frame(20))
    predict_paths(checkpoint, [tmp_path / "a.png"], tmp_path / "plain", progress=False)
    predict_paths(
        checkpoint, [tmp_path / "a.png"], tmp_path / "scaled", scale=2.5, legend=True, progress=False
    )
    np.testing.assert_allclose(
        np.load(tmp_path / "scaled" / "a_depth.npy"),
        2.5 * np.load(tmp_path / "plain" / "a_depth.npy"),
        rtol=1e-6,
    )
    manifest = json.loads((tmp_path / "scaled" / "predictions.json").read_text())
    assert manifest["units"] == "metric (scaled by user factor 2.5)"
    legend = layout.read_image(tmp_path / "scaled" / "a_depth.png")
    assert legend.shape[0] > H and legend.shape[1] > W  # the colour bar and labels make it larger


def test_video_frames_and_side_by_side(tmp_path, setup):
    checkpoint, _ = setup
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (W, H))
    for i in range(5):
        writer.write(frame(30 + i))
    writer.release()
    out = tmp_path / "out"
    assert predict_paths(checkpoint, [video], out, batch_size=2, video_out=True, progress=False) == 5
    assert sorted(p.name for p in (out / "clip").glob("*.npy")) == [f"{i:06d}_depth.npy" for i in range(5)]
    cap = cv2.VideoCapture(str(out / "clip_side_by_side.mp4"))
    count = 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        assert image.shape == (H, 2 * W, 3)
        count += 1
    assert count == 5


def test_bad_inputs_are_one_line_input_errors(tmp_path, setup):
    checkpoint, _ = setup
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 garbage" * 10)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.ckpt").write_bytes(b"nope")
    cases = [
        ([tmp_path / "missing.png"], {}, "input not found"),
        ([tmp_path / "broken.png"], {}, "cannot decode image"),
        ([tmp_path / "broken.mp4"], {}, "cannot decode video"),
        ([tmp_path / "notes.txt"], {}, "unsupported input type"),
        ([tmp_path / "empty"], {}, "no .png/.jpg"),
        ([tmp_path / "broken.png"], {"scale": 2.0, "camera_height": 1.5}, "at most one"),
        ([tmp_path / "broken.png"], {"scale": -1.0}, "positive"),
        ([tmp_path / "broken.png"], {"batch_size": 0}, "at least 1"),
    ]
    for inputs, kwargs, message in cases:
        with pytest.raises(InputError, match=message) as err:
            predict_paths(checkpoint, inputs, tmp_path / "out", progress=False, **kwargs)
        assert "\n" not in str(err.value)
    for bad_checkpoint, message in (
        (tmp_path / "bad.ckpt", "cannot read checkpoint"),
        (tmp_path / "x", "not found"),
    ):
        layout.write_image(tmp_path / "ok.png", frame(0))
        with pytest.raises(InputError, match=message):
            predict_paths(bad_checkpoint, [tmp_path / "ok.png"], tmp_path / "out", progress=False)


def ground_depth(K, size, height, pitch_deg=0.0, wall_columns=0):
    """z-depth of a camera ``height`` above a ground plane, pitched down by ``pitch_deg``; sky = 1000.

    The ground normal in camera coordinates is R_x(pitch) (0, 1, 0); a pixel ray r = K^-1 (u, v, 1)
    meets the plane n . X = height at X = r * height / (n . r), whose z is height / (n . r).
    """
    Hs, Ws = size
    v, u = np.mgrid[0:Hs, 0:Ws].astype(np.float64)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    p = np.radians(pitch_deg)
    n = np.array([0.0, np.cos(p), np.sin(p)])
    nr = rays @ n
    depth = np.where(nr > 1e-3, height / np.maximum(nr, 1e-3), 1000.0)
    if wall_columns:
        depth[:, :wall_columns] = np.minimum(depth[:, :wall_columns], 3.0)  # an obstacle close by on the left
    return depth


# A wall over 120 of 192 columns is the largest plane in the bottom rows: only the tilt limit keeps the
# ground (37 % of the points) as the answer.
@pytest.mark.parametrize("pitch, wall", [(0.0, 0), (8.0, 0), (-5.0, 30), (0.0, 120)])
def test_ground_height_fit_recovers_the_camera_height(pitch, wall):
    K = np.array([[100.0, 0, 95.5], [0, 100.0, 47.5], [0, 0, 1]])
    depth = ground_depth(K, (96, 192), height=1.7, pitch_deg=pitch, wall_columns=wall)
    assert fit_ground_height(depth, K) == pytest.approx(1.7, rel=1e-6)
    # Linear in the units: the inlier tolerance is relative to the height, not a distance.
    for scale in (0.1, 0.01):
        assert fit_ground_height(depth * scale, K) == pytest.approx(1.7 * scale, rel=1e-6)


def test_ground_height_fit_rejects_a_scene_without_ground():
    K = np.array([[100.0, 0, 95.5], [0, 100.0, 47.5], [0, 0, 1]])
    assert fit_ground_height(np.full((96, 192), 5.0), K) is None  # a wall facing the camera


def test_camera_height_scaling_labels_and_scales(tmp_path, setup, monkeypatch):
    checkpoint, _ = setup
    layout.write_image(tmp_path / "road.png", frame(40))
    # Replace the random network by a depth map of a ground plane 0.5 network units below the camera.
    K = K_TRAIN
    monkeypatch.setattr(
        DepthPredictor, "predict", lambda self, ims, names=None: [ground_depth(K, (H, W), 0.5) for _ in ims]
    )
    predict_paths(checkpoint, [tmp_path / "road.png"], tmp_path / "out", camera_height=1.65, progress=False)
    manifest = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert manifest["units"] == "metric (scaled by camera height 1.65 m)"
    (entry,) = manifest["outputs"]
    assert entry["camera_height_network_units"] == pytest.approx(0.5, rel=1e-5)
    assert entry["scale_factor"] == pytest.approx(3.3, rel=1e-5)
    np.testing.assert_allclose(
        np.load(tmp_path / "out" / "road_depth.npy"), 3.3 * ground_depth(K, (H, W), 0.5), rtol=1e-5
    )


def test_intrinsics_from_fov_and_focal_length():
    K = intrinsics_from_fov(200, 100, fov=90.0)
    np.testing.assert_allclose(K, [[100.0, 0, 99.5], [0, 100.0, 49.5], [0, 0, 1]])
    assert intrinsics_from_fov(200, 100, fx=321.0)[1, 1] == 321.0
    with pytest.raises(InputError, match="not both"):
        intrinsics_from_fov(200, 100, fx=1.0, fov=60.0)
    with pytest.raises(InputError, match="field of view"):
        intrinsics_from_fov(200, 100, fov=180.0)


def test_colour_map_is_bright_near():
    image = colorize_depth(np.array([[1.0, 2.0, 10.0]]), disp_range=(0.1, 1.0))
    brightness = image.astype(int).sum(-1)[0]
    assert brightness[0] > brightness[1] > brightness[2]


def label_depth(label: str) -> float:
    return float("inf") if label == "∞" else float(label.lstrip("≤≥"))


@pytest.mark.parametrize(
    "near, far",
    [(1.0, 100.0), (1.3, 80.0), (0.5, 1e4), (4.9, 5.2), (11.2, 12.0), (2.0, 2.0 + 1e-6), (1.0, float("inf"))],
)
def test_colour_bar_labels_both_ends_and_keeps_its_ticks_apart(near, far):
    disp_range = (1.0 / far, 1.0 / near)
    span = disp_range[1] - disp_range[0]
    ticks = _depth_ticks(disp_range, min_gap=0.1)
    positions, labels = zip(*ticks, strict=True)
    # Near end at the top (largest inverse depth) with "<=", far end at the bottom with ">=" (or infinity).
    assert positions[0] == disp_range[1] and labels[0].startswith("\u2264")
    assert label_depth(labels[0]) == pytest.approx(near, rel=5e-3)
    assert positions[-1] == disp_range[0] and labels[-1][0] in "\u2265\u221e"
    assert label_depth(labels[-1]) == pytest.approx(far, rel=5e-3)
    assert all(a - b >= 0.1 * span - 1e-15 for a, b in zip(positions, positions[1:], strict=False))
    assert len(set(labels)) == len(labels) and (len(ticks) >= 4 or far / near < 1.01)
    for position, label in ticks[1:-1]:  # the round depths between: each label names its own place
        assert label_depth(label) == pytest.approx(1.0 / position, rel=1e-9)
    assert [label for _, label in _depth_ticks((0.01, 1.0), min_gap=0.08)][1:-1] == ["2", "5", "10"]


@pytest.mark.parametrize("size", [(64, 192), (375, 1242), (480, 480)])
def test_legend_tick_labels_do_not_overprint(size):
    # A smooth ramp from 80 units at the top to 1.3 at the bottom: the far labels used to pile up.
    v = np.linspace(0.0, 1.0, size[0])[:, None].repeat(size[1], 1)
    depth = 1.0 / (1 / 80 + (1 / 1.3 - 1 / 80) * v)
    disp_range = disparity_range(depth)
    fig = _legend_figure(colorize_depth(depth, disp_range=disp_range), disp_range, NETWORK_UNITS)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = sorted(
        ((t.get_window_extent(renderer), t.get_text()) for t in fig.axes[1].get_yticklabels()),
        key=lambda label: label[0].y0,
    )
    boxes = [box for box, _ in labels]
    assert labels[0][1].startswith("≥") and labels[-1][1].startswith("≤")  # far at the bottom
    assert len(boxes) >= 4
    # No two overlap.
    assert all(lower.y1 <= upper.y0 for lower, upper in zip(boxes, boxes[1:], strict=False))
    width, height = fig.canvas.get_width_height()
    assert all(0 <= b.y0 and b.y1 <= height and b.x1 <= width for b in boxes)  # none cut off


def test_inputs_unlike_the_training_data_are_warned_about_once(tmp_path, setup, caplog):
    checkpoint, _ = setup
    for name, size in (("tall1", (96, 64)), ("tall2", (100, 60)), ("wide", (2 * H, 2 * W))):
        layout.write_image(tmp_path / "in" / f"{name}.png", frame(60, size))
    with caplog.at_level(logging.WARNING, logger="sa4depth.apps.predict"):
        predict_paths(checkpoint, [tmp_path / "in"], tmp_path / "out", progress=False)
    (record,) = caplog.records  # two squashed inputs, one line; the training data is not synthetic
    assert "\n" not in record.getMessage()
    assert str(tmp_path / "in" / "tall1.png") in record.getMessage() and "aspect 0.67" in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sa4depth.apps.predict"):
        predict_paths(checkpoint, [tmp_path / "in" / "wide.png"], tmp_path / "out2", progress=False)
    assert caplog.records == []  # twice the training size, the same aspect ratio


def test_a_model_of_the_synthetic_world_warns_on_other_images(tmp_path, setup, caplog, monkeypatch):
    checkpoint, _ = setup
    ckpt = torch.load(checkpoint, weights_only=False)
    world = tmp_path / "world"
    layout.write_image(world / "sequences" / "s" / "images" / "000000.png", frame(70))
    (world / "meta.yaml").write_text("generator: sa4depth.data.synthetic\nscene: driving\n")
    # Trained in tmp_path with relative paths: found again from elsewhere through the run folder.
    ckpt["sa4depth_config"]["data"]["root"] = "world"
    ckpt["sa4depth_config"]["output_dir"] = "runs/a"
    (tmp_path / "runs" / "a" / "checkpoints").mkdir(parents=True)
    synthetic = tmp_path / "runs" / "a" / "checkpoints" / "last.ckpt"
    torch.save(ckpt, synthetic)
    monkeypatch.chdir(tmp_path / "runs")
    cfg = load_config(None, ["data.root=world", "output_dir=runs/a"])
    assert training_data(synthetic, cfg) == {"root": str(world), "generator": "sa4depth.data.synthetic"}
    layout.write_image(tmp_path / "photo.jpg", frame(71))
    with caplog.at_level(logging.WARNING, logger="sa4depth.apps.predict"):
        predict_paths(synthetic, [tmp_path / "photo.jpg", world], tmp_path / "out", progress=False)
    (record,) = caplog.records
    assert "trained only on the rendered synthetic world" in record.getMessage()
    assert str(tmp_path / "photo.jpg") in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sa4depth.apps.predict"):  # its own frames: nothing to say
        predict_paths(synthetic, [world], tmp_path / "out2", progress=False)
    assert caplog.records == []
    with caplog.at_level(logging.WARNING, logger="sa4depth.apps.predict"):  # a model of other data: silent
        predict_paths(checkpoint, [tmp_path / "photo.jpg"], tmp_path / "out3", progress=False)
    assert caplog.records == []


def test_video_gets_one_camera_height_scale(tmp_path, setup, monkeypatch):
    checkpoint, _ = setup
    video = tmp_path / "drive.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (W, H))
    for i in range(3):
        writer.write(frame(50 + i))
    writer.release()
    heights = iter([0.5, 0.4, 0.6] + [0.5] * 3)  # the scale pass sees three heights; the median is 0.5
    monkeypatch.setattr(
        DepthPredictor,
        "predict",
        lambda self, ims, names=None: [ground_depth(K_TRAIN, (H, W), next(heights)) for _ in ims],
    )
    predict_paths(checkpoint, [video], tmp_path / "out", camera_height=2.0, progress=False)
    (entry,) = json.loads((tmp_path / "out" / "predictions.json").read_text())["outputs"]
    assert entry["frames"] == 3 and entry["scale_factor"] == pytest.approx(4.0, rel=1e-5)
    np.testing.assert_allclose(
        np.load(tmp_path / "out" / "drive" / "000000_depth.npy"),
        4.0 * ground_depth(K_TRAIN, (H, W), 0.5),
        rtol=1e-5,
    )


def test_camera_recorded_in_the_checkpoint_is_used_and_resized(tmp_path, setup):
    checkpoint, _ = setup
    ckpt = torch.load(checkpoint, weights_only=False)
    ckpt["sa4depth_config"]["data"]["root"] = str(tmp_path / "gone")  # the training data is not on disk
    ckpt["sa4depth_intrinsics"] = {
        "K": [[240.0, 0, 191.5], [0, 240.0, 127.5], [0, 0, 1]],
        "width": 384,
        "height": 256,
    }
    torch.save(ckpt, tmp_path / "with_K.ckpt")
    predictor = DepthPredictor.from_checkpoint(tmp_path / "with_K.ckpt")
    np.testing.assert_allclose(predictor.K_train, K_TRAIN)  # 384 x 256 -> 96 x 64
    np.testing.assert_allclose(
        predictor.intrinsics(192, 128), [[120.0, 0, 95.5], [0, 120.0, 63.5], [0, 0, 1]]
    )
    ckpt.pop("sa4depth_intrinsics")
    torch.save(ckpt, tmp_path / "no_K.ckpt")
    with pytest.raises(InputError, match="pass --fx or --fov"):
        DepthPredictor.from_checkpoint(tmp_path / "no_K.ckpt").intrinsics(W, H)
