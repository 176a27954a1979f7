"""Export of the depth network: every encoder's TorchScript and ONNX files reproduce PyTorch at sizes other
than the traced one and carry metadata; a failed export leaves no file; a baseline and an SA4Depth
checkpoint export the same inference graph; a run can keep only last.ckpt, and its weights-only export is
a fraction of its size and predicts the same depth."""

import math
import re

import numpy as np
import pytest
import torch

from sa4depth.apps.cli import main
from sa4depth.apps.export import export_model, inference_model, load_exported
from sa4depth.config import config_to_dict, load_config
from sa4depth.errors import InputError
from sa4depth.models import efficientnet_lite
from sa4depth.models.depth_net import ENCODERS

pytestmark = pytest.mark.usefixtures("one_thread")

H, W = 64, 96


def save_checkpoint(path, *overrides):
    from sa4depth.train.system import DepthPoseSystem

    cfg = load_config(None, [f"data.height={H}", f"data.width={W}", "data.root=nowhere", *overrides])
    system = DepthPoseSystem(cfg)
    torch.save({"state_dict": system.state_dict(), "sa4depth_config": config_to_dict(cfg)}, path)
    return system


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "baseline.ckpt"
    save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def lite_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "lite.ckpt"
    save_checkpoint(path, "model.encoder=efficientnet_lite0")
    return path


@pytest.mark.parametrize("format", ["torchscript", "onnx"])
# ResNet-34 and -50 add only their depth and bottleneck blocks to ResNet-18's operations.
@pytest.mark.parametrize(
    "encoder",
    [pytest.param(e, marks=[pytest.mark.slow] if e in ("resnet34", "resnet50") else []) for e in ENCODERS],
)
def test_every_encoder_exports_with_dynamic_height_and_width(tmp_path, encoder, format):
    if format == "onnx":
        pytest.importorskip("onnxruntime", reason="ONNX export needs the 'export' extra (onnx, onnxruntime)")
    checkpoint = tmp_path / f"{encoder}.ckpt"
    save_checkpoint(checkpoint, f"model.encoder={encoder}")
    out = tmp_path / f"depth.{format}"
    # Traced at the smallest size the decoder takes (its reflection padding needs 2x2 maps at stride 32),
    # checked at two other sizes and another batch size.
    result = export_model(checkpoint, out, format=format, height=64, width=64)
    assert result["tracer_warnings"] == []  # nothing size-specific frozen into the trace
    run, metadata = load_exported(out, format)
    assert metadata["encoder"] == encoder
    model, _ = inference_model(checkpoint)
    for size in [(128, 64), (64, 192)]:
        x = torch.rand(2, 3, *size)
        with torch.no_grad():
            expected = model(x)
        got = run(x)
        assert got.shape == (2, 1, *size)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def frozen_same_padding(size, kernel, stride):
    """The former EfficientNet padding: ``math.ceil`` turns a traced size into a constant of the trace."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize("format", ["torchscript", "onnx"])
def test_a_size_specific_trace_is_refused_and_leaves_no_file(tmp_path, lite_checkpoint, monkeypatch, format):
    if format == "onnx":
        pytest.importorskip("onnxruntime", reason="ONNX export needs the 'export' extra (onnx, onnxruntime)")
    monkeypatch.setattr(efficientnet_lite, "same_padding", frozen_same_padding)
    out = tmp_path / "depth.model"
    with pytest.raises(InputError, match="exported model (fails at|outputs|disagrees)") as info:
        export_model(lite_checkpoint, out, format=format)
    assert info.value.path == str(out)
    # The error points at the line that froze the size.
    assert "the tracer warned: " in info.value.problem and "test_export.py" in info.value.problem
    assert list(tmp_path.iterdir()) == []
    # An earlier export at the same path survives a failed one.
    out.write_bytes(b"an earlier export")
    with pytest.raises(InputError):
        export_model(lite_checkpoint, out, format=format)
    assert out.read_bytes() == b"an earlier export" and list(tmp_path.iterdir()) == [out]


def test_cli_export_errors_are_one_line(tmp_path, lite_checkpoint, monkeypatch, capsys):
    monkeypatch.setattr(efficientnet_lite, "same_padding", frozen_same_padding)
    out = tmp_path / "depth.pt"
    assert main(["export", "--checkpoint", str(lite_checkpoint), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}: exported model") and err.count("\n") == 1, err
    assert not out.exists()
    monkeypatch.undo()
    assert main(["export", "--checkpoint", str(lite_checkpoint), "--output", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err
        == f"error: {tmp_path}: is a folder; give the output file's name, e.g. depth.onnx\n"
    )
    assert main(["export", "--checkpoint", str(lite_checkpoint), "--output", str(out)]) == 0
    assert out.is_file() and "torchscript model written to" in capsys.readouterr().out


def test_non_finite_weights_are_refused(tmp_path):
    from sa4depth.train.system import DepthPoseSystem

    cfg = load_config(None, [f"data.height={H}", f"data.width={W}", "data.root=nowhere"])
    state = DepthPoseSystem(cfg).state_dict()
    key = next(k for k in state if k.startswith("model.depth_net.decoder") and k.endswith("weight"))
    state[key][0] = math.nan
    path = tmp_path / "nan.ckpt"
    torch.save({"state_dict": state, "sa4depth_config": config_to_dict(cfg)}, path)
    with pytest.raises(InputError, match="hold NaN or Inf") as info:
        export_model(path, tmp_path / "x.pt")
    assert info.value.path == str(path) and not (tmp_path / "x.pt").exists()


def test_torchscript_matches_pytorch_at_other_batch_and_size(tmp_path, checkpoint):
    result = export_model(checkpoint, tmp_path / "depth.pt", format="torchscript")
    assert result["max_abs_diff"] < 1e-4 and (result["height"], result["width"]) == (H, W)
    run, metadata = load_exported(tmp_path / "depth.pt")
    assert metadata["output"] == "depth" and metadata["train_height"] == H and metadata["K_train"] is None
    model, _ = inference_model(checkpoint)
    x = torch.rand(3, 3, 96, 160)  # another batch size and resolution than the trace
    with torch.no_grad():
        expected = model.net.predict_depth(x)
    assert torch.allclose(run(x), expected, rtol=1e-5, atol=1e-6)


def test_onnx_matches_pytorch(tmp_path, checkpoint):
    pytest.importorskip("onnxruntime", reason="ONNX export needs the 'export' extra (onnx, onnxruntime)")
    result = export_model(checkpoint, tmp_path / "disp.onnx", format="onnx", output="disparity")
    assert result["max_abs_diff"] < 1e-4, result
    run, metadata = load_exported(tmp_path / "disp.onnx")
    assert metadata["output"] == "disparity"
    model, _ = inference_model(checkpoint, output="disparity")
    x = torch.rand(2, 3, H, W)
    with torch.no_grad():
        expected = model(x)
    out = run(x)
    assert out.shape == (2, 1, H, W) and float(out.min()) >= 0 and float(out.max()) <= 1
    assert (out - expected).abs().max() < 1e-4


def test_baseline_and_sa4depth_export_the_same_inference_graph(tmp_path, checkpoint):
    try:
        import sa4depth.train.refinement  # noqa: F401
    except ImportError as e:
        pytest.skip(f"SA4Depth refinement module does not import yet: {e}")
    sa_path = tmp_path / "sa4depth.ckpt"
    sa_system = save_checkpoint(sa_path, "refine.enabled=true")
    assert sa_system.model.refinement is not None
    models = [inference_model(p)[0] for p in (checkpoint, sa_path)]
    states = [m.state_dict() for m in models]
    assert list(states[0]) == list(states[1])
    assert [v.shape for v in states[0].values()] == [v.shape for v in states[1].values()]
    counts = [sum(p.numel() for p in m.parameters()) for m in models]
    assert counts[0] == counts[1] < sum(p.numel() for p in sa_system.parameters())
    assert not any(k for k in states[1] if "feature" in k or "refine" in k or "pose" in k)
    x = torch.rand(1, 3, H, W)
    graphs = [str(torch.jit.trace(m, x, check_trace=False).inlined_graph) for m in models]
    # TorchScript numbers the class of every further trace of the same class ("___torch_mangle_7.").
    graphs = [re.sub(r"___torch_mangle_\d+\.", "", g) for g in graphs]
    assert graphs[0] == graphs[1] and "aten::_convolution" in graphs[0]


def test_bad_requests_are_input_errors(tmp_path, checkpoint):
    with pytest.raises(InputError, match="must be one of"):
        export_model(checkpoint, tmp_path / "x.pt", format="tflite")
    with pytest.raises(InputError, match="multiples of 32"):
        export_model(checkpoint, tmp_path / "x.pt", height=50)
    with pytest.raises(InputError, match="checkpoint not found"):
        export_model(tmp_path / "missing.ckpt", tmp_path / "x.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match="not a TorchScript"):
        load_exported(tmp_path / "junk.pt")
    assert not (tmp_path / "x.pt").exists()


def test_metadata_records_the_training_camera(tmp_path):
    from sa4depth.data import layout

    data = tmp_path / "data"
    seq = layout.sequence_dir(data, "s")
    for i in range(2):
        layout.write_image(seq / "images" / f"{i:06d}.png", np.zeros((H, W, 3), np.uint8))
    layout.write_cam(seq / "cam.txt", np.array([[50.0, 0, 47.5], [0, 50.0, 31.5], [0, 0, 1]]))
    layout.write_split(data / "splits" / "test.txt", [("s", 0)])
    from sa4depth.apps.export import DepthExportModel, _metadata
    from sa4depth.inference import load_depth_net

    path = tmp_path / "m.ckpt"
    save_checkpoint(path, f"data.root={data}", "data.offsets=[1]")
    loaded = load_depth_net(path)
    metadata = _metadata(path, loaded, DepthExportModel(loaded.depth_net), "depth", H, W)
    np.testing.assert_allclose(metadata["K_train"], [[50.0, 0, 47.5], [0, 50.0, 31.5], [0, 0, 1]])


@pytest.fixture(scope="module")
def last_only_run(tmp_path_factory):
    """A demo-sized 2-step run (slim encoder, small pose net, 64 x 192) with ``trainer.save_best=false``."""
    from sa4depth.data.toy import toy_run_overrides, toy_world
    from sa4depth.train.run import train

    base = tmp_path_factory.mktemp("last_only")
    world = toy_world(base / "world", frames=5, size=(64, 192))
    out = base / "run"
    overrides = toy_run_overrides(world, out) + [
        "model.encoder=resnet18_slim",
        "model.pose_encoder=small",
        "trainer.max_steps=2",
        "trainer.val_check_interval=1",  # validates every step: best.ckpt would be written if asked
        "data.max_val_samples=2",
        "trainer.save_best=false",
    ]
    train(load_config(None, overrides), enable_progress_bar=False)
    (world / "meta.yaml").write_text("generator: sa4depth.data.synthetic\n")  # as a rendered world says
    return out


def test_save_best_false_keeps_only_last_ckpt(last_only_run):
    from sa4depth.apps.visualize import load_scalars
    from sa4depth.config import TrainerConfig, validate_config

    assert "val/abs_rel" in load_scalars(last_only_run)  # validated, and still no best.ckpt
    assert [p.name for p in (last_only_run / "checkpoints").iterdir()] == ["last.ckpt"]
    with pytest.raises(InputError, match="trainer.save_best.*true or false"):
        validate_config(load_config().__class__(trainer=TrainerConfig(save_best="no")))


def test_weights_export_is_small_and_predicts_what_the_checkpoint_predicts(tmp_path, last_only_run, capsys):
    from sa4depth.apps.predict import DepthPredictor, predict_paths
    from sa4depth.data import layout

    last = last_only_run / "checkpoints" / "last.ckpt"
    weights = tmp_path / "depth_weights.pt"
    args = ["export", "--checkpoint", str(last), "--format", "weights", "--output", str(weights)]
    assert main(args) == 0
    assert "weights model written to" in capsys.readouterr().out
    # The depth net alone: no pose net, no optimizer state (2 x the weights for Adam), no loops.
    assert weights.stat().st_size < last.stat().st_size / 3
    assert not list(tmp_path.glob(".*"))  # no temporary file left
    run, metadata = load_exported(weights, "weights")
    assert metadata["encoder"] == "resnet18_slim" and metadata["K_train"] is not None
    image = np.random.default_rng(0).integers(0, 256, (64, 192, 3), dtype=np.uint8)
    layout.write_image(tmp_path / "in" / "a.png", image)
    for name, path in (("ckpt", last), ("weights", weights)):
        predict_paths(path, [tmp_path / "in"], tmp_path / name, progress=False)
    np.testing.assert_array_equal(
        np.load(tmp_path / "ckpt" / "a_depth.npy"), np.load(tmp_path / "weights" / "a_depth.npy")
    )
    # The camera and what the model was trained on travel in the file, for where the training data is not.
    world = last_only_run.parent / "world"
    world.rename(world.with_name("gone"))
    try:
        from_ckpt, from_weights = (
            DepthPredictor.from_checkpoint(last),
            DepthPredictor.from_checkpoint(weights),
        )
    finally:
        world.with_name("gone").rename(world)
    np.testing.assert_array_equal(from_weights.K_train, from_ckpt.K_train)
    assert from_ckpt.training_data["generator"] is None  # its meta.yaml is gone with the data
    assert from_weights.training_data == {"root": str(world), "generator": "sa4depth.data.synthetic"}
    assert (from_weights.height, from_weights.width) == (64, 192)
    with pytest.raises(InputError, match="--kind is for torchscript/onnx"):
        export_model(last, tmp_path / "d.pt", format="weights", output="disparity")


def test_a_damaged_weights_file_is_a_one_line_error(tmp_path, last_only_run):
    from sa4depth.apps.predict import DepthPredictor
    from sa4depth.inference import WEIGHTS_KEY

    weights = tmp_path / "w.pt"
    export_model(last_only_run / "checkpoints" / "last.ckpt", weights, format="weights")
    entries = torch.load(weights, weights_only=True)
    key = next(k for k in entries[WEIGHTS_KEY] if k.endswith("weight"))
    cases = {
        "weights do not fit the resnet18_slim depth network": {key: entries[WEIGHTS_KEY][key][:1]},
        "weights hold NaN or Inf": {key: torch.full_like(entries[WEIGHTS_KEY][key], math.nan)},
    }
    for message, change in cases.items():
        torch.save({**entries, WEIGHTS_KEY: {**entries[WEIGHTS_KEY], **change}}, tmp_path / "bad.pt")
        with pytest.raises(InputError, match=message) as info:
            DepthPredictor.from_checkpoint(tmp_path / "bad.pt")
        assert info.value.path == str(tmp_path / "bad.pt") and "\n" not in str(info.value)
    torch.save({**entries, "sa4depth_config": {"model": {"encoder": "vgg"}}}, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="weights file config: .*model.encoder"):
        DepthPredictor.from_checkpoint(tmp_path / "bad.pt")
