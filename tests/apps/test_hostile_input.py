"""Hostile input through the command line (issue 18): one table of cases, each exit 2 and one error line.

Every case runs ``sa4depth.apps.cli.main`` in-process on tiny data (a 64 x 64 toy world, a slim random-weight
checkpoint), and checks the exit code, that the single ``error: <file or key>: <problem>`` line blames the
right thing, and that it says what is wrong. The data-safety cases below the table check what is on disk.
"""

import fcntl
import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from sa4depth.apps.cli import main
from sa4depth.apps.predict import MANIFEST, predict_paths
from sa4depth.config import config_to_dict, load_config
from sa4depth.data import layout
from sa4depth.data.folder import FolderDataset
from sa4depth.data.toy import toy_world
from sa4depth.errors import InputError
from sa4depth.train.system import DepthPoseSystem

pytestmark = pytest.mark.usefixtures("one_thread")

SLIM = ["data.height=64", "data.width=64", "model.encoder=resnet18_slim", "model.pose_encoder=small"]
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.fixture(scope="module")
def clean_world(tmp_path_factory):
    return toy_world(tmp_path_factory.mktemp("clean") / "world", frames=4, size=(64, 64))


@pytest.fixture(scope="module")
def checkpoint_dict(clean_world):
    """A random-weight slim model trained (nominally) on the toy world: what every checkpoint case damages."""
    cfg = load_config(None, [*SLIM, f"data.root={clean_world}"])
    return {"sa4depth_config": config_to_dict(cfg), "state_dict": DepthPoseSystem(cfg).state_dict()}


@pytest.fixture(scope="module")
def checkpoint(checkpoint_dict, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    torch.save(checkpoint_dict, path)
    return path


@dataclass
class Ctx:
    """What a case builder gets: a fresh folder, the clean toy world and checkpoint to copy and damage."""

    tmp: Path
    clean: Path
    ckpt: Path
    ckpt_dict: dict

    def world(self) -> Path:
        return shutil.copytree(self.clean, self.tmp / "world")

    def image(self, name="photo.png", size=(64, 64)) -> Path:
        layout.write_image(self.tmp / name, np.full((*size, 3), 128, np.uint8))
        return self.tmp / name

    def crafted_checkpoint(self, damage) -> Path:
        ckpt = {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.ckpt_dict.items()}
        damage(ckpt)
        torch.save(ckpt, self.tmp / "crafted.ckpt")
        return self.tmp / "crafted.ckpt"


def _train(c: Ctx, *overrides):
    return ["train", *SLIM, f"data.root={c.clean}", f"output_dir={c.tmp / 'run'}", *overrides]


def _config_case(override: str, key: str, fragment: str):
    return lambda c: (_train(c, override), "command line", [f"config key {key!r}", fragment])


def _file(c: Ctx, name: str, data: bytes) -> Path:
    (c.tmp / name).write_bytes(data)
    return c.tmp / name


def _singular_pose(c: Ctx):
    world = c.world()
    poses = world / "sequences" / "a" / "poses.txt"
    lines = poses.read_text().splitlines()
    lines[2] = " ".join(["1", "0", "0", "0", "0", "1", "0", "0", "0", "0", "0", "0"])  # R has a zero row
    poses.write_text("\n".join(lines) + "\n")
    return _evaluate(c, world), poses, ["line 3", "not a rigid camera pose"]


def _depth_of_another_size(c: Ctx):
    world = c.world()
    depth = world / "sequences" / "a" / "depth" / "000001.npz"
    np.savez(depth, depth=np.full((32, 32), 5.0, np.float32))  # would be resized to 64 x 64 silently
    return _evaluate(c, world), depth, ["depth map is 32x32", "000001.png is 64x64"]


def _evaluate(c: Ctx, world: Path, *extra):
    return ["evaluate", "--checkpoint", c.ckpt, "--output", c.tmp / "m.json", f"data.root={world}", *extra]


def _frames(c: Ctx, size: tuple[int, int]) -> Path:
    for i in range(3):
        layout.write_image(c.tmp / "frames" / f"{i:06d}.png", np.full((*size, 3), 40 * i, np.uint8))
    return c.tmp / "frames"


def _current_folder(c: Ctx, command: list[str]):
    (c.tmp / "here").mkdir()
    (c.tmp / "here" / "keep.txt").write_text("mine")
    os.chdir(c.tmp / "here")
    return [*command, "--out", ".", "--overwrite"], c.tmp / "here", ["is the current folder"]


def _nan_weights(ckpt):
    ckpt["state_dict"] = dict(ckpt["state_dict"])
    key = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][key] = torch.full_like(ckpt["state_dict"][key], float("nan"))


def _height_50(ckpt):
    ckpt["sa4depth_config"] = {**ckpt["sa4depth_config"], "data": {**ckpt["sa4depth_config"]["data"]}}
    ckpt["sa4depth_config"]["data"]["height"] = 50


# case name -> builder(ctx) -> (argv, the file or key the error line must blame, fragments it must contain)
CASES = {
    # Point 8: every numeric option's range, at config load.
    "grad_clip negative": _config_case("optim.grad_clip=-1", "optim.grad_clip", "null or finite and > 0"),
    "lr negative": _config_case("optim.lr=-1", "optim.lr", "must be finite and > 0, got -1.0"),
    "lr nan": _config_case("optim.lr=nan", "optim.lr", "finite"),
    "batch size 0": _config_case("data.batch_size=0", "data.batch_size", ">= 1"),
    "max_steps 0": _config_case("trainer.max_steps=0", "trainer.max_steps", "-1 (no limit) or >= 1"),
    "max_epochs 0": _config_case("trainer.max_epochs=0", "trainer.max_epochs", "-1 (no limit) or >= 1"),
    "no end": _config_case("trainer.max_epochs=-1", "trainer.max_steps", "training never ends"),
    "val interval 0": _config_case(
        "trainer.val_check_interval=0", "trainer.val_check_interval", "fraction of an epoch"
    ),
    "val interval 1.5": _config_case(
        "trainer.val_check_interval=1.5", "trainer.val_check_interval", "(0, 1]"
    ),
    "accumulation 0": _config_case(
        "trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches", ">= 1"
    ),
    "loss weight negative": _config_case(
        "loss.smoothness_weight=-1", "loss.smoothness_weight", "finite and >= 0"
    ),
    "loss scales 5": _config_case("loss.num_scales=5", "loss.num_scales", "1..4"),
    "height 50": _config_case("data.height=50", "data.height", "multiple of 32, got 50"),
    "width 0": _config_case("data.width=0", "data.width", "positive multiple of 32"),
    "devices 0": _config_case("trainer.devices=0", "trainer.devices", "a count >= 1"),
    "precision 17": _config_case("trainer.precision=17", "trainer.precision", "32-true"),
    "strategy unknown": _config_case("trainer.strategy=zigzag", "trainer.strategy", "Lightning strategy"),
    "accelerator unknown": _config_case("trainer.accelerator=abacus", "trainer.accelerator", "cpu"),
    "offsets empty": _config_case("data.offsets=[]", "data.offsets", "non-empty"),
    "offsets zero": _config_case("data.offsets=[0,1]", "data.offsets", "non-zero"),
    "offsets repeated": _config_case("data.offsets=[1,1]", "data.offsets", "distinct"),
    "schedule unknown": _config_case("optim.schedule=adam", "optim.schedule", "step, cosine"),
    "warmup negative": _config_case("optim.warmup_steps=-1", "optim.warmup_steps", ">= 0"),
    "pose encoder unknown": _config_case("model.pose_encoder=vgg", "model.pose_encoder", "small"),
    "encoder unknown": _config_case("model.encoder=vgg", "model.encoder", "efficientnet_lite0"),
    "pose forward init nan": _config_case("model.pose_forward_init=nan", "model.pose_forward_init", "finite"),
    # Config files and folders.
    "non-UTF-8 config": lambda c: (
        ["train", "--config", _file(c, "bad.yaml", b"optim:\n  lr: \xff\xfe\n")],
        c.tmp / "bad.yaml",
        ["invalid UTF-8 at byte 13"],
    ),
    "YAML alias bomb": lambda c: (
        ["train", "--config", _file(c, "bomb.yaml", BOMB.encode())],
        c.tmp / "bomb.yaml",
        ["expands to more than 10000 values"],
    ),
    "YAML alias loop": lambda c: (
        ["train", "--config", _file(c, "loop.yaml", b"data: &x {offsets: *x}\n")],
        c.tmp / "loop.yaml",
        ["refers to the node that contains it"],
    ),
    "output_dir is a file": lambda c: (
        ["train", *SLIM, f"data.root={c.clean}", f"output_dir={_file(c, 'out', b'x')}"],
        c.tmp / "out",
        ["output_dir is a file"],
    ),
    # Point 9: a batch larger than the training set would run 0 steps.
    "batch larger than train set": lambda c: (
        _train(c, "data.batch_size=8", "trainer.accelerator=cpu", "trainer.max_steps=1"),
        c.clean,
        ["'data.batch_size' is 8", "only 4 training samples"],
    ),
    # Data that is finite but wrong.
    "singular pose": _singular_pose,
    "GT of another size": _depth_of_another_size,
    # Crafted checkpoints.
    "NaN weights": lambda c: (
        ["predict", "--checkpoint", c.crafted_checkpoint(_nan_weights), c.image(), "--output", c.tmp / "o"],
        c.tmp / "crafted.ckpt",
        ["weights hold NaN or Inf (1 tensors, e.g. "],
    ),
    "training height 50": lambda c: (
        ["evaluate", "--checkpoint", c.crafted_checkpoint(_height_50)],
        c.tmp / "crafted.ckpt",
        ["checkpoint config", "'data.height'", "got 50"],
    ),
    # Outputs: a folder where a file is expected, a file where a folder is, the current folder.
    "pointcloud --output folder": lambda c: (
        ["pointcloud", "--checkpoint", c.ckpt, c.image(), "--fov", "60", "--output", c.tmp],
        c.tmp,
        ["is a folder"],
    ),
    "evaluate --output folder": lambda c: (
        ["evaluate", "--checkpoint", c.ckpt, "--output", c.tmp],
        c.tmp,
        ["is a folder"],
    ),
    "export --output folder": lambda c: (
        ["export", "--checkpoint", c.ckpt, "--output", c.tmp],
        c.tmp,
        ["folder"],
    ),
    "predict --output file": lambda c: (
        ["predict", "--checkpoint", c.ckpt, c.image(), "--output", _file(c, "o.txt", b"x")],
        c.tmp / "o.txt",
        ["is a file"],
    ),
    "synth --out . --overwrite": lambda c: _current_folder(
        c, ["synth", "--sequences", "1", "--frames", "3", "--height", "16", "--width", "16"]
    ),
    "prepare --out . --overwrite": lambda c: _current_folder(c, ["prepare", str(_frames(c, (64, 64)))]),
    # synth and prepare options.
    "synth --sequences 0": lambda c: (
        ["synth", "--sequences", "0", "--out", c.tmp / "w"],
        "--sequences",
        ["at least 1"],
    ),
    "synth --frames 1": lambda c: (
        ["synth", "--frames", "1", "--out", c.tmp / "w"],
        "--frames",
        ["at least 3"],
    ),
    "prepare 1x1 frames": lambda c: (
        ["prepare", _frames(c, (1, 1)), "--out", c.tmp / "d"],
        c.tmp / "frames" / "000000.png",
        ["frames are 1x1", "smaller than 8x8"],
    ),
    "prepare huge size": lambda c: (
        ["prepare", _frames(c, (64, 64)), "--out", c.tmp / "d", "--height", "100000", "--width", "100000"],
        "--height",
        ["[8, 4096]", "100000"],
    ),
    # Messages that blamed the wrong thing.
    "evaluate override without =": lambda c: (
        ["evaluate", "--checkpoint", c.ckpt, "data.root", "--output", c.tmp / "m.json"],
        "command line",
        ["override 'data.root' is not key=value"],
    ),
    "evaluate override out of range": lambda c: (
        _evaluate(c, c.clean, "data.height=50"),
        "command line",
        ["'data.height'", "got 50"],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_hostile_case_is_one_line_error(case, capsys, tmp_path, clean_world, checkpoint, checkpoint_dict):
    cwd = os.getcwd()
    try:
        argv, blamed, fragments = CASES[case](Ctx(tmp_path, clean_world, checkpoint, checkpoint_dict))
        rc = main([str(a) for a in argv])
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert rc == 2 and len(errors) == 1, err
    assert errors[0].startswith(f"error: {blamed}: "), errors[0]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    if case.endswith("--out . --overwrite"):
        assert (tmp_path / "here" / "keep.txt").read_text() == "mine"  # the current folder is untouched
    assert not (tmp_path / "m.json").exists()  # evaluate wrote no metrics


def test_read_only_output_targets_are_one_line_errors(capsys, tmp_path, checkpoint, monkeypatch):
    """As root (as here) chmod does not stop writes, so the folder is reported read-only to the checks and
    every write fails as a read-only file system does."""
    photo = tmp_path / "photo.png"
    layout.write_image(photo, np.zeros((64, 64, 3), np.uint8))
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    cases = [
        (["pointcloud", "--checkpoint", checkpoint, photo, "--fov", "60", "--output", locked / "c.ply"]),
        (["predict", "--checkpoint", checkpoint, photo, "--output", locked / "out"]),
        (["evaluate", "--checkpoint", checkpoint, "--output", locked / "m.json"]),
        (["synth", "--sequences", "1", "--frames", "3", "--out", locked / "w"]),
        (["prepare", tmp_path, "--out", locked / "d"]),
    ]
    for argv in cases:
        rc = main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err, (argv[0], err)
        assert f"folder {locked} is not writable" in err, err
    monkeypatch.undo()

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", read_only)
    with pytest.raises(InputError, match=r"c\.ply: cannot write \(Permission denied\)"):
        layout.atomic_write_bytes(tmp_path / "c.ply", b"ply")


# ----------------------------------------------------------------------------- predict: nothing lost


def _video(path: Path, frames: int = 2) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 64))
    for i in range(frames):
        writer.write(np.full((64, 64, 3), 60 * i, np.uint8))
    writer.release()
    return path


def test_predict_video_named_dots_stays_inside_the_output_folder(tmp_path, checkpoint):
    inputs = tmp_path / "in"
    inputs.mkdir()
    video = _video(inputs / "...mp4")  # its stem is ".."
    out = tmp_path / "box" / "out"
    assert predict_paths(checkpoint, [video], out, progress=False) == 2
    assert sorted(p.name for p in (tmp_path / "box").iterdir()) == ["out"]  # nothing beside out/
    assert sorted(p.name for p in (out / "__").iterdir()) == [
        f"00000{i}_depth.{ext}" for i in range(2) for ext in ("npy", "png")
    ]


def test_predict_collisions_get_distinct_names(tmp_path, checkpoint):
    inputs = tmp_path / "in"
    layout.write_image(inputs / "x" / "000000.png", np.zeros((64, 64, 3), np.uint8))
    _video(inputs / "x.mp4")  # its frames would be x/000000_depth.* too
    out = tmp_path / "out"
    assert predict_paths(checkpoint, [inputs], out, progress=False) == 3
    manifest = json.loads((out / MANIFEST).read_text())
    names = {Path(e["input"]).name: e["name"] for e in manifest["outputs"]}
    assert names == {"000000.png": "x/000000", "x.mp4": "x_2"}
    image_depth = np.load(out / "x" / "000000_depth.npy")
    assert image_depth.shape == (64, 64) and (out / "x_2" / "000001_depth.npy").is_file()
    assert sorted(p.name for p in (out / "x").iterdir()) == ["000000_depth.npy", "000000_depth.png"]


def test_second_predict_keeps_earlier_outputs_and_manifest_entries(tmp_path, checkpoint):
    out = tmp_path / "out"
    first, second = tmp_path / "a" / "photo.png", tmp_path / "b" / "photo.png"  # the same file name
    layout.write_image(first, np.zeros((64, 64, 3), np.uint8))
    layout.write_image(second, np.full((64, 64, 3), 200, np.uint8))
    predict_paths(checkpoint, [first], out, progress=False)
    before = (out / "photo_depth.npy").read_bytes()
    predict_paths(checkpoint, [second], out, progress=False)
    assert (out / "photo_depth.npy").read_bytes() == before  # the first photo's map is not overwritten
    manifest = json.loads((out / MANIFEST).read_text())
    assert [(e["input"], e["name"]) for e in manifest["outputs"]] == [
        (str(first), "photo"),
        (str(second), "photo_2"),
    ]
    predict_paths(checkpoint, [first], out, scale=2.0, progress=False)  # the same input again: replaced
    manifest = json.loads((out / MANIFEST).read_text())
    assert sorted((e["name"], e["scale_factor"]) for e in manifest["outputs"]) == [
        ("photo", 2.0),
        ("photo_2", 1.0),
    ]
    np.testing.assert_allclose(np.load(out / "photo_depth.npy"), 2 * np.load(io.BytesIO(before)), rtol=1e-6)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MANIFEST, "photo_2_depth.npy", "photo_2_depth.png", "photo_depth.npy", "photo_depth.png"]
    )


def test_manifest_without_names_still_lets_an_input_replace_its_own_maps(tmp_path, checkpoint):
    """Manifests written before entries had a ``name`` are matched by their output paths."""
    photo, out = tmp_path / "photo.png", tmp_path / "out"
    layout.write_image(photo, np.zeros((64, 64, 3), np.uint8))
    predict_paths(checkpoint, [photo], out, progress=False)
    manifest = json.loads((out / MANIFEST).read_text())
    for entry in manifest["outputs"]:
        del entry["name"], entry["checkpoint"]
    (out / MANIFEST).write_text(json.dumps(manifest))
    predict_paths(checkpoint, [photo], out, progress=False)
    (entry,) = json.loads((out / MANIFEST).read_text())["outputs"]
    assert entry["name"] == "photo" and not (out / "photo_2_depth.npy").exists()


def test_failed_predict_leaves_no_partial_maps(tmp_path, checkpoint):
    inputs = tmp_path / "in"
    for i in range(3):
        layout.write_image(inputs / f"{i}.png", np.zeros((64, 64, 3), np.uint8))
    (inputs / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # read in the second batch
    out = tmp_path / "out"
    with pytest.raises(InputError, match="cannot decode image"):
        predict_paths(checkpoint, [inputs], out, batch_size=2, progress=False)
    assert not out.exists()  # the first batch's maps were staged, and went with the staging folder
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError):
        predict_paths(checkpoint, [inputs], out, batch_size=2, progress=False)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


# ------------------------------------------------------------------- prepare / synth: killed runs


def test_a_killed_runs_staging_folder_is_deleted_by_the_next_run(tmp_path):
    """SIGKILL a process that holds a staging folder, as a killed `prepare` or `synth` does."""
    target = tmp_path / "data"
    script = (
        "import sys, time; from sa4depth.data import layout\n"
        f"with layout.staging_folder({str(target)!r}) as t:\n"
        "    (t / 'half.png').write_bytes(b'x'); print(t, flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        leftover = Path(proc.stdout.readline().strip())
        assert leftover.is_dir() and leftover.name.startswith(".data.tmp-")
        assert layout.remove_abandoned(target) == []  # still locked by the live process: kept
        assert leftover.is_dir()
    finally:
        proc.kill()
        proc.wait()
    assert leftover.is_dir()  # SIGKILL left it behind
    main(
        [
            "synth",
            "--sequences",
            "1",
            "--frames",
            "3",
            "--height",
            "16",
            "--width",
            "16",
            "--out",
            str(target),
        ]
    )
    assert not leftover.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert (target / "meta.yaml").is_file()


def test_prepare_deletes_abandoned_folders_and_keeps_a_live_one(tmp_path, caplog):
    frames = tmp_path / "frames"
    for i in range(3):  # random frames: the static-frame filter keeps them all
        layout.write_image(
            frames / f"{i:06d}.png", np.random.default_rng(i).integers(0, 256, (32, 96, 3), np.uint8)
        )
    out = tmp_path / "d"
    old, live = tmp_path / ".d.tmp-0123456789ab", tmp_path / ".d.tmp-live"
    (old / "sequences").mkdir(parents=True)
    live.mkdir()
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another run, still writing
    try:
        main(["prepare", str(frames), "--out", str(out), "--height", "32", "--width", "96"])
    finally:
        os.close(fd)
    assert not old.exists() and live.is_dir() and (out / "meta.yaml").is_file()
    assert f"removed {old}" in caplog.text


def test_an_interrupted_overwrite_is_reported_not_deleted(tmp_path, capsys):
    """Killed between the two renames of an overwrite: the old dataset is only in .NAME.old-*."""
    moved = tmp_path / ".d.old-0123456789ab"
    moved.mkdir()
    (moved / "meta.yaml").write_text("the only copy")
    rc = main(["synth", "--sequences", "1", "--frames", "3", "--out", str(tmp_path / "d")])
    assert rc == 2 and f"error: {moved}: holds what was {tmp_path / 'd'}" in capsys.readouterr().err
    assert (moved / "meta.yaml").read_text() == "the only copy"


# ----------------------------------------------------------------------------- one image reader


def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path, clean_world):
    grey = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(grey).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    image = layout.read_image(tmp_path / "g16.png")
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 1], np.round(grey / 65535 * 255).astype(np.uint8))
    # The same frame through the dataset loader, as an 8-bit PNG and as a 16-bit one: the same tensor.
    world = shutil.copytree(clean_world, tmp_path / "world")
    frame = world / "sequences" / "a" / "images" / "000001.png"
    eight = np.asarray(Image.open(frame).convert("L"))
    Image.fromarray(eight).save(frame)
    reference = FolderDataset(world, "train", 64, 64)[0]["images"][0]
    Image.fromarray(eight.astype(np.uint16) * 257).save(frame)  # 8-bit values stretched to 16 bits
    np.testing.assert_array_equal(FolderDataset(world, "train", 64, 64)[0]["images"][0], reference)


def test_exif_orientation_is_applied(tmp_path):
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to show
    Image.fromarray(image).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = layout.read_image(tmp_path / "phone.jpg")
    assert upright.shape == (40, 20, 3)
    assert upright[:20].mean() > 200 and upright[20:].mean() < 50  # the white half is now on top


# ----------------------------------------------------------------------------- poses


def test_nearly_rigid_poses_pass_and_scaled_ones_name_their_line(tmp_path):
    path = tmp_path / "poses.txt"
    R = cv2.Rodrigues(np.array([0.1, -0.2, 0.3]))[0]
    rows = [np.hstack([R, [[1], [2], [3]]]).reshape(-1) for _ in range(3)]
    path.write_text("".join(" ".join(f"{v:.4f}" for v in r) + "\n\n" for r in rows))  # 4 decimals
    assert layout.read_poses(path).shape == (3, 4, 4)
    rows[2] = np.hstack([2 * R, [[1], [2], [3]]]).reshape(-1)  # scaled: invertible, but not a pose
    path.write_text("".join(" ".join(f"{v:.4f}" for v in r) + "\n\n" for r in rows))
    with pytest.raises(InputError, match="line 5: not a rigid camera pose"):
        layout.read_poses(path)
