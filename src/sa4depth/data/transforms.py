"""Resizing with consistent intrinsics, and the training augmentations (flip, colour jitter).

Every dataset resizes through `resize_with_camera`, so one function keeps K right after a resize or crop.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from kornia import enhance

from sa4depth.geometry import Camera

# Reflects x: conjugating a pose by it gives the pose of the mirrored scene.
_FLIP_X = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))


def resize_with_camera(
    image: np.ndarray, K: np.ndarray, height: int, width: int, crop: tuple[int, int, int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Crop (optional) then resize an ``H x W x C`` image and return the matching 3x3 K.

    Args:
        image: ``H x W x C`` array (uint8 or float).
        K: intrinsics of ``image``.
        height: output height in pixels.
        width: output width in pixels.
        crop: ``(left, top, crop_width, crop_height)`` in input pixels, applied first.
    """
    cam = Camera.from_K(torch.as_tensor(K, dtype=torch.float64), image.shape[1], image.shape[0])
    if crop is not None:
        left, top, cw, ch = crop
        image = image[top : top + ch, left : left + cw]
        cam = cam.crop(left, top, cw, ch)
    if image.shape[:2] != (height, width):
        shrinking = image.shape[0] > height or image.shape[1] > width
        image = cv2.resize(
            image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        )
        cam = cam.resize_to(width, height)
    return image, cam.K().numpy()


def resize_depth(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a sparse or dense depth map (never blends valid with 0 = unknown)."""
    if depth.shape == (height, width):
        return depth
    return cv2.resize(depth, (width, height), interpolation=cv2.INTER_NEAREST)


def to_tensor_images(frames: list[np.ndarray]) -> torch.Tensor:
    """``N`` uint8 ``H x W x 3`` frames -> ``(N, 3, H, W)`` float32 in [0, 1]."""
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div_(255.0)


def flip_sample(sample: dict) -> dict:
    """Mirror a sample left-right: images, depth, intrinsics (``cx -> W - 1 - cx``) and poses."""
    out = dict(sample)
    for key in ("images", "images_aug", "depth"):
        if key in out:
            out[key] = out[key].flip(-1)
    H, W = sample["images"].shape[-2:]
    cam = Camera.from_K(sample["K"], W, H).flip_horizontal()
    out["K"] = cam.K()
    out["T_src_tgt"] = _FLIP_X @ sample["T_src_tgt"] @ _FLIP_X
    return out


def color_jitter(images: torch.Tensor, generator: torch.Generator, strength: float = 0.2, hue: float = 0.1):
    """Apply ONE random brightness/contrast/saturation/hue change to all frames ``(N, 3, H, W)``.

    The same change on every frame keeps the photometric constancy that the loss relies on.
    """
    b, c, s = (1 + strength * (2 * torch.rand(3, generator=generator) - 1)).tolist()
    h = hue * (2 * torch.rand(1, generator=generator).item() - 1)
    out = enhance.adjust_brightness(images, b - 1, clip_output=True)
    out = enhance.adjust_contrast(out, c, clip_output=True)
    out = enhance.adjust_saturation(out, s)
    out = enhance.adjust_hue(out, h * 2 * np.pi)
    return out.clamp(0, 1)


def augment(
    sample: dict, generator: torch.Generator, flip_prob: float = 0.5, jitter_prob: float = 0.5
) -> dict:
    """Training augmentation: random flip of the whole snippet, then colour jitter of the network inputs."""
    if torch.rand(1, generator=generator).item() < flip_prob:
        sample = flip_sample(sample)
    if torch.rand(1, generator=generator).item() < jitter_prob:
        sample = dict(sample, images_aug=color_jitter(sample["images"], generator))
    return sample
