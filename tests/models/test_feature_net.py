"""Tests of `sa4depth.models.feature_net.FeatureNet`: shapes, normalisation, confidence, shared encoder."""

import pytest
import torch

from sa4depth.models.feature_net import FeatureNet
from sa4depth.models.resnet import ResnetEncoder


def test_own_encoder_pyramid_shapes_and_ranges():
    net = FeatureNet()
    out = net(torch.rand(2, 3, 64, 96))
    assert out["strides"] == [16, 8, 4]
    assert [tuple(f.shape) for f in out["features"]] == [(2, 32, 4, 6), (2, 32, 8, 12), (2, 16, 16, 24)]
    assert [tuple(c.shape) for c in out["confidence"]] == [(2, 1, 4, 6), (2, 1, 8, 12), (2, 1, 16, 24)]
    for f, c in zip(out["features"], out["confidence"], strict=True):
        torch.testing.assert_close(f.norm(dim=1), torch.ones_like(f[:, 0]))
        assert ((c > 0) & (c < 1)).all()
    assert sum(p.numel() for p in net.parameters()) < 500_000


def test_levels_channels_and_stride_options():
    net = FeatureNet(levels=2, channels=(8, 4), finest_stride=2)
    out = net(torch.rand(1, 3, 24, 40))
    assert out["strides"] == [4, 2]
    assert [tuple(f.shape) for f in out["features"]] == [(1, 8, 6, 10), (1, 4, 12, 20)]
    # Sizes that are not multiples of the stride: each 2x2 pooling floors.
    out = FeatureNet()(torch.rand(1, 3, 50, 70))
    assert [tuple(f.shape[-2:]) for f in out["features"]] == [(3, 4), (6, 8), (12, 17)]
    with pytest.raises(ValueError):
        FeatureNet(finest_stride=3)
    with pytest.raises(ValueError):
        FeatureNet(levels=2, channels=(8, 8, 8))


def test_shared_encoder_heads_on_resnet18_maps():
    encoder = ResnetEncoder(18)
    net = FeatureNet(shared_encoder_channels=list(encoder.num_ch_enc))
    maps = encoder(torch.rand(2, 3, 64, 96))
    out = net(maps)
    assert [tuple(f.shape) for f in out["features"]] == [(2, 32, 4, 6), (2, 32, 8, 12), (2, 16, 16, 24)]
    assert [tuple(c.shape) for c in out["confidence"]] == [(2, 1, 4, 6), (2, 1, 8, 12), (2, 1, 16, 24)]
    torch.testing.assert_close(out["features"][-1].norm(dim=1), torch.ones(2, 16, 24))
    assert sum(p.numel() for p in net.parameters()) < 500_000
    out["features"][-1].sum().backward()
    assert encoder.encoder.conv1.weight.grad.abs().sum() > 0  # gradients reach the shared encoder
    with pytest.raises(ValueError, match="encoder map"):
        net([m[:, :8] for m in maps])
    with pytest.raises(ValueError, match="list"):
        net(torch.rand(1, 3, 64, 96))


def test_rejects_bad_images():
    net = FeatureNet()
    with pytest.raises(ValueError, match="images"):
        net(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="images"):
        net([torch.rand(1, 3, 32, 32)])
