"""Intrinsics from a focal length or a field of view, for images that come without a calibration.

Used where a camera must be assumed: preparing a user's video (`sa4depth.data.prepare`) and prediction.
"""

from __future__ import annotations

import math

import numpy as np

from sa4depth.errors import InputError


def intrinsics_from_fov(width: int, height: int, fx: float | None = None, fov: float | None = None):
    """``3 x 3`` K with square pixels and the principal point at the image centre, from fx or FOV.

    Args:
        width: image width in pixels.
        height: image height in pixels.
        fx: focal length in pixels at this resolution.
        fov: horizontal field of view in degrees (used when ``fx`` is None).

    Example:
        >>> intrinsics_from_fov(100, 50, fov=90.0)[0].round(6).tolist()
        [50.0, 0.0, 49.5]
    """
    if fx is not None and fov is not None:
        raise InputError("--fx/--fov", "give the focal length or the field of view, not both")
    if fx is None:
        if fov is None or not 0 < fov < 180:
            raise InputError("--fov", f"horizontal field of view must be in (0, 180) degrees, got {fov}")
        fx = (width / 2) / math.tan(math.radians(fov) / 2)
    if not (math.isfinite(fx) and fx > 0):
        raise InputError("--fx", f"focal length must be a positive number of pixels, got {fx}")
    return np.array([[fx, 0, (width - 1) / 2], [0, fx, (height - 1) / 2], [0, 0, 1]], dtype=np.float64)
