"""Tests for the pose network: output type and convention, near-identity start, gradients."""

import pytest
import torch

from sa4depth.geometry import Pose
from sa4depth.models import PoseNet
from sa4depth.models.resnet import ResNet


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return PoseNet()


@pytest.mark.parametrize("batch", [1, 2])
def test_output_types_and_shapes(net, batch):
    tgt, src = torch.rand(batch, 3, 64, 192), torch.rand(batch, 3, 64, 192)
    aa, t = net.raw(tgt, src)
    assert aa.shape == (batch, 3) and t.shape == (batch, 3)
    T_src_tgt = net(tgt, src)
    assert isinstance(T_src_tgt, Pose) and T_src_tgt.shape == (batch,)
    net.eval()  # same batch-norm statistics for both calls
    with torch.no_grad():
        torch.testing.assert_close(net(tgt, src).data, Pose.from_aa(*net.raw(tgt, src)).data)
    net.train()


def test_near_identity_at_init(net):
    angle_deg, trans = net(torch.rand(2, 3, 64, 192), torch.rand(2, 3, 64, 192)).magnitude()
    assert bool((angle_deg < 0.05).all()), angle_deg  # measured ~0.005 deg
    assert bool((trans < 1e-3).all()), trans  # measured ~5e-5


def test_forward_init_moves_a_static_point_closer_by_that_much():
    torch.manual_seed(0)
    T_later_earlier = PoseNet(encoder="small", forward_init=0.02)(
        torch.rand(2, 3, 64, 192), torch.rand(2, 3, 64, 192)
    )
    point = torch.tensor([1.0, -0.5, 4.0])  # in the earlier camera, in network depth units
    moved = T_later_earlier.transform(point.expand(2, 1, 3))
    # Straight ahead by 0.02 to within the near-identity start's ~1e-3 (test_near_identity_at_init).
    expected = point - torch.tensor([0.0, 0.0, 0.02])
    torch.testing.assert_close(moved, expected.expand(2, 1, 3), atol=2e-3, rtol=0)


def test_stacks_target_then_source(net):
    seen = {}
    hook = net.encoder.encoder.conv1.register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    tgt, src = torch.zeros(1, 3, 64, 64), torch.ones(1, 3, 64, 64)
    net.raw(tgt, src)
    hook.remove()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(seen["x"][:, :3], ((tgt - mean) / std).expand(1, 3, 64, 64))
    torch.testing.assert_close(seen["x"][:, 3:], ((src - mean) / std).expand(1, 3, 64, 64))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = PoseNet()
    T = net(torch.rand(2, 3, 64, 192), torch.rand(2, 3, 64, 192))
    # A loss on the Pose (rotation and translation) reaches the raw outputs through Pose.from_aa.
    loss = (T.R - torch.eye(3)).pow(2).sum() + (T.t - 1.0).pow(2).sum()
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert missing == []


def test_rejects_bad_inputs(net):
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.rand(1, 3, 64, 208), torch.rand(1, 3, 64, 208))
    with pytest.raises(ValueError, match="image_b"):
        net(torch.rand(1, 3, 64, 192), torch.rand(2, 3, 64, 192))


def test_param_count_and_pretrained(tmp_path, net):
    # 11,176,512 (ResNet-18 without fc) + 9,408 (conv1 takes 6 channels) + 1,313,030 (decoder).
    assert sum(p.numel() for p in net.parameters()) == 12_498_950
    path = tmp_path / "resnet18.pth"
    reference = ResNet(18)
    torch.save(reference.state_dict(), path)
    w = reference.conv1.weight.detach()
    torch.testing.assert_close(
        PoseNet(pretrained_path=path).encoder.encoder.conv1.weight.detach(), torch.cat([w, w], dim=1) / 2
    )


def test_small_encoder_is_cheap_and_learns_through_every_layer():
    torch.manual_seed(0)
    net = PoseNet(encoder="small")
    # conv 7x7 6->16, then 3x3 16->32->64->128->256 (weights, no biases; batch norm's scale and shift).
    encoder = (
        (6 * 16 * 49 + 2 * 16) + (16 * 32 * 9 + 2 * 32) + (32 * 64 * 9 + 2 * 64) + (64 * 128 * 9 + 2 * 128)
    )
    encoder += 128 * 256 * 9 + 2 * 256
    decoder = (256 * 256 + 256) + 2 * (256 * 256 * 9 + 256) + (256 * 6 + 6)
    assert sum(p.numel() for p in net.parameters()) == encoder + decoder
    T = net(torch.rand(2, 3, 64, 192), torch.rand(2, 3, 64, 192))
    assert T.shape == (2,) and bool((T.magnitude()[1] < 1e-3).all())
    (T.t.sum() + T.R.sum()).backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in net.parameters())


def test_lite0_pose_encoder_predicts_a_pose_per_pair():
    net = PoseNet(encoder="efficientnet_lite0")
    T = net(torch.rand(2, 3, 64, 96), torch.rand(2, 3, 64, 96))
    assert T.shape == torch.Size([2])
    assert T.t.abs().max() < 1e-2  # near identity at init, like the other encoders
    with pytest.raises(ValueError, match="weights path"):
        PoseNet(encoder="resnet18", pretrained_path=True)


def test_unknown_encoder_and_pretrained_small_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown pose encoder"):
        PoseNet(encoder="vgg")
    with pytest.raises(ValueError, match="no pretrained"):
        PoseNet(encoder="small", pretrained_path=tmp_path / "x.pth")
