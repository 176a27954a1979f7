"""Dense view synthesis: lift a target depth map to 3D, move it into a source view, sample there.

Used by the photometric loss (image warping) and by the LM refinement (feature warping).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sa4depth.geometry.camera import Camera
from sa4depth.geometry.pose import Pose


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Pixel-centre coordinates ``(H * W, 2)`` as ``(u, v)``, row-major, top-left centre at ``(0, 0)``.

    Example:
        >>> pixel_grid(2, 3)[:4].tolist()
        [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]
    """
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack([u, v], dim=-1).reshape(-1, 2)


def backproject_depth(depth: torch.Tensor, camera: Camera) -> torch.Tensor:
    """Lift a z-depth map ``(B, 1, H, W)`` to camera points ``(B, H * W, 3)``."""
    B, _, H, W = depth.shape
    uv = pixel_grid(H, W, device=depth.device, dtype=depth.dtype).expand(B, -1, -1)
    return camera.backproject(uv, depth.reshape(B, -1))


def sample_at(image: torch.Tensor, uv: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Bilinearly sample ``(B, C, H, W)`` at pixels ``(B, N, 2)``; returns ``(B, C, N)``.

    ``align_corners=True`` matches the pixel-centre convention (pixel ``0`` is the first centre).
    Out-of-image samples read the border value; callers mask them with `Camera.in_image`.
    """
    H, W = image.shape[-2:]
    scale = uv.new_tensor([2.0 / max(W - 1, 1), 2.0 / max(H - 1, 1)])
    grid = (uv * scale - 1.0)[:, None]
    return F.grid_sample(image, grid, mode=mode, padding_mode="border", align_corners=True)[:, :, 0]


def warp_frame(
    source: torch.Tensor, depth_tgt: torch.Tensor, T_src_tgt: Pose, camera: Camera
) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthesise the target view from a source image.

    Args:
        source: source image or features ``(B, C, H, W)``.
        depth_tgt: target z-depth ``(B, 1, H, W)``.
        T_src_tgt: pose ``(B,)`` mapping target-camera points into the source camera.
        camera: intrinsics ``(B,)`` of this resolution (shared by both views).

    Returns:
        The warped image ``(B, C, H, W)`` and a ``(B, 1, H, W)`` bool mask of target pixels whose
        3D point lies in front of the source camera and projects inside its image.
    """
    B, C, H, W = source.shape
    # The geometry in float32 at least, autocast off: under bf16-mixed training the pose and depth are
    # bfloat16 (~3 digits), which puts a point 3 m away ~1 cm off and a pixel near a 640-px border up
    # to ~1 px off; the sampled image keeps its own dtype.
    dtype = torch.promote_types(torch.promote_types(depth_tgt.dtype, T_src_tgt.dtype), torch.float32)
    with torch.autocast(depth_tgt.device.type, enabled=False):
        cam = camera.to(dtype)
        points_src = T_src_tgt.to(dtype).transform(backproject_depth(depth_tgt.to(dtype), cam))
        uv, in_front = cam.project(points_src)
        valid = in_front & cam.in_image(uv)
        warped = sample_at(source.to(dtype), uv).reshape(B, C, H, W).to(source.dtype)
    return warped, valid.reshape(B, 1, H, W)
