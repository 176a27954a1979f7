"""Eigen et al. depth metrics (AbsRel, SqRel, RMSE, RMSElog, delta thresholds) under a named protocol.

Per image, with optional per-image median scaling, then averaged over images as Monodepth2 does.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict

import cv2
import numpy as np
import torch

from sa4depth.eval.protocols import DepthProtocol, crop_mask
from sa4depth.geometry import Pose

log = logging.getLogger(__name__)

DEPTH_METRIC_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
"""Metric names in the order papers print them; ``a1..a3`` are the delta < 1.25, 1.25^2, 1.25^3 accuracies."""


def to_numpy(x, dtype=np.float64) -> np.ndarray:
    """Turn a torch tensor, `sa4depth.geometry.Pose`, numpy array or nested list into a numpy array."""
    if isinstance(x, Pose):
        x = x.matrix()
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy().astype(dtype, copy=False)
    if isinstance(x, list | tuple) and x and isinstance(x[0], torch.Tensor):
        return np.stack([to_numpy(v, dtype) for v in x])
    return np.asarray(x, dtype=dtype)


def _as_map(x, name: str) -> np.ndarray:
    """A single depth map as ``(H, W)`` float64; leading singleton dims (``(1, 1, H, W)``) are dropped."""
    arr = to_numpy(x)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be one depth map (H, W) (or (1, H, W), (1, 1, H, W)), got {x.shape}")
    return arr


def eigen_errors(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The seven Eigen et al. metrics over already-masked pixels.

    Args:
        gt: ground-truth depths ``(N,)``, all > 0.
        pred: predicted depths ``(N,)``, all > 0 (already scaled and clamped).

    Returns:
        dict with `DEPTH_METRIC_KEYS`: AbsRel = mean(|gt - pred| / gt), SqRel = mean((gt - pred)^2 / gt),
        RMSE = sqrt(mean((gt - pred)^2)), RMSElog = sqrt(mean((log gt - log pred)^2)), and
        a_k = fraction of pixels with max(gt / pred, pred / gt) < 1.25^k.

    Example:
        >>> eigen_errors(np.array([1.0, 2.0]), np.array([2.0, 2.0]))["abs_rel"]
        0.5
    """
    ratio = np.maximum(gt / pred, pred / gt)
    diff = gt - pred
    return {
        "abs_rel": float(np.mean(np.abs(diff) / gt)),
        "sq_rel": float(np.mean(diff**2 / gt)),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2))),
        "a1": float(np.mean(ratio < 1.25)),
        "a2": float(np.mean(ratio < 1.25**2)),
        "a3": float(np.mean(ratio < 1.25**3)),
    }


def compute_depth_metrics(pred, gt, protocol: DepthProtocol, *, disparity: bool = False) -> dict[str, float]:
    """Depth metrics of ONE image under ``protocol``.

    Steps, in Monodepth2's order: cut the GT to ``protocol.gt_rows``; if the sizes differ, resize
    ``protocol.resized_quantity`` of the prediction bilinearly (OpenCV, half-pixel centres, float32, as
    Monodepth2 does) to the GT size: the disparity ``1 / depth``, inverted after, or the depth itself;
    valid pixels are ``min_depth < gt < max_depth`` (or
    ``gt > 0`` when ``protocol.gt_range_mask`` is False) inside the crop; ``scale = median(gt) /
    median(pred)`` over those pixels is always reported and multiplies the prediction only when
    ``protocol.median_scaling``; the prediction is clamped to ``[min_depth, max_depth]``; then
    `eigen_errors`. A metric (stereo) model's known factor, e.g. Monodepth2's 5.4, is the caller's to apply.

    Args:
        pred: predicted depth (or inverse depth if ``disparity``) ``(h, w)``, ``(1, h, w)`` or
            ``(1, 1, h, w)``, any positive scale; torch or numpy.
        gt: ground-truth depth ``(H, W)`` in metres, 0 (or anything outside the range) = unknown.
        protocol: see `sa4depth.eval.protocols`.
        disparity: ``pred`` is inverse depth (e.g. a network's sigmoid output), else depth. Either
            way the quantity that ``protocol.resized_quantity`` names is what gets resized.

    Returns:
        dict with `DEPTH_METRIC_KEYS`, ``"scale"`` (the median ratio) and ``"n_valid"`` (pixels used).
        With no valid pixel every value is NaN and ``n_valid`` is 0.

    Example:
        >>> from sa4depth.eval.protocols import SYNTHETIC
        >>> gt = np.full((4, 4), 10.0)
        >>> m = compute_depth_metrics(2 * gt, gt, SYNTHETIC)
        >>> m["abs_rel"], m["scale"]
        (0.0, 0.5)
    """
    gt = _as_map(gt, "gt")
    pred = _as_map(pred, "pred")
    height, width = gt.shape
    valid = crop_mask(protocol.crop, height, width)
    if protocol.gt_rows != (0.0, 1.0):
        rows = slice(round(protocol.gt_rows[0] * height), round(protocol.gt_rows[1] * height))
        gt, valid = gt[rows], valid[rows]

    if pred.shape != gt.shape:
        if not protocol.resize_pred_to_gt:
            raise ValueError(f"prediction {pred.shape} and GT {gt.shape} differ and resizing is off")
        # Depth and disparity are each other's inverse: invert into the protocol's quantity, resize, and
        # invert back to depth where that quantity is disparity.
        as_disparity = protocol.resized_quantity == "disparity"
        source = pred if disparity == as_disparity else 1.0 / pred
        size = (gt.shape[1], gt.shape[0])  # cv2 wants (width, height)
        pred = cv2.resize(source.astype(np.float32), size, interpolation=cv2.INTER_LINEAR).astype(np.float64)
        if as_disparity:
            pred = 1.0 / pred
    elif disparity:
        pred = 1.0 / pred

    if protocol.gt_range_mask:
        valid &= (gt > protocol.min_depth) & (gt < protocol.max_depth)
    else:
        valid &= gt > 0
    n_valid = int(valid.sum())
    if n_valid == 0:
        return {**dict.fromkeys(DEPTH_METRIC_KEYS, math.nan), "scale": math.nan, "n_valid": 0}

    gt_v, pred_v = gt[valid], pred[valid]
    scale = float(np.median(gt_v) / np.median(pred_v))
    if protocol.median_scaling:
        pred_v = pred_v * scale
    pred_v = np.clip(pred_v, protocol.min_depth, protocol.max_depth)
    return {**eigen_errors(gt_v, pred_v), "scale": scale, "n_valid": n_valid}


class DepthMetricAccumulator:
    """Per-image depth metrics averaged over images (each image weighs the same, as in Monodepth2).

    Images without a valid GT pixel are skipped (counted in ``n_skipped``). The per-image scale
    ratios are kept per sequence too, for `sa4depth.eval.scale_consistency.scale_consistency`.

    Example:
        >>> from sa4depth.eval.protocols import SYNTHETIC
        >>> acc = DepthMetricAccumulator(SYNTHETIC)
        >>> _ = acc.update(np.full((2, 2), 5.0), np.full((2, 2), 10.0))
        >>> _ = acc.update(np.full((2, 2), 4.0), np.full((2, 2), 10.0))
        >>> r = acc.compute()
        >>> r["count"], r["scale_mean"], r["scale_std"]
        (2, 2.25, 0.25)
    """

    def __init__(self, protocol: DepthProtocol):
        self.protocol = protocol
        self.reset()

    def reset(self) -> None:
        self.per_image: list[dict[str, float]] = []
        self.n_skipped = 0
        self._scales_by_sequence: dict[str, list[float]] = defaultdict(list)

    def update(self, pred, gt, *, sequence: str | None = None, disparity: bool = False) -> dict[str, float]:
        """Add one image; returns its metrics.

        Args:
            pred: predicted depth (or disparity), shaped as in `compute_depth_metrics`.
            gt: ground-truth depth, shaped as in `compute_depth_metrics`.
            sequence: optional sequence name under which the image's scale ratio is recorded.
            disparity: ``pred`` is inverse depth (see `compute_depth_metrics`).
        """
        metrics = compute_depth_metrics(pred, gt, self.protocol, disparity=disparity)
        if metrics["n_valid"] == 0:
            self.n_skipped += 1
            log.warning("depth evaluation: image without valid ground truth skipped (%s)", self.protocol.name)
            return metrics
        self.per_image.append(metrics)
        if sequence is not None:
            self._scales_by_sequence[sequence].append(metrics["scale"])
        return metrics

    def update_batch(self, pred, gt, *, sequences=None, disparity: bool = False) -> None:
        """Add a batch of images, one `update` each.

        Args:
            pred: ``(B, 1, h, w)`` or ``(B, h, w)`` predicted depth (or disparity).
            gt: ``(B, 1, H, W)`` or ``(B, H, W)`` ground-truth depth.
            sequences: optional ``B`` sequence names (see `update`).
            disparity: ``pred`` is inverse depth (see `compute_depth_metrics`).
        """
        pred, gt = to_numpy(pred), to_numpy(gt)
        if len(pred) != len(gt):
            raise ValueError(f"batch sizes differ: pred {len(pred)}, gt {len(gt)}")
        for i in range(len(pred)):
            seq = None if sequences is None else sequences[i]
            self.update(pred[i], gt[i], sequence=seq, disparity=disparity)

    def scales_by_sequence(self) -> dict[str, list[float]]:
        """Per-image scale ratios ``median(gt) / median(pred)``, grouped by the ``sequence`` of `update`.

        Example:
            >>> from sa4depth.eval.protocols import SYNTHETIC
            >>> acc = DepthMetricAccumulator(SYNTHETIC)
            >>> _ = acc.update(np.ones((2, 2)), np.full((2, 2), 3.0), sequence="a")
            >>> acc.scales_by_sequence()
            {'a': [3.0]}
        """
        return {k: list(v) for k, v in self._scales_by_sequence.items()}

    def compute(self) -> dict[str, float]:
        """Means of `DEPTH_METRIC_KEYS` over images, plus scale-ratio statistics.

        Returns:
            dict with the metric means, ``scale_mean``, ``scale_std`` (population std, ddof=0),
            ``scale_median``, ``scale_rel_std`` (std of ratio / median ratio: the number Monodepth2 prints),
            ``count`` (images used) and ``n_skipped``. Values are NaN when no image was added.
        """
        count = len(self.per_image)
        out: dict[str, float] = {}
        if count == 0:
            out.update(dict.fromkeys(DEPTH_METRIC_KEYS, math.nan))
            out.update(scale_mean=math.nan, scale_std=math.nan, scale_median=math.nan, scale_rel_std=math.nan)
        else:
            for key in DEPTH_METRIC_KEYS:
                out[key] = float(np.mean([m[key] for m in self.per_image]))
            scales = np.array([m["scale"] for m in self.per_image])
            median = float(np.median(scales))
            out.update(
                scale_mean=float(scales.mean()),
                scale_std=float(scales.std()),
                scale_median=median,
                scale_rel_std=float((scales / median).std()),
            )
        out.update(count=count, n_skipped=self.n_skipped)
        return out
