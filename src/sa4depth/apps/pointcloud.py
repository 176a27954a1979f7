"""Coloured 3D point clouds from a depth map and intrinsics, written as PLY (binary or ASCII).

`predict_point_cloud` runs a checkpoint's depth network on one image and writes its point cloud.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import torch

from sa4depth.data.layout import atomic_write_bytes, check_output_file, read_image
from sa4depth.errors import InputError
from sa4depth.geometry import Camera, pixel_grid

_VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])


def depth_to_points(
    image: np.ndarray, depth: np.ndarray, K: np.ndarray, max_depth: float | None = None, stride: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Back-project every ``stride``-th pixel with valid depth into the camera frame (x right, y down, z fwd).

    Args:
        image: ``H x W x 3`` uint8 colours.
        depth: ``H x W`` z-depth; pixels with non-finite, non-positive or (with ``max_depth``) larger
            depth are dropped.
        K: ``3 x 3`` intrinsics of this resolution (pixel centre of the top-left pixel at ``(0, 0)``).
        max_depth: drop points farther than this (e.g. sky).
        stride: keep every ``stride``-th row and column.

    Returns:
        ``(points (N, 3) float32, colors (N, 3) uint8)``.

    Example:
        >>> K = np.array([[10.0, 0, 1], [0, 10.0, 1], [0, 0, 1]])
        >>> pts, _ = depth_to_points(np.zeros((3, 3, 3), np.uint8), np.full((3, 3), 2.0), K)
        >>> pts[4].tolist()  # the principal point (1, 1)
        [0.0, 0.0, 2.0]
    """
    image, depth, K = np.asarray(image), np.asarray(depth), np.asarray(K, dtype=np.float64)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be H x W x 3 uint8, got {image.shape} {image.dtype}")
    if depth.shape != image.shape[:2]:
        raise ValueError(f"depth {depth.shape} does not match the image size {image.shape[:2]}")
    if K.shape != (3, 3):
        raise ValueError(f"K must be 3 x 3, got {K.shape}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    H, W = depth.shape
    camera = Camera.from_K(torch.as_tensor(K), W, H)
    uv = pixel_grid(H, W, dtype=torch.float64).reshape(H, W, 2)[::stride, ::stride].reshape(-1, 2)
    d = torch.as_tensor(depth[::stride, ::stride], dtype=torch.float64).reshape(-1)
    keep = torch.isfinite(d) & (d > 0)
    if max_depth is not None:
        keep &= d <= max_depth
    points = camera.backproject(uv[keep], d[keep]).numpy().astype(np.float32)
    colors = image[::stride, ::stride].reshape(-1, 3)[keep.numpy()]
    return points, colors


def ply_bytes(points: np.ndarray, colors: np.ndarray, binary: bool = True) -> bytes:
    """A PLY file with float32 ``x y z`` and uint8 ``red green blue`` per vertex."""
    vertices = np.empty(len(points), dtype=_VERTEX)
    for i, axis in enumerate("xyz"):
        vertices[axis] = points[:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        vertices[channel] = colors[:, i]
    fmt = "binary_little_endian" if binary else "ascii"
    props = "".join(
        f"property {t} {n}\n" for n, t in zip(_VERTEX.names, ("float",) * 3 + ("uchar",) * 3, strict=True)
    )
    header = (
        f"ply\nformat {fmt} 1.0\ncomment made by sa4depth\nelement vertex {len(points)}\n{props}end_header\n"
    )
    if binary:
        return header.encode("ascii") + vertices.tobytes()
    buf = io.StringIO()
    np.savetxt(buf, points, fmt="%.7g")
    rows = buf.getvalue().splitlines()
    body = "".join(f"{r} {c[0]} {c[1]} {c[2]}\n" for r, c in zip(rows, colors.tolist(), strict=True))
    return (header + body).encode("ascii")


def export_point_cloud(
    image: np.ndarray,
    depth: np.ndarray,
    K: np.ndarray,
    out_ply: str | os.PathLike,
    max_depth: float | None = None,
    stride: int = 1,
    binary: bool = True,
) -> int:
    """Write the coloured point cloud of a depth map as PLY, atomically (see `depth_to_points`).

    Args:
        image: ``(H, W, 3)`` uint8 colours.
        depth: ``(H, W)`` z-depth (metres for a metric model); non-finite and non-positive depths are
            dropped.
        K: ``(3, 3)`` intrinsics at this resolution.
        out_ply: the PLY file to write (replaced atomically if it exists).
        max_depth: drop points farther than this, in the depth's units (e.g. sky); None keeps all.
        stride: keep every ``stride``-th row and column.
        binary: binary little-endian PLY (compact) or ASCII (readable).

    Returns:
        The number of points written.
    """
    points, colors = depth_to_points(image, depth, K, max_depth=max_depth, stride=stride)
    atomic_write_bytes(out_ply, ply_bytes(points, colors, binary=binary))
    return len(points)


def read_ply(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a PLY written by `export_point_cloud`: ``(points (N, 3) float32, colors (N, 3) uint8)``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "PLY file not found")
    data = path.read_bytes()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise InputError(path, "not a PLY file (no 'ply' magic or no end_header)")
    header = data[:end].decode("ascii", errors="replace").splitlines()
    body = data[end + len(b"end_header\n") :]
    try:
        fmt = next(line.split()[1] for line in header if line.startswith("format"))
        count = int(next(line.split()[2] for line in header if line.startswith("element vertex")))
        props = [line.split()[-1] for line in header if line.startswith("property")]
    except (StopIteration, IndexError, ValueError):
        raise InputError(path, "PLY header lacks a format or vertex count") from None
    if props != list(_VERTEX.names):
        raise InputError(path, f"expected vertex properties {list(_VERTEX.names)}, found {props}")
    if fmt == "binary_little_endian":
        if len(body) < count * _VERTEX.itemsize:
            raise InputError(path, f"truncated: {count} vertices declared, {len(body)} bytes of data")
        vertices = np.frombuffer(body, dtype=_VERTEX, count=count)
        points = np.stack([vertices[a] for a in "xyz"], axis=1)
        colors = np.stack([vertices[c] for c in ("red", "green", "blue")], axis=1)
    elif fmt == "ascii":
        table = np.loadtxt(io.StringIO(body.decode("ascii")), ndmin=2).reshape(-1, 6)
        if len(table) != count:
            raise InputError(path, f"{count} vertices declared, {len(table)} found")
        points, colors = table[:, :3].astype(np.float32), table[:, 3:].astype(np.uint8)
    else:
        raise InputError(path, f"unsupported PLY format {fmt!r}")
    return points, colors


def predict_point_cloud(
    checkpoint: str | os.PathLike,
    image_path: str | os.PathLike,
    out_ply: str | os.PathLike,
    fx: float | None = None,
    fov: float | None = None,
    scale: float | None = None,
    camera_height: float | None = None,
    max_depth: float | None = None,
    stride: int = 1,
    binary: bool = True,
) -> int:
    """Predict depth for one image and write its coloured point cloud (camera frame, x right, y down).

    Units and intrinsics follow `sa4depth.apps.predict.predict_paths`: network units unless ``scale`` or
    ``camera_height`` (metres) makes them metric; K from the checkpoint's training camera unless ``fx``
    or ``fov`` is given. ``max_depth`` is in the output units.

    Returns:
        The number of points written.

    Raises:
        InputError: bad options, an unreadable image or checkpoint, or an output that is a folder or
            cannot be written.
    """
    from sa4depth.apps.predict.metric_scale import check_scaling
    from sa4depth.apps.predict.predictor import DepthPredictor

    check_scaling(scale, camera_height)
    if stride < 1:
        raise InputError("--stride", f"must be at least 1, got {stride}")
    if max_depth is not None and not (math.isfinite(max_depth) and max_depth > 0):
        raise InputError("--max-depth", f"must be a positive number, got {max_depth}")
    check_output_file(out_ply)  # a folder or a read-only place fails now, not after the prediction
    image = read_image(image_path)
    predictor = DepthPredictor.from_checkpoint(checkpoint)
    K = predictor.intrinsics(image.shape[1], image.shape[0], fx, fov)
    depth = predictor.predict([image])[0]
    if scale is not None:
        depth = depth * scale
    elif camera_height is not None:
        depth = depth * predictor.height_scale([image], [depth], camera_height, image_path, fx, fov)[0]
    return export_point_cloud(image, depth, K, out_ply, max_depth=max_depth, stride=stride, binary=binary)
