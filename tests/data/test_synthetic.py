"""The synthetic world: exact ground truth (GT warps reproduce frames), determinism, layout and speeds."""

import hashlib

import numpy as np
import pytest
import torch
import yaml
from scipy.spatial.transform import Rotation

from sa4depth.data import layout
from sa4depth.data import synthetic as synth
from sa4depth.data.synthetic import trajectories, writer
from sa4depth.errors import InputError
from sa4depth.geometry import Camera, Pose, warp_frame

H, W = 48, 160


def _as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].double() / 255


def warp_errors(seq, target: int, source: int, depth_scale: float = 1.0) -> tuple[float, float]:
    """Mean abs error of (source warped into target with GT depth and pose, unwarped source) vs target,
    over target pixels that are not sky and land inside the source image."""
    depth = torch.from_numpy(seq.depth[target])[None, None].double()
    T_src_tgt = np.linalg.inv(seq.T_world_cam[source]) @ seq.T_world_cam[target]
    camera = Camera.from_K(torch.from_numpy(seq.K), seq.depth.shape[2], seq.depth.shape[1])[None]
    src, tgt = _as_tensor(seq.images[source]), _as_tensor(seq.images[target])
    warped, valid = warp_frame(
        src, depth * depth_scale, Pose.from_4x4mat(torch.from_numpy(T_src_tgt))[None], camera
    )
    mask = (valid & (depth > 0)).expand(-1, 3, -1, -1)
    assert mask.float().mean() > 0.5
    return (warped - tgt).abs()[mask].mean().item(), (src - tgt).abs()[mask].mean().item()


# Measured at 48 x 160, 1 m/frame driving, 0.24 m/frame indoor, seeds 0-5, both neighbours:
# driving warped <= 0.017 (unwarped >= 0.031), indoor warped <= 0.010 (unwarped >= 0.046). The residual
# is bilinear resampling of sharp edges in view synthesis; a nearest-texel renderer gave ~0.05.
@pytest.mark.parametrize(("scene", "metres", "bound"), [("driving", 1.0, 0.022), ("indoor", 0.24, 0.012)])
def test_ground_truth_warp_reproduces_the_frame(scene, metres, bound):
    speed = metres / synth.BASE_SPEED[scene]
    for seed in (0, 1):
        seq = synth.render_sequence(scene, frames=3, height=H, width=W, seed=seed, speed=speed)
        for source in (0, 2):
            warped, unwarped = warp_errors(seq, 1, source)
            wrong_depth, _ = warp_errors(seq, 1, source, depth_scale=1.3)
            assert warped < bound
            assert warped < 0.5 * unwarped
            # The GT is exact, not merely better than nothing: a 30 % depth error is clearly worse.
            assert warped < 0.9 * wrong_depth


def test_intrinsics_and_pixel_centres_are_consistent_across_resolutions():
    K = synth.intrinsics_matrix(96, 320)
    np.testing.assert_allclose(K, [[0.58 * 320, 0, 159.5], [0, 1.92 * 96, 47.5], [0, 0, 1]])
    resized = Camera.from_K(torch.from_numpy(synth.intrinsics_matrix(192, 640)), 640, 192).resize_to(320, 96)
    np.testing.assert_allclose(resized.K().numpy(), K, atol=1e-9)
    # A 2x render box-filtered down matches the 1x render (a half-pixel K error would not).
    big = synth.render_sequence("indoor", frames=3, height=2 * H, width=2 * W, seed=0)
    small = synth.render_sequence("indoor", frames=3, height=H, width=W, seed=0)
    np.testing.assert_array_equal(big.T_world_cam, small.T_world_cam)
    down = big.images.reshape(3, H, 2, W, 2, 3).astype(np.float64).mean((2, 4))
    diff = np.abs(down - small.images).mean() / 255
    shifted = np.abs(down[:, :, 1:] - small.images[:, :, :-1]).mean() / 255
    assert diff < 0.01 and diff < 0.5 * shifted  # measured 0.0055 vs 0.018


def test_depth_and_sky_conventions():
    drive = synth.render_sequence("driving", frames=3, height=H, width=W, seed=3)
    room = synth.render_sequence("indoor", frames=3, height=H, width=W, seed=3)
    assert drive.images.shape == (3, H, W, 3) and drive.images.dtype == np.uint8
    assert drive.depth.dtype == np.float32 and np.isfinite(drive.depth).all()
    sky = drive.depth == synth.SKY_DEPTH
    assert 0.01 < sky.mean() < 0.5 and sky[:, : H // 3].mean() > sky[:, -H // 3 :].mean()
    assert drive.depth.max() < 300
    assert (room.depth > 0.3).all() and room.depth.max() < 16  # a closed room: no sky, no far depth
    # Camera frame: z forward along the path.
    forward = drive.T_world_cam[-1, :3, 3] - drive.T_world_cam[0, :3, 3]
    assert forward @ drive.T_world_cam[0, :3, 2] > 0.9 * np.linalg.norm(forward)


def test_deterministic_from_seed():
    a = synth.render_sequence("driving", frames=3, height=24, width=80, seed=7)
    b = synth.render_sequence("driving", frames=3, height=24, width=80, seed=7)
    c = synth.render_sequence("driving", frames=3, height=24, width=80, seed=8)
    for field in ("images", "depth", "T_world_cam", "K"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.images, c.images) and not np.array_equal(a.T_world_cam, c.T_world_cam)


def test_speed_sets_the_mean_translation_per_frame_and_varies_within_a_sequence():
    base = synth.BASE_SPEED["driving"]
    for speed in (0.5, 2.0):
        seq = synth.render_sequence("driving", frames=60, height=16, width=48, seed=1, speed=speed)
        steps = np.linalg.norm(np.diff(seq.T_world_cam[:, :3, 3], axis=0), axis=-1)
        assert steps.mean() == pytest.approx(speed * base, rel=0.02)
        # World version 2: the car speeds up and brakes, so a street's speed cannot be told from its look.
        assert steps.max() > 2 * steps.min()


def _yaw_deg(T):
    return np.degrees(np.arctan2(T[:, 0, 2], T[:, 2, 2]))


def test_lane_changes_turn_the_camera_and_keep_it_on_the_road():
    """Driving 60 frames at 0.75 m: a lane change (one lane, ~3.3 m) or two, heading turning by degrees."""
    turned = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        T = synth.render_sequence(
            "driving", frames=60, height=8, width=16, seed=seed, supersample=1
        ).T_world_cam
        _, street_T = trajectories._driving(rng, 60, synth.BASE_SPEED["driving"], 1.6)
        np.testing.assert_allclose(street_T, T)  # the path rendered is the path tested
        lateral = np.ptp(T[:, 0, 3])
        turned += lateral > 2.5 and np.ptp(_yaw_deg(T)) > 4
        relative = (np.linalg.inv(T[:-1]) @ T[1:])[:, :3, :3]
        assert np.degrees(Rotation.from_matrix(relative).magnitude()).max() < 3
    assert turned >= 3


def test_a_changed_base_speed_reaches_the_renderer_and_the_meta(tmp_path, monkeypatch):
    """benchmarks/recipe_study.py sets ``synthetic.BASE_SPEED["driving"]`` and renders: both must see it."""
    monkeypatch.setitem(synth.BASE_SPEED, "driving", 0.3)
    args = dict(sequences=1, frames=6, height=16, width=48, split=(1, 0, 0), speed_range=(1, 1))
    out = synth.render_dataset(tmp_path / "slow", "driving", progress=False, **args)
    meta = yaml.safe_load((out / "meta.yaml").read_text())
    assert meta["base_speed_m_per_frame"] == 0.3
    T = layout.read_poses(layout.sequence_dir(out, "driving_000") / "poses.txt")
    assert np.linalg.norm(np.diff(T[:, :3, 3], axis=0), axis=-1).mean() == pytest.approx(0.3, rel=0.02)


def _tree_hashes(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_dataset_layout_round_trips(tmp_path):
    out = synth.render_dataset(
        tmp_path / "synth",
        "driving",
        sequences=3,
        frames=5,
        height=24,
        width=80,
        seed=3,
        split=(1, 1, 1),
        speed_range=(0.5, 2.0),
        progress=False,
    )

    meta = yaml.safe_load((out / "meta.yaml").read_text())
    assert meta["scene"] == "driving" and meta["seed"] == 3 and len(meta["sequences"]) == 3
    names = [s["name"] for s in meta["sequences"]]
    assert [layout.read_split(out / "splits" / f"{split}.txt") for split in layout.SPLITS] == [
        [(name, i) for i in (1, 2, 3)] for name in names
    ]
    entry = meta["sequences"][0]
    seq = synth.render_sequence(
        "driving",
        frames=5,
        height=24,
        width=80,
        seed=entry["seed"],
        speed=entry["speed_factor"],
        camera_height=entry["camera_height_m"],
    )
    seq_dir = layout.sequence_dir(out, names[0])
    np.testing.assert_allclose(layout.read_poses(seq_dir / "poses.txt"), seq.T_world_cam, atol=1e-6)
    np.testing.assert_allclose(
        layout.read_cam(seq_dir / "cam.txt"), synth.intrinsics_matrix(24, 80), atol=1e-6
    )
    for i in range(5):
        np.testing.assert_array_equal(layout.read_image(seq_dir / "images" / f"{i:06d}.png"), seq.images[i])
        np.testing.assert_array_equal(layout.read_depth(seq_dir / "depth" / f"{i:06d}.npz"), seq.depth[i])
    # Per-sequence speeds are spread over the range and visible in the poses.
    speeds = np.array([s["speed_factor"] for s in meta["sequences"]])
    assert speeds.min() >= 0.5 and speeds.max() <= 2.0 and speeds.max() / speeds.min() > 1.5
    for s in meta["sequences"]:
        T = layout.read_poses(layout.sequence_dir(out, s["name"]) / "poses.txt")
        steps = np.linalg.norm(np.diff(T[:, :3, 3], axis=0), axis=-1)
        assert steps.mean() == pytest.approx(s["speed_factor"] * synth.BASE_SPEED["driving"], rel=0.02)
        np.testing.assert_allclose(s["translation_range_m_per_frame"], [steps.min(), steps.max()], atol=1e-4)
        relative = (np.linalg.inv(T[:-1]) @ T[1:])[:, :3, :3]
        turns = np.degrees(Rotation.from_matrix(relative).magnitude())  # scipy's angle, not ours
        assert [s["rotation_deg_per_frame"][k] for k in ("median", "max")] == pytest.approx(
            [np.median(turns), turns.max()], abs=1e-3
        )
    # Nothing left beside the output; same arguments give byte-identical files, in parallel too.
    assert [p.name for p in tmp_path.iterdir()] == ["synth"]
    again = synth.render_dataset(
        tmp_path / "again",
        "driving",
        sequences=3,
        frames=5,
        height=24,
        width=80,
        seed=3,
        split=(1, 1, 1),
        speed_range=(0.5, 2.0),
        progress=False,
        workers=2,
    )
    assert _tree_hashes(out) == _tree_hashes(again)


def test_dataset_refuses_to_overwrite_and_cleans_up_on_failure(tmp_path, monkeypatch):
    out = tmp_path / "synth"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    args = dict(scene="indoor", sequences=1, frames=3, height=16, width=32, split=(1, 0, 0), progress=False)
    with pytest.raises(InputError, match="already exists"):
        synth.render_dataset(out, **args)
    synth.render_dataset(out, overwrite=True, **args)
    assert not (out / "keep.txt").exists() and (out / "meta.yaml").is_file()

    def broken(*a, **k):
        yield 0, np.zeros((16, 32, 3), np.uint8), np.zeros((16, 32), np.float32), np.eye(4)
        raise RuntimeError("renderer died")

    monkeypatch.setattr(writer, "iter_frames", broken)
    with pytest.raises(RuntimeError, match="renderer died"):
        synth.render_dataset(tmp_path / "other", **args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth"]


def test_split_fractions_and_counts():
    assert writer._split_counts(20, (0.8, 0.1, 0.1)) == (16, 2, 2)
    assert writer._split_counts(4, (0.8, 0.1, 0.1)) == (2, 1, 1)  # small sets still get val and test
    assert writer._split_counts(2, (0.8, 0.1, 0.1)) == (1, 1, 0)
    assert writer._split_counts(1, (0.8, 0.1, 0.1)) == (1, 0, 0)
    assert writer._split_counts(3, (0.0, 0.5, 0.5)) == (0, 2, 1)
    assert writer._split_counts(5, (3, 1, 1)) == (3, 1, 1)
    with pytest.raises(ValueError, match="sum"):
        writer._split_counts(5, (3, 1, 2))


def test_benchmark_specs_hold_out_different_speeds():
    specs = synth.benchmark_specs()
    by_split = {split: [s for _, sp, s in specs if sp == split] for split in layout.SPLITS}
    assert [len(by_split[s]) for s in layout.SPLITS] == [24, 2, 4]
    assert {s.frames for s in by_split["train"]} == {60} and {s.frames for s in by_split["test"]} == {40}
    assert sorted(s.speed for s in by_split["test"]) == [0.5, 0.8, 1.25, 2.0]
    train_speeds = {s.speed for s in by_split["train"]}
    assert len(train_speeds) == 24 and not train_speeds & {
        s.speed for s in by_split["test"] + by_split["val"]
    }
    assert len({s.seed for _, _, s in specs}) == len(specs)
    assert sum(s.frames for _, _, s in specs) == 1680
    assert synth.benchmark_specs() == specs  # fixed


def test_a_benchmark_of_another_world_is_refused(tmp_path, monkeypatch):
    (tmp_path / "splits").mkdir()
    meta = {"height": 64, "width": 192, "base_speed_m_per_frame": synth.BASE_SPEED["driving"]}
    (tmp_path / "meta.yaml").write_text(yaml.safe_dump(meta))  # world version 1 wrote no version
    with pytest.raises(InputError, match="world version 1"):
        synth.ensure_benchmark(tmp_path, 64, 192)
    meta["world_version"] = synth.WORLD_VERSION
    (tmp_path / "meta.yaml").write_text(yaml.safe_dump(meta))
    assert synth.ensure_benchmark(tmp_path, 64, 192) == tmp_path
    with pytest.raises(InputError, match="64x192, not .* 96x320"):
        synth.ensure_benchmark(tmp_path, 96, 320)
    monkeypatch.setitem(synth.BASE_SPEED, "driving", 0.25)
    with pytest.raises(InputError, match="0.25 m/frame"):
        synth.ensure_benchmark(tmp_path, 64, 192)
    (tmp_path / "meta.yaml").write_text("{unclosed")
    with pytest.raises(InputError, match="meta.yaml"):
        synth.ensure_benchmark(tmp_path, 64, 192)
    (tmp_path / "meta.yaml").write_text("[1, 2]")
    with pytest.raises(InputError, match="not a mapping"):
        synth.ensure_benchmark(tmp_path, 64, 192)


def test_contact_sheet(tmp_path):
    root = synth.render_dataset(
        tmp_path / "d", "indoor", sequences=2, frames=3, height=16, width=48, split=(2, 0, 0), progress=False
    )
    png = synth.contact_sheet(root, tmp_path / "sheet.png", sequences=2, frames=2)
    sheet = layout.read_image(png)
    assert sheet.shape[0] >= 2 * 2 * 16 and sheet.shape[1] >= 2 * 48


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="at least 3 frames"):
        synth.render_sequence(frames=2)
    with pytest.raises(ValueError, match="unknown scene"):
        synth.render_sequence("moon")
