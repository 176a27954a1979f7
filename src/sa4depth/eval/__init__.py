"""Evaluation: depth metrics under named protocols, scale consistency, odometry, result tables.

Everything here is numpy on the CPU; tensors are accepted at the edges and converted.
"""

from sa4depth.eval.depth_metrics import (
    DEPTH_METRIC_KEYS,
    DepthMetricAccumulator,
    compute_depth_metrics,
    eigen_errors,
)
from sa4depth.eval.odometry import (
    align_trajectory,
    integrate_relative_poses,
    kitti_odometry_metrics,
    kitti_segment_errors,
    plot_trajectory,
    relative_poses,
    snippet_ate,
    snippet_error,
    umeyama_alignment,
)
from sa4depth.eval.protocols import (
    CITYSCAPES,
    KITTI_EIGEN,
    KITTI_IMPROVED,
    KITTI_IMPROVED_MD2,
    NYU,
    SYNTHETIC,
    DepthProtocol,
    get_protocol,
)
from sa4depth.eval.report_table import format_table, write_metrics_json
from sa4depth.eval.scale_consistency import (
    pose_depth_ratio_summary,
    pose_depth_scale_ratio,
    scale_consistency,
)

__all__ = [
    "CITYSCAPES",
    "DEPTH_METRIC_KEYS",
    "KITTI_EIGEN",
    "KITTI_IMPROVED",
    "KITTI_IMPROVED_MD2",
    "NYU",
    "SYNTHETIC",
    "DepthMetricAccumulator",
    "DepthProtocol",
    "align_trajectory",
    "compute_depth_metrics",
    "eigen_errors",
    "format_table",
    "get_protocol",
    "integrate_relative_poses",
    "kitti_odometry_metrics",
    "kitti_segment_errors",
    "plot_trajectory",
    "pose_depth_ratio_summary",
    "pose_depth_scale_ratio",
    "relative_poses",
    "scale_consistency",
    "snippet_ate",
    "snippet_error",
    "umeyama_alignment",
    "write_metrics_json",
]
