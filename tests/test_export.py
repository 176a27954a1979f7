"""Export of the depth network: TorchScript and ONNX files reproduce PyTorch and carry metadata; a baseline
and an SA4Depth checkpoint export the same inference graph."""

import re

import numpy as np
import pytest
import torch

from sa4depth.config import config_to_dict, load_config
from sa4depth.errors import InputError
from sa4depth.export import export_model, inference_model, load_exported

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
    from sa4depth.export import _metadata

    path = tmp_path / "m.ckpt"
    save_checkpoint(path, f"data.root={data}", "data.offsets=[1]")
    model, cfg = inference_model(path)
    metadata = _metadata(path, cfg, model, "depth", H, W)
    np.testing.assert_allclose(metadata["K_train"], [[50.0, 0, 47.5], [0, 50.0, 31.5], [0, 0, 1]])
