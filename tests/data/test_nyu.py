"""NYUv2 loaders on tiny fixtures in the exact formats: the HDF5 labelled .mat, split files, video folders."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from sa4depth.config import DataConfig, load_config
from sa4depth.data import layout
from sa4depth.data.datamodule import DATASETS, build_dataset
from sa4depth.data.nyu import (
    BORDER,
    NYU_DISTORTION,
    NYU_K,
    NYULabeledDataset,
    NYULabeledFile,
    NYUVideoDataset,
    build_nyu_dataset,
    list_scene_frames,
    read_index_file,
    scene_key,
)
from sa4depth.errors import InputError
from sa4depth.eval.depth_metrics import DepthMetricAccumulator
from sa4depth.eval.protocols import NYU

h5py = pytest.importorskip("h5py")

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
H, W = 480, 640
SCENES = ["bedroom_0001", "office_0002", "kitchen_0001", "office_0002", "study_0003"]
TEST_INDICES = [2, 4]  # 1-based, as testNdxs: both office_0002 images


def labeled_image(i: int) -> np.ndarray:
    """Not symmetric under transposition: red ramps along x, green encodes the index, blue marks the top."""
    image = np.zeros((H, W, 3), dtype=np.uint8)
    image[..., 0] = np.linspace(0, 255, W).astype(np.uint8)[None, :]
    image[..., 1] = 40 * i
    image[: H // 4, :, 2] = 255
    return image


def labeled_depth(i: int) -> np.ndarray:
    rows, cols = np.mgrid[0:H, 0:W].astype(np.float32)
    return (1.0 + i + 0.01 * cols + 0.002 * rows).astype(np.float32)


def write_labeled_mat(path: Path, n: int = 5, scenes=SCENES) -> None:
    """A MATLAB v7.3-like file: 512-byte user block, HDF5 arrays in MATLAB's transposed order, and
    ``scenes`` as a (1, N) array of references to uint16 character arrays."""
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset(
            "images", data=np.stack([labeled_image(i).transpose(2, 1, 0) for i in range(1, n + 1)])
        )
        f.create_dataset("depths", data=np.stack([labeled_depth(i).T for i in range(1, n + 1)]))
        if scenes is not None:
            refs = f.create_group("#refs#")
            names = []
            for i, name in enumerate(scenes[:n]):
                chars = np.array([[ord(c)] for c in name], dtype=np.uint16)
                names.append(refs.create_dataset(f"s{i}", data=chars).ref)
            f.create_dataset("scenes", data=np.array([names], dtype=h5py.ref_dtype))


def video_frame(i: int) -> np.ndarray:
    image = np.zeros((H, W, 3), dtype=np.uint8)
    image[..., 0] = 20 * i
    image[..., 1] = 128
    image[..., 2] = np.linspace(0, 255, W).astype(np.uint8)[None, :]
    return image


@pytest.fixture(scope="module")
def nyu_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nyu")
    write_labeled_mat(root / "nyu_depth_v2_labeled.mat")
    (root / "splits").mkdir()
    (root / "splits" / "nyu_test.txt").write_text("".join(f"{i}\n" for i in TEST_INDICES))
    (root / "splits" / "nyu_train.txt").write_text("1 3 5\n")
    raw = root / "raw"
    # nyu_data style: numbered .jpg frames with .png depth maps beside them (numeric, not lexical, order).
    bedroom = raw / "bedroom_0001a_out"
    bedroom.mkdir(parents=True)
    for i in range(1, 12):
        Image.fromarray(video_frame(i)).save(bedroom / f"{i}.jpg", quality=95)
        cv2.imwrite(str(bedroom / f"{i}.png"), np.full((4, 4), 1000, dtype=np.uint16))
    # PNG frames with BTS-style depth names that must be skipped.
    for i in range(4):
        layout.write_image(raw / "kitchen_0001" / f"rgb_{i:05d}.png", video_frame(i))
        cv2.imwrite(str(raw / "kitchen_0001" / f"sync_depth_{i:05d}.png"), np.zeros((4, 4), dtype=np.uint16))
    # A test scene: left out of the generated training split.
    for i in range(3):
        layout.write_image(raw / "office_0002" / f"{i:04d}.png", video_frame(i))
    return root


# --- labelled set -------------------------------------------------------------------------------------------


def test_labeled_file_undoes_matlab_transposition(nyu_root):
    mat = NYULabeledFile(nyu_root / "nyu_depth_v2_labeled.mat")
    assert len(mat) == 5 and (mat.width, mat.height) == (W, H)
    np.testing.assert_array_equal(mat.image(3), labeled_image(3))
    np.testing.assert_array_equal(mat.depth(3), labeled_depth(3))
    assert mat.image(3).shape == (H, W, 3) and mat.depth(3).dtype == np.float32
    assert [mat.scene(i) for i in (1, 2, 5)] == ["bedroom_0001", "office_0002", "study_0003"]
    with pytest.raises(IndexError):
        mat.image(6)


def test_labeled_test_split_sample(nyu_root):
    ds = NYULabeledDataset(nyu_root, "test", 48, 64)
    assert ds.indices == TEST_INDICES and len(ds) == 2
    sample = ds[1]
    assert sample["images"].shape == (3, 3, 48, 64)
    assert all(torch.equal(sample["images"][k], sample["images"][0]) for k in (1, 2))
    assert (sample["images"][0, 1] * 255).round().unique().tolist() == [160.0]  # green = 40 * index 4
    assert (
        sample["images"][0, 2, :12].min() > 0.99 and sample["images"][0, 2, 12:].max() < 0.01
    )  # top quarter
    # Full-resolution GT, exactly the stored map (the protocol crops it).
    assert sample["depth"].shape == (1, H, W) and torch.equal(
        sample["depth"][0], torch.from_numpy(labeled_depth(4))
    )
    assert sample["has_depth"] is True and sample["has_pose"] is False
    assert sample["sequence"] == "office_0002" and sample["frame"] == 4
    s = 0.1  # 640x480 -> 64x48, no border crop
    expected = [
        [NYU_K[0, 0] * s, 0, (NYU_K[0, 2] + 0.5) * s - 0.5],
        [0, NYU_K[1, 1] * s, (NYU_K[1, 2] + 0.5) * s - 0.5],
        [0, 0, 1],
    ]
    np.testing.assert_allclose(sample["K"].numpy(), expected, rtol=1e-6)


def test_nyu_protocol_on_labeled_gt(nyu_root):
    sample = NYULabeledDataset(nyu_root, "test", 48, 64)[0]
    gt = sample["depth"][0].numpy()
    pred = cv2.resize(gt, (64, 48), interpolation=cv2.INTER_AREA) / 3.0  # right shape, wrong scale
    metrics = DepthMetricAccumulator(NYU).update(pred, sample["depth"][0])
    assert metrics["abs_rel"] < 0.01 and metrics["scale"] == pytest.approx(3.0, rel=0.01)
    assert metrics["n_valid"] == (471 - 45) * (601 - 41)


def test_official_splits_mat_is_preferred(nyu_root, tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    root = tmp_path / "nyu"
    root.mkdir()
    (root / "nyu_depth_v2_labeled.mat").symlink_to(nyu_root / "nyu_depth_v2_labeled.mat")
    (root / "splits").mkdir()
    (root / "splits" / "nyu_test.txt").write_text("1\n")
    scipy_io.savemat(
        root / "splits.mat", {"testNdxs": np.array([[3], [5]]), "trainNdxs": np.array([[1], [2]])}
    )
    assert NYULabeledDataset(root, "test", 32, 32).indices == [3, 5]
    assert build_nyu_dataset(root, "val", 32, 32).indices == [1, 2]
    scipy_io.savemat(root / "splits.mat", {"testNdxs": np.array([[0], [5]])})
    with pytest.raises(InputError, match=r"splits\.mat: index 0 outside 1\.\.5"):
        NYULabeledDataset(root, "test", 32, 32)


def test_labeled_split_names_and_index_files(nyu_root, tmp_path):
    assert NYULabeledDataset(nyu_root, "labeled_all", 32, 32).indices == [1, 2, 3, 4, 5]
    assert build_nyu_dataset(nyu_root, "val", 32, 32).indices == [1, 3, 5]
    path = tmp_path / "mine.txt"
    path.write_text("5 1\n")
    assert NYULabeledDataset(nyu_root / "nyu_depth_v2_labeled.mat", str(path), 32, 32).indices == [5, 1]
    path.write_text("1\nfive\n")
    with pytest.raises(InputError, match=r"mine\.txt: line 2: expected 1-based image indices, got 'five'"):
        read_index_file(path)
    path.write_text("1 6\n")
    with pytest.raises(InputError, match=r"mine\.txt: index 6 outside 1\.\.5"):
        NYULabeledDataset(nyu_root, str(path), 32, 32)


def test_labeled_bad_inputs(nyu_root, tmp_path):
    with pytest.raises(InputError, match="NYUv2 labelled set not found"):
        NYULabeledDataset(tmp_path, "test", 32, 32)
    (tmp_path / "nyu_depth_v2_labeled.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    with pytest.raises(InputError, match=r"nyu_depth_v2_labeled\.mat: not an HDF5"):
        NYULabeledDataset(tmp_path, "test", 32, 32)
    with h5py.File(tmp_path / "nyu_depth_v2_labeled.mat", "w") as f:
        f.create_dataset("images", data=np.zeros((2, 3, 8, 6), dtype=np.uint8))
    with pytest.raises(InputError, match="no 'depths' array"):
        NYULabeledDataset(tmp_path, "test", 32, 32)
    mat_only = tmp_path / "mat_only"
    mat_only.mkdir()
    (mat_only / "nyu_depth_v2_labeled.mat").symlink_to(nyu_root / "nyu_depth_v2_labeled.mat")
    with pytest.raises(InputError, match=r"no official split: neither .*splits\.mat nor .*nyu_test\.txt"):
        NYULabeledDataset(mat_only, "test", 32, 32)
    with pytest.raises(InputError, match="train on the videos"):
        NYULabeledDataset(nyu_root, "test", 32, 32, train=True)


# --- videos -------------------------------------------------------------------------------------------------


def test_frame_listing_rules(nyu_root):
    bedroom = list_scene_frames(nyu_root / "raw" / "bedroom_0001a_out")
    assert [p.name for p in bedroom] == [f"{i}.jpg" for i in range(1, 12)]  # 1, 2, ..., 10, 11
    kitchen = list_scene_frames(nyu_root / "raw" / "kitchen_0001")
    assert [p.name for p in kitchen] == [f"rgb_{i:05d}.png" for i in range(4)]
    assert scene_key("bedroom_0001a_out") == "bedroom_0001" and scene_key("office_0002") == "office_0002"


def test_generated_training_split_leaves_out_test_scenes(nyu_root):
    ds = NYUVideoDataset(nyu_root, "train", 112, 152)
    assert sorted({scene for scene, _ in ds.items}) == ["bedroom_0001a_out", "kitchen_0001"]
    assert len(ds) == (11 - 2) + (4 - 2)
    assert [i for scene, i in ds.items if scene == "kitchen_0001"] == [1, 2]


def test_video_sample_neighbours_and_K_after_border_crop(nyu_root):
    ds = NYUVideoDataset(nyu_root, "train", 112, 152)  # 608x448 -> 152x112 is a factor 1/4
    sample = ds[8]  # bedroom frame 10.jpg (position 9), sources 9.jpg and 11.jpg
    assert sample["images"].shape == (3, 3, 112, 152) and sample["depth"].shape == (1, 112, 152)
    red = (sample["images"][:, 0].mean(dim=(1, 2)) * 255).round().tolist()
    assert red == pytest.approx([200.0, 180.0, 220.0], abs=2)
    s = 0.25
    expected = [
        [NYU_K[0, 0] * s, 0, (NYU_K[0, 2] - BORDER + 0.5) * s - 0.5],
        [0, NYU_K[1, 1] * s, (NYU_K[1, 2] - BORDER + 0.5) * s - 0.5],
        [0, 0, 1],
    ]
    np.testing.assert_allclose(sample["K"].numpy(), expected, rtol=1e-6)
    assert sample["sequence"] == "bedroom_0001a_out" and sample["frame"] == 9
    assert sample["has_depth"] is False and sample["has_pose"] is False
    # Blue ramps over the full width; the first output pixel averages raw columns 16..19 (0.6 without crop).
    assert sample["images"][0, 2, 0, 0].item() * 255 == pytest.approx(17.5 * 255 / (W - 1), abs=1.5)


def test_video_split_file_and_errors(nyu_root, tmp_path):
    split = tmp_path / "split.txt"
    split.write_text("# scene frame-stem\nkitchen_0001 rgb_00002\nbedroom_0001a_out 5\n")
    ds = NYUVideoDataset(nyu_root, str(split), 32, 32)
    assert ds.items == [("kitchen_0001", 2), ("bedroom_0001a_out", 4)]
    for text, problem in (
        ("kitchen_0001\n", "line 1: expected '<scene> <frame file stem>'"),
        ("garage_0009 1\n", "line 1: scene folder .*garage_0009 not found"),
        ("kitchen_0001 rgb_00009\n", "line 1: frame 'rgb_00009' not found"),
        (
            "kitchen_0001 rgb_00000\n",
            r"line 1 \(kitchen_0001 rgb_00000\): source frame at offset -1 does not exist",
        ),
    ):
        split.write_text(text)
        with pytest.raises(InputError, match=r"split\.txt: " + problem):
            NYUVideoDataset(nyu_root, str(split), 32, 32)
    with pytest.raises(InputError, match="NYUv2 root not found"):
        NYUVideoDataset(tmp_path / "nowhere", "train", 32, 32)
    with pytest.raises(InputError, match="split file not found"):
        NYUVideoDataset(nyu_root, "nosuch", 32, 32)


def test_frame_size_needs_cam_txt(tmp_path):
    scene = tmp_path / "raw" / "small_0001"
    for i in range(3):
        layout.write_image(scene / f"{i}.png", np.full((64, 80, 3), 50 * i, dtype=np.uint8))
    ds = NYUVideoDataset(tmp_path, "train", 32, 40)
    with pytest.raises(InputError, match=r"1\.png: frame is 80x64; NYU intrinsics are for 640x480"):
        ds[0]
    K = np.array([[70.0, 0, 39.5], [0, 70.0, 31.5], [0, 0, 1]])
    layout.write_cam(scene / "cam.txt", K)
    sample = NYUVideoDataset(tmp_path, "train", 32, 40)[0]  # prepared frames: no border crop, K from cam.txt
    np.testing.assert_allclose(sample["K"].numpy(), [[35.0, 0, 19.5], [0, 35.0, 15.5], [0, 0, 1]], rtol=1e-6)


def _distort(u: float, v: float) -> tuple[float, float]:
    """Where the undistorted pixel (u, v) lies in a raw Kinect frame (OpenCV's distortion model)."""
    k1, k2, p1, p2, k3 = NYU_DISTORTION
    x, y = (u - NYU_K[0, 2]) / NYU_K[0, 0], (v - NYU_K[1, 2]) / NYU_K[1, 1]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return xd * NYU_K[0, 0] + NYU_K[0, 2], yd * NYU_K[1, 1] + NYU_K[1, 2]


def _centroid(channel: torch.Tensor) -> tuple[float, float]:
    weights = channel.double()
    rows, cols = torch.meshgrid(
        torch.arange(weights.shape[0], dtype=torch.float64),
        torch.arange(weights.shape[1], dtype=torch.float64),
        indexing="ij",
    )
    total = weights.sum()
    return float((weights * cols).sum() / total), float((weights * rows).sum() / total)


def test_raw_ppm_frames_are_undistorted(tmp_path):
    """A blob drawn where the lens puts the point (500, 400) lands at (500, 400) - border after loading."""
    u_d, v_d = _distort(500.0, 400.0)
    assert np.hypot(u_d - 500.0, v_d - 400.0) > 3  # the test can tell undistorted from raw
    rows, cols = np.mgrid[0:H, 0:W]
    blob = 255 * np.exp(-((cols - u_d) ** 2 + (rows - v_d) ** 2) / (2 * 1.5**2))
    image = np.zeros((H, W, 3), dtype=np.uint8)
    image[..., 0] = np.round(blob).astype(np.uint8)
    for name, suffix in (("ppm_0001", ".ppm"), ("png_0001", ".png")):
        for i in range(3):
            path = tmp_path / "raw" / name / f"r-1294439283.{i:06d}-{2368218444 + i}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)
    ds = NYUVideoDataset(tmp_path, "train", H - 2 * BORDER, W - 2 * BORDER)  # crop only, no resize
    assert sorted(ds.items) == [("png_0001", 1), ("ppm_0001", 1)]
    by_scene = {scene: ds[k] for k, (scene, _) in enumerate(ds.items)}
    u, v = _centroid(by_scene["ppm_0001"]["images"][0, 0])
    assert (u, v) == pytest.approx((500.0 - BORDER, 400.0 - BORDER), abs=0.3)
    u, v = _centroid(by_scene["png_0001"]["images"][0, 0])  # processed frames are used as they are
    assert (u, v) == pytest.approx((u_d - BORDER, v_d - BORDER), abs=0.3)


def test_video_training_augmentation(nyu_root):
    ds = NYUVideoDataset(nyu_root, "train", 32, 32, train=True, seed=1)
    a, b = ds[0], ds[0]
    assert torch.equal(a["images_aug"], b["images_aug"]) and a["images_aug"].shape == (3, 3, 32, 32)


# --- registry and configs -----------------------------------------------------------------------------------


def test_registered_names_and_configs(nyu_root):
    cfg = DataConfig(dataset="nyu", root=str(nyu_root), height=64, width=96)
    assert isinstance(build_dataset(cfg, "train", train=True), NYUVideoDataset)
    assert isinstance(build_dataset(cfg, "test", train=False), NYULabeledDataset)
    assert DATASETS["nyu_labeled"] is NYULabeledDataset and DATASETS["nyu_video"] is NYUVideoDataset
    for name, refine in (("nyu", False), ("nyu_sa4depth", True)):
        loaded = load_config(CONFIGS / f"{name}.yaml")
        assert (loaded.data.dataset, loaded.data.height, loaded.data.width) == ("nyu", 288, 384)
        assert loaded.eval_protocol == "nyu" and loaded.refine.enabled is refine
        assert loaded.model.max_depth == 10.0
