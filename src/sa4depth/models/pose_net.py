"""The pose network: a two-image ResNet encoder and Monodepth2's pose decoder, giving ``T_src_tgt``.

Stacks (target, source) and predicts the transform that maps target-camera points into the source
camera, the direction view synthesis needs (see `sa4depth.geometry`).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from sa4depth.geometry import Pose
from sa4depth.models.depth_net import check_image_shape
from sa4depth.models.resnet import ResnetEncoder

# Monodepth2 scales the raw outputs so that unit-sized activations mean small motions.
OUTPUT_SCALE = 0.01
# Extra shrink of the last layer's initial weights so the first poses are within ~1e-3 of identity.
LAST_LAYER_INIT_GAIN = 0.1


class PoseDecoder(nn.Module):
    """Monodepth2's pose head: 1x1 squeeze, two 3x3 convs, a 1x1 to 6 channels, spatial mean.

    Args:
        num_ch_enc: channels of the encoder maps; only the last (stride 32) is used.

    Example:
        >>> aa, t = PoseDecoder((64, 64, 128, 256, 512))([torch.rand(2, 512, 2, 6)])
        >>> aa.shape, t.shape
        (torch.Size([2, 3]), torch.Size([2, 3]))
    """

    def __init__(self, num_ch_enc: tuple[int, ...]):
        super().__init__()
        self.squeeze = nn.Conv2d(num_ch_enc[-1], 256, 1)
        self.pose0 = nn.Conv2d(256, 256, 3, padding=1)
        self.pose1 = nn.Conv2d(256, 256, 3, padding=1)
        self.pose2 = nn.Conv2d(256, 6, 1)
        self.relu = nn.ReLU()
        # Small rather than zero: zero weights would also zero the gradient reaching earlier layers.
        with torch.no_grad():
            self.pose2.weight.mul_(LAST_LAYER_INIT_GAIN)
            self.pose2.bias.zero_()

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict the motion from the deepest encoder map.

        Args:
            features: encoder maps; ``features[-1]`` is ``(B, num_ch_enc[-1], h, w)``.

        Returns:
            ``(axis_angle, translation)``, each ``(B, 3)`` (radians, network length units).
        """
        x = self.relu(self.squeeze(features[-1]))
        x = self.relu(self.pose0(x))
        x = self.relu(self.pose1(x))
        out = OUTPUT_SCALE * self.pose2(x).mean(dim=(2, 3))
        return out[:, :3], out[:, 3:]


class PoseNet(nn.Module):
    """Relative pose from two images: ``T_src_tgt`` maps target-camera points into the source camera.

    The encoder is a separate ResNet with a 6-channel first layer taking (target, source) stacked
    along channels, in that order for every source frame (no Monodepth2-style swap and invert).

    Args:
        num_layers: ResNet depth (18 in Monodepth2).
        pretrained_path: torchvision ImageNet checkpoint; its conv1 is repeated over both images and
            halved. None for random initialisation.

    Example:
        >>> net = PoseNet()
        >>> T_src_tgt = net(torch.rand(2, 3, 64, 96), torch.rand(2, 3, 64, 96))
        >>> T_src_tgt.shape
        torch.Size([2])
    """

    def __init__(self, num_layers: int = 18, pretrained_path: str | os.PathLike | None = None):
        super().__init__()
        self.encoder = ResnetEncoder(num_layers, num_input_images=2, pretrained_path=pretrained_path)
        self.decoder = PoseDecoder(self.encoder.num_ch_enc)

    def raw(self, image_tgt: torch.Tensor, image_src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's outputs for ``T_src_tgt`` before conversion to a `Pose`.

        Args:
            image_tgt: target images ``(B, 3, H, W)`` in [0, 1], H and W multiples of 32.
            image_src: source images ``(B, 3, H, W)`` in [0, 1].

        Returns:
            ``(axis_angle, translation)``, each ``(B, 3)``; ``Pose.from_aa(axis_angle, translation)``
            is ``T_src_tgt``.
        """
        check_image_shape(image_tgt)
        if image_src.shape != image_tgt.shape:
            raise ValueError(f"image_src {tuple(image_src.shape)} != image_tgt {tuple(image_tgt.shape)}")
        return self.decoder(self.encoder(torch.cat([image_tgt, image_src], dim=1)))

    def forward(self, image_tgt: torch.Tensor, image_src: torch.Tensor) -> Pose:
        """``T_src_tgt`` of shape ``(B,)`` for target/source images ``(B, 3, H, W)`` in [0, 1]."""
        return Pose.from_aa(*self.raw(image_tgt, image_src))
