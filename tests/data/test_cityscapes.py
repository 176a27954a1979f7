"""Cityscapes loader on a tiny tree in the release's file formats: snippets, bonnet crop, K, GT depth."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sa4depth.config import DataConfig, load_config
from sa4depth.data import layout
from sa4depth.data.cityscapes import (
    CityscapesDataset,
    cityscapes_gt_depth,
    read_camera_json,
    read_cityscapes_split,
)
from sa4depth.data.datamodule import build_dataset, collate
from sa4depth.errors import InputError
from sa4depth.eval.depth_metrics import DepthMetricAccumulator
from sa4depth.eval.protocols import CITYSCAPES

RAW_W, RAW_H = 64, 32  # a 1/32 scale 2048x1024 frame; the bonnet crop keeps rows 0..23
OUT_H, OUT_W = 12, 32  # half of the 64x24 crop in both axes, like 512x192 is a quarter of 2048x768
FX, FY, U0, V0, BASELINE = 60.0, 58.0, 31.3, 15.2, 0.209313
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SKY, BONNET = 200, 30  # green value above / in the bottom quarter of every synthetic frame


def frame_image(frame: int) -> np.ndarray:
    """Red encodes the frame number, green marks the bonnet rows, blue a horizontal ramp."""
    image = np.zeros((RAW_H, RAW_W, 3), dtype=np.uint8)
    image[..., 0] = 10 * frame
    image[..., 1] = SKY
    image[RAW_H * 3 // 4 :, :, 1] = BONNET
    image[..., 2] = np.linspace(0, 255, RAW_W).astype(np.uint8)
    return image


def write_camera(path, fx=FX):
    path.parent.mkdir(parents=True, exist_ok=True)
    camera = {
        "extrinsic": {"baseline": BASELINE, "pitch": 0.038, "roll": 0.0, "x": 1.7, "y": 0.1, "yaw": 0.0},
        "intrinsic": {"fx": fx, "fy": FY, "u0": U0, "v0": V0},
    }
    path.write_text(json.dumps(camera))


def depth_to_disparity_png(depth: np.ndarray, fx=FX) -> np.ndarray:
    """The inverse of the GT conversion: p = 256 * baseline * fx / depth + 1 (0 where depth is 0)."""
    p = np.zeros(depth.shape, dtype=np.uint16)
    valid = depth > 0
    p[valid] = np.round(256.0 * BASELINE * fx / depth[valid] + 1.0).astype(np.uint16)
    return p


def gt_depth_map() -> np.ndarray:
    """Depth growing with the row (5 m at the top, 20 m at the bottom), unknown in column 0."""
    rows = np.linspace(5.0, 20.0, RAW_H, dtype=np.float32)[:, None]
    depth = np.repeat(rows, RAW_W, axis=1)
    depth[:, 0] = 0.0
    return depth


def write_frames(root, split, city, seq, frames, folder="leftImg8bit_sequence"):
    for f in frames:
        path = root / folder / split / city / f"{city}_{seq}_{f:06d}_leftImg8bit.png"
        layout.write_image(path, frame_image(f))


@pytest.fixture
def cs_root(tmp_path):
    root = tmp_path / "cityscapes"
    # train: aachen snippet 000000 frames 0..5 annotated at 3, snippet 000001 frames 10..12 annotated at 11.
    write_frames(root, "train", "aachen", "000000", range(6))
    write_frames(root, "train", "aachen", "000001", range(10, 13))
    write_camera(root / "camera/train/aachen/aachen_000000_000003_camera.json")
    write_camera(root / "camera/train/aachen/aachen_000001_000011_camera.json", fx=2 * FX)
    # test: berlin snippet frames 17..21 annotated at 19; bonn has its annotated frame only (leftImg8bit/).
    write_frames(root, "test", "berlin", "000000", range(17, 22))
    write_frames(root, "test", "bonn", "000004", [19], folder="leftImg8bit")
    for city, seq in (("berlin", "000000"), ("bonn", "000004")):
        stem = f"{city}_{seq}_000019"
        write_camera(root / f"camera/test/{city}/{stem}_camera.json")
        path = root / f"disparity/test/{city}/{stem}_disparity.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), depth_to_disparity_png(gt_depth_map()))
    return root


# --- formats ------------------------------------------------------------------------------------------------


def test_gt_depth_from_disparity_png_known_values(tmp_path):
    # p = 0: no measurement; p = 1: disparity 0; p = 257: disparity 1; p = 513: 2; p = 65535: 255.99...
    raw = np.array([[0, 1, 257, 513, 65535]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), raw)
    write_camera(tmp_path / "c.json")
    depth = cityscapes_gt_depth(tmp_path / "d.png", tmp_path / "c.json")
    bf = BASELINE * FX
    assert depth.dtype == np.float32 and depth.shape == (1, 5)
    np.testing.assert_allclose(depth[0], [0.0, 0.0, bf, bf / 2, bf / (65534 / 256)], rtol=1e-6)


def test_camera_json_and_bad_inputs(tmp_path):
    write_camera(tmp_path / "c.json")
    K, baseline = read_camera_json(tmp_path / "c.json")
    np.testing.assert_allclose(K, [[FX, 0, U0], [0, FY, V0], [0, 0, 1]])
    assert baseline == BASELINE
    (tmp_path / "bad.json").write_text('{"intrinsic": {"fx": 1}')
    with pytest.raises(InputError, match="bad.json: invalid JSON"):
        read_camera_json(tmp_path / "bad.json")
    (tmp_path / "nokey.json").write_text('{"intrinsic": {"fx": 1, "fy": 1, "u0": 0}, "extrinsic": {}}')
    with pytest.raises(InputError, match="nokey.json: camera file lacks"):
        read_camera_json(tmp_path / "nokey.json")
    cv2.imwrite(str(tmp_path / "d8.png"), np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(InputError, match="d8.png: not a 16-bit"):
        cityscapes_gt_depth(tmp_path / "d8.png", tmp_path / "c.json")
    with pytest.raises(InputError, match="missing.png: disparity PNG not found"):
        cityscapes_gt_depth(tmp_path / "missing.png", tmp_path / "c.json")


def test_split_file_formats_and_bad_line(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("# comment\naachen 000000 3\n\nbonn bonn_000004_000019\n")
    assert read_cityscapes_split(path) == [("aachen", "000000", 3, 2), ("bonn", "000004", 19, 4)]
    path.write_text("aachen 000000 3\naachen_000000_000003\n")
    with pytest.raises(InputError, match=r"s\.txt: line 2: expected '<city> <seq> <frame>'"):
        read_cityscapes_split(path)
    path.write_text("aachen bonn_000004_000019\n")  # the city in the name must match
    with pytest.raises(InputError, match="line 1"):
        read_cityscapes_split(path)


# --- training snippets --------------------------------------------------------------------------------------


def test_generated_training_split_keeps_frames_with_both_neighbours(cs_root):
    ds = CityscapesDataset(cs_root, "train", OUT_H, OUT_W, offsets=(-2, 2))
    assert [(it.city, it.seq, it.frame) for it in ds.items] == [("aachen", "000000", f) for f in (2, 3)]
    ds = CityscapesDataset(cs_root, "train", OUT_H, OUT_W, offsets=(-1, 1))
    assert [(it.seq, it.frame) for it in ds.items] == [("000000", f) for f in (1, 2, 3, 4)] + [("000001", 11)]


def test_sample_fields_neighbours_bonnet_crop_and_K(cs_root):
    ds = CityscapesDataset(cs_root, "train", OUT_H, OUT_W, offsets=(-2, 2))
    sample = ds[0]  # target aachen_000000_000002, sources 0 and 4
    assert sample["images"].shape == (3, 3, OUT_H, OUT_W) and sample["images"].dtype == torch.float32
    assert torch.equal(sample["images_aug"], sample["images"])
    red = (sample["images"][:, 0].mean(dim=(1, 2)) * 255).round().tolist()
    assert red == [20.0, 0.0, 40.0]  # frame numbers 2, 0, 4 in the order (target, -2, +2)
    green = sample["images"][:, 1] * 255
    assert torch.allclose(green, torch.full_like(green, SKY), atol=0.5)  # no bonnet row left
    # K: crop (0, 0, 64, 24) keeps the principal point; resizing by 0.5 maps c to (c + 0.5) * 0.5 - 0.5.
    s = OUT_W / RAW_W
    expected = [[FX * s, 0, (U0 + 0.5) * s - 0.5], [0, FY * s, (V0 + 0.5) * s - 0.5], [0, 0, 1]]
    np.testing.assert_allclose(sample["K"].numpy(), expected, rtol=1e-6)
    assert sample["sequence"] == "aachen_000000" and sample["frame"] == 2
    # Evaluation mode without a disparity file: unknown depth at the full frame size (the protocol's GT size).
    assert sample["has_depth"] is False and sample["depth"].shape == (1, RAW_H, RAW_W)
    assert not sample["depth"].any()
    assert sample["has_pose"] is False and torch.equal(sample["T_src_tgt"], torch.eye(4).expand(2, 4, 4))
    # Every frame of a snippet uses the camera of its annotated frame (snippet 000001 has fx = 2 FX).
    other = CityscapesDataset(cs_root, "train", OUT_H, OUT_W, offsets=(-1, 1))[4]
    assert other["sequence"] == "aachen_000001" and other["K"][0, 0].item() == pytest.approx(2 * FX * s)


def test_training_augmentation_is_seeded_and_flips_K(cs_root):
    ds = CityscapesDataset(cs_root, "train", OUT_H, OUT_W, offsets=(-2, 2), train=True, seed=3)
    samples = [ds[0] for _ in range(2)]
    assert samples[0]["depth"].shape == (1, OUT_H, OUT_W) and samples[0]["has_depth"] is False
    assert torch.equal(samples[0]["images_aug"], samples[1]["images_aug"])
    flipped = []
    for epoch in range(8):
        ds.set_epoch(epoch)
        s = ds[0]
        flipped.append(bool(s["images"][0, 2, 0, 0] > s["images"][0, 2, 0, -1]))  # blue ramp reversed
        if flipped[-1]:
            cx = s["K"][0, 2].item()
            assert cx == pytest.approx(OUT_W - 1 - ((U0 + 0.5) * 0.5 - 0.5), rel=1e-6)
    assert any(flipped) and not all(flipped)


# --- evaluation ---------------------------------------------------------------------------------------------


def test_test_split_yields_full_resolution_gt(cs_root):
    ds = CityscapesDataset(cs_root, "test", OUT_H, OUT_W, offsets=(-2, 2))
    assert [(it.city, it.frame) for it in ds.items] == [("berlin", 19), ("bonn", 19)]
    sample = ds[0]
    assert sample["has_depth"] is True and sample["depth"].shape == (1, RAW_H, RAW_W)
    assert sample["depth"].dtype == torch.float32
    stored = depth_to_disparity_png(gt_depth_map()).astype(np.float64)
    valid = stored > 0
    got = sample["depth"][0].numpy()
    assert (got[~valid] == 0).all()
    np.testing.assert_allclose(got[valid], BASELINE * FX / ((stored[valid] - 1) / 256), rtol=1e-6)
    np.testing.assert_allclose(got[valid], gt_depth_map()[valid], rtol=5e-3)  # 1/256 px quantisation
    red = (sample["images"][:, 0].mean(dim=(1, 2)) * 255).round().tolist()
    assert red == [190.0, 170.0, 210.0]
    # bonn has only its annotated frame: in evaluation the missing sources repeat the target.
    bonn = ds[1]
    assert all(torch.equal(bonn["images"][i], bonn["images"][0]) for i in (1, 2))
    batch = collate([ds[0], ds[1]])
    assert batch["depth"].shape == (2, 1, RAW_H, RAW_W) and batch["has_depth"].all()


def test_cityscapes_protocol_on_the_dataset_gt(cs_root):
    """A prediction of the bonnet-cropped frame at network size scores ~0 against the full-size GT."""
    sample = CityscapesDataset(cs_root, "test", OUT_H, OUT_W)[0]
    truth = gt_depth_map()
    truth[:, 0] = truth[:, 1]
    crop_rows = RAW_H * 3 // 4
    aligned = cv2.resize(truth[:crop_rows], (OUT_W, OUT_H), interpolation=cv2.INTER_LINEAR)
    shifted = cv2.resize(truth, (OUT_W, OUT_H), interpolation=cv2.INTER_LINEAR)  # forgot the crop
    acc = DepthMetricAccumulator(CITYSCAPES)
    good = acc.update(2.0 * aligned, sample["depth"][0])
    bad = acc.update(2.0 * shifted, sample["depth"][0])
    assert good["abs_rel"] < 0.01 and good["scale"] == pytest.approx(0.5, rel=0.01)
    assert bad["abs_rel"] > 5 * good["abs_rel"]


# --- errors, registry, configs ------------------------------------------------------------------------------


def test_bad_inputs_name_the_file_and_problem(cs_root, tmp_path):
    with pytest.raises(InputError, match="Cityscapes root not found"):
        CityscapesDataset(tmp_path / "nowhere", "train", OUT_H, OUT_W)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a Cityscapes root"):
        CityscapesDataset(tmp_path / "empty", "train", OUT_H, OUT_W)
    with pytest.raises(InputError, match="split file not found"):
        CityscapesDataset(cs_root, "nosuchsplit", OUT_H, OUT_W)

    split = tmp_path / "split.txt"
    split.write_text("aachen 000000 1\n")  # source 1 - 2 = -1 is missing
    with pytest.raises(InputError, match=r"split\.txt: line 1 \(aachen_000000_000001\): .*\(offset -2\)"):
        CityscapesDataset(cs_root, str(split), OUT_H, OUT_W, offsets=(-2, 2), train=True)
    split.write_text("aachen 000000 4\n")
    with pytest.raises(InputError, match=r"line 1 \(aachen_000000_000004\): source .*000006_leftImg8bit"):
        CityscapesDataset(cs_root, str(split), OUT_H, OUT_W, offsets=(-2, 2), train=True)
    split.write_text("aachen 000000 9\n")
    with pytest.raises(InputError, match="target image aachen_000000_000009_leftImg8bit.png not found"):
        CityscapesDataset(cs_root, str(split), OUT_H, OUT_W)
    split.write_text("zurich 000000 3\n")
    with pytest.raises(InputError, match="city 'zurich' not found"):
        CityscapesDataset(cs_root, str(split), OUT_H, OUT_W)

    (cs_root / "camera/train/aachen/aachen_000001_000011_camera.json").unlink()
    split.write_text("aachen 000001 11\n")
    with pytest.raises(InputError, match=r"aachen_000001_000011_camera\.json: camera file not found"):
        CityscapesDataset(cs_root, str(split), OUT_H, OUT_W)


def test_registered_and_built_from_config(cs_root):
    cfg = DataConfig(dataset="cityscapes", root=str(cs_root), height=32, width=64, offsets=[-2, 2])
    ds = build_dataset(cfg, "test", train=False)
    assert isinstance(ds, CityscapesDataset) and ds[0]["images"].shape == (3, 3, 32, 64)
    for name, refine in (("cityscapes", False), ("cityscapes_sa4depth", True)):
        cfg = load_config(CONFIGS / f"{name}.yaml")
        assert (cfg.data.dataset, cfg.data.height, cfg.data.width) == ("cityscapes", 192, 512)
        assert cfg.eval_protocol == "cityscapes" and list(cfg.data.offsets) == [-2, 2]
        assert cfg.refine.enabled is refine
