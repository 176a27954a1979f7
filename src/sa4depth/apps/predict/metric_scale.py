"""Metric scale of relative depth: a user's factor, or the camera height over a ground-plane fit.

`fit_ground_height` finds the camera's height above the ground in network units; the labels say which
scaling an output got.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from skimage.measure import ransac

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
    inliers gives ``h`` (`skimage.measure.ransac` with `GroundPlane`). Deterministic (fixed random seed).

    Args:
        depth: ``H x W`` z-depth; non-finite or non-positive pixels are ignored.
        K: ``3 x 3`` intrinsics of ``depth``'s resolution.
        bottom_fraction: share of the image height, from the bottom, assumed to show mostly ground.
        max_tilt_deg: largest angle between the plane's normal and the camera's down axis.
        inlier_tol: a point is on the plane within ``inlier_tol * h``.
        iterations: RANSAC trials (3-point samples).
        max_points: the points are thinned evenly to at most this many.
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns when no plane qualifies: None below says so
        plane, _ = ransac(
            points,
            GroundPlane,
            min_samples=3,
            residual_threshold=inlier_tol,
            is_model_valid=lambda plane, *_: plane.normal[1] >= min_cos,
            max_trials=iterations,
            rng=0,
        )
    # ransac refits the plane to the inliers of the best sample; that refit may tilt too far.
    if plane is None or plane.normal[1] < min_cos:
        return None
    if (plane.residuals(points) < inlier_tol).mean() < min_inlier_fraction:
        return None
    return plane.h


class GroundPlane:
    """The plane ``n . X = h`` (unit ``n``, ``h > 0``: the camera above it) for `skimage.measure.ransac`.

    Its residuals are relative, ``|n . X - h| / h``, since the depth units are unknown.

    Attributes:
        normal: ``(3,)`` unit normal, oriented so that the plane lies on its positive side.
        h: the camera centre's distance to the plane.
    """

    def __init__(self):
        """An empty plane, for `estimate` to fit."""
        self.normal = np.zeros(3)
        self.h = 0.0

    @classmethod
    def from_estimate(cls, points: np.ndarray) -> GroundPlane | None:
        """The least-squares plane of ``points`` ``(N, 3)``, N >= 3.

        Returns:
            The plane, or None if the points are collinear or the plane passes through the camera.
        """
        plane = cls()
        return plane if plane.estimate(points) else None

    def estimate(self, points: np.ndarray) -> bool:
        """Fit in place (the scikit-image < 0.26 interface); whether a plane was found."""
        centroid = points.mean(axis=0)
        _, singular, vt = np.linalg.svd(points - centroid, full_matrices=False)
        if singular[1] <= 1e-9 * singular[0]:  # collinear (or coincident) points span no plane
            return False
        normal, h = vt[-1], float(vt[-1] @ centroid)
        self.normal, self.h = (normal, h) if h >= 0 else (-normal, -h)
        return self.h > 0

    def residuals(self, points: np.ndarray) -> np.ndarray:
        """``(N,)`` relative distances ``|n . X - h| / h`` of ``points`` ``(N, 3)``."""
        return np.abs(points @ self.normal - self.h) / self.h


def check_scaling(scale: float | None, camera_height: float | None) -> None:
    """Raise `InputError` unless at most one of ``scale`` and ``camera_height`` is given, positive."""
    if scale is not None and camera_height is not None:
        raise InputError("--scale/--camera-height", "give at most one way of making depth metric")
    for name, value in (("--scale", scale), ("--camera-height", camera_height)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise InputError(name, f"must be a positive number, got {value}")


def camera_height_label(camera_height: float) -> str:
    """The units label of depth scaled by a camera height in metres."""
    return f"metric (scaled by camera height {camera_height:g} m)"


def user_scale_label(scale: float) -> str:
    """The units label of depth scaled by the user's factor."""
    return f"metric (scaled by user factor {scale:g})"
