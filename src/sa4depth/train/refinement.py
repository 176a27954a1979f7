"""SA4Depth in a training pipeline: features of every frame, then LM refinement of each pose-net pose.

Training only: the depth network alone is the inference model, so none of this is exported.
"""

from __future__ import annotations

import dataclasses
import logging

import torch
from torch import nn

from sa4depth.config import RefineConfig
from sa4depth.errors import InputError
from sa4depth.geometry import Camera, Pose
from sa4depth.models.feature_net import FeatureNet
from sa4depth.refine import LMConfig, LMRefiner, image_pyramid_features

logger = logging.getLogger(__name__)


def pose_consistency(T_net: Pose, T_refined: Pose) -> torch.Tensor:
    """Distance between two pose batches: squared rotation-matrix difference plus L1 translation.

    Matrix differences (not angles) keep the gradient finite when the poses coincide.
    """
    rot = ((T_net.R - T_refined.R) ** 2).sum(dim=(-1, -2))
    return (rot + (T_net.t - T_refined.t).abs().sum(-1)).mean()


def lm_config(cfg: RefineConfig) -> LMConfig:
    """The LM settings of a ``refine`` config section (a `RefineConfig` is an `LMConfig` plus more)."""
    return LMConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(LMConfig)})


class PoseRefinement(nn.Module):
    """Refine ``T_src_tgt`` from the pose net with LM on learned (or RGB) features and the current depth.

    Args:
        cfg: the ``refine`` section of the config.
        depth_net: the depth network, whose encoder the feature heads reuse when ``cfg.share_encoder``.
    """

    def __init__(self, cfg: RefineConfig, depth_net: nn.Module):
        super().__init__()
        self.cfg = cfg
        if cfg.features not in ("learned", "rgb"):
            raise InputError("config", f"refine.features must be 'learned' or 'rgb', got {cfg.features!r}")
        if cfg.features == "learned" and not cfg.grad_through_lm:
            # Measured: with untrained features the LM scrambled the translation direction and depth
            # collapsed (benchmarks/results/sa4depth_report.md, "no gradient through the LM").
            logger.warning(
                "refine.grad_through_lm=false: the feature network's only training signal passes through "
                "the LM, so its features stay as initialised (load trained ones, or use refine.features=rgb)"
            )
        self.depth_encoder = depth_net.encoder if cfg.share_encoder else None
        self.feature_net = None
        if cfg.features == "learned":
            shared = list(depth_net.encoder.num_ch_enc) if cfg.share_encoder else None
            self.feature_net = FeatureNet(
                levels=cfg.levels, finest_stride=cfg.finest_stride, shared_encoder_channels=shared
            )
            if not cfg.share_encoder:
                # Channels-last convolutions: measured 13 % faster forward + backward of the own encoder at
                # 64x192 (the same numbers to rounding); its outputs go back to contiguous for the LM.
                self.feature_net.to(memory_format=torch.channels_last)
        self.lm = LMRefiner(lm_config(cfg))

    def features(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-level features and confidences of ``(B*N, 3, H, W)`` images."""
        if self.feature_net is None:
            return image_pyramid_features(images, self.cfg.levels)
        if self.depth_encoder is not None:
            out = self.feature_net(self.depth_encoder(images))
        else:
            out = self.feature_net(images.contiguous(memory_format=torch.channels_last))
        # The convolutions run channels-last (here and in the depth encoder); the LM wants contiguous maps.
        return [f.contiguous() for f in out["features"]], [c.contiguous() for c in out["confidence"]]

    def forward(
        self, images: torch.Tensor, depth: torch.Tensor, camera: Camera, poses: list[Pose]
    ) -> tuple[list[Pose], dict[str, torch.Tensor]]:
        """Refine each source's pose.

        Args:
            images: ``(B, N, 3, H, W)``, target first.
            depth: target depth ``(B, 1, H, W)`` in network units.
            camera: intrinsics ``(B,)`` at ``H x W``.
            poses: pose-net ``T_src_tgt`` per source, each ``(B,)``.

        Returns:
            Refined poses and logs: mean failure rate, valid points, and the change from the pose net.
        """
        B, N = images.shape[:2]
        S = N - 1
        feats, confs = self.features(images.flatten(0, 1))
        feats = [f.unflatten(0, (B, N)) for f in feats]
        confs = [c.unflatten(0, (B, N)) for c in confs]
        if not self.cfg.grad_through_lm:
            feats, confs, depth = [f.detach() for f in feats], [c.detach() for c in confs], depth.detach()
        T_init = Pose(torch.cat([T.data for T in poses]))
        # All sources in one batched solve (source-major order): one LM call instead of one per source.
        T, info = self.lm(
            [f[:, :1].expand(-1, S, -1, -1, -1).transpose(0, 1).flatten(0, 1) for f in feats],
            [c[:, :1].expand(-1, S, -1, -1, -1).transpose(0, 1).flatten(0, 1) for c in confs],
            [f[:, 1:].transpose(0, 1).flatten(0, 1) for f in feats],
            [c[:, 1:].transpose(0, 1).flatten(0, 1) for c in confs],
            depth.repeat(S, 1, 1, 1),
            Camera(camera.data.repeat(S, 1)),
            T_init if self.cfg.grad_through_lm else T_init.detach(),
        )
        # The pose net's poses are bfloat16 under autocast and Pose's matmuls would be too: near the
        # identity, acos of a bfloat16 trace cannot resolve changes below ~5 degrees, so the
        # change is measured in float32.
        with torch.autocast(T.device.type, enabled=False):
            deg, dist = (T_init.to(T.dtype).inv() @ T).magnitude()
        logs = {
            "lm_failed": info["failed"].float().mean(),
            "lm_valid_points": info["n_valid"].float().mean(),
            "lm_rotation_change_deg": deg.detach().mean(),
            "lm_translation_change_rel": (dist / T_init.t.norm(dim=-1).clamp(min=1e-6)).detach().mean(),
        }
        return [T[j * B : (j + 1) * B] for j in range(S)], logs
