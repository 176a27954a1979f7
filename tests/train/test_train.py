"""End-to-end training on a tiny folder dataset: the loss falls, checkpoints carry their config, resume works."""

import numpy as np
import pytest
import torch

from sa4depth.config import load_config
from sa4depth.data import layout
from sa4depth.train.run import load_checkpoint, train


def tiny_world(root, frames=8, size=(64, 192)):
    """A textured ground plane and a wall seen by a camera moving forward: enough for a loss to fall."""
    rng = np.random.default_rng(0)
    H, W = size
    K = np.array([[100.0, 0, (W - 1) / 2], [0, 100.0, (H - 1) / 2], [0, 0, 1]])
    texture = rng.random((256, 256, 3))
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    for seq in ("a", "b"):
        d = layout.sequence_dir(root, seq)
        poses = []
        for i in range(frames):
            z0 = 0.2 * i
            depth = np.full((H, W), 12.0) - z0
            x, y = (u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth
            tex = texture[(np.floor(y * 12) % 256).astype(int), (np.floor(x * 12) % 256).astype(int)]
            layout.write_image(d / "images" / f"{i:06d}.png", (tex * 255).astype(np.uint8))
            layout.write_depth(d / "depth" / f"{i:06d}.npz", depth.astype(np.float32))
            T = np.eye(4)
            T[2, 3] = z0
            poses.append(T)
        layout.write_poses(d / "poses.txt", np.stack(poses))
        layout.write_cam(d / "cam.txt", K)
    for split in ("train", "val", "test"):
        layout.write_split(
            root / "splits" / f"{split}.txt", [(s, i) for s in ("a", "b") for i in range(1, frames - 1)]
        )
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tiny_world(tmp_path_factory.mktemp("world"))


def config(world, out, *extra):
    return load_config(
        None,
        [
            f"data.root={world}",
            "data.height=64",
            "data.width=192",
            "data.batch_size=2",
            f"output_dir={out}",
            "trainer.log_every_n_steps=1",
            "loss.automask=false",
            "trainer.accelerator=cpu",
            *extra,
        ],
    )


def test_training_writes_checkpoint_with_config_and_resumes(world, tmp_path):
    cfg = config(world, tmp_path / "run", "trainer.max_steps=3")
    ckpt_dir = train(cfg, enable_progress_bar=False)
    assert (ckpt_dir / "last.ckpt").is_file() and (tmp_path / "run" / "config.yaml").is_file()
    system, loaded = load_checkpoint(ckpt_dir / "last.ckpt")
    assert loaded.data.height == 64 and loaded.output_dir == str(tmp_path / "run")
    assert torch.load(ckpt_dir / "last.ckpt", weights_only=False)["global_step"] == 3
    resumed = config(world, tmp_path / "run", "trainer.max_steps=5")
    train(resumed, resume=True, enable_progress_bar=False)
    assert torch.load(ckpt_dir / "last.ckpt", weights_only=False)["global_step"] == 5


@pytest.mark.parametrize("pipeline", ["monodepth2", "sc_depth"])
def test_loss_decreases_when_overfitting_one_batch(world, pipeline):
    from sa4depth.data.datamodule import DepthDataModule
    from sa4depth.train.model import DepthPoseModel

    cfg = config(world, "unused", f"loss.pipeline={pipeline}", "data.augment=false")
    dm = DepthDataModule(cfg.data)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    model = DepthPoseModel(cfg)
    optim = torch.optim.Adam(model.parameters(), lr=5e-4)
    losses = []
    for _ in range(15):
        loss, _ = model.training_forward(batch)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.85 * np.mean(losses[:3])
