"""Bad input through the command line: exit code 2 and one ``error: <path>: <problem>`` line, no traceback.

Each case damages a copy of the toy dataset (or a checkpoint, or the config) the way real data gets
damaged, and checks that the message names the right file and says what is wrong with it.
"""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from sa4depth.apps.cli import main
from sa4depth.config import config_to_dict, load_config
from sa4depth.data.folder import FolderDataset
from sa4depth.data.toy import toy_world
from sa4depth.train.run import build_system

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clean_world(tmp_path_factory):
    return toy_world(tmp_path_factory.mktemp("clean") / "world", frames=4, size=(64, 64))


@pytest.fixture
def world(clean_world, tmp_path):
    """A fresh copy of the toy dataset for the test to damage."""
    return shutil.copytree(clean_world, tmp_path / "world")


@pytest.fixture(scope="module")
def foreign_checkpoint(tmp_path_factory):
    """A checkpoint whose config says resnet18 but whose weights come from an EfficientNet-Lite0 model."""
    lite = build_system(load_config(None, ["model.encoder=efficientnet_lite0"]), "test")
    path = tmp_path_factory.mktemp("ckpt") / "foreign.ckpt"
    torch.save(
        {"sa4depth_config": config_to_dict(load_config(None, [])), "state_dict": lite.state_dict()}, path
    )
    return path


def run_cli(capsys, *argv):
    """Run ``sa4depth ARGV``; return the exit code and the one ``error:`` line (asserting there is one)."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    return rc, errors[0]


def train_args(root, *extra):
    return [
        "train",
        f"data.root={root}",
        "data.height=64",
        "data.width=64",
        "data.batch_size=2",
        "trainer.accelerator=cpu",
        "trainer.max_steps=1",
        f"output_dir={root.parent / 'run'}",
        *extra,
    ]


def check(capsys, argv, path, *problem):
    rc, line = run_cli(capsys, *argv)
    assert rc == 2
    assert line.startswith(f"error: {path}: "), line
    for words in problem:
        assert words in line, line


def test_missing_dataset_folder(capsys, tmp_path):
    check(capsys, train_args(tmp_path / "nowhere"), tmp_path / "nowhere", "not a dataset root")


def test_empty_image_folder(capsys, world):
    images = world / "sequences" / "a" / "images"
    shutil.rmtree(images)
    images.mkdir()
    check(capsys, train_args(world), images, "no .png/.jpg frames")


def test_missing_image(capsys, world):
    (world / "sequences" / "a" / "images" / "000002.png").unlink()
    check(capsys, train_args(world), world / "sequences" / "a" / "poses.txt", "4 poses for 3 frames")


def test_truncated_image(capsys, world):
    image = world / "sequences" / "a" / "images" / "000002.png"
    image.write_bytes(image.read_bytes()[:200])
    check(capsys, train_args(world), image, "cannot decode image", "truncated")


def test_truncated_image_read_by_a_loader_worker(capsys, world):
    image = world / "sequences" / "a" / "images" / "000002.png"
    image.write_bytes(image.read_bytes()[:200])
    check(capsys, train_args(world, "data.num_workers=1"), image, "cannot decode image")


def test_grayscale_and_rgba_frames_are_converted_to_rgb(world, clean_world):
    for name, mode in (("000001.png", "L"), ("000002.png", "RGBA")):
        path = world / "sequences" / "a" / "images" / name
        Image.open(path).convert(mode).save(path)
    dataset, reference = FolderDataset(world, "train", 64, 64), FolderDataset(clean_world, "train", 64, 64)
    for i in range(len(dataset)):
        images = dataset[i]["images"]
        assert images.shape == (3, 3, 64, 64) and torch.isfinite(images).all()
    # RGBA keeps its colours; grayscale is repeated over the three channels.
    assert torch.equal(dataset[0]["images"][2], reference[0]["images"][2])  # frame 2 as source
    gray = dataset[0]["images"][0]  # frame 1 as target
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_frames_of_different_sizes(capsys, world):
    image = world / "sequences" / "a" / "images" / "000002.png"
    Image.open(image).resize((100, 40)).save(image)
    check(capsys, train_args(world), image, "frame size 100x40 differs")


def test_missing_calibration(capsys, world):
    (world / "sequences" / "b" / "cam.txt").unlink()
    check(capsys, train_args(world), world / "sequences" / "b" / "cam.txt", "not found")


def test_malformed_calibration(capsys, world):
    (world / "sequences" / "b" / "cam.txt").write_text("721.5 0 609.5\n0 721.5\n")
    check(capsys, train_args(world), world / "sequences" / "b" / "cam.txt", "9")


def test_split_line_pointing_at_a_missing_frame(capsys, world):
    (world / "splits" / "train.txt").write_text("a 1\na 9\n")
    check(capsys, train_args(world), world / "splits" / "train.txt", "entry 2 (a 9)", "does not exist")


def test_nan_in_poses(capsys, world):
    poses = world / "sequences" / "a" / "poses.txt"
    lines = poses.read_text().splitlines()
    lines[2] = " ".join(["nan"] * 12)
    poses.write_text("\n".join(lines) + "\n")
    check(capsys, train_args(world), poses, "NaN")


def test_unknown_config_key(capsys, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("trainer:\n  max_stepz: 3\n")
    check(capsys, ["train", "--config", config], config, "trainer.max_stepz", "max_steps")


def test_config_value_of_the_wrong_type(capsys):
    check(capsys, ["train", "trainer.max_steps=many"], "command line", "trainer.max_steps", "many")


def test_unknown_encoder(capsys, world):
    check(capsys, train_args(world, "model.encoder=resnet7"), "command line", "'model.encoder'", "'resnet7'")


def test_packaged_imagenet_weights_for_a_resnet_pose_encoder(capsys, world):
    args = train_args(world, "model.pose_encoder=resnet18", "model.pose_pretrained=imagenet")
    check(capsys, args, "command line", "model.pose_pretrained", "efficientnet_lite0")


def test_sync_batchnorm_on_cpu(capsys, world):
    check(capsys, train_args(world, "trainer.sync_batchnorm=true"), "config", "needs GPUs")


def test_resume_without_a_checkpoint(capsys, world):
    last = world.parent / "run" / "checkpoints" / "last.ckpt"
    check(capsys, train_args(world, "--resume"), last, "no checkpoint to resume from")


def test_checkpoint_of_another_architecture(capsys, foreign_checkpoint, tmp_path):
    argv = ["evaluate", "--checkpoint", foreign_checkpoint, "--output", tmp_path / "m.json"]
    check(capsys, argv, foreign_checkpoint, "do not fit", "missing")
    assert not (tmp_path / "m.json").exists()


def test_resume_from_a_checkpoint_of_another_architecture(capsys, foreign_checkpoint, world):
    last = world.parent / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    shutil.copy(foreign_checkpoint, last)
    check(capsys, train_args(world, "--resume"), last, "do not fit")


@pytest.mark.parametrize("damage", ["truncated", "not a checkpoint"])
def test_corrupt_checkpoint(capsys, foreign_checkpoint, world, damage):
    last = world.parent / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    if damage == "truncated":
        last.write_bytes(foreign_checkpoint.read_bytes()[:100_000])
    else:
        shutil.copy(world / "sequences" / "a" / "images" / "000000.png", last)
    check(capsys, ["evaluate", "--checkpoint", last], last, "cannot read checkpoint")
    check(capsys, train_args(world, "--resume"), last, "cannot read checkpoint")


def test_depth_map_of_the_wrong_shape(capsys, world):
    depth = world / "sequences" / "a" / "depth" / "000001.npz"  # the first validation image
    np.savez(depth, depth=np.zeros((4, 64, 64), np.float32))
    check(capsys, train_args(world), depth, "depth must be")


def test_malformed_benchmark_variant(capsys):
    rc, line = run_cli(capsys, "bench", "train", "--sizes", "64x192", "--refine-variants", "no_overrides")
    assert rc == 2 and "--refine-variants" in line and "NAME=KEY=VALUE" in line


def test_overrides_on_both_sides_of_an_option_are_all_overrides(tmp_path, capsys):
    missing = tmp_path / "missing.ckpt"
    argv = [
        "evaluate",
        "--checkpoint",
        str(missing),
        "data.height=64",
        "--output",
        "o.json",
        "data.width=192",
    ]
    assert main(argv) == 2  # the checkpoint is the problem, not "unrecognized arguments"
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {missing}") and "unrecognized" not in err
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--checkpoint", str(missing), "--bogus"])
    assert e.value.code == 2
