"""Edge-aware disparity smoothness (Godard et al.), on mean-normalised disparity.

Normalising by the mean makes the penalty independent of the disparity's arbitrary scale.
"""

from __future__ import annotations

import torch


def edge_aware_smoothness(disp: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Mean of ``|d disp*| exp(-|d I|)`` over x and y; ``disp`` ``(B, 1, H, W)``, ``image`` ``(B, 3, H, W)``.

    Example:
        >>> edge_aware_smoothness(torch.ones(1, 1, 4, 4), torch.rand(1, 3, 4, 4)).item()
        0.0
    """
    disp = disp / (disp.mean(dim=(2, 3), keepdim=True) + 1e-7)
    grad_disp_x = (disp[..., :, :-1] - disp[..., :, 1:]).abs()
    grad_disp_y = (disp[..., :-1, :] - disp[..., 1:, :]).abs()
    grad_img_x = (image[..., :, :-1] - image[..., :, 1:]).abs().mean(1, keepdim=True)
    grad_img_y = (image[..., :-1, :] - image[..., 1:, :]).abs().mean(1, keepdim=True)
    return (grad_disp_x * torch.exp(-grad_img_x)).mean() + (grad_disp_y * torch.exp(-grad_img_y)).mean()
