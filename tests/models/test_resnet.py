"""Tests for the torchvision-compatible ResNet, its weight loader and the multi-scale encoder."""

import pytest
import torch

from sa4depth.errors import InputError
from sa4depth.models.resnet import ResNet, ResnetEncoder, load_imagenet_weights

# torchvision's resnet18().state_dict(), in order: "name shape" for tensors, "name C" for a
# BatchNorm2d (weight, bias, running_mean, running_var of size C, and a scalar num_batches_tracked).
TORCHVISION_RESNET18 = """
conv1.weight 64,3,7,7
bn1 64
layer1.0.conv1.weight 64,64,3,3
layer1.0.bn1 64
layer1.0.conv2.weight 64,64,3,3
layer1.0.bn2 64
layer1.1.conv1.weight 64,64,3,3
layer1.1.bn1 64
layer1.1.conv2.weight 64,64,3,3
layer1.1.bn2 64
layer2.0.conv1.weight 128,64,3,3
layer2.0.bn1 128
layer2.0.conv2.weight 128,128,3,3
layer2.0.bn2 128
layer2.0.downsample.0.weight 128,64,1,1
layer2.0.downsample.1 128
layer2.1.conv1.weight 128,128,3,3
layer2.1.bn1 128
layer2.1.conv2.weight 128,128,3,3
layer2.1.bn2 128
layer3.0.conv1.weight 256,128,3,3
layer3.0.bn1 256
layer3.0.conv2.weight 256,256,3,3
layer3.0.bn2 256
layer3.0.downsample.0.weight 256,128,1,1
layer3.0.downsample.1 256
layer3.1.conv1.weight 256,256,3,3
layer3.1.bn1 256
layer3.1.conv2.weight 256,256,3,3
layer3.1.bn2 256
layer4.0.conv1.weight 512,256,3,3
layer4.0.bn1 512
layer4.0.conv2.weight 512,512,3,3
layer4.0.bn2 512
layer4.0.downsample.0.weight 512,256,1,1
layer4.0.downsample.1 512
layer4.1.conv1.weight 512,512,3,3
layer4.1.bn1 512
layer4.1.conv2.weight 512,512,3,3
layer4.1.bn2 512
fc.weight 1000,512
fc.bias 1000
"""


def expected_resnet18_entries() -> list[tuple[str, tuple[int, ...]]]:
    entries = []
    for line in TORCHVISION_RESNET18.strip().splitlines():
        name, dims = line.split()
        shape = tuple(int(d) for d in dims.split(","))
        if name.endswith((".weight", ".bias")):
            entries.append((name, shape))
        else:
            entries += [(f"{name}.{k}", shape) for k in ("weight", "bias", "running_mean", "running_var")]
            entries.append((f"{name}.num_batches_tracked", ()))
    return entries


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A torchvision-format ResNet-18 checkpoint with random (non-default) BN statistics."""
    torch.manual_seed(0)
    model = ResNet(18)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(model.state_dict(), path)
    return path


def test_resnet18_state_dict_equals_torchvision():
    state = ResNet(18).state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == expected_resnet18_entries()
    assert len(state) == 122


@pytest.mark.parametrize(("num_layers", "count"), [(18, 11_689_512), (34, 21_797_672), (50, 25_557_032)])
def test_param_counts_equal_torchvision(num_layers, count):
    assert sum(p.numel() for p in ResNet(num_layers).parameters()) == count


def test_resnet50_bottleneck_names():
    state = ResNet(50).state_dict()
    assert state["layer1.0.conv3.weight"].shape == (256, 64, 1, 1)
    assert state["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert state["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)  # stride on the 3x3 ("v1.5")
    assert state["layer4.2.bn3.running_var"].shape == (2048,)
    assert state["fc.weight"].shape == (1000, 2048)


def test_load_round_trip(resnet18_file):
    saved = torch.load(resnet18_file, weights_only=True)
    model = ResNet(18)
    load_imagenet_weights(model, resnet18_file)
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k


def test_loads_checkpoint_without_bn_counters(tmp_path, resnet18_file):
    """Old torchvision files (resnet18-5c106cde.pth) predate ``num_batches_tracked``."""
    saved = torch.load(resnet18_file, weights_only=True)
    old_style = tmp_path / "old.pth"
    torch.save({k: v for k, v in saved.items() if not k.endswith("num_batches_tracked")}, old_style)
    model = ResNet(18)
    load_imagenet_weights(model, old_style)
    torch.testing.assert_close(model.layer4[1].bn2.running_var, saved["layer4.1.bn2.running_var"])


def test_encoder_drops_fc_and_matches_classifier_features(resnet18_file):
    classifier = ResNet(18)
    load_imagenet_weights(classifier, resnet18_file)
    enc = ResnetEncoder(18, pretrained_path=resnet18_file)
    assert not any(k.startswith("encoder.fc") for k in enc.state_dict())
    image = torch.rand(1, 3, 64, 96)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = classifier.eval().forward_features((image - mean) / std)
        got = enc.eval()(image)
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e)


def test_six_channel_init_repeats_and_halves_conv1(resnet18_file):
    w = torch.load(resnet18_file, weights_only=True)["conv1.weight"]
    enc2 = ResnetEncoder(18, num_input_images=2, pretrained_path=resnet18_file).eval()
    torch.testing.assert_close(enc2.encoder.conv1.weight.detach(), torch.cat([w, w], dim=1) / 2)
    # Known answer of the rule: the same image twice gives the single-image features. In float64, so
    # that the two summation orders agree to rounding through all 18 layers (in float32 a random image
    # now and then left one near-zero activation 1.4e-5 apart).
    enc1 = ResnetEncoder(18, pretrained_path=resnet18_file).eval().double()
    enc2 = enc2.double()
    image = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        for f1, f2 in zip(enc1(image), enc2(torch.cat([image, image], dim=1)), strict=True):
            torch.testing.assert_close(f2, f1, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("batch", [1, 2])
def test_encoder_shapes(batch):
    enc = ResnetEncoder(18)
    feats = enc(torch.rand(batch, 3, 64, 192))
    assert enc.num_ch_enc == (64, 64, 128, 256, 512)
    assert [tuple(f.shape) for f in feats] == [
        (batch, c, 64 // s, 192 // s) for c, s in zip(enc.num_ch_enc, (2, 4, 8, 16, 32), strict=True)
    ]
    with pytest.raises(ValueError, match="expected images"):
        enc(torch.rand(batch, 6, 64, 192))


def test_load_errors(tmp_path, resnet18_file):
    model = ResNet(18)
    with pytest.raises(InputError, match="not found"):
        load_imagenet_weights(model, tmp_path / "missing.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint")
    with pytest.raises(InputError, match="cannot read"):
        load_imagenet_weights(model, corrupt)
    wrong_arch = tmp_path / "resnet34.pth"
    torch.save(ResNet(34).state_dict(), wrong_arch)
    with pytest.raises(InputError, match="keys do not match torchvision resnet18: 0 missing.*unexpected"):
        load_imagenet_weights(model, wrong_arch)
    with pytest.raises(InputError, match="shapes do not match.*e.g. fc.weight"):
        load_imagenet_weights(ResNet(18, num_classes=10), resnet18_file)
    not_tensors = tmp_path / "dict.pth"
    torch.save({"conv1.weight": 3}, not_tensors)
    with pytest.raises(InputError, match="state_dict of tensors"):
        load_imagenet_weights(model, not_tensors)


def test_width_scales_every_stage_and_refuses_imagenet_weights(resnet18_file):
    enc = ResnetEncoder(18, width=32)
    assert enc.num_ch_enc == (32, 32, 64, 128, 256)
    assert [f.shape[1] for f in enc(torch.rand(1, 3, 64, 64))] == list(enc.num_ch_enc)
    with pytest.raises(ValueError, match="width 64"):
        ResnetEncoder(18, width=32, pretrained_path=resnet18_file)
