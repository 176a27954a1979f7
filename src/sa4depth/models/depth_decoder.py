"""Monodepth2's depth decoder: upsampling conv blocks with skips, sigmoid disparity at four scales.

It takes the five encoder maps (strides 2..32) and returns disparities at strides 1, 2, 4, 8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Conv3x3(nn.Module):
    """3x3 convolution with reflection padding (avoids the dark border zero padding gives depth)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(in_ch, out_ch, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


class ConvBlock(nn.Module):
    """`Conv3x3` followed by ELU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = Conv3x3(in_ch, out_ch)
        self.act = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class DepthDecoder(nn.Module):
    """Decode encoder features into sigmoid disparities.

    Level i (4 down to 0) applies a ConvBlock, 2x nearest upsampling, concatenation with encoder
    map i-1 (stride 2^i) and a second ConvBlock; levels 3..0 emit a disparity at stride 2^i.

    Args:
        num_ch_enc: channels of the five encoder maps (strides 2, 4, 8, 16, 32).
        num_ch_dec: decoder channels per level (Monodepth2's 16, 32, 64, 128, 256).
        num_scales: number of disparity outputs (1..4), finest first.

    Example:
        >>> dec = DepthDecoder((64, 64, 128, 256, 512))
        >>> feats = [torch.rand(1, c, 32 // 2**i, 64 // 2**i) for i, c in enumerate(dec.num_ch_enc)]
        >>> [tuple(d.shape) for d in dec(feats)]
        [(1, 1, 64, 128), (1, 1, 32, 64), (1, 1, 16, 32), (1, 1, 8, 16)]
    """

    def __init__(
        self,
        num_ch_enc: tuple[int, ...],
        num_ch_dec: tuple[int, ...] = (16, 32, 64, 128, 256),
        num_scales: int = 4,
    ):
        super().__init__()
        if len(num_ch_enc) != 5 or len(num_ch_dec) != 5:
            raise ValueError("num_ch_enc and num_ch_dec must each list 5 channel counts")
        if not 1 <= num_scales <= 4:
            raise ValueError(f"num_scales must be in 1..4, got {num_scales}")
        self.num_ch_enc = tuple(num_ch_enc)
        self.num_ch_dec = tuple(num_ch_dec)
        self.num_scales = num_scales
        # Index i of each list is level i (stride 2^i after upsampling).
        self.upconv_in = nn.ModuleList()
        self.upconv_out = nn.ModuleList()
        for i in range(5):
            in_ch = num_ch_enc[4] if i == 4 else num_ch_dec[i + 1]
            self.upconv_in.append(ConvBlock(in_ch, num_ch_dec[i]))
            skip_ch = num_ch_enc[i - 1] if i > 0 else 0
            self.upconv_out.append(ConvBlock(num_ch_dec[i] + skip_ch, num_ch_dec[i]))
        self.dispconvs = nn.ModuleList(Conv3x3(num_ch_dec[s], 1) for s in range(num_scales))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Decode.

        Args:
            features: five maps ``(B, num_ch_enc[i], H / 2^(i+1), W / 2^(i+1))``.

        Returns:
            ``num_scales`` disparities in (0, 1); entry s is ``(B, 1, H / 2^s, W / 2^s)``.
        """
        if len(features) != 5:
            raise ValueError(f"expected 5 encoder maps, got {len(features)}")
        disps: list[torch.Tensor] = [None] * self.num_scales
        x = features[4]
        for i in range(4, -1, -1):
            x = F.interpolate(self.upconv_in[i](x), scale_factor=2.0, mode="nearest")
            if i > 0:
                x = torch.cat([x, features[i - 1]], dim=1)
            x = self.upconv_out[i](x)
            if i < self.num_scales:
                disps[i] = torch.sigmoid(self.dispconvs[i](x))
        return disps
