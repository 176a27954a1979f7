"""KITTI calibration files: raw data's ``calib_*.txt`` per recording day and odometry's ``calib.txt``.

Shared by the KITTI raw and odometry loaders: intrinsics of each camera and the sensor-to-sensor transforms.

Conventions (see `sa4depth.geometry`): ``T_a_b`` maps frame-b points into frame a. KITTI's rectified
projection matrices are ``P_X = K [I | t_X]``: all rectified cameras share the rotation of rectified
camera 0 and camera X sits at ``-t_X`` in that frame (``t_2`` is about +6 cm in x, ``t_3`` about -48 cm),
so ``T_camX_rect0 = [I | t_X]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sa4depth.errors import InputError

CAM_TO_CAM = "calib_cam_to_cam.txt"
VELO_TO_CAM = "calib_velo_to_cam.txt"
IMU_TO_VELO = "calib_imu_to_velo.txt"


def read_calib_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    r"""Read a KITTI calibration file of ``key: v1 v2 ...`` lines into float64 arrays.

    Keys whose value is not a list of numbers (``calib_time: 09-Jan-2012 13:57:47``) are skipped.

    Raises:
        InputError: missing file, a line without ``key:``, or non-finite numbers.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "calib.txt"
        >>> _ = p.write_text("calib_time: 09-Jan-2012 13:57:47\nP0: 1 0 2 0 0 1 3 0 0 0 1 0\n")
        >>> read_calib_file(p)["P0"].reshape(3, 4)[:, 2].tolist()
        [2.0, 3.0, 1.0]
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "calibration file not found")
    values: dict[str, np.ndarray] = {}
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        if not sep or not key.strip():
            raise InputError(path, f"line {line_no}: expected 'key: numbers', got {line.strip()[:60]!r}")
        try:
            numbers = np.array([float(x) for x in rest.split()], dtype=np.float64)
        except ValueError:
            continue  # a text value such as calib_time
        if not np.isfinite(numbers).all():
            raise InputError(path, f"line {line_no}: {key.strip()} contains NaN or Inf")
        values[key.strip()] = numbers
    return values


def _get(values: dict[str, np.ndarray], key: str, size: int, path: Path) -> np.ndarray:
    if key not in values:
        raise InputError(path, f"no {key} entry")
    if values[key].size != size:
        raise InputError(path, f"{key} has {values[key].size} numbers, expected {size}")
    return values[key]


def rigid(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """A 4x4 homogeneous transform from a 3x3 rotation (or 9 numbers) and a translation (3 numbers)."""
    T = np.eye(4)
    T[:3, :3] = np.asarray(R, dtype=np.float64).reshape(3, 3)
    T[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
    return T


def split_projection(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a rectified projection matrix ``P = K [I | t]`` (3x4) into ``K`` (3x3) and ``t`` (3,).

    Example:
        >>> K, t = split_projection(np.array([[100.0, 0, 50, 10], [0, 100, 40, 0], [0, 0, 1, 0]]))
        >>> t.tolist()
        [0.1, 0.0, 0.0]
    """
    P = np.asarray(P, dtype=np.float64).reshape(3, 4)
    K = P[:, :3].copy()
    return K, np.linalg.solve(K, P[:, 3])


def _check_intrinsics(K: np.ndarray, path: Path, key: str) -> None:
    if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], [0, 0, 1]) or K[1, 0] != 0:
        raise InputError(path, f"{key} is not a rectified projection (needs fx, fy > 0 and last row 0 0 1)")


@dataclass(frozen=True)
class RawCalib:
    """Calibration of one KITTI raw recording day (the ``<date>/`` folder).

    Attributes:
        folder: the date folder the files were read from.
        P_rect: rectified projection matrices ``(3, 4)`` by camera index (0..3).
        S_rect: rectified image size ``(width, height)`` by camera index.
        R_rect_00: ``(3, 3)`` rectifying rotation of camera 0 (unrectified -> rectified).
        T_cam0_velo: ``(4, 4)`` Velodyne -> unrectified camera 0 (``calib_velo_to_cam.txt``), or None
            when that file is absent.
        T_velo_imu: ``(4, 4)`` IMU/GPS -> Velodyne (``calib_imu_to_velo.txt``), or None.
    """

    folder: Path
    P_rect: dict[int, np.ndarray]
    S_rect: dict[int, tuple[int, int]]
    R_rect_00: np.ndarray
    T_cam0_velo: np.ndarray | None
    T_velo_imu: np.ndarray | None

    def _P(self, cam: int) -> np.ndarray:
        if cam not in self.P_rect:
            raise InputError(self.folder / CAM_TO_CAM, f"no P_rect_0{cam} entry")
        return self.P_rect[cam]

    def K(self, cam: int = 2) -> np.ndarray:
        """``(3, 3)`` intrinsics of rectified camera ``cam`` at its raw size ``S_rect``."""
        return split_projection(self._P(cam))[0]

    def image_size(self, cam: int = 2) -> tuple[int, int]:
        """``(width, height)`` of camera ``cam``'s rectified images."""
        if cam not in self.S_rect:
            raise InputError(self.folder / CAM_TO_CAM, f"no S_rect_0{cam} entry")
        return self.S_rect[cam]

    def T_cam_rect0(self, cam: int = 2) -> np.ndarray:
        """``(4, 4)`` rectified camera 0 -> rectified camera ``cam`` (a translation)."""
        return rigid(np.eye(3), split_projection(self._P(cam))[1])

    def T_cam_velo(self, cam: int = 2) -> np.ndarray:
        """``(4, 4)`` Velodyne -> rectified camera ``cam``: ``[I | t_cam] @ R_rect_00 @ T_cam0_velo``."""
        if self.T_cam0_velo is None:
            raise InputError(self.folder / VELO_TO_CAM, "calibration file not found")
        return self.T_cam_rect0(cam) @ rigid(self.R_rect_00, np.zeros(3)) @ self.T_cam0_velo

    def T_cam_imu(self, cam: int = 2) -> np.ndarray:
        """``(4, 4)`` IMU/GPS (OXTS) -> rectified camera ``cam``."""
        if self.T_velo_imu is None:
            raise InputError(self.folder / IMU_TO_VELO, "calibration file not found")
        return self.T_cam_velo(cam) @ self.T_velo_imu


def load_raw_calib(date_dir: str | os.PathLike) -> RawCalib:
    """Read ``calib_cam_to_cam.txt`` (required) and the optional Velodyne/IMU files of a date folder.

    Example (the 2011_09_26 calibration): ``load_raw_calib(root / "2011_09_26").K(2)[0, 0] == 721.5377``.
    """
    folder = Path(date_dir)
    cam_path = folder / CAM_TO_CAM
    values = read_calib_file(cam_path)
    P_rect, S_rect = {}, {}
    for cam in range(4):
        if f"P_rect_0{cam}" in values:
            P = _get(values, f"P_rect_0{cam}", 12, cam_path).reshape(3, 4)
            _check_intrinsics(P[:, :3], cam_path, f"P_rect_0{cam}")
            P_rect[cam] = P
        if f"S_rect_0{cam}" in values:
            w, h = _get(values, f"S_rect_0{cam}", 2, cam_path)
            S_rect[cam] = (int(round(w)), int(round(h)))
    if not P_rect:
        raise InputError(cam_path, "no P_rect_0X entries: not a KITTI raw calib_cam_to_cam.txt")
    R_rect_00 = _get(values, "R_rect_00", 9, cam_path).reshape(3, 3)

    T_cam0_velo = T_velo_imu = None
    if (folder / VELO_TO_CAM).is_file():
        v = read_calib_file(folder / VELO_TO_CAM)
        T_cam0_velo = rigid(_get(v, "R", 9, folder / VELO_TO_CAM), _get(v, "T", 3, folder / VELO_TO_CAM))
    if (folder / IMU_TO_VELO).is_file():
        v = read_calib_file(folder / IMU_TO_VELO)
        T_velo_imu = rigid(_get(v, "R", 9, folder / IMU_TO_VELO), _get(v, "T", 3, folder / IMU_TO_VELO))
    return RawCalib(folder, P_rect, S_rect, R_rect_00, T_cam0_velo, T_velo_imu)


@dataclass(frozen=True)
class OdometryCalib:
    """Calibration of one KITTI odometry sequence (``sequences/NN/calib.txt``).

    Attributes:
        path: the file read.
        P: rectified projection matrices ``(3, 4)`` by camera index (``P0``..``P3``; image_2 is P2).
        T_cam0_velo: ``(4, 4)`` Velodyne -> rectified camera 0 (``Tr``), or None.
    """

    path: Path
    P: dict[int, np.ndarray]
    T_cam0_velo: np.ndarray | None

    def _proj(self, cam: int) -> np.ndarray:
        if cam not in self.P:
            raise InputError(self.path, f"no P{cam} entry")
        return self.P[cam]

    def K(self, cam: int = 2) -> np.ndarray:
        """``(3, 3)`` intrinsics of camera ``cam`` at the sequence's raw image size."""
        return split_projection(self._proj(cam))[0]

    def T_cam_cam0(self, cam: int = 2) -> np.ndarray:
        """``(4, 4)`` camera 0 -> camera ``cam`` (a translation; the rectified frames share rotation)."""
        return rigid(np.eye(3), split_projection(self._proj(cam))[1])


def load_odometry_calib(path: str | os.PathLike) -> OdometryCalib:
    """Read an odometry ``calib.txt`` (``P0:`` .. ``P3:`` rows of 12 numbers, optional ``Tr:``)."""
    path = Path(path)
    values = read_calib_file(path)
    P = {}
    for cam in range(4):
        if f"P{cam}" in values:
            proj = _get(values, f"P{cam}", 12, path).reshape(3, 4)
            _check_intrinsics(proj[:, :3], path, f"P{cam}")
            P[cam] = proj
    if not P:
        raise InputError(path, "no P0..P3 entries: not a KITTI odometry calib.txt")
    T = None
    if "Tr" in values:
        tr = _get(values, "Tr", 12, path).reshape(3, 4)
        T = rigid(tr[:, :3], tr[:, 3])
    return OdometryCalib(path, P, T)
