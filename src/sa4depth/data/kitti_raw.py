"""KITTI raw data (the ``raw_data`` tree): split files, 3-frame snippets, ground-truth depth and poses.

Also the Eigen protocol's Velodyne-to-depth-map projection and a Zhou-style training-split generator.

Layout (``root`` holds one folder per recording day)::

    root/2011_09_26/calib_cam_to_cam.txt, calib_velo_to_cam.txt, calib_imu_to_velo.txt
    root/2011_09_26/2011_09_26_drive_0023_sync/image_02/data/0000000000.png   (or .jpg)  left colour
                                             /image_03/data/...                            right colour
                                             /oxts/data/0000000000.txt                      GPS/IMU
                                             /velodyne_points/data/0000000000.bin           LiDAR
                                             /proj_depth/velodyne/image_02/*.npz|png        optional
                                             /proj_depth/groundtruth/image_02/*.png         optional

Intrinsics come from the day's ``P_rect_02`` (side ``l``) or ``P_rect_03`` (side ``r``) at the raw image
size and follow every resize through `resize_with_camera`. Ground-truth poses come from the OXTS
packets (the KITTI devkit's ``convertOxtsToPose`` chained with the IMU -> Velodyne -> camera
calibration) or from an ``image_0X/poses.txt`` (``T_world_cam``, one line per frame).
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch

from sa4depth.data import layout
from sa4depth.data.base import SnippetDataset
from sa4depth.data.datamodule import register_dataset
from sa4depth.data.kitti_calib import RawCalib, load_raw_calib, rigid
from sa4depth.data.transforms import resize_depth, resize_with_camera, to_tensor_images
from sa4depth.errors import InputError

logger = logging.getLogger(__name__)

SIDES = {"l": 2, "r": 3}
"""Split-file side letter -> camera index (``image_02`` is the left colour camera)."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DEPTH_SOURCES = ("auto", "proj_depth", "velodyne", "improved", "none")
POSE_SOURCES = ("auto", "oxts", "poses_txt", "none")
PROJECTIONS = ("eigen", "geometric")

_IMAGE_LINE = re.compile(r"^([^/\s]+/[^/\s]+)/image_0([23])/data/(\d+)\.(?:png|jpe?g)$", re.IGNORECASE)


class KittiFrame(NamedTuple):
    """One split-file entry: a target frame of a drive, seen by the left or right colour camera."""

    drive: str
    """``<date>/<date>_drive_XXXX_sync``, relative to the raw root."""
    frame: int
    side: str
    """``"l"`` (``image_02``) or ``"r"`` (``image_03``)."""
    line: int = 0
    """1-based line in the split file (for error messages)."""

    @property
    def date(self) -> str:
        return self.drive.split("/")[0]

    @property
    def cam(self) -> int:
        return SIDES[self.side]


def resolve_split_file(root: str | os.PathLike, split: str | os.PathLike) -> Path:
    """Find a split file given as a path or as a name.

    The path may be absolute or relative to the working directory or ``root``; a name means
    ``root/splits/<name>.txt``.
    """
    root, split = Path(root), Path(split)
    candidates = [split, root / split, root / "splits" / f"{split}.txt"]
    for path in candidates:
        if path.is_file():
            return path
    tried = ", ".join(str(p) for p in dict.fromkeys(candidates))
    raise InputError(split, f"split file not found (tried {tried})")


def read_kitti_split(path: str | os.PathLike) -> list[KittiFrame]:
    r"""Read a KITTI raw split file.

    Accepted lines (blank lines and ``#`` comments are skipped):

    * ``<date>/<drive_folder> <frame> l|r`` (Monodepth2's ``splits/eigen*/``; the side defaults to ``l``);
    * ``<date>/<drive_folder>/image_0X/data/<frame>.png [<second image path>]`` (SfMLearner / PackNet
      style; the side is taken from ``image_02`` / ``image_03``, a second path on the line is ignored).

    Raises:
        InputError: missing file, a malformed line (naming its number) or no entries.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "split.txt"
        >>> _ = p.write_text("2011_09_26/2011_09_26_drive_0002_sync 0000000069 l\n")
        >>> read_kitti_split(p)[0][:3]
        ('2011_09_26/2011_09_26_drive_0002_sync', 69, 'l')
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "split file not found")
    items = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        match = _IMAGE_LINE.match(tokens[0])
        if match and len(tokens) <= 2:
            side = "l" if match.group(2) == "2" else "r"
            items.append(KittiFrame(match.group(1), int(match.group(3)), side, line_no))
            continue
        drive_ok = len(tokens[0].strip("/").split("/")) == 2
        if 2 <= len(tokens) <= 3 and drive_ok and tokens[1].isdigit():
            side = tokens[2] if len(tokens) == 3 else "l"
            if side in SIDES:
                items.append(KittiFrame(tokens[0].strip("/"), int(tokens[1]), side, line_no))
                continue
        raise InputError(
            path,
            f"line {line_no}: expected '<date>/<drive> <frame> l|r' or "
            f"'<date>/<drive>/image_0X/data/<frame>.png', got {line.strip()[:80]!r}",
        )
    if not items:
        raise InputError(path, "split lists no frames")
    return items


def write_kitti_split(path: str | os.PathLike, items: list[KittiFrame]) -> None:
    """Write entries in Monodepth2's format (``<date>/<drive> <frame> l|r``), atomically."""
    layout.atomic_write_text(path, "".join(f"{it.drive} {it.frame} {it.side}\n" for it in items))


def list_frames(image_dir: Path) -> dict[int, Path]:
    """Frame number -> image path for the numbered ``.png``/``.jpg`` files of a folder ({} if absent)."""
    if not image_dir.is_dir():
        return {}
    frames = {}
    for name in os.listdir(image_dir):
        stem, suffix = os.path.splitext(name)
        if suffix.lower() in IMAGE_SUFFIXES and stem.isdigit():
            frames[int(stem)] = image_dir / name
    return frames


def image_dir(root: Path, frame: KittiFrame) -> Path:
    """The folder of ``frame``'s camera images: ``root/<date>/<drive>/image_0<cam>/data``."""
    return root / frame.drive / f"image_0{frame.cam}" / "data"


# --- LiDAR ------------------------------------------------------------------------------------------------


def load_velodyne_points(path: str | os.PathLike) -> np.ndarray:
    """Read a KITTI ``velodyne_points/data/*.bin`` scan as ``(N, 4)`` float32.

    Columns: x forward, y left, z up (metres), reflectance.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "Velodyne scan not found")
    data = np.fromfile(path, dtype=np.float32)
    if data.size % 4:
        raise InputError(path, f"not a KITTI Velodyne .bin ({data.size} floats, not a multiple of 4)")
    return data.reshape(-1, 4)


def project_velodyne(
    points: np.ndarray,
    calib: RawCalib,
    cam: int = 2,
    size: tuple[int, int] | None = None,
    *,
    projection: str = "eigen",
) -> np.ndarray:
    """Project a Velodyne scan into rectified camera ``cam``: a sparse depth map, 0 = no point.

    Steps, as in the Eigen et al. evaluation code that produced every published KITTI Eigen number
    (and Monodepth2's ``export_gt_depth.py``): keep points with ``x_velo >= 0``; project with
    ``P_rect_0X @ R_rect_00 @ [R|T]_velo_to_cam``; round the pixel coordinates; keep pixels inside the
    image; where several points fall on one pixel keep the nearest (smallest depth); set negative
    depths to 0.

    Args:
        points: ``(N, 4)`` (or ``(N, 3)``) Velodyne points, metres.
        calib: the drive's day calibration (needs ``calib_velo_to_cam.txt``).
        cam: rectified camera index (2 = left colour, 3 = right colour).
        size: ``(height, width)`` of the map; default the calibration's ``S_rect_0X``.
        projection: ``"eigen"`` reproduces the standard GT exactly: the stored depth is the point's
            forward distance in the LiDAR frame (``x_velo``, about 0.27 m more than the camera
            z-depth) and pixel ``round(u) - 1`` (the MATLAB devkit's 1-based index, i.e. the map is
            shifted one pixel up-left). ``"geometric"`` stores the camera z-depth at pixel
            ``round(u)`` (pixel centre (0, 0), `sa4depth.geometry`) and drops points behind the camera.

    Returns:
        ``(H, W)`` float32 depth map in metres.
    """
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] not in (3, 4):
        raise ValueError(f"points must be (N, 3) or (N, 4), got {pts.shape}")
    height, width = size if size is not None else calib.image_size(cam)[::-1]
    if calib.T_cam0_velo is None:
        raise InputError(calib.folder / "calib_velo_to_cam.txt", "calibration file not found")
    pts = pts[pts[:, 0] >= 0]
    P_velo_to_image = calib.P_rect[cam] @ rigid(calib.R_rect_00, np.zeros(3)) @ calib.T_cam0_velo
    proj = np.concatenate([pts[:, :3], np.ones((len(pts), 1))], axis=1) @ P_velo_to_image.T
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = proj[:, :2] / proj[:, 2:3]
    if projection == "eigen":
        depth, uv = pts[:, 0], np.round(uv) - 1.0
    else:
        depth, uv = proj[:, 2], np.round(uv)
    keep = (uv[:, 0] >= 0) & (uv[:, 1] >= 0) & (uv[:, 0] < width) & (uv[:, 1] < height)
    if projection == "geometric":
        keep &= depth > 0
    depth, uv = depth[keep], uv[keep].astype(np.int64)
    index = uv[:, 1] * width + uv[:, 0]
    # Sort by pixel, then depth: the first entry of each pixel is its nearest point.
    order = np.lexsort((depth, index))
    first = np.unique(index[order], return_index=True)[1]
    out = np.zeros(height * width, dtype=np.float64)
    out[index[order][first]] = depth[order][first]
    out[out < 0] = 0.0
    return out.reshape(height, width).astype(np.float32)


# --- Ground-truth depth files -----------------------------------------------------------------------------


def read_depth_png(path: str | os.PathLike) -> np.ndarray:
    """Read a KITTI depth PNG (uint16, metres * 256, 0 = unknown) as ``(H, W)`` float32 metres."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "depth PNG not found")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise InputError(path, "cannot decode depth PNG")
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise InputError(
            path, f"not a 16-bit single-channel KITTI depth PNG ({raw.dtype}, shape {raw.shape})"
        )
    return raw.astype(np.float32) / 256.0


def read_depth_npz(path: str | os.PathLike) -> np.ndarray:
    """Read a projected-LiDAR ``.npz`` (key ``velodyne_depth`` as PackNet writes it, or ``depth``)."""
    path = Path(path)
    try:
        with np.load(path) as z:
            key = "velodyne_depth" if "velodyne_depth" in z else "depth"
            depth = z[key]
    except FileNotFoundError:
        raise InputError(path, "depth file not found") from None
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise InputError(path, f"cannot read depth ({e.__class__.__name__}: {e})") from None
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise InputError(path, f"depth must be H x W, found shape {depth.shape}")
    return np.nan_to_num(depth.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def gt_depth_candidates(root: Path, frame: KittiFrame, source: str) -> list[Path]:
    """Where each ground-truth kind may live, in search order.

    ``proj_depth``: pre-projected raw LiDAR in the raw tree (PackNet's ``.npz``, or a depth-completion
    style ``velodyne_raw`` PNG, also under ``data_depth_velodyne/{train,val}/``). ``improved``: the
    KITTI depth benchmark's accumulated maps (Uhrig et al.), copied into the raw tree as Monodepth2
    expects, or the official ``data_depth_annotated/{train,val}/`` download unpacked under ``root``.
    ``velodyne``: the raw scan.
    """
    drive_dir = root / frame.drive
    drive_name = Path(frame.drive).name
    name = f"{frame.frame:010d}"
    cam = f"image_0{frame.cam}"
    if source == "velodyne":
        return [drive_dir / "velodyne_points" / "data" / f"{name}.bin"]
    if source == "proj_depth":
        raw_tail = Path("proj_depth") / "velodyne_raw" / cam / f"{name}.png"
        return [
            drive_dir / "proj_depth" / "velodyne" / cam / f"{name}.npz",
            drive_dir / "proj_depth" / "velodyne" / cam / f"{name}.png",
            drive_dir / raw_tail,
            *(root / "data_depth_velodyne" / part / drive_name / raw_tail for part in ("train", "val")),
        ]
    if source == "improved":
        tail = Path("proj_depth") / "groundtruth" / cam / f"{name}.png"
        return [
            drive_dir / tail,
            *(root / "data_depth_annotated" / part / drive_name / tail for part in ("train", "val")),
            *(root / part / drive_name / tail for part in ("train", "val")),
        ]
    raise ValueError(f"unknown ground-truth source {source!r}")


def load_gt_depth(
    root: str | os.PathLike, frame: KittiFrame, calib: RawCalib, source: str, projection: str = "eigen"
) -> np.ndarray | None:
    """Ground-truth depth of ``frame`` at its raw resolution from ``source`` (None if not available).

    Args:
        root: KITTI raw root.
        frame: the split entry.
        calib: its day's calibration (used by ``source="velodyne"``).
        source: ``"proj_depth"``, ``"improved"`` or ``"velodyne"`` (see `gt_depth_candidates`).
        projection: for ``"velodyne"``, see `project_velodyne`.
    """
    for path in gt_depth_candidates(Path(root), frame, source):
        if not path.is_file():
            continue
        if path.suffix == ".bin":
            size = calib.image_size(frame.cam)[::-1]
            return project_velodyne(load_velodyne_points(path), calib, frame.cam, size, projection=projection)
        return read_depth_npz(path) if path.suffix == ".npz" else read_depth_png(path)
    return None


# --- OXTS poses -------------------------------------------------------------------------------------------

EARTH_RADIUS = 6378137.0
"""Metres; the KITTI devkit's Mercator radius."""


def read_oxts_packet(path: str | os.PathLike) -> np.ndarray:
    """Read one OXTS packet (``oxts/data/*.txt``: lat, lon, alt, roll, pitch, yaw, ... 30 values)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "OXTS packet not found")
    try:
        values = np.array([float(x) for x in path.read_text().split()], dtype=np.float64)
    except ValueError:
        raise InputError(path, "OXTS packet is not numbers") from None
    if values.size < 6 or not np.isfinite(values[:6]).all():
        raise InputError(path, f"OXTS packet needs lat lon alt roll pitch yaw, found {values.size} values")
    return values


def oxts_pose(packet: np.ndarray, scale: float) -> np.ndarray:
    """``T_world_imu`` (4x4) of one OXTS packet, the KITTI devkit's ``convertOxtsToPose``.

    The position is the Mercator projection ``x = s * lon * pi * R / 180``,
    ``y = s * R * log(tan((90 + lat) * pi / 360))``, ``z = alt`` with ``s = cos(lat_ref)``; the
    orientation is ``Rz(yaw) Ry(pitch) Rx(roll)``. The IMU frame is x forward, y left, z up.

    Args:
        packet: at least lat, lon (degrees), alt (m), roll, pitch, yaw (rad).
        scale: ``cos(lat_ref)`` of a reference latitude (the same for all poses that are compared).
    """
    lat, lon, alt, roll, pitch, yaw = packet[:6]
    t = [
        scale * math.radians(lon) * EARTH_RADIUS,
        scale * EARTH_RADIUS * math.log(math.tan(math.radians(90.0 + lat) / 2.0)),
        alt,
    ]
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    Rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    Ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    Rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rigid(Rz @ Ry @ Rx, t)


def oxts_camera_poses(packets: list[np.ndarray], calib: RawCalib, cam: int) -> np.ndarray:
    """``(N, 4, 4)`` ``T_world_cam`` of rectified camera ``cam`` from OXTS packets.

    World frame: Mercator metres scaled at the first packet's latitude.
    """
    scale = math.cos(math.radians(packets[0][0]))
    T_imu_cam = np.linalg.inv(calib.T_cam_imu(cam))
    return np.stack([oxts_pose(p, scale) @ T_imu_cam for p in packets])


# --- Sample assembly (shared with the odometry loader) ----------------------------------------------------


def snippet_sample(
    paths: list[Path],
    K: np.ndarray,
    height: int,
    width: int,
    *,
    T_world_cam: np.ndarray | None,
    depth: np.ndarray | None,
    sequence: str,
    frame: int,
    expected_size: tuple[int, int] | None = None,
    size_source: str | os.PathLike | None = None,
) -> dict:
    """Read and resize a snippet's frames into the sample format of `sa4depth.data`.

    Args:
        paths: target frame first, then the sources.
        K: ``(3, 3)`` intrinsics at the raw image size.
        height: output height in pixels.
        width: output width in pixels.
        T_world_cam: ``(N, 4, 4)`` camera-to-world poses of the frames, or None (unknown).
        depth: ground-truth z-depth of the target at any resolution (0 = unknown), or None.
        sequence: name of the target's sequence.
        frame: index of the target frame in its sequence.
        expected_size: raw ``(width, height)`` that ``K`` belongs to; a frame of another size raises.
        size_source: the file that states ``expected_size`` (for the error message).
    """
    frames, first_shape = [], None
    for path in paths:
        image = layout.read_image(path)
        h, w = image.shape[:2]
        if expected_size is not None and (w, h) != tuple(expected_size):
            raise InputError(
                path, f"image is {w}x{h} but {size_source} gives {expected_size[0]}x{expected_size[1]}"
            )
        if first_shape is not None and image.shape != first_shape:
            raise InputError(
                path, f"frame size {w}x{h} differs from the target's {first_shape[1]}x{first_shape[0]}"
            )
        first_shape = image.shape
        resized, K_out = resize_with_camera(image, K, height, width)
        frames.append(resized)
    images = to_tensor_images(frames)
    sample = {
        "images": images,
        "images_aug": images,
        "K": torch.as_tensor(K_out, dtype=torch.float32),
        "sequence": sequence,
        "frame": frame,
    }
    if depth is not None:
        sample["depth"] = torch.from_numpy(resize_depth(depth, height, width).astype(np.float32))[None]
        sample["has_depth"] = True
    else:
        sample["depth"], sample["has_depth"] = torch.zeros(1, height, width), False
    if T_world_cam is not None:
        rel = np.linalg.inv(T_world_cam[1:]) @ T_world_cam[0]
        sample["T_src_tgt"], sample["has_pose"] = torch.as_tensor(rel, dtype=torch.float32), True
    else:
        sample["T_src_tgt"] = torch.eye(4).expand(len(paths) - 1, 4, 4).clone()
        sample["has_pose"] = False
    return sample


def snippet_frames(
    target: int, offsets: tuple[int, ...], available: dict[int, Path], allow_repeat_at_ends: bool
) -> tuple[list[int], bool] | str:
    """Frame numbers of a snippet, or an error text.

    Returns ``(frames, complete)``. With ``allow_repeat_at_ends`` (evaluation), a source beyond the
    first or last frame of the sequence is replaced by the target itself and ``complete`` is False
    (the standard Eigen test split has frames at index 0). A gap inside the sequence is always an error.
    """
    if target not in available:
        return f"target frame {target} not found"
    frames, complete = [target], True
    for offset in offsets:
        f = target + offset
        if f in available:
            frames.append(f)
        elif allow_repeat_at_ends and not min(available) <= f <= max(available):
            frames.append(target)
            complete = False
        else:
            return f"source frame {f} (offset {offset:+d}) not found"
    return frames, complete


# --- Dataset ----------------------------------------------------------------------------------------------


class KittiRawDataset(SnippetDataset):
    """Snippets ``(target, target + offsets...)`` of KITTI raw drives listed by a split file.

    Args:
        root: the raw root (``<date>/<date>_drive_XXXX_sync/...``).
        split: split file path (absolute, relative to the working directory or to ``root``) or a name
            ``root/splits/<name>.txt``; formats in `read_kitti_split`.
        height, width: network resolution; frames and K are resized to it.
        offsets: source frame offsets relative to the target.
        train: apply augmentation (flip, colour jitter) and skip ground-truth depth (unused by the
            self-supervised losses). In evaluation (``train=False``) a source past a drive's first or
            last frame repeats the target and the sample has ``has_pose`` False.
        seed: base seed of the augmentation RNG.
        depth_source: ground truth of the target (evaluation only): ``"auto"`` (``proj_depth``, then the
            Velodyne scan projected with ``projection="geometric"``, then ``improved``), one of those
            names, or ``"none"``. Maps are nearest-resized to ``height x width``; the exact benchmark
            protocol evaluates at full resolution instead (`sa4depth.eval.kitti_tools`).
        pose_source: ``"auto"`` (OXTS when the packets and IMU/Velodyne calibration exist, else
            ``image_0X/poses.txt``), ``"oxts"``, ``"poses_txt"`` or ``"none"``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | os.PathLike,
        height: int,
        width: int,
        offsets: tuple[int, ...] = (-1, 1),
        train: bool = False,
        seed: int = 0,
        *,
        depth_source: str = "auto",
        pose_source: str = "auto",
    ):
        if depth_source not in DEPTH_SOURCES:
            raise ValueError(f"depth_source must be one of {DEPTH_SOURCES}, got {depth_source!r}")
        if pose_source not in POSE_SOURCES:
            raise ValueError(f"pose_source must be one of {POSE_SOURCES}, got {pose_source!r}")
        super().__init__(root, split, height, width, offsets, train, seed)
        if not self.root.is_dir():
            raise InputError(
                self.root, "KITTI raw root not found (expected <root>/<date>/<drive>/image_02/data)"
            )
        self.split_path = resolve_split_file(self.root, split)
        self.depth_source, self.pose_source = depth_source, pose_source
        self.items = read_kitti_split(self.split_path)
        self._frames: dict[tuple[str, int], dict[int, Path]] = {}
        self._calibs: dict[str, RawCalib] = {}
        self._pose_files: dict[tuple[str, int], np.ndarray] = {}
        self.snippets: list[tuple[list[int], bool]] = []
        for item in self.items:
            folder = image_dir(self.root, item)
            key = (item.drive, item.cam)
            if key not in self._frames:
                if not folder.is_dir():
                    raise InputError(self.split_path, f"line {item.line}: image folder {folder} not found")
                self._frames[key] = list_frames(folder)
            result = snippet_frames(item.frame, self.offsets, self._frames[key], not train)
            if isinstance(result, str):
                raise InputError(
                    self.split_path,
                    f"line {item.line} ({item.drive} {item.frame} {item.side}): {result} in {folder}",
                )
            self.snippets.append(result)
            self.calib(item.date)

    def calib(self, date: str) -> RawCalib:
        if date not in self._calibs:
            self._calibs[date] = load_raw_calib(self.root / date)
        return self._calibs[date]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> dict:
        item = self.items[idx]
        frames, complete = self.snippets[idx]
        calib = self.calib(item.date)
        files = self._frames[(item.drive, item.cam)]
        size = calib.S_rect.get(item.cam)
        depth = None
        if not self.train and self.depth_source != "none":
            depth = self.gt_depth(item, calib)
        poses = self.poses(item, frames, calib) if complete else None
        sample = snippet_sample(
            [files[f] for f in frames],
            calib.K(item.cam),
            self.height,
            self.width,
            T_world_cam=poses,
            depth=depth,
            sequence=item.drive,
            frame=item.frame,
            expected_size=size,
            size_source=f"{calib.folder / 'calib_cam_to_cam.txt'} (S_rect_0{item.cam})",
        )
        return self.finish(sample, idx)

    def gt_depth(self, item: KittiFrame, calib: RawCalib) -> np.ndarray | None:
        """Ground-truth z-depth of a split entry at raw resolution, per ``depth_source``."""
        if self.depth_source != "auto":
            return load_gt_depth(self.root, item, calib, self.depth_source, projection="geometric")
        for source in ("proj_depth", "velodyne", "improved"):
            if source == "velodyne" and calib.T_cam0_velo is None:
                continue
            depth = load_gt_depth(self.root, item, calib, source, projection="geometric")
            if depth is not None:
                return depth
        return None

    def poses(self, item: KittiFrame, frames: list[int], calib: RawCalib) -> np.ndarray | None:
        """``(N, 4, 4)`` ``T_world_cam`` of the snippet's frames, per ``pose_source`` (None if unknown)."""
        source = self.pose_source
        if source == "none":
            return None
        drive_dir = self.root / item.drive
        oxts = [drive_dir / "oxts" / "data" / f"{f:010d}.txt" for f in frames]
        if source == "auto":
            has_calib = calib.T_cam0_velo is not None and calib.T_velo_imu is not None
            if has_calib and all(p.is_file() for p in oxts):
                source = "oxts"
            elif (drive_dir / f"image_0{item.cam}" / "poses.txt").is_file():
                source = "poses_txt"
            else:
                return None
        if source == "oxts":
            return oxts_camera_poses([read_oxts_packet(p) for p in oxts], calib, item.cam)
        T_world_cam = self._poses_txt(item.drive, item.cam)
        if max(frames) >= len(T_world_cam):
            path = drive_dir / f"image_0{item.cam}" / "poses.txt"
            raise InputError(path, f"{len(T_world_cam)} poses, but frame {max(frames)} is needed")
        return T_world_cam[frames]

    def _poses_txt(self, drive: str, cam: int) -> np.ndarray:
        if (drive, cam) not in self._pose_files:
            path = self.root / drive / f"image_0{cam}" / "poses.txt"
            self._pose_files[(drive, cam)] = layout.read_poses(path)
        return self._pose_files[(drive, cam)]


register_dataset("kitti_raw", KittiRawDataset)


# --- Training split generator -----------------------------------------------------------------------------


def find_drives(root: str | os.PathLike) -> list[str]:
    """``<date>/<drive>`` of every drive under a raw root that has ``image_02/data``, sorted."""
    root = Path(root)
    drives = []
    for date_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        for drive_dir in sorted(p for p in date_dir.iterdir() if p.is_dir()):
            if (drive_dir / "image_02" / "data").is_dir():
                drives.append(f"{date_dir.name}/{drive_dir.name}")
    return drives


def make_training_split(
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    exclude_split_file: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    *,
    seed: int = 0,
    offsets: tuple[int, ...] = (-1, 1),
    sides: str = "both",
    min_speed: float | None = None,
) -> dict:
    """Write a Zhou et al. style ``train_files.txt`` / ``val_files.txt`` for a local KITTI raw tree.

    Every frame whose snippet (``offsets``) lies inside its drive becomes an entry, except those of
    drives named in ``exclude_split_file`` (e.g. the Eigen test split: its 28 test scenes are matched by
    drive folder name, so no test scene leaks into training). Validation frames are drawn at random
    (seeded) before the sides are expanded, so a frame never appears in both files.

    Args:
        root: KITTI raw root.
        out_dir: folder for the two files (written atomically).
        exclude_split_file: split file whose drives are left out, or None.
        val_fraction: fraction of frames for validation.
        seed: RNG seed of the validation draw and of ``sides="random"``.
        offsets: source offsets the training will use.
        sides: ``"l"``, ``"r"``, ``"both"`` (each frame twice, as SfMLearner) or ``"random"`` (one
            random side per frame, as Monodepth2's ``eigen_zhou`` files).
        min_speed: drop frames whose OXTS forward speed is below this (m/s), an approximation of Zhou's
            static-frame removal; None keeps every frame.

    Returns:
        dict with ``train`` and ``val`` paths, ``n_train``, ``n_val`` (entries) and ``drives`` (used).
    """
    root, out_dir = Path(root), Path(out_dir)
    if sides not in ("l", "r", "both", "random"):
        raise ValueError(f"sides must be 'l', 'r', 'both' or 'random', got {sides!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    drives = find_drives(root)
    if not drives:
        raise InputError(root, "no KITTI raw drives found (expected <root>/<date>/<drive>/image_02/data)")
    excluded = set()
    if exclude_split_file is not None:
        excluded = {Path(it.drive).name for it in read_kitti_split(exclude_split_file)}
    kept = [d for d in drives if Path(d).name not in excluded]
    frames: list[tuple[str, int]] = []
    for drive in kept:
        available = list_frames(root / drive / "image_02" / "data")
        if sides != "l":
            right = list_frames(root / drive / "image_03" / "data")
            available = {f: p for f, p in available.items() if f in right}
        for f in sorted(available):
            if not all(f + o in available for o in offsets):
                continue
            if min_speed is not None:
                packet = root / drive / "oxts" / "data" / f"{f:010d}.txt"
                if packet.is_file() and abs(read_oxts_packet(packet)[8]) < min_speed:
                    continue
            frames.append((drive, f))
    rng = random.Random(seed)
    shuffled = frames[:]
    rng.shuffle(shuffled)
    n_val = int(round(val_fraction * len(shuffled)))
    val_set = set(shuffled[:n_val])

    def expand(selection: list[tuple[str, int]]) -> list[KittiFrame]:
        out = []
        for drive, f in selection:
            chosen = {"l": "l", "r": "r", "both": "lr", "random": rng.choice("lr")}[sides]
            out.extend(KittiFrame(drive, f, s) for s in chosen)
        return out

    train_items = expand([x for x in frames if x not in val_set])
    val_items = expand([x for x in frames if x in val_set])
    paths = {"train": out_dir / "train_files.txt", "val": out_dir / "val_files.txt"}
    write_kitti_split(paths["train"], train_items)
    write_kitti_split(paths["val"], val_items)
    logger.info(
        "training split: %d drives (%d excluded), %d train / %d val entries",
        len(kept),
        len(drives) - len(kept),
        len(train_items),
        len(val_items),
    )
    return {**paths, "n_train": len(train_items), "n_val": len(val_items), "drives": len(kept)}
