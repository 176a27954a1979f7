"""SA4Depth inside the pipelines: gradients reach every network, warm-up, and an unchanged inference graph."""

import numpy as np
import pytest
import torch

from sa4depth.config import load_config
from sa4depth.data import layout
from sa4depth.data.datamodule import DepthDataModule
from sa4depth.train.model import DepthPoseModel, batch_camera


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("refine_world")
    rng = np.random.default_rng(1)
    seq = layout.sequence_dir(root, "s")
    for i in range(3):
        layout.write_image(
            seq / "images" / f"{i:06d}.png", rng.integers(0, 255, (64, 192, 3), dtype=np.uint8)
        )
    layout.write_cam(seq / "cam.txt", np.array([[100.0, 0, 95.5], [0, 100.0, 31.5], [0, 0, 1]]))
    for split in ("train", "val"):
        layout.write_split(root / "splits" / f"{split}.txt", [("s", 1)])
    cfg = load_config(None, [f"data.root={root}", "data.height=64", "data.width=192", "data.batch_size=1"])
    dm = DepthDataModule(cfg.data)
    dm.setup("fit")
    return root, next(iter(dm.train_dataloader()))


def model_for(root, *overrides):
    return DepthPoseModel(
        load_config(None, [f"data.root={root}", "data.height=64", "data.width=192", *overrides])
    )


@pytest.mark.parametrize("pipeline", ["monodepth2", "sc_depth"])
def test_gradients_reach_feature_depth_and_pose_networks(batch, pipeline):
    root, b = batch
    model = model_for(root, "refine.enabled=true", f"loss.pipeline={pipeline}", "refine.iterations=2")
    loss, logs = model.training_forward(b)
    loss.backward()
    for name in ("depth_net", "pose_net", "refinement.feature_net"):
        module = model.get_submodule(name)
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), f"no gradient reaches {name}"
        assert all(torch.isfinite(g).all() for g in grads)
    assert {"lm_failed", "lm_valid_points", "pose_net_photometric"} <= set(logs)


def test_warmup_trains_exactly_like_the_baseline(batch):
    root, b = batch
    torch.manual_seed(0)
    baseline = model_for(root)
    torch.manual_seed(0)
    refined = model_for(root, "refine.enabled=true", "refine.warmup_steps=10")
    torch.manual_seed(1)
    loss_base, _ = baseline.training_forward(b, step=0)
    torch.manual_seed(1)
    loss_warm, logs = refined.training_forward(b, step=0)
    torch.testing.assert_close(loss_warm, loss_base)
    assert "lm_failed" not in logs
    _, logs_after = refined.training_forward(b, step=10)
    assert "lm_failed" in logs_after


def test_inference_graph_is_the_depth_network_alone(batch):
    """The exported model is `depth_net`: with and without SA4Depth it has the same parameters and outputs."""
    root, b = batch
    torch.manual_seed(0)
    base = model_for(root).depth_net.eval()
    torch.manual_seed(0)
    sa4 = model_for(root, "refine.enabled=true").depth_net.eval()
    assert [(k, v.shape) for k, v in base.state_dict().items()] == [
        (k, v.shape) for k, v in sa4.state_dict().items()
    ]
    image = b["images"][:, 0]
    with torch.inference_mode():
        torch.testing.assert_close(base.predict_depth(image), sa4.predict_depth(image))


def test_batched_sources_equal_one_solve_per_source():
    """All sources are refined in one batched LM call; each result must equal its own separate solve."""
    from sa4depth.geometry import Camera, Pose
    from sa4depth.models.depth_net import DepthNet
    from sa4depth.train.refinement import PoseRefinement

    torch.manual_seed(0)
    refinement = PoseRefinement(load_config(None, ["refine.iterations=2"]).refine, DepthNet()).double()
    B, N, H, W = 2, 3, 64, 96
    images = torch.rand(B, N, 3, H, W, dtype=torch.float64)
    depth = torch.rand(B, 1, H, W, dtype=torch.float64) * 5 + 2
    camera = Camera(torch.tensor([[W, H, 50.0, 50.0, 47.5, 31.5]] * B, dtype=torch.float64))
    poses = [
        Pose.from_aa(
            torch.randn(B, 3, dtype=torch.float64) * 0.02, torch.randn(B, 3, dtype=torch.float64) * 0.1
        )
        for _ in range(N - 1)
    ]
    batched, _ = refinement(images, depth, camera, poses)
    for j in range(N - 1):
        single, _ = refinement(images[:, [0, j + 1]], depth, camera, [poses[j]])
        torch.testing.assert_close(batched[j].data, single[0].data, rtol=0, atol=1e-12)


def test_channels_last_feature_net_gives_the_contiguous_features_and_gradients():
    """The own-encoder feature net runs channels-last for speed: same features, confidences and
    weight gradients as the same weights in the default layout, handed to the LM contiguous."""
    import copy

    from sa4depth.models.depth_net import DepthNet
    from sa4depth.train.refinement import PoseRefinement

    torch.manual_seed(0)
    refinement = PoseRefinement(load_config(None, []).refine, DepthNet()).double()
    reference = copy.deepcopy(refinement.feature_net).to(memory_format=torch.contiguous_format)
    assert refinement.feature_net.decoder[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.rand(3, 3, 64, 96, dtype=torch.float64)
    feats, confs = refinement.features(images)
    out = reference(images)
    expected = out["features"] + out["confidence"]
    weights = [torch.randn_like(x) for x in expected]
    for got, want in zip(feats + confs, expected, strict=True):
        assert got.is_contiguous()
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    sum((x * w).sum() for x, w in zip(feats + confs, weights, strict=True)).backward()
    sum((x * w).sum() for x, w in zip(expected, weights, strict=True)).backward()
    for p_cl, p_ref in zip(refinement.feature_net.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p_cl.grad, p_ref.grad, rtol=1e-10, atol=1e-12)


def test_every_lm_setting_is_read_from_yaml_and_reaches_the_lm(tmp_path):
    """Each `LMConfig` field, set in a YAML ``refine`` section, is what the training-time LM runs with."""
    import dataclasses

    import yaml

    from sa4depth.models.depth_net import DepthNet
    from sa4depth.refine import LMConfig
    from sa4depth.train.refinement import PoseRefinement

    changed = {
        "levels": 2,
        "iterations": 3,
        "robust": "huber",
        "robust_scale": 0.3,
        "damping": 0.5,
        "learned_damping": True,
        "damping_log_min": -4.0,
        "damping_log_max": 2.0,
        "min_valid": 20,
        "detach_between_levels": True,
        "use_confidence": False,
        "depth_pool": "area",
        "eps": 1e-5,
        "checkpoint_lm": True,
        "backward": "implicit",
    }
    assert set(changed) == {f.name for f in dataclasses.fields(LMConfig)}  # a new field must be added here
    defaults = dataclasses.asdict(LMConfig())
    assert all(changed[k] != defaults[k] for k in changed)  # else a dropped value would go unnoticed
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump({"refine": {"enabled": True, **changed}}))
    cfg = load_config(tmp_path / "lm.yaml")
    refinement = PoseRefinement(cfg.refine, DepthNet())
    assert dataclasses.asdict(refinement.lm.config) == changed
    assert refinement.lm.damping.log_range == (-4.0, 2.0)  # the learned damping's bounds, not the defaults


def test_finest_stride_sets_the_learned_feature_levels():
    """``refine.finest_stride=2`` gives the LM levels at strides 8, 4, 2: a 32 x 96 finest map at 64 x 192."""
    from sa4depth.models.depth_net import DepthNet
    from sa4depth.train.refinement import PoseRefinement

    for overrides, strides in (([], [16, 8, 4]), (["refine.finest_stride=2"], [8, 4, 2])):
        cfg = load_config(None, ["refine.enabled=true", *overrides])
        refinement = PoseRefinement(cfg.refine, DepthNet())
        feats, confs = refinement.features(torch.rand(2, 3, 64, 192))
        assert [tuple(f.shape[-2:]) for f in feats] == [(64 // s, 192 // s) for s in strides]
        assert [tuple(c.shape[-2:]) for c in confs] == [(64 // s, 192 // s) for s in strides]


@pytest.mark.parametrize(
    ("override", "key", "fragment"),
    [
        ("refine.eps=0", "refine.eps", "finite and > 0"),
        ("refine.damping_log_max=-7", "refine.damping_log_max", "> refine.damping_log_min"),
        ("refine.damping_log_min=inf", "refine.damping_log_min", "finite"),
        ("refine.learned_damping=true", "refine.damping", "10^refine.damping_log_max"),
        ("refine.levels=0", "refine.levels", ">= 1"),
        ("refine.finest_stride=3", "refine.finest_stride", "power of 2"),
        ("refine.finest_stride=16", "refine.finest_stride", "stride <= 32"),
    ],
)
def test_bad_lm_settings_are_one_line_config_errors(override, key, fragment):
    """An LM setting out of range is an `InputError` naming its key (not `LMConfig`'s ValueError)."""
    from sa4depth.errors import InputError

    overrides = [override, "refine.damping=0"] if "learned" in override else [override]
    with pytest.raises(InputError, match=f"config key {key!r}: must") as e:
        load_config(None, overrides)
    assert fragment in str(e.value)


def test_checkpointed_lm_gives_the_same_poses_and_gradients():
    """Activation checkpointing recomputes each LM step in the backward pass: same values, same gradients."""
    from sa4depth.geometry import Camera, Pose
    from sa4depth.models.depth_net import DepthNet
    from sa4depth.train.refinement import PoseRefinement

    B, N, H, W = 2, 3, 64, 128  # the coarsest level (stride 16) needs >= refine.min_valid points
    images = torch.rand(B, N, 3, H, W, dtype=torch.float64)
    depth = (torch.rand(B, 1, H, W, dtype=torch.float64) * 5 + 2).requires_grad_()
    camera = Camera(torch.tensor([[W, H, 80.0, 80.0, 63.5, 31.5]] * B, dtype=torch.float64))
    aa = (torch.randn(N - 1, B, 6, dtype=torch.float64) * 0.05).requires_grad_()
    results = []
    for checkpoint in (False, True):
        torch.manual_seed(0)
        cfg = load_config(None, ["refine.iterations=2", f"refine.checkpoint_lm={str(checkpoint).lower()}"])
        refinement = PoseRefinement(cfg.refine, DepthNet()).double()
        poses = [Pose.from_aa(a[:, :3], a[:, 3:]) for a in aa]
        refined, _ = refinement(images, depth, camera, poses)
        loss = sum((T.data * torch.linspace(0.5, 1.5, 12, dtype=torch.float64)).sum() for T in refined)
        grads = torch.autograd.grad(loss, [depth, aa, *refinement.feature_net.parameters()])
        results.append((torch.stack([T.data for T in refined]), grads))
    (T_plain, g_plain), (T_ckpt, g_ckpt) = results
    torch.testing.assert_close(T_ckpt, T_plain, rtol=0, atol=1e-12)
    for a, b in zip(g_ckpt, g_plain, strict=True):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_recomputed_pose_net_photometric_term_gives_the_same_loss_and_gradients(batch, monkeypatch):
    """The pose net's own photometric term is recomputed in the backward pass (activation checkpointing)
    to save memory: loss and every gradient must be those of the term kept in memory. Without gradients
    through the LM the pose net learns from this term alone, so its gradient must not vanish either."""
    root, b = batch
    results = []
    for recompute in (True, False):
        if not recompute:  # the plain computation: the checkpoint wrapper calls its function directly
            monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", lambda fn, **_: fn())
        torch.manual_seed(0)
        model = model_for(root, "refine.enabled=true", "refine.iterations=2", "refine.grad_through_lm=false")
        torch.manual_seed(1)
        loss, logs = model.training_forward(b)
        loss.backward()
        results.append((loss, logs["pose_net_photometric"], [p.grad for p in model.pose_net.parameters()]))
    (loss_r, photo_r, grads_r), (loss_p, photo_p, grads_p) = results
    assert photo_r > 0 and torch.equal(photo_r, photo_p) and torch.equal(loss_r, loss_p)
    for a, b_ in zip(grads_r, grads_p, strict=True):
        torch.testing.assert_close(a, b_, rtol=1e-6, atol=1e-9)
    assert all(g is not None for g in grads_r) and sum(g.abs().sum() for g in grads_r) > 0


@pytest.mark.parametrize("trains_depth", [False, True])
def test_pose_net_photometric_term_trains_the_depth_only_when_asked(batch, trains_depth):
    """By default the pose net's own term sees detached depth; ``refine.pose_photometric_trains_depth``
    lets its gradient reach the depth net too (tying the depth's scale to the pose net's)."""
    root, b = batch
    model = model_for(
        root, "refine.enabled=true", f"refine.pose_photometric_trains_depth={str(trains_depth).lower()}"
    )
    images, inputs = b["images"], b["images_aug"]
    depth = model.depth_from_disp(model.depth_net(inputs[:, 0])[0])
    logs = {}
    term = model._pose_net_photometric(
        images,
        depth,
        batch_camera(b),
        model.predict_poses(inputs),
        logs,
        model.pose_net_objective.prepare(images),
    )
    term.backward()
    depth_grad = sum(p.grad.abs().sum() for p in model.depth_net.parameters() if p.grad is not None)
    assert (depth_grad > 0) == trains_depth
    assert sum(p.grad.abs().sum() for p in model.pose_net.parameters() if p.grad is not None) > 0


def test_pose_net_photometric_term_is_recomputed_after_the_refined_poses_backward(batch, monkeypatch):
    """The recomputation only saves memory if it runs once the main loss and the LM have freed their
    activations, i.e. after the gradient has passed the refined poses, not at the start of the backward."""
    root, b = batch
    model = model_for(root, "refine.enabled=true", "refine.iterations=2")
    events = []
    photometric = model.pose_net_objective.photometric

    def recorded(*args, **kwargs):
        events.append("pose_net_photometric")
        return photometric(*args, **kwargs)

    monkeypatch.setattr(model.pose_net_objective, "photometric", recorded)
    refinement = model.refinement.forward

    def refine_and_watch(*args, **kwargs):
        poses, info = refinement(*args, **kwargs)
        poses[0].data.register_hook(lambda grad: events.append("refined_pose_grad"))
        return poses, info

    monkeypatch.setattr(model.refinement, "forward", refine_and_watch)
    loss, _ = model.training_forward(b)
    assert events == ["pose_net_photometric"]
    loss.backward()
    assert events == ["pose_net_photometric", "refined_pose_grad", "pose_net_photometric"]


def test_training_starts_the_refinement_after_the_warmup_steps(tmp_path):
    """In a real Lightning run the LM is off for the first ``refine.warmup_steps`` optimizer steps only."""
    from lightning.pytorch.callbacks import Callback

    from sa4depth.data.toy import toy_run_overrides, toy_world
    from sa4depth.train.run import train

    class RefinementProbe(Callback):
        def __init__(self):
            self.refined = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.refined.append("train/lm_failed" in trainer.logged_metrics)

    world = toy_world(tmp_path / "world", frames=6)
    overrides = ["refine.enabled=true", "refine.warmup_steps=2", "trainer.max_steps=4"]
    overrides += ["trainer.log_every_n_steps=1"]
    cfg = load_config(None, [*toy_run_overrides(world, tmp_path / "run"), *overrides])
    probe = RefinementProbe()
    train(cfg, enable_progress_bar=False, callbacks=[probe])
    assert probe.refined == [False, False, True, True]
