"""SC-Depth (Bian et al., NeurIPS 2019) terms: depth geometry consistency and the self-discovered mask.

The target depth, moved into a source camera, must agree with the source frame's own predicted depth.
"""

from __future__ import annotations

import torch

from sa4depth.geometry import Camera, Pose, backproject_depth
from sa4depth.geometry.warp import sample_at


def depth_inconsistency(
    depth_tgt: torch.Tensor, depth_src: torch.Tensor, T_src_tgt: Pose, camera: Camera
) -> tuple[torch.Tensor, torch.Tensor]:
    """SC-Depth's normalised depth difference ``|D_computed - D_sampled| / (D_computed + D_sampled)``.

    Args:
        depth_tgt: target depth ``(B, 1, H, W)``.
        depth_src: the source frame's predicted depth ``(B, 1, H, W)``.
        T_src_tgt: pose ``(B,)`` from target to source camera.
        camera: intrinsics ``(B,)`` at this resolution.

    Returns:
        ``D_diff`` in [0, 1] ``(B, 1, H, W)`` and the bool mask of pixels that project into the source.
    """
    B, _, H, W = depth_tgt.shape
    points_src = T_src_tgt.transform(backproject_depth(depth_tgt, camera))
    uv, in_front = camera.project(points_src)
    valid = (in_front & camera.in_image(uv)).reshape(B, 1, H, W)
    computed = points_src[..., 2].clamp(min=1e-3).reshape(B, 1, H, W)
    sampled = sample_at(depth_src, uv).reshape(B, 1, H, W)
    diff = ((computed - sampled).abs() / (computed + sampled)).clamp(0, 1)
    return diff, valid
