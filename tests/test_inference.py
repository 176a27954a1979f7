"""The inference loader: the depth net alone, from a training checkpoint, predicts exactly what the training
system's depth net predicts, carries the training camera, and every damaged file is a one-line error."""

import math

import numpy as np
import pytest
import torch

from sa4depth.config import config_to_dict, load_config
from sa4depth.errors import InputError
from sa4depth.inference import INTRINSICS_KEY, DepthCheckpoint, load_depth_net

pytestmark = pytest.mark.usefixtures("one_thread")

H, W = 64, 96
SMALL = [f"data.height={H}", f"data.width={W}", "data.root=nowhere", "model.encoder=resnet18_slim"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A training checkpoint of an SA4Depth system (refinement on: more than a depth net in the file)."""
    from sa4depth.train.system import DepthPoseSystem

    torch.manual_seed(3)
    cfg = load_config(None, [*SMALL, "model.pose_encoder=small", "refine.enabled=true"])
    system = DepthPoseSystem(cfg).eval()
    path = tmp_path_factory.mktemp("inference") / "run.ckpt"
    entries = {"state_dict": system.state_dict(), "sa4depth_config": config_to_dict(cfg)}
    entries[INTRINSICS_KEY] = {
        "K": [[100.0, 0, 95.5], [0, 100.0, 63.5], [0, 0, 1]],
        "width": 192,
        "height": 128,
    }
    torch.save(entries, path)
    return system, path


def test_loaded_depth_net_predicts_what_the_training_system_predicts(trained):
    system, path = trained
    loaded = load_depth_net(path)
    assert isinstance(loaded, DepthCheckpoint) and not loaded.depth_net.training
    # Only the depth net is built: no pose net, feature net or refinement weights.
    assert set(loaded.depth_net.state_dict()) == {
        k.removeprefix("model.depth_net.") for k in system.state_dict() if k.startswith("model.depth_net.")
    }
    image = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = system.model.depth_net.predict_depth(image)
        got = loaded.depth_net.predict_depth(image)
    assert torch.equal(got, expected)
    # The recorded camera at 192 x 128, resized to the 96 x 64 training resolution.
    np.testing.assert_allclose(loaded.K, [[50.0, 0, 47.5], [0, 50.0, 31.5], [0, 0, 1]])
    assert (loaded.cfg.data.height, loaded.cfg.data.width) == (H, W) and loaded.training_data is None


def _damaged(path, tmp_path, change) -> str:
    entries = torch.load(path, weights_only=True)
    entries["state_dict"] = dict(entries["state_dict"])
    change(entries)
    bad = tmp_path / "bad.ckpt"
    torch.save(entries, bad)
    with pytest.raises(InputError) as info:
        load_depth_net(bad)
    assert info.value.path == str(bad) and "\n" not in str(info.value)
    return info.value.problem


def test_damaged_checkpoints_are_one_line_errors(trained, tmp_path):
    _, path = trained
    key = "model.depth_net.decoder.dispconvs.0.conv.weight"

    def nan(entries):
        entries["state_dict"][key] = torch.full_like(entries["state_dict"][key], math.nan)

    def mis_shaped(entries):
        entries["state_dict"][key] = entries["state_dict"][key][:, :1]

    def missing(entries):
        del entries["state_dict"][key]

    def bad_camera(entries):
        entries[INTRINSICS_KEY] = {"K": [1.0, 2.0]}

    assert _damaged(path, tmp_path, nan).startswith(f"weights hold NaN or Inf (1 tensors, e.g. {key!r})")
    assert f"e.g. {key!r}" in _damaged(path, tmp_path, mis_shaped)
    assert "weights do not fit the resnet18_slim depth network" in _damaged(path, tmp_path, missing)
    assert _damaged(path, tmp_path, bad_camera) == f"malformed {INTRINSICS_KEY} entry (ValueError)"
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(path.read_bytes()[:50_000])
    with pytest.raises(InputError, match="cannot read checkpoint"):
        load_depth_net(truncated)
    with pytest.raises(InputError, match="checkpoint not found"):
        load_depth_net(tmp_path / "none.ckpt")
