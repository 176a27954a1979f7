"""Cameras, rigid poses and view warping: the conventions every other module relies on.

Conventions (defined here once):

* **Pose direction.** ``T_a_b`` (alias ``a_from_b``) maps points expressed in frame ``b`` into
  frame ``a``: ``X_a = T_a_b * X_b``. Composition chains the inner names:
  ``T_a_b @ T_b_c == T_a_c``. In training, ``T_src_tgt`` maps target-camera points into a source
  camera; it is what view synthesis needs (target pixel -> 3D -> source pixel). KITTI-style
  ``poses.txt`` rows are ``T_world_cam`` (camera-to-world), so
  ``T_src_tgt = T_world_src.inv() @ T_world_tgt``.
* **Camera axes.** x right, y down, z forward (OpenCV).
* **Pixel centres.** Pixel ``(u, v)`` (column, row) covers ``[u - 0.5, u + 0.5]``: the centre of the
  top-left pixel is ``(0, 0)``, as in OpenCV and KITTI calibration. Resizing by ``s`` therefore maps
  ``c -> (c + 0.5) * s - 0.5`` and ``f -> f * s``; cropping subtracts the crop offset.
* **Depth** is the z coordinate (not the ray length), in metres for data and in "network units"
  for self-supervised predictions, whose scale is only known up to a factor.
"""

from sa4depth.geometry.camera import Camera
from sa4depth.geometry.pose import Pose
from sa4depth.geometry.warp import backproject_depth, pixel_grid, warp_frame

__all__ = ["Camera", "Pose", "backproject_depth", "pixel_grid", "warp_frame"]
