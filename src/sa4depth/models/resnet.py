"""ResNet-18/34/50 written here with torchvision's exact state_dict names, and a multi-scale encoder.

Users can load torchvision's ImageNet checkpoints (e.g. ``resnet18-f37072fd.pth``) from a local file
without torchvision installed; `ResnetEncoder` exposes the five Monodepth2 feature maps.
"""

from __future__ import annotations

import logging
import os

import torch
from torch import nn

from sa4depth.errors import InputError

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        # Attribute order fixes the state_dict order; it follows torchvision's.
        self.conv1 = _conv3x3(in_ch, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided, torchvision "v1.5") -> 1x1 with a residual connection (ResNet-50)."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(in_ch, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# num_layers -> (block type, blocks per stage)
RESNET_SPECS: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """torchvision-compatible ResNet; parameter names and shapes equal torchvision's.

    Args:
        num_layers: 18, 34 or 50.
        in_channels: input channels of ``conv1`` (3 per stacked image).
        num_classes: size of the ``fc`` classifier, or None to build no ``avgpool``/``fc``
            (an encoder has no use for them, and unused parameters upset DDP).
        width: channels of ``conv1`` and ``layer1``; the later stages have 2, 4 and 8 times as many.
            64 is torchvision's (and the only width its ImageNet weights fit); 32 gives the "slim"
            encoder of the CPU recipe (a quarter of the compute).

    Example:
        >>> sum(p.numel() for p in ResNet(18).parameters())
        11689512
    """

    def __init__(
        self, num_layers: int = 18, in_channels: int = 3, num_classes: int | None = 1000, width: int = 64
    ):
        super().__init__()
        if num_layers not in RESNET_SPECS:
            raise ValueError(f"num_layers must be one of {sorted(RESNET_SPECS)}, got {num_layers}")
        block, counts = RESNET_SPECS[num_layers]
        self.num_layers = num_layers
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._in_ch = width
        self.layer1 = self._make_layer(block, width, counts[0], stride=1)
        self.layer2 = self._make_layer(block, 2 * width, counts[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, counts[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, counts[3], stride=2)
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8 * width * block.expansion, num_classes)
        # torchvision's initialisation, so a from-scratch model trains like theirs.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block: type[nn.Module], width: int, count: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._in_ch != width * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self._in_ch, width * block.expansion, stride),
                nn.BatchNorm2d(width * block.expansion),
            )
        layers = [block(self._in_ch, width, stride, downsample)]
        self._in_ch = width * block.expansion
        layers += [block(self._in_ch, width) for _ in range(count - 1)]
        return nn.Sequential(*layers)

    @property
    def has_classifier(self) -> bool:
        return hasattr(self, "fc")

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at strides 2, 4, 8, 16, 32 (channels 64, 64|256, 128|512, 256|1024, 512|2048).

        Args:
            x: normalised input ``(B, C_in, H, W)``.
        """
        f0 = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(f0))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [f0, f1, f2, f3, f4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``(B, num_classes)`` for a normalised input ``(B, 3, H, W)``."""
        if not self.has_classifier:
            raise RuntimeError("this ResNet was built without a classifier (num_classes=None)")
        return self.fc(torch.flatten(self.avgpool(self.forward_features(x)[-1]), 1))


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file holding a plain ``state_dict`` (tensors only), raising `InputError`."""
    if not os.path.isfile(path):
        raise InputError(path, "weights file not found")
    try:
        # weights_only: a .pth is a pickle; refuse anything but tensors and containers.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise InputError(
            path, f"cannot read weights file ({type(exc).__name__}: {exc})".splitlines()[0]
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(path, "weights file does not hold a state_dict of tensors")
    return state


def stack_first_kernel(state: dict[str, torch.Tensor], key: str, in_channels: int) -> None:
    """Widen the 3-channel ImageNet kernel ``state[key]`` in place for ``in_channels = 3 * n`` stacked images.

    The kernel is repeated n times and divided by n (Monodepth2's pose encoder), so a stack of n equal
    images gives the single-image activations. Anything else is left for the shape check to report.
    """
    w = state.get(key)
    if w is not None and w.ndim == 4 and w.shape[1] == 3 and in_channels % 3 == 0 and in_channels != 3:
        n = in_channels // 3
        state[key] = w.repeat(1, n, 1, 1) / n


def load_matching_state_dict(
    model: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike, arch: str, drop_prefixes=()
) -> None:
    """Load ``state`` into ``model`` requiring identical keys and shapes, else raise `InputError`.

    Args:
        model: the network to fill.
        state: checkpoint tensors.
        path: the checkpoint's path, for error messages.
        arch: architecture name for error messages, e.g. ``"torchvision resnet18"``.
        drop_prefixes: checkpoint key prefixes to ignore when ``model`` lacks them (a classifier head).
    """
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.startswith(tuple(drop_prefixes))}
    # Pre-2018 checkpoints (e.g. torchvision's resnet18-5c106cde.pth) have no BN step counters.
    for k in own:
        if k.endswith(".num_batches_tracked") and k not in state:
            state[k] = torch.zeros_like(own[k])
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise InputError(
            path,
            f"keys do not match {arch}: {len(missing)} missing {missing[:3]}, "
            f"{len(unexpected)} unexpected {unexpected[:3]}",
        )
    wrong = [k for k in own if own[k].shape != state[k].shape]
    if wrong:
        k = wrong[0]
        raise InputError(
            path,
            f"shapes do not match {arch}: {len(wrong)} differ, e.g. {k} "
            f"{tuple(state[k].shape)} in the file vs {tuple(own[k].shape)}",
        )
    model.load_state_dict(state, strict=True)


def load_imagenet_weights(model: ResNet, path: str | os.PathLike) -> None:
    """Load torchvision ImageNet weights (a local ``.pth`` state_dict) into ``model`` in place.

    The checkpoint's ``fc.*`` is ignored when ``model`` has no classifier. When ``model.conv1`` takes
    ``3 * n`` channels (n stacked images, as the pose encoder does), the 3-channel ImageNet kernel is
    repeated n times and divided by n (Monodepth2), so a stack of n equal images gives the
    single-image activations.

    Raises:
        InputError: the file is missing or unreadable, or is not a state_dict of this architecture.
    """
    state = dict(read_state_dict(path))
    stack_first_kernel(state, "conv1.weight", model.conv1.in_channels)
    load_matching_state_dict(
        model, state, path, f"torchvision resnet{model.num_layers}", drop_prefixes=("fc.",)
    )
    logger.info("loaded ImageNet weights for resnet%d from %s", model.num_layers, path)


class ResnetEncoder(nn.Module):
    """Monodepth2's ResNet encoder: images in [0, 1] -> five feature maps.

    Inputs are normalised inside with the ImageNet mean/std (per stacked image), so callers pass
    raw ``[0, 1]`` images. The classifier is not built.

    Args:
        num_layers: 18, 34 or 50.
        num_input_images: images stacked along channels (1 for depth, 2 for pose).
        pretrained_path: torchvision ImageNet checkpoint to load, or None for random initialisation.
        width: see `ResNet` (64 for torchvision's; pretrained weights need 64).

    Example:
        >>> enc = ResnetEncoder(18)
        >>> [tuple(f.shape) for f in enc(torch.rand(1, 3, 64, 64))][::2]
        [(1, 64, 32, 32), (1, 128, 8, 8), (1, 512, 2, 2)]
    """

    def __init__(
        self,
        num_layers: int = 18,
        num_input_images: int = 1,
        pretrained_path: str | os.PathLike | None = None,
        width: int = 64,
    ):
        super().__init__()
        if num_input_images < 1:
            raise ValueError(f"num_input_images must be >= 1, got {num_input_images}")
        if pretrained_path is not None and width != 64:
            raise ValueError(f"ImageNet weights need width 64, got {width}")
        self.num_input_images = num_input_images
        self.encoder = ResNet(num_layers, in_channels=3 * num_input_images, num_classes=None, width=width)
        e = RESNET_SPECS[num_layers][0].expansion
        self.num_ch_enc = (width, width * e, 2 * width * e, 4 * width * e, 8 * width * e)
        self.strides = (2, 4, 8, 16, 32)
        if pretrained_path is not None:
            load_imagenet_weights(self.encoder, pretrained_path)
        # Non-persistent: keeps the state_dict equal to torchvision's under the ``encoder.`` prefix.
        mean = torch.tensor(IMAGENET_MEAN).repeat(num_input_images).view(1, -1, 1, 1)
        std = torch.tensor(IMAGENET_STD).repeat(num_input_images).view(1, -1, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Encode ``(B, 3 * num_input_images, H, W)`` images in [0, 1].

        Returns:
            Five maps ``(B, num_ch_enc[i], H / 2^(i+1), W / 2^(i+1))`` (sizes rounded up).
        """
        if images.ndim != 4 or images.shape[1] != 3 * self.num_input_images:
            raise ValueError(
                f"expected images of shape (B, {3 * self.num_input_images}, H, W), got {tuple(images.shape)}"
            )
        return self.encoder.forward_features((images - self.mean) / self.std)
