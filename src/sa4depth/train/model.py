"""The trainable system as a plain module: depth net, pose net, optional SA4Depth refinement, objective.

`DepthPoseModel.training_forward` runs one self-supervised step's forward pass and returns the loss.
"""

from __future__ import annotations

import torch
import torch.utils.checkpoint
from torch import nn

from sa4depth.config import Config
from sa4depth.geometry import Camera, Pose
from sa4depth.models.depth_net import DepthNet, disp_to_depth
from sa4depth.models.pose_net import PoseNet
from sa4depth.train.objectives import Monodepth2Objective, Predictions, build_objective, upsample_to


def batch_camera(batch: dict) -> Camera:
    """The ``(B,)`` cameras of a batch: its ``(B, 3, 3)`` K at the size of its ``(B, N, 3, H, W)`` images."""
    H, W = batch["images"].shape[-2:]
    return Camera.from_K(batch["K"], W, H)


class DepthPoseModel(nn.Module):
    """Depth network, separate pose network and (when ``cfg.refine.enabled``) the LM pose refinement.

    Only ``depth_net`` is needed at inference; the rest exists for training.
    """

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        m = cfg.model
        self.depth_net = DepthNet(
            encoder=m.encoder,
            pretrained=m.weights(m.pretrained),
            min_depth=m.min_depth,
            max_depth=m.max_depth,
        )
        self.pose_net = PoseNet(
            encoder=m.pose_encoder,
            pretrained_path=m.weights(m.pose_pretrained),
            forward_init=m.pose_forward_init,
        )
        self.objective = build_objective(cfg.loss)
        self.refinement = None
        if cfg.refine.enabled:
            from sa4depth.train.refinement import PoseRefinement

            self.refinement = PoseRefinement(cfg.refine, self.depth_net)
        # The pose net's own min-reprojection term is the same whatever the pipeline's depth loss.
        self.pose_net_objective = Monodepth2Objective(cfg.loss)

    def frozen_bn_encoders(self) -> list[nn.Module]:
        """The ImageNet-initialised encoders whose batch norm ``model.freeze_bn`` keeps in eval mode."""
        if not self.cfg.model.freeze_bn:
            return []
        m = self.cfg.model
        pretrained = ((m.pretrained, self.depth_net.encoder), (m.pose_pretrained, self.pose_net.encoder))
        return [encoder for weights, encoder in pretrained if weights is not None]

    def train(self, mode: bool = True) -> DepthPoseModel:
        """`nn.Module.train`, but ``model.freeze_bn`` keeps the pretrained encoders' batch norm in eval.

        Their running statistics then stay the ImageNet ones and normalise in training exactly as in
        evaluation; the batch-norm scale and shift are still trained.
        """
        super().train(mode)
        for encoder in self.frozen_bn_encoders():
            for layer in encoder.modules():
                if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                    layer.eval()
        return self

    def depth_from_disp(self, disp: torch.Tensor) -> torch.Tensor:
        return disp_to_depth(disp, self.cfg.model.min_depth, self.cfg.model.max_depth)[1]

    def relative_pose(self, image_tgt: torch.Tensor, image_src: torch.Tensor, offset: int) -> Pose:
        """The pose net's ``T_src_tgt`` for one frame pair: the one place the pair order is decided.

        The pose net always sees a pair in temporal order, ``pose_net(earlier, later) = T_later_earlier``;
        for a source before the target (``offset < 0``) that is ``T_tgt_src``, which is inverted. Feeding
        (target, source) regardless of time order let the pose net settle on sideways translation for
        forward motion on the synthetic world (cosine to the true direction ~0 after 200 steps, against
        0.999 in time order).

        Args:
            image_tgt: target images ``(B, 3, H, W)`` in [0, 1].
            image_src: source images ``(B, 3, H, W)``, ``offset`` frames from the target.
            offset: source frame index minus target frame index (non-zero).

        Returns:
            ``T_src_tgt`` of shape ``(B,)``, mapping target-camera points into the source camera.
        """
        if offset == 0:
            raise ValueError("offset must be non-zero: a frame has no pose relative to itself")
        if offset < 0:
            return self.pose_net(image_src, image_tgt).inv()
        return self.pose_net(image_tgt, image_src)

    def predict_poses(self, images: torch.Tensor) -> list[Pose]:
        """Pose-net estimates ``T_src_tgt`` for each source of ``(B, N, 3, H, W)`` images.

        Target first, then the sources in the order of ``data.offsets``; see `relative_pose`.
        """
        return [
            self.relative_pose(images[:, 0], images[:, j], offset)
            for j, offset in enumerate(self.cfg.data.offsets, start=1)
        ]

    def training_forward(self, batch: dict, step: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss and logs for one batch (see `sa4depth.data` for the batch fields).

        Before ``refine.warmup_steps`` (global ``step``) training is exactly the baseline's, so the LM
        starts on a depth network that already gives usable depth.
        """
        images, inputs = batch["images"], batch["images_aug"]
        size = tuple(images.shape[-2:])
        camera = batch_camera(batch)
        disps = self.depth_net(inputs[:, 0])[: self.cfg.loss.num_scales]
        depths = [self.depth_from_disp(upsample_to(d, size)) for d in disps]
        poses_net = self.predict_poses(inputs)
        logs: dict[str, torch.Tensor] = {}

        poses = poses_net
        refine = self.refinement is not None and step >= self.cfg.refine.warmup_steps
        reference = self.pose_net_objective.prepare(images)
        if refine:
            # Before the LM on purpose: see `_pose_net_photometric`.
            pose_net_loss = self._pose_net_photometric(images, depths[0], camera, poses_net, logs, reference)
            poses, info = self.refinement(inputs, depths[0], camera, poses_net)
            logs.update(info)

        source_depths = None
        if self.objective.needs_source_depth:
            source_depths = [
                self.depth_from_disp(self.depth_net(inputs[:, j])[0]) for j in range(1, images.shape[1])
            ]
        pred = Predictions(disps=disps, depths=depths, poses=poses, source_depths=source_depths)
        loss, loss_logs = self.objective(images, pred, camera, reference)
        logs.update(loss_logs)

        if refine:
            loss = loss + pose_net_loss + self._pose_consistency(poses_net, poses, logs)
        logs["loss"] = loss.detach()
        return loss, logs

    def _pose_net_photometric(self, images, depth, camera, poses_net, logs, reference) -> torch.Tensor:
        """The pose net's own weighted photometric term (0 when its weight is 0).

        The depth is detached unless ``refine.pose_photometric_trains_depth``: then this term also ties
        the depth's scale to the pose net's, as the baseline's loss does.

        It keeps the pose net learning when the main loss sees refined poses. Its warped images and SSIM
        maps (~0.65 GiB at 192x640, batch 12) are not kept but recomputed in the backward pass
        (activation checkpointing). That saves memory only because the term is built before the LM and
        the main loss: autograd runs later-built nodes first, so the recomputation comes after their
        backward has freed their activations. Built after them, it was recomputed at the start of the
        backward pass, at the peak, and saved nothing (benchmarks/README.md, "Peak memory").
        """
        weight = self.cfg.refine.pose_photometric_weight
        if weight <= 0:
            return images.new_zeros(())
        if not self.cfg.refine.pose_photometric_trains_depth:
            depth = depth.detach()
        pose_photo = torch.utils.checkpoint.checkpoint(
            lambda: self.pose_net_objective.photometric(images, depth, poses_net, camera, reference)[0],
            use_reentrant=False,
        )
        logs["pose_net_photometric"] = pose_photo.detach()
        return weight * pose_photo

    def _pose_consistency(self, poses_net, poses_refined, logs) -> torch.Tensor:
        """The weighted pull of the pose net's poses towards the detached refined ones (0 when off)."""
        weight = self.cfg.refine.pose_consistency_weight
        if weight <= 0:
            return poses_net[0].data.new_zeros(())
        from sa4depth.train.refinement import pose_consistency

        cons = sum(pose_consistency(T0, T.detach()) for T0, T in zip(poses_net, poses_refined, strict=True))
        logs["pose_consistency"] = cons.detach()
        return weight * cons
