"""The feature network of SA4Depth: per pyramid level, L2-normalised features and a confidence map.

A light U-Net on the image, or heads on top of the depth network's encoder maps (``shared_encoder_channels``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Widths of the own encoder's stages at strides 2, 4, 8, 16, 32.
_ENCODER_CHANNELS = (16, 32, 64, 96, 128)
#: The coarsest level stride the own encoder can feed.
MAX_STRIDE = 2 ** len(_ENCODER_CHANNELS)
# Monodepth2's input normalisation, shared with the depth encoders.
_MEAN, _STD = 0.45, 0.225


def _conv(in_ch: int, out_ch: int) -> nn.Sequential:
    # In place: ELU's backward reads its output, so the convolution's output need not be kept as well.
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ELU(inplace=True))


class FeatureNet(nn.Module):
    """Feature pyramid ``F^l`` (L2-normalised per pixel) and confidence ``W^l = sigmoid(-u)`` in (0, 1).

    Levels have strides ``finest_stride * 2^k``, coarse to fine (default 16, 8, 4). The own encoder
    downsamples by 2x2 average pooling then 3x3 convolutions, so a level pixel is centred on its
    block exactly as `Camera.scale` assumes (a strided 3x3 convolution would shift it by half a
    block). With ``shared_encoder_channels`` the decoder runs on external encoder maps at strides
    2, 4, 8, ... (e.g. ResNet-18's five maps, ``(64, 64, 128, 256, 512)``) instead of an image.

    Args:
        levels: number of pyramid levels.
        channels: feature channels per level, coarse to fine; default 32 then 16 at the finest.
        decoder_channels: decoder widths per level, coarse to fine; default 64, 48, 32, ...
        finest_stride: stride of the finest level (a power of 2, >= 2).
        shared_encoder_channels: channels of the external encoder maps, or None for the own encoder.

    Example:
        >>> net = FeatureNet()
        >>> out = net(torch.rand(1, 3, 32, 64))
        >>> [tuple(f.shape) for f in out["features"]], out["strides"]
        ([(1, 32, 2, 4), (1, 32, 4, 8), (1, 16, 8, 16)], [16, 8, 4])
    """

    def __init__(
        self,
        levels: int = 3,
        channels: tuple[int, ...] | None = None,
        decoder_channels: tuple[int, ...] | None = None,
        finest_stride: int = 4,
        shared_encoder_channels: tuple[int, ...] | list[int] | None = None,
    ):
        super().__init__()
        if levels < 1 or finest_stride < 2 or finest_stride & (finest_stride - 1):
            raise ValueError(
                f"need levels >= 1 and a power-of-2 finest_stride >= 2, got {levels}, {finest_stride}"
            )
        self.strides = [finest_stride * 2 ** (levels - 1 - k) for k in range(levels)]
        self.channels = tuple(channels or (32,) * (levels - 1) + (16,))
        self.decoder_channels = tuple(decoder_channels or [max(64 - 16 * k, 16) for k in range(levels)])
        if len(self.channels) != levels or len(self.decoder_channels) != levels:
            raise ValueError(f"channels and decoder_channels need {levels} entries")
        # Encoder map j has stride 2^(j+1); the levels read maps log2(stride) - 1.
        self.map_index = [s.bit_length() - 2 for s in self.strides]
        self.shared = shared_encoder_channels is not None
        if self.shared:
            enc_channels = tuple(shared_encoder_channels)
            if len(enc_channels) <= self.map_index[0]:
                raise ValueError(f"shared encoder has no map at stride {self.strides[0]}")
        else:
            enc_channels = _ENCODER_CHANNELS[: self.map_index[0] + 1]
            if len(enc_channels) <= self.map_index[0]:
                raise ValueError(f"own encoder reaches stride {MAX_STRIDE} at most")
            widths = (3, *enc_channels)
            self.encoder = nn.ModuleList(
                nn.Sequential(nn.AvgPool2d(2), _conv(w_in, w_out), _conv(w_out, w_out))
                for w_in, w_out in zip(widths[:-1], widths[1:], strict=True)
            )
        self.encoder_channels = enc_channels
        self.decoder = nn.ModuleList()
        self.heads = nn.ModuleList()
        previous = 0
        for k, j in enumerate(self.map_index):
            self.decoder.append(_conv(previous + enc_channels[j], self.decoder_channels[k]))
            # One 3x3 head per level: C_l feature channels and 1 uncertainty channel u.
            self.heads.append(nn.Conv2d(self.decoder_channels[k], self.channels[k] + 1, 3, padding=1))
            previous = self.decoder_channels[k]

    def encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Own encoder maps of ``(B, 3, H, W)`` images in [0, 1], at strides 2, 4, ..."""
        x = (image - _MEAN) / _STD
        maps = []
        for stage in self.encoder:
            x = stage(x)
            maps.append(x)
        return maps

    def forward(self, inputs: torch.Tensor | list[torch.Tensor]) -> dict:
        """Features and confidences.

        Args:
            inputs: images ``(B, 3, H, W)`` in [0, 1], or with ``shared_encoder_channels`` the list of
                encoder maps ``(B, C_j, H / 2^(j+1), W / 2^(j+1))``.

        Returns:
            ``{"features": [(B, C_l, H_l, W_l)], "confidence": [(B, 1, H_l, W_l)], "strides": [s_l]}``,
            coarse to fine.
        """
        maps = self._check_inputs(inputs)
        features, confidence = [], []
        x = None
        for k, j in enumerate(self.map_index):
            skip = maps[j]
            if x is not None:
                # Bilinear with align_corners=False keeps the pixel-centre convention of Camera.scale.
                up = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
                skip = torch.cat([up, skip], dim=1)
            x = self.decoder[k](skip)
            out = self.heads[k](x)
            features.append(F.normalize(out[:, :-1], dim=1))
            confidence.append(torch.sigmoid(-out[:, -1:]))
        return {"features": features, "confidence": confidence, "strides": list(self.strides)}

    def _check_inputs(self, inputs) -> list[torch.Tensor]:
        if self.shared:
            if not isinstance(inputs, (list, tuple)) or len(inputs) != len(self.encoder_channels):
                raise ValueError(f"expected a list of {len(self.encoder_channels)} encoder maps")
            for j, (m, c) in enumerate(zip(inputs, self.encoder_channels, strict=True)):
                if m.ndim != 4 or m.shape[1] != c:
                    raise ValueError(f"encoder map {j} must be (B, {c}, h, w), got {tuple(m.shape)}")
            return list(inputs)
        if not isinstance(inputs, torch.Tensor) or inputs.ndim != 4 or inputs.shape[1] != 3:
            got = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
            raise ValueError(f"expected images (B, 3, H, W), got {got}")
        return self.encode(inputs)
