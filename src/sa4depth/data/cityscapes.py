"""Cityscapes: training snippets from ``leftImg8bit_sequence`` and disparity ground truth for evaluation.

Frames lose the ego car's bonnet (bottom 25%) before resizing, as in ManyDepth (`sa4depth.eval.protocols`).

Layout (``root``; the ``*_trainvaltest/`` wrapper folders of the downloads are accepted too)::

    root/leftImg8bit_sequence/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png   30-frame snippets
    root/leftImg8bit/{train,val,test}/<city>/...        optional: the annotated frames only (evaluation)
    root/camera/{train,val,test}/<city>/<city>_<seq>_<frame>_camera.json   one per annotated frame
    root/disparity/{train,val,test}/<city>/<city>_<seq>_<frame>_disparity.png   uint16 disparity (GT)
    root/splits/<name>.txt                                  optional split files

Only the annotated frame of a snippet has a camera file; every frame of the snippet uses it (the camera
does not change within a snippet).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch

from sa4depth.data import layout
from sa4depth.data.base import SnippetDataset
from sa4depth.data.datamodule import register_dataset
from sa4depth.data.transforms import resize_with_camera, to_tensor_images
from sa4depth.errors import InputError

logger = logging.getLogger(__name__)

TREE_SPLITS = ("train", "val", "test")
"""The folders of the official release; each city belongs to exactly one of them."""

BONNET_KEEP = 3 / 4
"""Fraction of the rows kept from the top: ManyDepth's ``crop_h = h * 3 // 4`` (and its protocol's
``gt_rows = (0, 0.75)``) drops the bottom quarter, where the ego car's bonnet is."""

_FILE = re.compile(r"^([A-Za-z]+)_(\d+)_(\d+)_(leftImg8bit|camera|disparity)\.(png|json)$")


class CityFrame(NamedTuple):
    """One frame of the release: ``<city>_<seq>_<frame>``, in tree split ``split``."""

    split: str
    city: str
    seq: str
    """The 6-digit sequence number as written in the file name."""
    frame: int
    line: int = 0
    """1-based line in the split file (0 if generated), for error messages."""

    @property
    def stem(self) -> str:
        return f"{self.city}_{self.seq}_{self.frame:06d}"

    def at(self, frame: int) -> CityFrame:
        return self._replace(frame=frame)


def _first_dir(root: Path, name: str) -> Path:
    """``root/name``, or ``root/name_trainvaltest/name`` (the zip's wrapper folder kept).

    The former if neither exists.
    """
    for candidate in (root / name, root / f"{name}_trainvaltest" / name):
        if candidate.is_dir():
            return candidate
    return root / name


def read_camera_json(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read a Cityscapes ``*_camera.json``: the 3x3 K at the full 2048x1024 frame and the stereo baseline (m).

    Raises:
        InputError: missing file, invalid JSON, or a missing / non-positive ``intrinsic.fx, fy, u0, v0`` or
            ``extrinsic.baseline``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "camera file not found")
    try:
        camera = json.loads(path.read_text())
        intr, baseline = camera["intrinsic"], float(camera["extrinsic"]["baseline"])
        fx, fy, u0, v0 = (float(intr[k]) for k in ("fx", "fy", "u0", "v0"))
    except json.JSONDecodeError as e:
        raise InputError(path, f"invalid JSON ({e.msg} at line {e.lineno})") from None
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(
            path, f"camera file lacks intrinsic fx/fy/u0/v0 or extrinsic baseline ({e!r})"
        ) from None
    if not (fx > 0 and fy > 0 and baseline > 0 and np.isfinite([u0, v0]).all()):
        raise InputError(path, f"camera values out of range (fx={fx}, fy={fy}, baseline={baseline})")
    return np.array([[fx, 0.0, u0], [0.0, fy, v0], [0.0, 0.0, 1.0]]), baseline


def read_disparity_png(path: str | os.PathLike) -> np.ndarray:
    """Read a Cityscapes disparity PNG as ``(H, W)`` float32 pixels: ``(p - 1) / 256`` for ``p > 0``, else 0.

    A stored 0 means "no measurement"; a stored 1 is disparity 0 (a point at infinity), also unusable.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "disparity PNG not found")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise InputError(path, "cannot decode disparity PNG")
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise InputError(path, f"not a 16-bit single-channel disparity PNG ({raw.dtype}, shape {raw.shape})")
    disparity = (raw.astype(np.float32) - 1.0) / 256.0
    disparity[raw == 0] = 0.0
    return disparity


def cityscapes_gt_depth(disparity_png: str | os.PathLike, camera_json: str | os.PathLike) -> np.ndarray:
    """Ground-truth z-depth of an annotated frame: ``baseline * fx / disparity``, 0 where unknown.

    Args:
        disparity_png: ``disparity/<split>/<city>/<city>_<seq>_<frame>_disparity.png``.
        camera_json: the frame's ``camera/<split>/<city>/<city>_<seq>_<frame>_camera.json``.

    Returns:
        ``(H, W)`` float32 metres at the disparity map's (full) resolution; 0 where the disparity is
        unknown or 0. This is the map ManyDepth's ``gt_depths/`` hold; `sa4depth.eval.protocols.CITYSCAPES`
        cuts and crops it.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> _ = cv2.imwrite(str(d / "disp.png"), np.array([[0, 1, 257, 2049]], dtype=np.uint16))
        >>> intrinsic = {"fx": 2000, "fy": 2000, "u0": 1000, "v0": 500}
        >>> cam = {"intrinsic": intrinsic, "extrinsic": {"baseline": 0.2}}
        >>> _ = (d / "cam.json").write_text(json.dumps(cam))
        >>> cityscapes_gt_depth(d / "disp.png", d / "cam.json").tolist()
        [[0.0, 0.0, 400.0, 50.0]]
    """
    K, baseline = read_camera_json(camera_json)
    disparity = read_disparity_png(disparity_png)
    depth = np.zeros_like(disparity)
    valid = disparity > 0
    depth[valid] = baseline * K[0, 0] / disparity[valid]
    return depth


def read_cityscapes_split(path: str | os.PathLike) -> list[tuple[str, str, int, int]]:
    r"""Read a split file as ``(city, seq, frame, line)`` entries.

    Accepted lines (blank lines and ``#`` comments are skipped):

    * ``<city> <seq> <frame>``, e.g. ``aachen 000000 19``;
    * ``<city> <city>_<seq>_<frame>``, ManyDepth's ``splits/cityscapes/test_files.txt`` format.

    Raises:
        InputError: missing file, a malformed line (naming its number) or no entries.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "split.txt"
        >>> _ = p.write_text("aachen 000000 19\nbonn bonn_000004_000019\n")
        >>> read_cityscapes_split(p)
        [('aachen', '000000', 19, 1), ('bonn', '000004', 19, 2)]
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "split file not found")
    items = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        if len(tokens) == 3 and tokens[0].isalpha() and tokens[1].isdigit() and tokens[2].isdigit():
            items.append((tokens[0], tokens[1], int(tokens[2]), line_no))
            continue
        if len(tokens) == 2:
            parts = tokens[1].split("_")
            if len(parts) == 3 and parts[0] == tokens[0] and parts[1].isdigit() and parts[2].isdigit():
                items.append((tokens[0], parts[1], int(parts[2]), line_no))
                continue
        raise InputError(
            path,
            f"line {line_no}: expected '<city> <seq> <frame>' or '<city> <city>_<seq>_<frame>', "
            f"got {line.strip()[:80]!r}",
        )
    if not items:
        raise InputError(path, "split lists no frames")
    return items


def _find_split_file(root: Path, split: str) -> Path | None:
    """The file of a split given as a path or as a name; None if none of the candidates is a file.

    The path may be absolute or relative to the working directory or ``root``; a name means
    ``root/splits/<name>.txt``.
    """
    for path in (Path(split), root / split, root / "splits" / f"{split}.txt"):
        if path.is_file():
            return path
    return None


class CityscapesDataset(SnippetDataset):
    """Cityscapes snippets ``(target, target + offsets...)``, bonnet cropped, resized with their intrinsics.

    Every frame is cut to its top 75% (``crop=(0, 0, W, H * 3 // 4)``, 2048x768 for the full 2048x1024 frame)
    and resized to ``height x width`` (the paper's 512x192 is a factor of 1/4 in both axes); K follows
    through `resize_with_camera`. Offsets count raw frames of the 17 Hz video: ManyDepth / SfMLearner
    train on ``(-2, 0, +2)`` (``configs/cityscapes.yaml`` sets ``data.offsets: [-2, 2]``).

    Splits: ``split`` is a split file (path or ``root/splits/<name>.txt``, formats in
    `read_cityscapes_split`) or, when no such file exists, one of the release folders:

    * ``"train"``: every frame of ``leftImg8bit_sequence/train`` whose sources exist (same city and
      sequence number, frame numbers ``frame + offset``);
    * ``"val"`` / ``"test"``: every annotated frame with a disparity map in ``disparity/<split>``
      (1525 for ``test``: ManyDepth's test set, the same frames as its ``splits/cityscapes/test_files.txt``).

    Ground truth: with ``train=False``, ``depth`` is the target's `cityscapes_gt_depth` **at full resolution**
    ``(1, H_raw, W_raw)`` (1024x2048), the map the `CITYSCAPES` protocol expects (it cuts the bottom 25%
    itself); zeros of that size and ``has_depth`` False where no disparity file exists. With ``train=True``
    no ground truth is read and ``depth`` is ``(1, height, width)`` zeros. Poses are unknown
    (``has_pose`` False).

    Missing sources: in training, a source frame missing from the sequence folder is an `InputError`
    (generated splits skip such targets). In evaluation (``train=False``) it is replaced by the target
    itself, so the annotated frames can be evaluated from ``leftImg8bit/`` alone.

    Args:
        root: the Cityscapes root (see the module docstring).
        split: split file or release split, see above.
        height, width: network resolution.
        offsets: source frame offsets relative to the target (raw frames).
        train: augmentation (flip, colour jitter) on, ground truth off.
        seed: base seed of the augmentation RNG.

    Raises:
        InputError: a missing root or folder, a malformed split line, a missing target or (training)
            source frame, or a sequence without a camera file; each names the file and the problem.
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
            raise InputError(self.root, "Cityscapes root not found")
        self.sequence_dir = _first_dir(self.root, "leftImg8bit_sequence")
        self.annotated_dir = _first_dir(self.root, "leftImg8bit")
        self.camera_dir = _first_dir(self.root, "camera")
        self.disparity_dir = _first_dir(self.root, "disparity")
        if not self.sequence_dir.is_dir() and not self.annotated_dir.is_dir():
            raise InputError(
                self.root,
                "not a Cityscapes root: neither leftImg8bit_sequence/ nor leftImg8bit/ found "
                "(see docs/datasets_cityscapes_nyu.md)",
            )
        self._frames: dict[tuple[str, str], dict[tuple[str, int], Path]] = {}
        self._cameras: dict[tuple[str, str], dict[str, list[int]]] = {}
        self._camera_values: dict[Path, tuple[np.ndarray, float]] = {}

        split_file = _find_split_file(self.root, split)
        self.split_source = split_file or f"{self.root} ({split} split)"
        if split_file is not None:
            self.items = self._items_from_file(split_file)
        elif split == "train":
            self.items = self._training_items("train")
        elif split in ("val", "test"):
            self.items = self._annotated_items(split)
        else:
            raise InputError(
                split,
                f"split file not found (tried {split}, {self.root / split}, "
                f"{self.root / 'splits' / (split + '.txt')}) and not one of train, val, test",
            )
        self.snippets = [self._snippet(item) for item in self.items]
        repeated = sum(p is s[0] for s in self.snippets for p in s[1:])
        if repeated:
            logger.info("cityscapes %s: %d missing source frames replaced by their target", split, repeated)
        for item in self.items:
            self.camera(item)

    # --- listing ------------------------------------------------------------------------------------------

    def frames(self, split: str, city: str) -> dict[tuple[str, int], Path]:
        """``(seq, frame) -> image path`` of a city: sequence frames, plus annotated-only frames."""
        key = (split, city)
        if key not in self._frames:
            found: dict[tuple[str, int], Path] = {}
            for folder in (self.annotated_dir / split / city, self.sequence_dir / split / city):
                for name in os.listdir(folder) if folder.is_dir() else []:
                    match = _FILE.match(name)
                    if match and match.group(4) == "leftImg8bit" and match.group(1) == city:
                        found[(match.group(2), int(match.group(3)))] = folder / name
            self._frames[key] = found
        return self._frames[key]

    def _city_split(self, city: str) -> str | None:
        for split in TREE_SPLITS:
            for base in (self.sequence_dir, self.annotated_dir):
                if (base / split / city).is_dir():
                    return split
        return None

    def _items_from_file(self, path: Path) -> list[CityFrame]:
        items, splits = [], {}
        for city, seq, frame, line in read_cityscapes_split(path):
            if city not in splits:
                splits[city] = self._city_split(city)
            if splits[city] is None:
                raise InputError(
                    path,
                    f"line {line}: city {city!r} not found under {self.sequence_dir}/{{train,val,test}} "
                    f"or {self.annotated_dir}/{{train,val,test}}",
                )
            items.append(CityFrame(splits[city], city, seq, frame, line))
        return items

    def _cities(self, split: str, base: Path) -> list[str]:
        folder = base / split
        if not folder.is_dir():
            raise InputError(folder, f"folder not found (needed to list the {split} split)")
        return sorted(p.name for p in folder.iterdir() if p.is_dir())

    def _training_items(self, split: str) -> list[CityFrame]:
        items = []
        for city in self._cities(split, self.sequence_dir):
            frames = self.frames(split, city)
            for seq, frame in sorted(frames):
                if all((seq, frame + o) in frames for o in self.offsets):
                    items.append(CityFrame(split, city, seq, frame))
        if not items:
            raise InputError(self.sequence_dir / split, f"no frame has all sources at offsets {self.offsets}")
        return items

    def _annotated_items(self, split: str) -> list[CityFrame]:
        items = []
        for city in self._cities(split, self.disparity_dir):
            for name in sorted(os.listdir(self.disparity_dir / split / city)):
                match = _FILE.match(name)
                if match and match.group(4) == "disparity":
                    items.append(CityFrame(split, city, match.group(2), int(match.group(3))))
        if not items:
            raise InputError(self.disparity_dir / split, "no *_disparity.png files found")
        return items

    def _snippet(self, item: CityFrame) -> list[Path]:
        """Paths of the target and its sources (eval: a missing source repeats the target)."""
        frames = self.frames(item.split, item.city)
        where = f"line {item.line} ({item.stem})" if item.line else item.stem
        target = frames.get((item.seq, item.frame))
        if target is None:
            raise InputError(
                self.split_source,
                f"{where}: target image {item.stem}_leftImg8bit.png not found in "
                f"{self.sequence_dir / item.split / item.city} or "
                f"{self.annotated_dir / item.split / item.city}",
            )
        paths = [target]
        for offset in self.offsets:
            source = frames.get((item.seq, item.frame + offset))
            if source is None and self.train:
                missing = self.sequence_dir / item.split / item.city / f"{item.at(item.frame + offset).stem}"
                raise InputError(
                    self.split_source,
                    f"{where}: source frame {missing}_leftImg8bit.png (offset {offset:+d}) not found",
                )
            paths.append(source or target)
        return paths

    # --- camera and ground truth --------------------------------------------------------------------------

    def camera_path(self, item: CityFrame) -> Path:
        """The camera file of ``item``'s snippet: the annotated frame of the same sequence nearest to it."""
        key = (item.split, item.city)
        if key not in self._cameras:
            by_seq: dict[str, list[int]] = {}
            folder = self.camera_dir / item.split / item.city
            for name in os.listdir(folder) if folder.is_dir() else []:
                match = _FILE.match(name)
                if match and match.group(4) == "camera":
                    by_seq.setdefault(match.group(2), []).append(int(match.group(3)))
            self._cameras[key] = by_seq
        candidates = self._cameras[key].get(item.seq)
        own = self.camera_dir / item.split / item.city / f"{item.stem}_camera.json"
        if not candidates:
            raise InputError(own, f"camera file not found (no {item.city}_{item.seq}_*_camera.json)")
        nearest = min(candidates, key=lambda f: (abs(f - item.frame), f))
        return own.with_name(f"{item.at(nearest).stem}_camera.json")

    def camera(self, item: CityFrame) -> tuple[np.ndarray, float]:
        """``(K, baseline)`` of ``item`` at the full frame size (see `read_camera_json`)."""
        path = self.camera_path(item)
        if path not in self._camera_values:
            self._camera_values[path] = read_camera_json(path)
        return self._camera_values[path]

    def disparity_path(self, item: CityFrame) -> Path:
        return self.disparity_dir / item.split / item.city / f"{item.stem}_disparity.png"

    def gt_depth(self, item: CityFrame) -> np.ndarray | None:
        """Full-resolution ground-truth depth of ``item`` (None without a disparity file)."""
        path = self.disparity_path(item)
        if not path.is_file():
            return None
        return cityscapes_gt_depth(path, self.camera_path(item))

    # --- samples ------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> dict:
        item = self.items[idx]
        K_raw, _ = self.camera(item)
        frames, raw_shape = [], None
        for path in self.snippets[idx]:
            image = layout.read_image(path)
            if raw_shape is not None and image.shape != raw_shape:
                raise InputError(
                    path,
                    f"frame size {image.shape[1]}x{image.shape[0]} differs from the target's "
                    f"{raw_shape[1]}x{raw_shape[0]}",
                )
            raw_shape = image.shape
            crop = (0, 0, image.shape[1], image.shape[0] * 3 // 4)
            resized, K = resize_with_camera(image, K_raw, self.height, self.width, crop=crop)
            frames.append(resized)
        images = to_tensor_images(frames)
        sample = {
            "images": images,
            "images_aug": images,
            "K": torch.as_tensor(K, dtype=torch.float32),
            "sequence": f"{item.city}_{item.seq}",
            "frame": item.frame,
            "T_src_tgt": torch.eye(4).expand(len(self.offsets), 4, 4).clone(),
            "has_pose": False,
        }
        if self.train:
            sample["depth"], sample["has_depth"] = torch.zeros(1, self.height, self.width), False
            return self.finish(sample, idx)
        depth = self.gt_depth(item)
        if depth is not None and depth.shape != raw_shape[:2]:
            raise InputError(
                self.disparity_path(item),
                f"disparity map is {depth.shape[1]}x{depth.shape[0]}, the image "
                f"{raw_shape[1]}x{raw_shape[0]}",
            )
        if depth is None:
            sample["depth"], sample["has_depth"] = torch.zeros(1, *raw_shape[:2]), False
        else:
            sample["depth"], sample["has_depth"] = torch.from_numpy(depth)[None], True
        return sample


register_dataset("cityscapes", CityscapesDataset)
