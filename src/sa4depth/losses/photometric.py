"""Photometric view-synthesis error (SSIM + L1) and Monodepth2's per-pixel minimum reprojection.

Auto-masking and the minimum over source frames follow Godard et al., ICCV 2019.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM with a 3x3 box window and reflection padding, ``(B, C, H, W)`` -> same shape.

    The box window (not kornia's Gaussian one) is what the Monodepth2 family trains with, so
    loss values stay comparable with the literature.

    Example:
        >>> x = torch.rand(1, 3, 8, 8)
        >>> bool(torch.allclose(ssim(x, x), torch.ones(1, 3, 8, 8), atol=1e-4))
        True
    """
    c1, c2 = 0.01**2, 0.03**2
    x, y = F.pad(x, (1, 1, 1, 1), mode="reflect"), F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x**2
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y**2
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sigma_x + sigma_y + c2)
    return num / den


def photometric_error(pred: torch.Tensor, target: torch.Tensor, alpha: float = 0.85) -> torch.Tensor:
    """``alpha * (1 - SSIM) / 2 + (1 - alpha) * L1``, channel mean: ``(B, 3, H, W)`` -> ``(B, 1, H, W)``."""
    l1 = (pred - target).abs().mean(1, keepdim=True)
    dssim = ((1 - ssim(pred, target)) / 2).clamp(0, 1).mean(1, keepdim=True)
    return alpha * dssim + (1 - alpha) * l1


def min_reprojection_loss(
    target: torch.Tensor,
    warped: list[torch.Tensor],
    valid: list[torch.Tensor],
    sources: list[torch.Tensor] | None = None,
    alpha: float = 0.85,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Monodepth2 loss: per-pixel minimum of the photometric error over source frames.

    Args:
        target: the target image ``(B, 3, H, W)``.
        warped: each source image warped into the target view, ``(B, 3, H, W)``.
        valid: for each, ``(B, 1, H, W)`` bool mask of pixels that project inside the source.
            Invalid pixels get a large error so that another source wins the minimum.
        sources: the unwarped source images; when given, auto-masking compares against the
            identity reprojection (pixels where no warp beats "no motion" are ignored).
        alpha: SSIM weight.

    Returns:
        The scalar loss and a dict with the ``automask`` (B, 1, H, W) and the ``error`` map.
    """
    errors = [
        torch.where(v, photometric_error(w, target, alpha), torch.full_like(v, 1e3, dtype=target.dtype))
        for w, v in zip(warped, valid, strict=True)
    ]
    reprojection = torch.cat(errors, dim=1)
    min_error, _ = reprojection.min(dim=1, keepdim=True)
    info = {"error": min_error}
    if sources is not None:
        identity = torch.cat([photometric_error(s, target, alpha) for s in sources], dim=1)
        # Tiny noise breaks ties on perfectly static pixels, as in Monodepth2.
        identity = identity + torch.randn_like(identity) * 1e-5
        min_identity, _ = identity.min(dim=1, keepdim=True)
        mask = min_error < min_identity
        info["automask"] = mask
        min_error = min_error * mask
    seen = min_error < 1e3
    loss = (min_error * seen).sum() / seen.sum().clamp(min=1)
    return loss, info
