"""Evaluate a trained model on a dataset split: depth metrics, scale consistency, pose-depth scale, ATE.

Used by `sa4depth evaluate`, the demo and the benchmark comparison; inference runs the depth net only.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from torch.utils.data import DataLoader

from sa4depth.config import Config
from sa4depth.data.datamodule import build_dataset, collate
from sa4depth.eval.depth_metrics import DepthMetricAccumulator
from sa4depth.eval.odometry import snippet_error
from sa4depth.eval.protocols import get_protocol
from sa4depth.eval.scale_consistency import (
    pose_depth_ratio_summary,
    pose_depth_scale_ratio,
    scale_consistency,
)


@torch.inference_mode()
def evaluate_model(
    model: torch.nn.Module,
    cfg: Config,
    split: str = "test",
    protocol: str | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> dict:
    """Evaluate ``model`` on ``split`` of the dataset in ``cfg.data``.

    Args:
        model: a `sa4depth.train.model.DepthPoseModel` (or anything with its ``depth_net`` and
            ``relative_pose``); typed loosely so that evaluation does not import the training layer.
        cfg: the config whose ``data`` section names the dataset.
        split: the split to evaluate.
        protocol: a `sa4depth.eval.protocols` name; default ``cfg.eval_protocol``.
        batch_size: images per forward pass.
        progress: show a progress bar.

    Returns:
        A JSON-ready dict: ``depth`` (metric means, scale stats), ``scale_consistency``
        (Seq Scale Std, within-sequence CV), ``pose_depth_scale_ratio`` (summary) and ``pose``
        (5-frame snippet ATE) where the dataset has ground-truth poses.
    """
    model.eval()
    dataset = build_dataset(cfg.data, split, train=False)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    accumulator = DepthMetricAccumulator(get_protocol(protocol or cfg.eval_protocol))
    offsets = list(cfg.data.offsets)
    next_index = offsets.index(1) if 1 in offsets else None
    pairs: dict[str, list[tuple[int, np.ndarray, np.ndarray, float]]] = defaultdict(list)
    iterator = loader
    if progress:
        from rich.progress import track

        iterator = track(loader, description=f"evaluating {split}")
    for batch in iterator:
        depth = model.depth_net.predict_depth(batch["images"][:, 0])
        scales = [np.nan] * len(depth)
        for i in torch.nonzero(batch["has_depth"]).flatten().tolist():
            metrics = accumulator.update(depth[i, 0], batch["depth"][i, 0], sequence=batch["sequence"][i])
            scales[i] = metrics["scale"]
        if next_index is None or not batch["has_pose"].any():
            continue
        T_pred = model.relative_pose(batch["images"][:, 0], batch["images"][:, next_index + 1], 1).matrix()
        T_gt = batch["T_src_tgt"][:, next_index]
        for i in torch.nonzero(batch["has_pose"]).flatten().tolist():
            pairs[batch["sequence"][i]].append(
                (int(batch["frame"][i]), T_pred[i].numpy(), T_gt[i].numpy(), scales[i])
            )

    results: dict = {"split": split, "protocol": accumulator.protocol.name, "depth": accumulator.compute()}
    by_sequence = accumulator.scales_by_sequence()
    if by_sequence:
        results["scale_consistency"] = scale_consistency(by_sequence)
        results["scales_by_sequence"] = by_sequence
    if pairs:
        results.update(_pose_results(pairs))
    return results


def constant_depth_reference(cfg: Config, split: str = "test", protocol: str | None = None) -> dict:
    """Depth metrics of a constant depth map on ``split``: the floor a trained network must beat.

    With median scaling a constant prediction becomes each image's median ground-truth depth, so this
    is what a network that has learned no structure at all scores under the same protocol.

    Returns:
        ``{"split", "protocol", "depth"}`` as in `evaluate_model` (depth metrics only).
    """
    dataset = build_dataset(cfg.data, split, train=False)
    accumulator = DepthMetricAccumulator(get_protocol(protocol or cfg.eval_protocol))
    for i in range(len(dataset)):
        sample = dataset[i]
        if sample["has_depth"]:
            gt = sample["depth"][0]
            accumulator.update(torch.ones_like(gt), gt, sequence=sample["sequence"])
    return {"split": split, "protocol": accumulator.protocol.name, "depth": accumulator.compute()}


def _pose_results(pairs: dict[str, list]) -> dict:
    t_gt, t_pred, s_depth = [], [], []
    ates = []
    for items in pairs.values():
        items.sort(key=lambda x: x[0])
        for _, T_pred, T_gt, scale in items:
            if np.isfinite(scale):
                t_gt.append(T_gt[:3, 3])
                t_pred.append(T_pred[:3, 3])
                s_depth.append(scale)
        ates.extend(_sequence_snippet_ates(items))
    out = {}
    if s_depth:
        ratios = pose_depth_scale_ratio(np.array(t_gt), np.array(t_pred), np.array(s_depth))
        out["pose_depth_scale_ratio"] = pose_depth_ratio_summary(ratios)
    if ates:
        out["pose"] = {
            "ate_5frame_mean": float(np.mean(ates)),
            "ate_5frame_std": float(np.std(ates)),
            "ate_5frame_count": len(ates),
        }
    return out


def _sequence_snippet_ates(items: list) -> list[float]:
    """5-frame snippets (4 consecutive relative poses) of one sequence; gaps in frames break snippets."""
    ates = []
    for start in range(len(items) - 3):
        window = items[start : start + 4]
        frames = [w[0] for w in window]
        if frames != list(range(frames[0], frames[0] + 4)):
            continue
        ates.append(snippet_error(np.stack([w[2] for w in window]), np.stack([w[1] for w in window])))
    return ates
