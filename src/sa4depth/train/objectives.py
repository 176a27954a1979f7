"""Pipelines as loss recipes: Monodepth2 and SC-Depth (v1), each used with or without SA4Depth.

Each objective takes depth predictions and poses and returns a loss; where the poses come from
(pose network alone or LM-refined) is decided elsewhere, so refinement plugs into any objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sa4depth.config import LossConfig
from sa4depth.errors import InputError
from sa4depth.geometry import Camera, Pose, warp_frame
from sa4depth.losses.photometric import PhotometricTarget, min_reprojection_loss
from sa4depth.losses.sc_depth import depth_inconsistency
from sa4depth.losses.smoothness import edge_aware_smoothness


@dataclass
class Predictions:
    """What the networks produced for one batch.

    Attributes:
        disps: target disparities, coarse scales included, ``[(B, 1, H / 2^s, W / 2^s)]``, s = 0..S-1.
        depths: target depth per scale, upsampled to ``(B, 1, H, W)`` (network units).
        poses: ``T_src_tgt`` per source frame, each ``Pose`` of shape ``(B,)``, used by the loss.
        source_depths: each source frame's full-resolution depth (only for SC-Depth), ``(B, 1, H, W)``.
    """

    disps: list[torch.Tensor]
    depths: list[torch.Tensor]
    poses: list[Pose]
    source_depths: list[torch.Tensor] | None = None


def upsample_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize ``(B, C, h, w)`` ``x`` to ``size = (H, W)``; unchanged if already that size."""
    return x if x.shape[-2:] == size else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class Monodepth2Objective:
    """Min-reprojection SSIM+L1 over sources with auto-masking, plus edge-aware smoothness, at every scale."""

    needs_source_depth = False

    def __init__(self, cfg: LossConfig):
        self.cfg = cfg

    def prepare(self, images: torch.Tensor) -> PhotometricTarget:
        """The step's target with its SSIM statistics (and auto-mask identity error) for every scale."""
        sources = list(images[:, 1:].unbind(1)) if self.cfg.automask else None
        return PhotometricTarget(images[:, 0], sources, self.cfg.ssim_alpha)

    def photometric(
        self,
        images: torch.Tensor,
        depth: torch.Tensor,
        poses: list[Pose],
        camera: Camera,
        reference: PhotometricTarget | None = None,
    ):
        """Min-reprojection loss of one full-resolution depth map; ``images`` ``(B, N, 3, H, W)``."""
        reference = self.prepare(images) if reference is None else reference
        warped, valid = zip(
            *(warp_frame(images[:, j + 1], depth, T, camera) for j, T in enumerate(poses)), strict=True
        )
        return min_reprojection_loss(reference, list(warped), list(valid))

    def __call__(
        self,
        images: torch.Tensor,
        pred: Predictions,
        camera: Camera,
        reference: PhotometricTarget | None = None,
    ):
        total, logs = 0.0, {}
        target = images[:, 0]
        reference = self.prepare(images) if reference is None else reference
        for scale in range(self.cfg.num_scales):
            photo, info = self.photometric(images, pred.depths[scale], pred.poses, camera, reference)
            disp = pred.disps[scale]
            image_s = upsample_to(target, disp.shape[-2:])
            smooth = edge_aware_smoothness(disp, image_s) / (2**scale)
            total = total + photo + self.cfg.smoothness_weight * smooth
            if scale == 0:
                logs["photometric"] = photo.detach()
                if "automask" in info:
                    logs["automask_fraction"] = info["automask"].float().mean().detach()
        return total / self.cfg.num_scales, logs


class SCDepthObjective:
    """SC-Depth v1's losses, at full resolution (target -> each source).

    Photometric loss weighted by the self-discovered mask ``1 - D_diff``, the depth
    geometry-consistency loss ``mean(D_diff)``, and smoothness.
    """

    needs_source_depth = True

    def __init__(self, cfg: LossConfig):
        self.cfg = cfg

    def __call__(
        self,
        images: torch.Tensor,
        pred: Predictions,
        camera: Camera,
        reference: PhotometricTarget | None = None,
    ):
        """``reference``: the target's prepared SSIM statistics (its auto-mask part is not used here)."""
        target, depth = images[:, 0], pred.depths[0]
        reference = PhotometricTarget(target, alpha=self.cfg.ssim_alpha) if reference is None else reference
        photo_total, geo_total = 0.0, 0.0
        for j, T in enumerate(pred.poses):
            warped, valid = warp_frame(images[:, j + 1], depth, T, camera)
            diff, valid_geo = depth_inconsistency(depth, pred.source_depths[j], T, camera)
            valid = valid & valid_geo
            count = valid.sum().clamp(min=1)
            error = reference.error(warped) * (1 - diff)
            photo_total = photo_total + (error * valid).sum() / count
            geo_total = geo_total + (diff * valid).sum() / count
        n = len(pred.poses)
        smooth = edge_aware_smoothness(pred.disps[0], target)
        loss = (
            photo_total / n + self.cfg.geometry_weight * geo_total / n + self.cfg.smoothness_weight * smooth
        )
        return loss, {"photometric": (photo_total / n).detach(), "geometry": (geo_total / n).detach()}


OBJECTIVES = {"monodepth2": Monodepth2Objective, "sc_depth": SCDepthObjective}


def build_objective(cfg: LossConfig):
    """The loss of ``cfg.pipeline`` (an `OBJECTIVES` entry) built from ``cfg``; `InputError` if unknown."""
    if cfg.pipeline not in OBJECTIVES:
        raise InputError("config", f"loss.pipeline must be one of {sorted(OBJECTIVES)}, got {cfg.pipeline!r}")
    return OBJECTIVES[cfg.pipeline](cfg)
