"""NYU Depth v2: training snippets from the raw indoor videos, and the 654 labelled test images (evaluation).

Video frames use the fixed Kinect colour intrinsics and lose a 16-pixel border; the labelled set is HDF5.

Layout (``root``)::

    root/nyu_depth_v2_labeled.mat     labelled set, MATLAB v7.3 (HDF5): images, depths, scenes
    root/splits.mat                   official split: testNdxs (654), trainNdxs (795), 1-based
    root/splits/nyu_test.txt          alternative to splits.mat: 1-based indices (nyu_train.txt likewise)
    root/<video dir>/<scene>/<frames>  training video, one folder per scene; <video dir> is the first of
                                       raw/, nyu2_train/, sync/, training/ that exists, else root itself
    root/splits/<name>.txt            optional training split: lines "<scene> <frame file stem>"

Frames of a scene are its ``.jpg``/``.jpeg`` files if it has any (``.png`` files beside them are depth maps,
as in the ``nyu_data`` and BTS ``sync`` packs), else its ``.ppm`` files (raw Kinect dumps ``r-*.ppm``), else
its ``.png`` files; names starting with ``depth`` or ``sync_depth`` are never frames. They are ordered by the
integers in their names, and "consecutive" means adjacent in that order.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from sa4depth.data import layout
from sa4depth.data.base import SnippetDataset
from sa4depth.data.datamodule import register_dataset
from sa4depth.data.transforms import resize_with_camera, to_tensor_images
from sa4depth.errors import InputError
from sa4depth.geometry import Camera

logger = logging.getLogger(__name__)

NYU_SIZE = (640, 480)
"""(width, height) of the Kinect colour frames and of the labelled images."""

NYU_K = np.array(
    [
        [5.1885790117450188e02, 0.0, 3.2558244941119034e02],
        [0.0, 5.1946961112127485e02, 2.5373616633400465e02],
        [0.0, 0.0, 1.0],
    ]
)
"""Colour intrinsics at 640x480 from the NYU toolbox's ``camera_params.m`` (fx, fy = 518.86, 519.47;
cx, cy = 325.58, 253.74)."""

NYU_DISTORTION = np.array(
    [
        2.0796615318809061e-01,
        -5.8613825163911781e-01,
        7.2231363135888329e-04,
        1.0479627195765181e-03,
        4.9856986684705107e-01,
    ]
)
"""Colour lens distortion from the same file, in OpenCV's order (k1, k2, p1, p2, k3). Only raw ``.ppm`` dumps
need it: the toolbox's processed frames and the labelled images are already undistorted."""

BORDER = 16
"""Pixels cut from each side of a 640x480 training frame (the undistorted frames' blank border), as P2Net
does: the crop box is ``(16, 16, 608, 448)``."""

LABELED_MAT = "nyu_depth_v2_labeled.mat"
VIDEO_DIRS = ("raw", "nyu2_train", "sync", "training")
LABELED_SPLITS = {
    "test": "test",
    "val": "train",
    "labeled_test": "test",
    "labeled_train": "train",
    "labeled_all": "all",
}
"""Split names that `build_nyu_dataset` serves from the labelled set (``val`` = the 795 labelled training
images, which come from training scenes); any other name is a video split."""

_FRAME_SUFFIXES = (".jpg", ".jpeg", ".ppm", ".png")
_DIGITS = re.compile(r"\d+")


# --- labelled set -------------------------------------------------------------------------------------------


def _import_h5py(path: Path):
    try:
        import h5py
    except ImportError:
        raise InputError(path, "reading the NYUv2 labelled .mat needs h5py (pip install h5py)") from None
    return h5py


class NYULabeledFile:
    """Read access to ``nyu_depth_v2_labeled.mat`` by 1-based index, as MATLAB and ``splits.mat`` count.

    The file is MATLAB v7.3, i.e. HDF5, whose arrays appear transposed: ``images`` is ``(N, 3, W, H)`` and
    ``depths`` ``(N, W, H)`` for MATLAB's ``H x W x 3 x N`` and ``H x W x N``. The HDF5 handle is opened
    lazily per process, so the object can be sent to data-loader workers.

    Raises:
        InputError: missing file, h5py not installed, not HDF5, or ``images`` / ``depths`` missing or of
            inconsistent shapes.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(self.path, f"NYUv2 labelled set not found (download {LABELED_MAT})")
        self._handle, self._pid, self._scene_refs = None, None, None
        f = self._file()
        for key in ("images", "depths"):
            if key not in f:
                raise InputError(self.path, f"no '{key}' array (is this nyu_depth_v2_labeled.mat?)")
        images, depths = f["images"], f["depths"]
        if images.ndim != 4 or images.shape[1] != 3 or depths.shape != (images.shape[0], *images.shape[2:]):
            raise InputError(
                self.path,
                f"'images' {images.shape} and 'depths' {depths.shape} are not (N, 3, W, H), (N, W, H)",
            )
        self.count = int(images.shape[0])
        self.width, self.height = int(images.shape[2]), int(images.shape[3])
        self._has_scenes = "scenes" in f and f["scenes"].size == self.count

    def _file(self):
        if self._handle is None or self._pid != os.getpid():
            h5py = _import_h5py(self.path)
            try:
                self._handle = h5py.File(self.path, "r")
            except OSError as e:
                raise InputError(self.path, f"not an HDF5 (MATLAB v7.3) file ({e})") from None
            self._pid = os.getpid()
        return self._handle

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handle": None, "_pid": None, "_scene_refs": None}

    def __len__(self) -> int:
        return self.count

    def _check(self, index: int) -> int:
        if not 1 <= index <= self.count:
            raise IndexError(f"index {index} outside 1..{self.count}")
        return index - 1

    def image(self, index: int) -> np.ndarray:
        """RGB image ``index`` (1-based) as ``H x W x 3`` uint8."""
        data = self._file()["images"][self._check(index)]
        return np.ascontiguousarray(np.asarray(data).transpose(2, 1, 0)).astype(np.uint8, copy=False)

    def depth(self, index: int) -> np.ndarray:
        """Depth map ``index`` (1-based, the in-filled ``depths``) as ``H x W`` float32 metres."""
        data = np.asarray(self._file()["depths"][self._check(index)], dtype=np.float32).T
        return np.nan_to_num(np.ascontiguousarray(data), nan=0.0, posinf=0.0, neginf=0.0)

    def scene(self, index: int) -> str | None:
        """Scene name of image ``index`` (e.g. ``"kitchen_0028"``), None if the file has no ``scenes``."""
        if not self._has_scenes:
            return None
        f = self._file()
        if self._scene_refs is None:
            self._scene_refs = f["scenes"][()].ravel()
        chars = np.asarray(f[self._scene_refs[self._check(index)]][()]).ravel()
        return "".join(chr(c) for c in chars)


def read_index_file(path: str | os.PathLike, count: int | None = None) -> list[int]:
    r"""Read 1-based image indices (whitespace-separated integers; ``#`` starts a comment).

    Raises:
        InputError: missing file, a non-integer, an index outside ``1..count``, a repeat, or no index.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "nyu_test.txt"
        >>> _ = p.write_text("1 2\n# comment\n7\n")
        >>> read_index_file(p, count=10)
        [1, 2, 7]
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "index file not found")
    indices = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        for token in line.split("#", 1)[0].split():
            if not token.isdigit():
                raise InputError(path, f"line {line_no}: expected 1-based image indices, got {token!r}")
            indices.append(int(token))
    return _checked_indices(path, indices, count)


def _checked_indices(path: Path, indices: list[int], count: int | None) -> list[int]:
    if not indices:
        raise InputError(path, "lists no image index")
    bad = [i for i in indices if i < 1 or (count is not None and i > count)]
    if bad:
        raise InputError(path, f"index {bad[0]} outside 1..{count if count is not None else 'N'} (1-based)")
    if len(set(indices)) != len(indices):
        raise InputError(path, "an image index is listed twice")
    return indices


def read_official_split(
    root: str | os.PathLike, which: str, count: int | None = None
) -> tuple[list[int], Path]:
    """1-based indices of the official ``which`` ("test": 654, "train": 795) labelled images.

    Read from ``root/splits.mat`` (keys ``testNdxs`` / ``trainNdxs``; needs scipy) or else from
    ``root/splits/nyu_<which>.txt`` (`read_index_file`). Returns the indices and the file they came from.
    """
    root = Path(root)
    mat, text = root / "splits.mat", root / "splits" / f"nyu_{which}.txt"
    if mat.is_file():
        try:
            from scipy.io import loadmat
        except ImportError:
            loadmat = None
            logger.warning("%s: scipy is not installed, looking for %s instead", mat, text)
        if loadmat is not None:
            try:
                values = loadmat(str(mat))[f"{which}Ndxs"]
            except (ValueError, OSError, NotImplementedError) as e:
                raise InputError(mat, f"cannot read ({e})") from None
            except KeyError:
                raise InputError(mat, f"no '{which}Ndxs' array (is this the NYUv2 splits.mat?)") from None
            return _checked_indices(mat, [int(v) for v in np.ravel(values)], count), mat
    if text.is_file():
        return read_index_file(text, count), text
    raise InputError(root, f"no official split: neither {mat} nor {text} found")


class NYULabeledDataset(Dataset):
    """Images of the NYUv2 labelled set with their depth: the standard 654-image test set, for evaluation.

    Each image is resized whole (no border crop) to ``height x width``: the `sa4depth.eval.protocols.NYU`
    protocol compares the prediction, resized back, with the **full** 480x640 map, which is what ``depth``
    holds (``(1, 480, 640)``, metres, 0 = unknown); its border crop (rows 45:471, cols 41:601) removes the
    blank border. The labelled images have no neighbouring frames, so every source in ``images`` repeats the
    target and ``has_pose`` is False.

    Args:
        root: folder with ``nyu_depth_v2_labeled.mat`` (and ``splits.mat`` or ``splits/nyu_*.txt``), or the
            ``.mat`` itself (the split files are then looked for beside it).
        split: ``"test"`` / ``"labeled_test"`` (official test indices), ``"train"`` / ``"val"`` /
            ``"labeled_train"`` (the 795 official training indices), ``"all"`` / ``"labeled_all"`` (1449),
            or a file of 1-based indices (path, or ``root/splits/<name>.txt``).
        height, width: network resolution.
        offsets: only their number matters (sources repeat the target).
        train: must be False: the labelled set cannot train a self-supervised model.
        seed: unused (no augmentation).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        height: int,
        width: int,
        offsets: tuple[int, ...] = (-1, 1),
        train: bool = False,
        seed: int = 0,
    ):
        root = Path(root)
        mat_path = root if root.suffix == ".mat" else root / LABELED_MAT
        self.root = mat_path.parent
        if train:
            raise InputError(
                mat_path,
                "the labelled images have no neighbouring frames; train on the videos (dataset: nyu)",
            )
        self.mat = NYULabeledFile(mat_path)
        self.height, self.width, self.offsets = height, width, tuple(offsets)
        which = LABELED_SPLITS.get(split, split)
        if which == "all":
            self.indices, self.split_source = list(range(1, len(self.mat) + 1)), mat_path
        elif which in ("test", "train"):
            self.indices, self.split_source = read_official_split(self.root, which, len(self.mat))
        else:
            path = next(
                (p for p in (Path(split), self.root / "splits" / f"{split}.txt") if p.is_file()), None
            )
            if path is None:
                raise InputError(split, "not a labelled split name (test, train, val, all) nor an index file")
            self.indices, self.split_source = read_index_file(path, len(self.mat)), path
        camera = Camera.from_K(torch.as_tensor(NYU_K), *NYU_SIZE).resize_to(self.mat.width, self.mat.height)
        self.K_raw = camera.K().numpy()

    def __len__(self) -> int:
        return len(self.indices)

    def set_epoch(self, epoch: int) -> None:
        """No-op (nothing random)."""

    def __getitem__(self, idx: int) -> dict:
        index = self.indices[idx]
        image, K = resize_with_camera(self.mat.image(index), self.K_raw, self.height, self.width)
        images = to_tensor_images([image]).expand(1 + len(self.offsets), -1, -1, -1).clone()
        return {
            "images": images,
            "images_aug": images,
            "K": torch.as_tensor(K, dtype=torch.float32),
            "depth": torch.from_numpy(self.mat.depth(index))[None],
            "has_depth": True,
            "T_src_tgt": torch.eye(4).expand(len(self.offsets), 4, 4).clone(),
            "has_pose": False,
            "sequence": self.mat.scene(index) or "nyu_labeled",
            "frame": index,
        }


# --- raw videos ---------------------------------------------------------------------------------------------


def _frame_order(path: Path) -> tuple:
    return tuple(int(d) for d in _DIGITS.findall(path.stem)), path.name


def list_scene_frames(folder: str | os.PathLike) -> list[Path]:
    """The video frames of one scene folder, in temporal order (rules in the module docstring)."""
    folder = Path(folder)
    by_suffix: dict[str, list[Path]] = {}
    for name in os.listdir(folder):
        stem, suffix = os.path.splitext(name)
        suffix = suffix.lower()
        if suffix in _FRAME_SUFFIXES and not stem.lower().startswith(("depth", "sync_depth")):
            by_suffix.setdefault(".jpg" if suffix == ".jpeg" else suffix, []).append(folder / name)
    for suffix in (".jpg", ".ppm", ".png"):
        if suffix in by_suffix:
            return sorted(by_suffix[suffix], key=_frame_order)
    return []


def scene_key(name: str) -> str:
    """The labelled set's scene name of a video folder: ``bedroom_0001b_out`` -> ``bedroom_0001``.

    Example:
        >>> scene_key("living_room_0038a_out"), scene_key("kitchen_0028")
        ('living_room_0038', 'kitchen_0028')
    """
    name = name.removesuffix("_out")
    match = re.fullmatch(r"(.*_\d+)[a-z]", name)
    return match.group(1) if match else name


def video_root(root: str | os.PathLike) -> Path:
    """The folder that holds the scene folders: the first of `VIDEO_DIRS` under ``root``, else ``root``."""
    root = Path(root)
    return next((root / d for d in VIDEO_DIRS if (root / d).is_dir()), root)


def official_test_scenes(root: str | os.PathLike) -> set[str] | None:
    """Scene names of the official test images (from the labelled set), or None if they cannot be read."""
    mat_path = Path(root) / LABELED_MAT
    if not mat_path.is_file():
        return None
    try:
        mat = NYULabeledFile(mat_path)
        indices, _ = read_official_split(root, "test", len(mat))
        names = {mat.scene(i) for i in indices}
    except InputError as e:
        logger.warning("cannot read the test scenes (%s)", e)
        return None
    return None if None in names else names


class NYUVideoDataset(SnippetDataset):
    """Snippets ``(target, target + offsets...)`` of the NYUv2 raw videos (one folder per scene).

    640x480 frames lose a `BORDER` of 16 pixels on each side (crop ``(16, 16, 608, 448)``) and are resized to
    ``height x width``; K is `NYU_K` through `resize_with_camera` (at 288x384: fx = 518.86 * 384/608, cx =
    (325.58 - 16 + 0.5) * 384/608 - 0.5). Raw ``.ppm`` dumps are undistorted first (`NYU_DISTORTION`). A
    scene folder with a ``cam.txt`` (K at its frame size, `sa4depth.data.layout.read_cam`) is taken as
    already prepared: K from that file and no border crop; frames of another size than 640x480 need one.

    Args:
        root: the NYU root; scene folders are found by `video_root`.
        split: a split file (path, relative to the working directory or ``root``, or
            ``root/splits/<name>.txt``) with lines ``<scene> <frame file stem>``, or, without such a file,
            ``"train"``: every frame of every scene whose sources exist, leaving out the official test
            scenes when the labelled set and its split can be read (`official_test_scenes`).
        height, width: network resolution.
        offsets: source offsets in frames (positions in the scene's frame order).
        train: augmentation (flip, colour jitter).
        seed: base seed of the augmentation RNG.

    Raises:
        InputError: missing folders, a malformed split line, an unknown scene or frame, a source outside the
            scene, or a frame whose size does not fit K; each names the file and the problem.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        height: int,
        width: int,
        offsets: tuple[int, ...] = (-1, 1),
        train: bool = False,
        seed: int = 0,
    ):
        super().__init__(root, split, height, width, offsets, train, seed)
        if not self.root.is_dir():
            raise InputError(self.root, "NYUv2 root not found")
        self.video_dir = video_root(self.root)
        self.scenes: dict[str, list[Path]] = {}
        self._K: dict[str, np.ndarray | None] = {}
        split_file = next(
            (
                p
                for p in (Path(split), self.root / split, self.root / "splits" / f"{split}.txt")
                if p.is_file()
            ),
            None,
        )
        if split_file is not None:
            self.items = self._items_from_file(split_file)
        elif split == "train":
            self.items = self._all_items()
        else:
            raise InputError(
                split, f"split file not found (tried {split}, {self.root / 'splits' / (split + '.txt')})"
            )

    def _scene(self, name: str) -> list[Path]:
        if name not in self.scenes:
            folder = self.video_dir / name
            frames = list_scene_frames(folder) if folder.is_dir() else []
            if not frames:
                raise InputError(folder, "scene folder not found or without .jpg/.png/.ppm frames")
            self.scenes[name] = frames
            cam = folder / "cam.txt"
            self._K[name] = layout.read_cam(cam) if cam.is_file() else None
        return self.scenes[name]

    def _items_from_file(self, path: Path) -> list[tuple[str, int]]:
        items = []
        positions: dict[str, dict[str, int]] = {}
        for line_no, line in enumerate(path.read_text().splitlines(), start=1):
            tokens = line.split()
            if not tokens or tokens[0].startswith("#"):
                continue
            if len(tokens) != 2:
                raise InputError(path, f"line {line_no}: expected '<scene> <frame file stem>', got {line!r}")
            scene, stem = tokens
            if not (self.video_dir / scene).is_dir():
                raise InputError(path, f"line {line_no}: scene folder {self.video_dir / scene} not found")
            frames = self._scene(scene)
            if scene not in positions:
                positions[scene] = {p.stem: i for i, p in enumerate(frames)}
            if stem not in positions[scene]:
                raise InputError(
                    path, f"line {line_no}: frame {stem!r} not found in {self.video_dir / scene}"
                )
            index = positions[scene][stem]
            for offset in self.offsets:
                if not 0 <= index + offset < len(frames):
                    raise InputError(
                        path,
                        f"line {line_no} ({scene} {stem}): source frame at offset {offset:+d} does not exist "
                        f"(frame {index + 1} of {len(frames)} in {self.video_dir / scene})",
                    )
            items.append((scene, index))
        if not items:
            raise InputError(path, "split lists no frames")
        return items

    def _all_items(self) -> list[tuple[str, int]]:
        names = sorted(
            p.name
            for p in self.video_dir.iterdir()
            if p.is_dir() and p.name != "splits" and list_scene_frames(p)
        )
        if not names:
            raise InputError(
                self.video_dir, "no scene folders with frames (see docs/datasets_cityscapes_nyu.md)"
            )
        excluded = official_test_scenes(self.root)
        if excluded is None:
            logger.warning(
                "NYUv2 test scenes unknown (no labelled set / split): no scene is left out of training"
            )
        else:
            kept = [n for n in names if scene_key(n) not in excluded]
            if len(kept) < len(names):
                logger.info(
                    "NYUv2 train: %d of %d scene folders are test scenes, left out",
                    len(names) - len(kept),
                    len(names),
                )
            names = kept
        lo, hi = min(0, *self.offsets), max(0, *self.offsets)
        items = [(n, i) for n in names for i in range(-lo, len(self._scene(n)) - hi)]
        if not items:
            raise InputError(self.video_dir, f"no frame has all sources at offsets {self.offsets}")
        return items

    def __len__(self) -> int:
        return len(self.items)

    def _load(
        self, scene: str, path: Path
    ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int] | None]:
        """A frame, its K and its crop box."""
        image = layout.read_image(path)
        K = self._K[scene]
        if K is not None:
            return image, K, None
        h, w = image.shape[:2]
        if (w, h) != NYU_SIZE:
            raise InputError(
                path,
                f"frame is {w}x{h}; NYU intrinsics are for 640x480 (add a cam.txt with K to its folder)",
            )
        if path.suffix.lower() == ".ppm":
            image = cv2.undistort(image, NYU_K, NYU_DISTORTION)
        return image, NYU_K, (BORDER, BORDER, w - 2 * BORDER, h - 2 * BORDER)

    def __getitem__(self, idx: int) -> dict:
        scene, index = self.items[idx]
        frames_in_scene = self.scenes[scene]
        frames, first_shape = [], None
        for offset in (0, *self.offsets):
            path = frames_in_scene[index + offset]
            image, K_raw, crop = self._load(scene, path)
            if first_shape is not None and image.shape != first_shape:
                raise InputError(
                    path, f"frame size {image.shape[1]}x{image.shape[0]} differs from the target's"
                )
            first_shape = image.shape
            resized, K = resize_with_camera(image, K_raw, self.height, self.width, crop=crop)
            frames.append(resized)
        images = to_tensor_images(frames)
        sample = {
            "images": images,
            "images_aug": images,
            "K": torch.as_tensor(K, dtype=torch.float32),
            "depth": torch.zeros(1, self.height, self.width),
            "has_depth": False,
            "T_src_tgt": torch.eye(4).expand(len(self.offsets), 4, 4).clone(),
            "has_pose": False,
            "sequence": scene,
            "frame": index,
        }
        return self.finish(sample, idx)


def build_nyu_dataset(
    root: str | os.PathLike,
    split: str,
    height: int,
    width: int,
    offsets: tuple[int, ...] = (-1, 1),
    train: bool = False,
    seed: int = 0,
) -> Dataset:
    """The ``nyu`` dataset: the labelled set or the videos, by split name.

    `LABELED_SPLITS` names (``test``, ``val``, ...) give `NYULabeledDataset`, anything else
    `NYUVideoDataset`.
    """
    cls = NYULabeledDataset if split in LABELED_SPLITS else NYUVideoDataset
    return cls(root, split, height, width, offsets=offsets, train=train, seed=seed)


register_dataset("nyu", build_nyu_dataset)
register_dataset("nyu_labeled", NYULabeledDataset)
register_dataset("nyu_video", NYUVideoDataset)
