"""Plots: trajectory alignment numbers, scale-factor figures from evaluation results, TensorBoard curves of
one run or several overlaid (constant series left out)."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from sa4depth.apps.visualize import (
    _curves_figure,
    constant_tags,
    default_tags,
    load_scalars,
    plot_scale_factors,
    plot_training_curves,
    plot_trajectories,
    sequence_trajectory,
)
from sa4depth.data import layout
from sa4depth.errors import InputError


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as im:
        return im.size


def circle_trajectory(n=20) -> np.ndarray:
    T = np.tile(np.eye(4), (n, 1, 1))
    a = np.linspace(0, np.pi, n)
    T[:, 0, 3], T[:, 2, 3] = 10 * np.sin(a), 10 * (1 - np.cos(a))
    return T


def test_trajectory_plot_undoes_scale_and_rotation(tmp_path):
    gt = circle_trajectory()
    R = np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])  # 90 degrees about y
    pred = gt.copy()
    pred[:, :3, 3] = 0.25 * gt[:, :3, 3] @ R.T
    layout.write_poses(tmp_path / "gt.txt", gt)  # paths work as well as arrays
    info = plot_trajectories(tmp_path / "gt.txt", pred, tmp_path / "traj.png", title="seq")
    assert info["scale"] == pytest.approx(4.0, rel=1e-6) and info["ate"] < 1e-6
    assert png_size((tmp_path / "traj.png").read_bytes())[0] > 100
    with pytest.raises(InputError, match="20 ground-truth poses but 5"):
        plot_trajectories(gt, pred[:5], tmp_path / "x.png")


def test_sequence_trajectory_chains_pose_net_steps(tmp_path):
    import torch

    from sa4depth.config import load_config

    root = tmp_path / "data"
    seq = layout.sequence_dir(root, "s")
    rng = np.random.default_rng(0)
    for i in range(4):
        layout.write_image(seq / "images" / f"{i:06d}.png", rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    layout.write_cam(seq / "cam.txt", np.array([[50.0, 0, 47.5], [0, 50.0, 31.5], [0, 0, 1]]))
    gt = circle_trajectory(4)
    layout.write_poses(seq / "poses.txt", gt)
    layout.write_split(root / "splits" / "test.txt", [("s", 1), ("s", 2)])
    cfg = load_config(None, [f"data.root={root}", "data.height=64", "data.width=96"])

    class FixedStep(torch.nn.Module):
        """A stand-in pose net: every target->source step moves the camera 1 unit forward."""

        def forward(self, tgt, src):
            from sa4depth.geometry import Pose

            B = tgt.shape[0]
            return Pose.from_aa(torch.zeros(B, 3), torch.tensor([[0.0, 0.0, -1.0]]).expand(B, 3))

    from sa4depth.train.model import DepthPoseModel

    model = DepthPoseModel(load_config(None, ["model.pose_encoder=small", "model.encoder=resnet18_slim"]))
    model.pose_net = FixedStep()  # reached through model.relative_pose, as in training
    name, gt_read, pred = sequence_trajectory(model, cfg, batch_size=2)
    assert name == "s" and np.allclose(gt_read, gt)
    np.testing.assert_allclose(pred[:, 2, 3], [0.0, 1.0, 2.0, 3.0], atol=1e-6)


def test_scale_factor_plot_from_per_frame_scales_and_from_summary(tmp_path):
    per_frame = {"scales_by_sequence": {"a": [1.0, 1.1, 0.9], "b": [2.0, 2.1], "c": [1.5]}}
    png = plot_scale_factors(per_frame, tmp_path / "frames.png", title="model")
    assert (tmp_path / "frames.png").read_bytes() == png and png_size(png)[0] > 300
    summary = {
        "depth": {"abs_rel": 0.1},
        "scale_consistency": {
            "seq_scale_std": 0.3,
            "within_seq_cv": 0.05,
            "seq_means": {"a": 1.0, "b": 2.0},
            "seq_cv": {"a": 0.1, "b": 0.0},
        },
    }
    (tmp_path / "metrics.json").write_text(json.dumps(summary))
    assert png_size(plot_scale_factors(tmp_path / "metrics.json"))[0] > 300
    with pytest.raises(InputError, match="no per-sequence scales"):
        plot_scale_factors({"depth": {}})
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        plot_scale_factors(tmp_path / "bad.json")


def write_events(log_dir, values: dict[str, list[tuple[int, float]]]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(log_dir))
    for tag, points in values.items():
        for step, value in points:
            writer.add_scalar(tag, value, step)
    writer.close()


def test_training_curves_read_every_scalar_and_merge_resumed_runs(tmp_path):
    run = tmp_path / "run"
    write_events(run / "tensorboard", {"train/loss": [(0, 1.0), (1, 0.5)], "val/abs_rel": [(1, 0.3)]})
    # A resumed run appends a second event file; step 1 is logged again and the newer value wins.
    write_events(run / "tensorboard", {"train/loss": [(1, 0.4), (2, 0.25)], "epoch": [(2, 0.0)]})
    scalars = load_scalars(run)
    steps, values = scalars["train/loss"]
    assert steps.tolist() == [0, 1, 2] and values.tolist() == pytest.approx([1.0, 0.4, 0.25])
    assert scalars["val/abs_rel"][1].tolist() == pytest.approx([0.3])
    png = plot_training_curves(run, tmp_path / "curves.png")
    width, height = png_size(png)
    assert width > 2 * height  # two panels side by side (epoch is left out)
    with pytest.raises(InputError, match="no scalar 'val/a1'"):
        plot_training_curves(run, tags=["val/a1"])
    with pytest.raises(InputError, match="no TensorBoard event files"):
        load_scalars(tmp_path / "empty")


def test_curves_of_several_runs_are_overlaid_once_per_metric_without_constant_series(tmp_path):
    common = {"val/count": [(1, 64.0), (2, 64.0)], "val/n_skipped": [(1, 0.0), (2, 0.0)], "epoch": [(2, 0.0)]}
    write_events(tmp_path / "a" / "tensorboard", {"train/loss": [(0, 1.0), (1, 0.5)], **common})
    write_events(tmp_path / "b" / "tensorboard", {"train/loss": [(0, 0.9), (1, 0.4)], **common})
    write_events(tmp_path / "b" / "tensorboard", {"val/abs_rel": [(1, 0.3), (2, 0.2)]})  # b alone
    runs = {name: load_scalars(tmp_path / name) for name in ("a", "b")}
    assert constant_tags(runs) == {"val/count": 64.0, "val/n_skipped": 0.0, "epoch": 0.0}
    assert default_tags(runs) == ["train/loss", "val/abs_rel"]
    fig = _curves_figure(runs, None, 9)
    panels = {ax.get_title(): ax for ax in fig.axes}
    assert sorted(panels) == ["train/loss", "val/abs_rel"]  # each metric once
    loss = panels["train/loss"]
    assert [line.get_label() for line in loss.get_lines()] == ["a", "b"]  # both runs, one colour each
    ys = [line.get_ydata().tolist() for line in loss.get_lines()]
    assert ys == [pytest.approx([1.0, 0.5]), pytest.approx([0.9, 0.4])]  # float32 in the event files
    assert tuple(loss.get_lines()[0].get_color()) != tuple(loss.get_lines()[1].get_color())
    assert [line.get_label() for line in panels["val/abs_rel"].get_lines()] == ["b"]
    assert loss.get_legend() is not None
    # One run: the same panels, no legend; a run of constants alone has nothing to draw.
    single = _curves_figure({"a": runs["a"]}, None, 9)
    assert [ax.get_title() for ax in single.axes] == ["train/loss"] and single.axes[0].get_legend() is None
    png = plot_training_curves({"a": tmp_path / "a", "b": tmp_path / "b"})
    assert png_size(png)[0] > 2 * png_size(png)[1]  # two panels side by side
    write_events(tmp_path / "c" / "tensorboard", common)
    with pytest.raises(InputError, match="no scalars logged that change"):
        plot_training_curves(tmp_path / "c")
