"""`sa4depth prepare`: static frames dropped exactly, K after crop and resize, split by sequence, errors."""

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sa4depth.data import layout
from sa4depth.data.folder import FolderDataset
from sa4depth.data.prepare import (
    DEFAULT_FOV_DEG,
    DEFAULT_STATIC_THRESHOLD,
    center_crop_box,
    format_summary,
    photometric_difference,
    photometric_thumbnail,
    prepare_dataset,
)
from sa4depth.errors import InputError

# Native video: 240 x 128 with a square-pixel camera; prepared at 64 x 192 (aspect 3), so the centred crop
# keeps rows 24..103 (240 x 80) and scales by 0.8: fx' = 160, cx' = (119.5 + 0.5) * 0.8 - 0.5 = 95.5,
# cy' = (63.5 - 24 + 0.5) * 0.8 - 0.5 = 31.5.
W0, H0 = 240, 128
K_NATIVE = np.array([[200.0, 0, 119.5], [0, 200.0, 63.5], [0, 0, 1]])
K_EXPECTED = np.array([[160.0, 0, 95.5], [0, 160.0, 31.5], [0, 0, 1]])
SIZE = dict(height=64, width=192)
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "own_video.yaml"
STOP_AT, STOPPED = 5, 3  # the camera stands still for 3 extra frames after frame 5


def render_plane(position, texture, depth=6.0):
    """A textured fronto-parallel wall ``depth`` m ahead of the origin, seen from ``position`` (x, y, z)."""
    v, u = np.mgrid[0:H0, 0:W0].astype(np.float64)
    z = depth - position[2]
    x = (u - K_NATIVE[0, 2]) / K_NATIVE[0, 0] * z + position[0]
    y = (v - K_NATIVE[1, 2]) / K_NATIVE[1, 1] * z + position[1]
    n = texture.shape[0]
    # 8 texels per metre, bilinear, so the pattern has structure at the thumbnail's scale.
    return cv2.remap(
        texture,
        (x * 8 % n).astype(np.float32),
        (y * 8 % n).astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_WRAP,
    )


def write_video(path, positions, seed=0, repeat_noise=True):
    """MJPG video of the wall along camera ``positions``; a repeated position re-renders the same view plus
    sensor-like noise (a stopped camera), so only the static-frame filter can tell it apart."""
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur((rng.random((64, 64, 3)) * 255).astype(np.float32), (0, 0), 1.0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W0, H0))
    assert writer.isOpened(), "this OpenCV cannot write MJPG"
    previous = None
    for p in positions:
        frame = render_plane(p, texture)
        if previous is not None and p == previous and repeat_noise:
            frame = frame + rng.normal(0, 2.0, frame.shape)
        writer.write(cv2.cvtColor(np.clip(frame, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
        previous = p
    writer.release()
    return path


def forward_with_stop(frames=12):
    """Moving forward 0.3 m/frame, standing still for `STOPPED` frames after frame `STOP_AT`."""
    z = [0.3 * i for i in range(frames)]
    z = z[: STOP_AT + 1] + [z[STOP_AT]] * STOPPED + z[STOP_AT + 1 :]
    return [(0.0, 0.0, zi) for zi in z]


def sideways(frames=10):
    """An indoor-style pan: sideways translation only, no forward motion."""
    return [(0.15 * i, 0.0, 0.0) for i in range(frames)]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    return write_video(d / "drive.avi", forward_with_stop()), write_video(d / "room.avi", sideways(), seed=1)


def cam_file(path, K=K_NATIVE):
    layout.write_cam(path, K)
    return path


def split_names(root, split):
    return {name for name, _ in layout.read_split(root / "splits" / f"{split}.txt")}


def test_static_frames_dropped_and_intrinsics_scaled(videos, tmp_path):
    drive, room = videos
    summary = prepare_dataset(
        [drive, room], tmp_path / "ds", **SIZE, cam=cam_file(tmp_path / "cam.txt"), progress=False
    )
    by_name = {s["name"]: s for s in summary["inputs"]}
    assert by_name["drive"]["frames"] == 12 + STOPPED and by_name["drive"]["dropped_static"] == STOPPED
    assert by_name["drive"]["kept"] == 12 and by_name["drive"]["skipped_subsample"] == 0
    # The kept frames are the moving ones: the stopped copies (source frames 6-8) are gone.
    assert by_name["drive"]["source_frames"] == [*range(STOP_AT + 1), *range(STOP_AT + 1 + STOPPED, 15)]
    assert by_name["room"]["dropped_static"] == 0 and by_name["room"]["kept"] == 10
    for name in ("drive", "room"):
        seq = layout.sequence_dir(tmp_path / "ds", name)
        np.testing.assert_allclose(layout.read_cam(seq / "cam.txt"), K_EXPECTED, atol=1e-6)
        assert layout.read_image(seq / "images" / "000000.png").shape == (64, 192, 3)
        assert len(list((seq / "images").iterdir())) == by_name[name]["kept"]
    meta = (tmp_path / "ds" / "meta.yaml").read_text()
    assert "dropped_static: 3" in meta
    text = format_summary(summary)
    assert "drive.avi" in text and "train:" in text and "val:" in text


def test_split_is_by_sequence_and_loads(videos, tmp_path):
    drive, room = videos
    root = tmp_path / "ds"
    prepare_dataset([drive, room], root, **SIZE, focal=200.0, progress=False)
    train, val = split_names(root, "train"), split_names(root, "val")
    assert train == {"drive"} and val == {"room"}  # the last input validates
    ds = FolderDataset(root, "val", height=64, width=192)
    assert len(ds) == 10 - 2  # every frame with a previous and a next frame
    np.testing.assert_allclose(ds[0]["K"].numpy(), K_EXPECTED, atol=1e-4)


def test_single_input_is_chunked_into_train_and_val(videos, tmp_path):
    drive, _ = videos
    root = tmp_path / "ds"
    summary = prepare_dataset([drive], root, **SIZE, fov=90.0, chunk=4, progress=False)
    names = [s["name"] for s in summary["sequences"]]
    assert names == ["drive_000", "drive_001", "drive_002"]  # 12 kept frames in chunks of 4
    assert [s["split"] for s in summary["sequences"]] == ["train", "train", "val"]
    assert split_names(root, "train") == {"drive_000", "drive_001"} and split_names(root, "val") == {
        "drive_002"
    }
    # fov 90 deg on the 240 px wide native frame: fx = 120 / tan(45 deg) = 120, then scaled by 0.8.
    K = layout.read_cam(layout.sequence_dir(root, "drive_002") / "cam.txt")
    np.testing.assert_allclose(K[0, 0], 96.0, atol=1e-6)


def test_stride_fps_and_default_intrinsics_warning(videos, tmp_path, caplog):
    _, room = videos
    with caplog.at_level(logging.WARNING, logger="sa4depth.data.prepare"):
        summary = prepare_dataset([room], tmp_path / "a", **SIZE, stride=2, progress=False)
    assert any("field of view" in r.getMessage() for r in caplog.records)
    s = summary["inputs"][0]
    assert s["source_frames"] == [0, 2, 4, 6, 8] and s["skipped_subsample"] == 5
    fx = (W0 / 2) / np.tan(np.radians(DEFAULT_FOV_DEG) / 2) * 0.8
    np.testing.assert_allclose(s["K"][0][0], fx, atol=1e-6)
    summary = prepare_dataset([room], tmp_path / "b", **SIZE, fps=5.0, focal=200.0, progress=False)
    assert summary["inputs"][0]["source_frames"] == [0, 2, 4, 6, 8]  # 10 fps video -> 5 fps


def test_static_filter_ignores_brightness_and_catches_still_frames():
    rng = np.random.default_rng(0)
    image = (rng.random((64, 192, 3)) * 200).astype(np.uint8)
    a = photometric_thumbnail(image)
    assert photometric_difference(a, photometric_thumbnail(image + 30)) < 1e-3  # exposure change only
    noisy = np.clip(image + rng.normal(0, 2.0, image.shape), 0, 255).astype(np.uint8)
    assert photometric_difference(a, photometric_thumbnail(noisy)) < DEFAULT_STATIC_THRESHOLD
    assert center_crop_box(W0, H0, 64, 192) == (0, 24, 240, 80)


def train_on(root, out, *extra):
    from sa4depth.config import load_config
    from sa4depth.train.run import train

    cfg = load_config(
        CONFIG,
        [
            f"data.root={root}",
            "data.height=64",
            "data.width=192",
            "data.batch_size=2",
            "data.num_workers=0",
            f"output_dir={out}",
            "trainer.max_steps=2",
            "trainer.log_every_n_steps=1",
            "trainer.accelerator=cpu",
            *extra,
        ],
    )
    assert cfg.loss.automask and cfg.data.dataset == "folder"
    return train(cfg, enable_progress_bar=False)


def test_training_with_refinement_runs_on_prepared_video(videos, tmp_path):
    # The LM refinement uses the prepared K; the baseline path runs in the test below up to validation.
    root = tmp_path / "ds"
    prepare_dataset(list(videos), root, **SIZE, focal=200.0, progress=False)
    ckpt_dir = train_on(root, tmp_path / "run", "refine.enabled=true")
    assert torch.load(ckpt_dir / "last.ckpt", weights_only=False)["global_step"] == 2


def test_validation_runs_without_depth_ground_truth(videos, tmp_path):
    root = tmp_path / "ds"
    # stride 3: 3 training targets, so one step per epoch and validation runs within 2 steps.
    prepare_dataset(list(videos), root, **SIZE, focal=200.0, stride=3, progress=False)
    ckpt_dir = train_on(root, tmp_path / "run")
    assert torch.load(ckpt_dir / "last.ckpt", weights_only=False)["global_step"] == 2


# ----------------------------------------------------------------------------------------- bad inputs


def assert_one_line_error(excinfo, name, out):
    message = str(excinfo.value)
    assert name in message and "\n" not in message
    assert not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_undecodable_video(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    with pytest.raises(InputError) as e:
        prepare_dataset([bad], tmp_path / "out" / "ds", **SIZE, progress=False)
    assert_one_line_error(e, "broken.mp4", tmp_path / "out" / "ds")


def test_empty_folder(tmp_path):
    (tmp_path / "frames").mkdir()
    with pytest.raises(InputError) as e:
        prepare_dataset([tmp_path / "frames"], tmp_path / "ds", **SIZE, progress=False)
    assert_one_line_error(e, "frames", tmp_path / "ds")


def test_mixed_image_sizes(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "frames"
    for i, shape in enumerate([(64, 96), (64, 96), (60, 96), (64, 96)]):
        layout.write_image(folder / f"f{i}.png", rng.integers(0, 255, (*shape, 3), dtype=np.uint8))
    with pytest.raises(InputError) as e:
        prepare_dataset([folder], tmp_path / "ds", **SIZE, progress=False)
    assert_one_line_error(e, "f2.png", tmp_path / "ds")


def test_too_short_after_dropping_static_frames(tmp_path, videos):
    still = write_video(tmp_path / "parked.avi", [(0.0, 0.0, 0.0)] * 6)
    with pytest.raises(InputError) as e:
        prepare_dataset([videos[0], still], tmp_path / "ds", **SIZE, progress=False)
    assert_one_line_error(e, "parked.avi", tmp_path / "ds")
    assert "dropping static frames (5)" in str(e.value)


def test_malformed_cam(tmp_path, videos):
    bad = tmp_path / "cam.txt"
    bad.write_text("1 2 3\n4 5 6\n")
    with pytest.raises(InputError) as e:
        prepare_dataset([videos[0]], tmp_path / "ds", **SIZE, cam=bad, progress=False)
    assert_one_line_error(e, "cam.txt", tmp_path / "ds")
    # A cam.txt inside a frame folder is read (and checked) too.
    folder = tmp_path / "frames"
    rng = np.random.default_rng(0)
    for i in range(4):
        layout.write_image(folder / f"{i}.png", rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    (folder / "cam.txt").write_text("100 0 47.5\n0 100 31.5\n0 0 2\n")
    with pytest.raises(InputError) as e:
        prepare_dataset([folder], tmp_path / "ds", **SIZE, progress=False)
    assert_one_line_error(e, str(folder / "cam.txt"), tmp_path / "ds")


def test_existing_output_needs_overwrite(tmp_path, videos):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="--overwrite"):
        prepare_dataset([videos[1]], out, **SIZE, focal=200.0, progress=False)
    assert (out / "keep.txt").is_file()
    prepare_dataset([videos[1]], out, **SIZE, focal=200.0, overwrite=True, progress=False)
    assert not (out / "keep.txt").exists() and (out / "splits" / "train.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary folders left


def test_real_kitti_frames_keep_every_moving_frame(shared_data, tmp_path):
    drive = shared_data / "kitti_tiny_0023/2011_09_26/2011_09_26_drive_0023_sync/image_02"
    summary = prepare_dataset([drive], tmp_path / "ds", **SIZE, progress=False)
    s = summary["inputs"][0]
    assert s["kept"] == 7 and s["dropped_static"] == 0 and s["intrinsics"].startswith("cam ")
    # 1242 x 375 -> centred 1125 x 375 crop from column 58, then x 192/1125 (= 64/375).
    scale = 192 / 1125
    K = layout.read_cam(layout.sequence_dir(tmp_path / "ds", "image_02_000") / "cam.txt")
    np.testing.assert_allclose(
        K[:2],
        [
            [721.5377 * scale, 0, (609.5593 - 58 + 0.5) * scale - 0.5],
            [0, 721.5377 * scale, 173.354 * scale - 0.5],
        ],
        rtol=1e-6,
    )
    assert [q["frames"] for q in summary["sequences"]] == [4, 3]
