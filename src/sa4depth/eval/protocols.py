"""Named depth-evaluation protocols (range, crop, scaling, resized quantity): KITTI, NYU, Cityscapes, ours.

Each protocol is a frozen `DepthProtocol` that follows one public reference (docs/protocols.md names it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sa4depth.errors import InputError

# Crop boxes as (top, bottom, left, right) fractions of the ground-truth height and width. A box becomes
# pixel rows floor(top * H) .. floor(bottom * H) (end excluded), exactly as Monodepth2's ``astype(np.int32)``
# truncates (so a 370-row KITTI map gets rows 151:366, since 0.99189189 * 370 = 366.9999993).
CROP_FRACTIONS: dict[str, tuple[float, float, float, float]] = {
    # Garg et al. 2016, the crop of every self-supervised KITTI paper since (rows 153:371, cols 44:1197
    # on a 375 x 1242 map).
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    # Eigen et al. 2014 (Monodepth v1's "eigen" crop): a slightly higher band than Garg's.
    "eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),
    # NYUv2 border crop (Eigen et al.): rows 45:471, cols 41:601 of the 480 x 640 test maps.
    "nyu": (45 / 480, 471 / 480, 41 / 640, 601 / 640),
    # ManyDepth's Cityscapes centre crop, as fractions of the FULL 1024 x 2048 frame: rows 256:768,
    # cols 192:1856 (see `CITYSCAPES`).
    "cityscapes": (0.25, 0.75, 0.09375, 0.90625),
}

RESIZED_QUANTITIES = ("disparity", "depth")
"""What `DepthProtocol.resized_quantity` may name."""


@dataclass(frozen=True)
class DepthProtocol:
    """How predicted depth is compared with ground truth for one benchmark.

    Attributes:
        name: registry key.
        min_depth: GT pixels must satisfy ``min_depth < gt < max_depth`` to count; predictions are
            clamped to ``[min_depth, max_depth]`` after (optional) median scaling.
        max_depth: see ``min_depth``.
        crop: None or a key of `CROP_FRACTIONS` ("garg", "eigen", "nyu", "cityscapes").
        median_scaling: multiply each prediction by ``median(gt) / median(pred)`` over its valid
            pixels (monocular models, whose scale is unknown). Off for metric or stereo models.
        resize_pred_to_gt: bilinearly resize the prediction to the GT size when they differ; if False,
            a size mismatch raises.
        resized_quantity: what is resized when sizes differ (`RESIZED_QUANTITIES`): "disparity" resizes
            ``1 / depth`` and inverts the result, as Monodepth2's and ManyDepth's ``evaluate_depth.py`` do
            with the network's disparity; "depth" resizes depth itself, as SC-Depth's ``eval_depth.py``
            does. Bilinear interpolation of the two differs at depth edges: between a 5 m and a 50 m
            pixel, the disparity mean gives 9.1 m, the depth mean 27.5 m.
        gt_range_mask: if False the valid mask is only ``gt > 0`` (no range test): what Monodepth2 does
            for every split except "eigen" (see `KITTI_IMPROVED_MD2`).
        gt_rows: the rows of the GT frame that the prediction covers, as (start, end) fractions of the
            GT height; the GT is cut to rows ``round(start * H):round(end * H)`` before resizing. Crop
            fractions stay relative to the full frame. Cityscapes uses (0, 0.75).
    """

    name: str
    min_depth: float
    max_depth: float
    crop: str | None = None
    median_scaling: bool = True
    resize_pred_to_gt: bool = True
    resized_quantity: str = "disparity"
    gt_range_mask: bool = True
    gt_rows: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self):
        if self.crop is not None and self.crop not in CROP_FRACTIONS:
            raise ValueError(f"unknown crop {self.crop!r}; expected None or one of {sorted(CROP_FRACTIONS)}")
        if not 0 <= self.min_depth < self.max_depth:
            raise ValueError(f"need 0 <= min_depth < max_depth, got {self.min_depth}, {self.max_depth}")
        if self.resized_quantity not in RESIZED_QUANTITIES:
            raise ValueError(
                f"resized_quantity must be one of {RESIZED_QUANTITIES}, got {self.resized_quantity!r}"
            )
        start, end = self.gt_rows
        if not 0.0 <= start < end <= 1.0:
            raise ValueError(f"gt_rows must satisfy 0 <= start < end <= 1, got {self.gt_rows}")


def crop_box(crop: str, height: int, width: int) -> tuple[int, int, int, int]:
    """Pixel box ``(top, bottom, left, right)`` (ends excluded) of a named crop for an ``height x width`` map.

    Example:
        >>> crop_box("garg", 375, 1242)
        (153, 371, 44, 1197)
        >>> crop_box("nyu", 480, 640)
        (45, 471, 41, 601)
    """
    top, bottom, left, right = CROP_FRACTIONS[crop]
    rows = (np.array([top, bottom]) * height).astype(np.int64)
    cols = (np.array([left, right]) * width).astype(np.int64)
    return int(rows[0]), int(rows[1]), int(cols[0]), int(cols[1])


def crop_mask(crop: str | None, height: int, width: int) -> np.ndarray:
    """Boolean ``(height, width)`` mask, True inside the named crop (everywhere if ``crop`` is None)."""
    mask = np.zeros((height, width), dtype=bool)
    if crop is None:
        mask[:] = True
        return mask
    top, bottom, left, right = crop_box(crop, height, width)
    mask[top:bottom, left:right] = True
    return mask


KITTI_EIGEN = DepthProtocol(
    "kitti_eigen", min_depth=1e-3, max_depth=80.0, crop="garg", resized_quantity="disparity"
)
"""KITTI Eigen test split (697 images, projected raw LiDAR), Monodepth2's ``evaluate_depth.py``.

Garg crop, 1e-3 < gt < 80 m, median scaling, clamp to [1e-3, 80] m; the prediction's disparity is
resized to the GT size and inverted.
"""

KITTI_IMPROVED = DepthProtocol(
    "kitti_improved", min_depth=1e-3, max_depth=80.0, crop="garg", resized_quantity="disparity"
)
"""KITTI improved GT (652 of the Eigen test images, the KITTI depth benchmark's accumulated maps).

Same crop, range and resized quantity (disparity) as `KITTI_EIGEN`, which is what most later papers
report. Monodepth2 itself (``--eval_split eigen_benchmark``) does NOT crop nor range-mask this split: its
mask is ``gt > 0`` only, then predictions are clamped to [1e-3, 80] m as usual. Use `KITTI_IMPROVED_MD2`
to reproduce that (it gave Monodepth2's published 0.090 AbsRel).
"""

KITTI_IMPROVED_MD2 = DepthProtocol(
    "kitti_improved_md2",
    min_depth=1e-3,
    max_depth=80.0,
    crop=None,
    gt_range_mask=False,
    resized_quantity="disparity",
)
"""Monodepth2's own evaluation of the improved GT: mask ``gt > 0``, no crop, clamp to [1e-3, 80] m,
disparity resized."""

NYU = DepthProtocol("nyu", min_depth=0.1, max_depth=10.0, crop="nyu", resized_quantity="depth")
"""NYUv2 test set (654 images, 480 x 640), SC-Depth's ``eval_depth.py`` (JiawangBian/sc_depth_pl).

Border crop rows 45:471, cols 41:601; 0.1 < gt < 10 m; median scaling; clamp to [0.1, 10] m. SC-Depth
saves predicted depth and resizes that depth (not the disparity) to 480 x 640: so does this protocol.
"""

CITYSCAPES = DepthProtocol(
    "cityscapes",
    min_depth=1e-3,
    max_depth=80.0,
    crop="cityscapes",
    gt_rows=(0.0, 0.75),
    resized_quantity="disparity",
)
"""Cityscapes test set (1525 images), the ManyDepth protocol (Watson et al., CVPR 2021).

What ManyDepth's ``evaluate_depth.py`` and ``CityscapesEvalDataset`` do, and what this protocol mirrors:

* Input images are the full 1024 x 2048 frames with the bottom 25% (the ego car's bonnet) cut off
  (``crop_h = h * 3 // 4``), then resized to the network size (512 x 192). So a prediction covers the
  top 75% of the frame: ``gt_rows = (0, 0.75)``. (Older work, e.g. Struct2Depth, cut the bottom 20%
  instead; that is not this protocol.)
* GT depth maps are ManyDepth's released per-image ``gt_depths/NNN_depth.npy``: full 1024 x 2048 frames
  converted from the disparity maps with each image's intrinsics and the stereo baseline
  (``depth = baseline * fx / disparity``, 0 where no disparity). Pass that full map as ``gt``.
* The GT is cut to its top ``round(0.75 * 1024) = 768`` rows, the prediction's disparity is resized
  bilinearly to 768 x 2048 and inverted, and both are cropped to rows 256:768, cols 192:1856 of the full
  frame (the "middle 50%" of the height, about 8% off each side).
* Valid pixels: ``1e-3 < gt < 80``; per-image median scaling; clamp to [1e-3, 80] m; metrics are
  averaged per image, as for KITTI.
"""

SYNTHETIC = DepthProtocol("synthetic", min_depth=0.1, max_depth=80.0, crop=None, resized_quantity="disparity")
"""Our built-in rendered world: dense GT, no crop, 0.1 < gt < 80 m, median scaling.

The folder loader brings the GT to the network size (`sa4depth.data.transforms.resize_depth`), so the
prediction is not resized; one of another size would have its disparity resized, as for KITTI.
"""

PROTOCOLS: dict[str, DepthProtocol] = {
    p.name: p for p in (KITTI_EIGEN, KITTI_IMPROVED, KITTI_IMPROVED_MD2, NYU, CITYSCAPES, SYNTHETIC)
}


def get_protocol(name: str) -> DepthProtocol:
    """Look a protocol up by name ("kitti_eigen", "kitti_improved", "nyu", "cityscapes", ...).

    Example:
        >>> get_protocol("nyu").max_depth
        10.0
    """
    try:
        return PROTOCOLS[name]
    except KeyError:
        known = ", ".join(sorted(PROTOCOLS))
        raise InputError("depth protocol", f"unknown name {name!r}; known: {known}") from None
