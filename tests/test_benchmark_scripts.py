"""The SA4Depth experiment scripts in benchmarks/: resume and skip logic, world check, curve averaging."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sa4depth.geometry import Pose

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mean_band_averages_the_steps_every_seed_reached():
    plot = _load("plot_learning_curves")
    runs = [
        {"val/abs_rel": {"step": [99, 199, 299], "value": [0.5, 0.4, 0.3]}},
        {"val/abs_rel": {"step": [99, 199], "value": [0.7, 0.2]}},  # still training
    ]
    steps, mean, std = plot.mean_band(runs, "val/abs_rel")
    assert steps.tolist() == [99, 199]
    np.testing.assert_allclose(mean, [0.6, 0.3])
    np.testing.assert_allclose(std, [0.1 * np.sqrt(2), 0.1 * np.sqrt(2)])  # sample std of two values
    assert plot.mean_band(runs, "val/a1") is None


def test_lever_curves_parse_label_folder_and_variant():
    import argparse

    plot = _load("plot_learning_curves")
    assert plot.parse_lever("frozen BN=results/a:b:monodepth2+sa4depth") == (
        "frozen BN",
        Path("results/a:b"),
        "monodepth2_sa4depth",
    )
    for bad in ("no-equals", "label=folder-without-variant", "=f:v", "l=:v", "l=f:"):
        with pytest.raises(argparse.ArgumentTypeError, match="LABEL=FOLDER:VARIANT"):
            plot.parse_lever(bad)


def test_finished_run_is_reused_not_retrained(tmp_path, monkeypatch):
    compare = _load("compare_sa4depth")
    run_dir = tmp_path / "monodepth2_seed0"
    run_dir.mkdir()
    (run_dir / "metrics_test.json").write_text(json.dumps({"depth": {"abs_rel": 0.123}}))
    monkeypatch.setattr(compare, "train_and_evaluate", lambda *a, **k: pytest.fail("retrained"))
    assert compare.run_one(run_dir, [], tmp_path / "recipe.yaml")["depth"]["abs_rel"] == 0.123


def test_unfinished_run_resumes_and_one_without_checkpoint_restarts(tmp_path, monkeypatch):
    compare = _load("compare_sa4depth")
    calls = []
    monkeypatch.setattr(
        compare,
        "train_and_evaluate",
        lambda run_dir, o, recipe, resume: calls.append(resume) or ({"depth": {"abs_rel": 1.0}}, None),
    )
    monkeypatch.setattr(compare, "write_curve", lambda run_dir: None)
    resumable = tmp_path / "a_seed0"
    (resumable / "checkpoints").mkdir(parents=True)
    (resumable / "checkpoints" / "last.ckpt").write_bytes(b"x")
    compare.run_one(resumable, [], tmp_path / "recipe.yaml")
    killed_early = tmp_path / "b_seed0"
    killed_early.mkdir()
    (killed_early / "config.yaml").write_text("output_dir: x\n")
    compare.run_one(killed_early, [], tmp_path / "recipe.yaml")
    assert calls == [True, False]
    assert not killed_early.exists()  # cleared before the fresh start (train_and_evaluate is mocked here)


def test_sa4depth_forks_only_once_its_baseline_has_passed_the_warmup(tmp_path):
    compare = _load("compare_sa4depth")
    base = tmp_path / "sc_depth_seed1"
    (base / "checkpoints").mkdir(parents=True)
    assert compare.fork_source(base, 1500) is None  # nothing kept
    kept = base / "checkpoints" / "step_1500.ckpt"
    kept.write_bytes(b"x")
    last = base / "checkpoints" / "last.ckpt"
    assert compare.fork_source(base, 1500) is None  # no last.ckpt to tell how far the baseline got
    torch.save({"global_step": 1500}, last)
    assert compare.fork_source(base, 1500) is None  # its validation at that step may not be logged yet
    torch.save({"global_step": 1750}, last)
    assert compare.fork_source(base, 1500) == kept
    last.unlink()
    (base / "metrics_test.json").write_text("{}")
    assert compare.fork_source(base, 1500) == kept


def test_a_new_run_with_a_fork_source_forks_and_then_resumes(tmp_path, monkeypatch):
    compare = _load("compare_sa4depth")
    forks, calls = [], []
    monkeypatch.setattr(compare, "fork_run", lambda source, cfg: forks.append((source, cfg.output_dir)))
    monkeypatch.setattr(
        compare,
        "train_and_evaluate",
        lambda run_dir, o, recipe, resume: calls.append(resume) or ({"depth": {"abs_rel": 1.0}}, None),
    )
    monkeypatch.setattr(compare, "write_curve", lambda run_dir: None)
    run, source = tmp_path / "sc_depth_sa4depth_seed1", tmp_path / "step_1500.ckpt"
    compare.run_one(run, ["refine.enabled=true"], compare.recipe_path("synthetic_cpu"), fork_from=source)
    assert forks == [(source, str(run))] and calls == [True]


def test_identical_before_compares_the_points_both_runs_logged_before_the_step():
    check = _load("identical_before")
    a = {"loss": (np.array([0, 1, 2]), np.array([1.0, 2.0, 3.0])), "lm": (np.array([2]), np.array([1.0]))}
    b = {"loss": (np.array([0, 1, 2, 3]), np.array([1.0, 2.0, 9.0, 4.0]))}
    assert check.compare(a, b, before=2) == [("loss", 2, 1, True)]
    assert check.compare(a, b, before=5) == [("loss", 3, 2, False)]


def test_summary_covers_every_finished_run_in_the_folder(tmp_path):
    """A run of one variant and seed must not drop the other finished runs from the folder's summary."""
    compare = _load("compare_sa4depth")
    for name, abs_rel in (
        ("monodepth2_seed0", 0.2),
        ("monodepth2_seed2", 0.3),
        ("monodepth2_sa4depth_seed0", 0.1),
        ("sc_depth_seed1", 0.4),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics_test.json").write_text(json.dumps({"depth": {"abs_rel": abs_rel}}))
    (tmp_path / "sc_depth_sa4depth_seed0").mkdir()  # unfinished: no metrics yet
    seeds, runs = compare.finished_runs(tmp_path)
    assert seeds == [0, 1, 2]
    assert {k: [r["abs_rel"] for r in v] for k, v in runs.items()} == {
        "monodepth2": [0.2, 0.3],
        "monodepth2+sa4depth": [0.1],
        "sc_depth": [0.4],
    }


def test_refined_pose_errors_are_rotation_and_direction_angles():
    refined_pose = _load("refined_pose")
    T_gt = Pose.from_aa(torch.zeros(1, 3), torch.tensor([[0.0, 0.0, -1.0]]))
    # 2 deg about y, and a translation 3 deg off the true direction (and twice as long: scale is free).
    angle = math.radians(3.0)
    t = 2 * torch.tensor([[math.sin(angle), 0.0, -math.cos(angle)]])
    T = Pose.from_aa(torch.tensor([[0.0, math.radians(2.0), 0.0]]), t)
    rotation, direction = refined_pose.pose_errors(T, T_gt)
    assert rotation.item() == pytest.approx(2.0, abs=1e-3)
    assert direction.item() == pytest.approx(3.0, abs=1e-3)


def test_welch_table_gives_the_hand_computed_t_and_tests_the_ratio_as_distance_from_one():
    compare = _load("compare_sa4depth")
    columns = compare.COLUMNS

    def rows(abs_rels, ratios):
        return [
            {c: 1.0 for c in columns} | {"abs_rel": a, "pose_depth_ratio": r}
            for a, r in zip(abs_rels, ratios, strict=True)
        ]

    # Means 2 and 5, variances 1 and 1, n = 3 each: t = 3 / sqrt(1/3 + 1/3) = 3.674.
    # Ratios 1/2, 1/4, 1/8 and 2, 4, 8 are equally far from 1 (|log| equal): t = 0 although they differ.
    table = compare.welch_table(
        {
            "monodepth2": rows([1.0, 2.0, 3.0], [0.5, 0.25, 0.125]),
            "monodepth2+sa4depth": rows([4.0, 5.0, 6.0], [2.0, 4.0, 8.0]),
            "sc_depth": rows([1.0], [1.0]),  # one seed: no test
        }
    )
    line = [row for row in table.splitlines() if row.startswith("| monodepth2+sa4depth")][0]
    cells = [c.strip() for c in line.strip("|").split("|")][1:]
    assert cells[columns.index("abs_rel")].startswith("t=+3.67")
    assert abs(float(cells[columns.index("pose_depth_ratio")].split(",")[0][2:])) < 0.01
    assert "sc_depth+sa4depth" not in table


def test_demo_levers_skip_finished_resume_unfinished_and_read_the_step_lightning_logged(
    tmp_path, monkeypatch
):
    levers = _load("demo_levers")
    monkeypatch.setattr(levers, "OUT", tmp_path)
    finished = tmp_path / "recipe"
    finished.mkdir()
    curve = {
        "val/abs_rel": {"step": [199, 399, 599], "value": [0.5, 0.3, 0.2]},
        "val/a1": {"step": [599], "value": [0.75]},
        "val/pose_depth_scale_ratio": {"step": [599], "value": [1.04]},
    }
    (finished / "curve.json").write_text(json.dumps(curve))
    resumes = []
    monkeypatch.setattr(levers, "train", lambda cfg, resume, enable_progress_bar: resumes.append(resume))
    monkeypatch.setattr(levers, "load_scalars", lambda run_dir: {})
    levers.run("recipe")  # finished: not trained again
    unfinished = tmp_path / "pose_lr10"
    (unfinished / "checkpoints").mkdir(parents=True)
    (unfinished / "checkpoints" / "last.ckpt").write_bytes(b"x")
    levers.run("pose_lr10")
    assert resumes == [True]
    assert json.loads((unfinished / "curve.json").read_text())["overrides"] == ["optim.pose_lr_scale=10"]
    assert levers.value_at(curve, "val/abs_rel", 400) == "0.300"
    assert levers.value_at(curve, "val/abs_rel", 300) == "-"
    assert (
        "| recipe | the CPU recipe as the demo runs it | 0.500 / 0.300 / 0.200 | 0.750 | 1.040 |"
        in levers.table()
    )


def test_pose_oracle_trains_on_the_batch_ground_truth_poses(monkeypatch):
    from sa4depth.config import load_config
    from sa4depth.train.model import DepthPoseModel

    oracle = _load("pose_oracle")
    monkeypatch.setattr(DepthPoseModel, "training_forward", DepthPoseModel.training_forward)  # restored after
    oracle.use_ground_truth_poses(unit=0.5)
    model = DepthPoseModel(load_config(None, ["model.pose_encoder=small", "loss.num_scales=1"]))
    model.pose_net.forward = lambda *a: pytest.fail("the pose net was asked for a pose")
    seen = []

    class Recorder:
        needs_source_depth = False

        def __call__(self, images, pred, *args):
            seen.append(pred.poses)
            return images.sum() * 0.0, {}

    model.objective = Recorder()
    T = torch.eye(4).repeat(2, 2, 1, 1)
    T[:, 0, 2, 3], T[:, 1, 2, 3] = -0.7, 0.9  # source before: camera moved back; after: forward
    images = torch.rand(2, 3, 3, 64, 96)
    batch = {"images": images, "images_aug": images, "K": torch.eye(3).repeat(2, 1, 1), "T_src_tgt": T}
    model.training_forward(batch)
    assert batch["T_src_tgt"][0, 1, 2, 3] == 0.9  # the batch itself is left in metres
    torch.testing.assert_close(
        torch.stack([p.t[:, 2] for p in seen[0]]),
        torch.tensor([[-1.4] * 2, [1.8] * 2]),  # in 0.5 m units
    )
    assert "predict_poses" not in vars(model)  # the method is back for validation


def test_scale_by_street_normalises_by_all_streets_and_splits_by_true_rotation(tmp_path):
    """Two streets, 4 test frames each. Street "a" turns 1 deg per frame for its last frames and holds
    scales 1, 1, 3, 3 on them; street "b" drives straight with scale 2 throughout. The mean over
    streets is 2, so "a" is 1.0 overall, 0.5 on its straighter half and 1.5 on its turning half."""
    from sa4depth.data import layout

    scale_by_street = _load("scale_by_street")
    data, run = tmp_path / "data", tmp_path / "run"
    yaw = {"a": [0, 0, 0, 0, 1, 2], "b": [0] * 6}
    for name, angles in yaw.items():
        poses = np.tile(np.eye(4), (6, 1, 1))
        for i, deg in enumerate(angles):
            c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
            poses[i, :3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
        layout.write_poses(layout.sequence_dir(data, name) / "poses.txt", poses)
    layout.write_split(data / "splits" / "test.txt", [(n, f) for n in "ab" for f in (1, 2, 3, 4)])
    run.mkdir()
    (run / "metrics_test.json").write_text(
        json.dumps({"scales_by_sequence": {"a": [1, 1, 3, 3], "b": [2] * 4}})
    )
    assert scale_by_street.rotation_per_frame(
        layout.read_poses(data / "sequences" / "a" / "poses.txt"), 4
    ) == pytest.approx(1.0)
    table = scale_by_street.street_table(run, data)
    assert table["a"]["all"] == pytest.approx(1.0) and table["b"]["all"] == pytest.approx(1.0)
    assert table["a"]["straighter"] == pytest.approx(0.5) and table["a"]["turning"] == pytest.approx(1.5)


def test_layout_speed_times_contiguous_unfused_before_and_channels_last_fused_now():
    layout_speed = _load("layout_speed")
    settings = (("before", torch.contiguous_format, False), ("now", torch.channels_last, True))
    for setting, layout, fused in settings:
        step = layout_speed.build("baseline", setting)
        for net in (step.model.depth_net, step.model.pose_net):
            convs = [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
            assert convs and all(w.is_contiguous(memory_format=layout) for w in convs), setting
        assert bool(step.optimizer.defaults["fused"]) is fused


@pytest.mark.parametrize("flag", ["--steps", "--repeats"])
def test_layout_speed_refuses_zero_steps_or_repeats_in_one_line(flag, tmp_path, monkeypatch):
    from sa4depth.errors import InputError

    layout_speed = _load("layout_speed")
    monkeypatch.setattr("sys.argv", ["layout_speed.py", flag, "0", "--out", str(tmp_path / "x.json")])
    with pytest.raises(InputError, match=f"{flag}: must be at least 1, got 0"):
        layout_speed.main()
    assert not (tmp_path / "x.json").exists()
