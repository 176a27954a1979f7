"""Metric scale of relative depth: a user's factor, or the camera height over a ground-plane fit.

`fit_ground_height` finds the camera's height above the ground in network units; the labels say which
scaling an output got.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from sa4depth.errors import InputError
from sa4depth.geometry import Camera

NETWORK_UNITS = "network units (relative depth, unknown scale)"


def fit_ground_height(
    depth: np.ndarray,
    K: np.ndarray,
    bottom_fraction: float = 0.3,
    max_tilt_deg: float = 30.0,
    inlier_tol: float = 0.05,
    iterations: int = 200,
    min_inlier_fraction: float = 0.3,
    max_points: int = 4000,
) -> float | None:
    """Camera height above the ground plane, in the units of ``depth``, or None when no plane is found.

    The bottom ``bottom_fraction`` of the rows is back-projected with ``K``; RANSAC picks the plane
    ``n . X = h`` (unit ``n`` within ``max_tilt_deg`` of the camera's down axis, ``h > 0``) that most points
    lie on within ``inlier_tol * h`` (relative, since the units are unknown), and a least-squares fit to its
    inliers gives ``h``. Deterministic (fixed random seed).

    Args:
        depth: ``H x W`` z-depth; non-finite or non-positive pixels are ignored.
        K: ``3 x 3`` intrinsics of ``depth``'s resolution.
        bottom_fraction: share of the image height, from the bottom, assumed to show mostly ground.
        min_inlier_fraction: below this share of plane points the fit is rejected (returns None).

    Example:
        >>> K = np.array([[50.0, 0, 31.5], [0, 50.0, 31.5], [0, 0, 1]])
        >>> v = np.arange(64.0)[:, None].repeat(64, 1)
        >>> depth = np.where(v > 40, 2.0 * 50.0 / np.maximum(v - 31.5, 1e-3), 100.0)  # ground 2 below
        >>> round(fit_ground_height(depth, K), 6)
        2.0
    """
    H, W = depth.shape
    top = min(int(round(H * (1.0 - bottom_fraction))), H - 1)
    d = torch.as_tensor(depth[top:], dtype=torch.float64)
    v, u = torch.meshgrid(
        torch.arange(top, H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij"
    )
    valid = torch.isfinite(d) & (d > 0)
    uv = torch.stack([u[valid], v[valid]], dim=-1)
    camera = Camera.from_K(torch.as_tensor(K, dtype=torch.float64), W, H)
    points = camera.backproject(uv, d[valid]).numpy()
    if len(points) < 3:
        return None
    points = points[np.linspace(0, len(points) - 1, min(len(points), max_points)).astype(int)]
    min_cos = math.cos(math.radians(max_tilt_deg))

    def plane_from(normal: np.ndarray, point: np.ndarray) -> tuple[np.ndarray, float]:
        # Orient so that h = n . X > 0: the plane lies on the positive side, as ground below the camera.
        h = float(normal @ point)
        return (normal, h) if h >= 0 else (-normal, -h)

    rng = np.random.default_rng(0)
    samples = points[rng.integers(0, len(points), size=(iterations, 3))]
    normals = np.cross(samples[:, 1] - samples[:, 0], samples[:, 2] - samples[:, 0])
    lengths = np.linalg.norm(normals, axis=1)
    best, best_count = None, 0
    for normal, length, sample in zip(normals, lengths, samples, strict=True):
        if length < 1e-12:
            continue
        n, h = plane_from(normal / length, sample[0])
        if h <= 0 or n[1] < min_cos:
            continue
        count = int((np.abs(points @ n - h) < inlier_tol * h).sum())
        if count > best_count:
            best, best_count = (n, h), count
    if best is None:
        return None
    n, h = best
    inliers = points[np.abs(points @ n - h) < inlier_tol * h]
    centroid = inliers.mean(axis=0)
    normal = np.linalg.svd(inliers - centroid, full_matrices=False)[2][-1]
    n, h = plane_from(normal, centroid)
    if h <= 0 or n[1] < min_cos:
        return None
    if (np.abs(points @ n - h) < inlier_tol * h).mean() < min_inlier_fraction:
        return None
    return h


def check_scaling(scale: float | None, camera_height: float | None) -> None:
    if scale is not None and camera_height is not None:
        raise InputError("--scale/--camera-height", "give at most one way of making depth metric")
    for name, value in (("--scale", scale), ("--camera-height", camera_height)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise InputError(name, f"must be a positive number, got {value}")


def camera_height_label(camera_height: float) -> str:
    return f"metric (scaled by camera height {camera_height:g} m)"


def user_scale_label(scale: float) -> str:
    return f"metric (scaled by user factor {scale:g})"
