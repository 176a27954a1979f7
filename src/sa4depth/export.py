"""Export the inference model of a checkpoint (the depth network alone) to TorchScript or ONNX.

The feature network and LM refinement are training-only, so baseline and SA4Depth exports look the same.
"""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sa4depth.data.layout import atomic_write_bytes
from sa4depth.errors import InputError
from sa4depth.models.depth_net import disp_to_depth

logger = logging.getLogger(__name__)

FORMATS = ("torchscript", "onnx")
OUTPUTS = ("depth", "disparity")
METADATA_FILE = "sa4depth.json"
"""Name of the metadata entry: a TorchScript extra file, or the ONNX ``metadata_props`` key."""


class DepthExportModel(nn.Module):
    """The depth network with a single full-resolution output, for export.

    Args:
        depth_net: a `sa4depth.models.depth_net.DepthNet`.
        output: "depth" (z-depth in network units, in ``[min_depth, max_depth]``) or "disparity" (the
            network's sigmoid output in [0, 1]; ``depth = 1 / (1/max + (1/min - 1/max) * disparity)``).

    Input ``image``: ``(B, 3, H, W)`` float RGB in [0, 1], H and W multiples of 32. Output ``(B, 1, H, W)``.
    """

    def __init__(self, depth_net: nn.Module, output: str = "depth"):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.net = depth_net
        self.output = output

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        disp = self.net(image)[0]
        if self.output == "disparity":
            return disp
        return disp_to_depth(disp, self.net.min_depth, self.net.max_depth)[1]


def inference_model(checkpoint: str | os.PathLike, output: str = "depth") -> tuple[DepthExportModel, object]:
    """``(DepthExportModel in eval mode on CPU, config)`` of a training checkpoint."""
    from sa4depth.train.run import load_checkpoint

    system, cfg = load_checkpoint(checkpoint)
    return DepthExportModel(system.model.depth_net, output).eval().cpu(), cfg


def _check_inputs(height: int, width: int, batch: int) -> torch.Tensor:
    # Smooth images rather than white noise: closer to the activations of real inputs.
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(batch, 3, max(height // 8, 1), max(width // 8, 1), generator=generator)
    return nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)


def export_model(
    checkpoint: str | os.PathLike,
    out_path: str | os.PathLike,
    format: str = "torchscript",
    output: str = "depth",
    height: int | None = None,
    width: int | None = None,
    rtol: float = 1e-3,
    atol: float = 1e-4,
) -> dict:
    """Export the checkpoint's depth network and check the file against PyTorch.

    The export is traced at ``height x width`` (default: the training resolution), batch and image size
    stay dynamic. The written file is reloaded (``torch.jit.load`` / onnxruntime) and run on two images at
    the export size and one at another size; its output must match the PyTorch model's.

    Metadata (``sa4depth.json``: output kind, input layout, training resolution, depth range, the training
    camera when known) goes into the TorchScript file's extra files or the ONNX ``metadata_props``.

    Args:
        checkpoint: training checkpoint.
        out_path: output file (``.pt``/``.ts`` for TorchScript, ``.onnx``), written atomically.
        format: "torchscript" or "onnx" (needs the ``onnx`` and ``onnxruntime`` packages).
        output: "depth" or "disparity" (see `DepthExportModel`).
        rtol, atol: the agreement the check demands, elementwise ``|a - b| <= atol + rtol * |b|``
            (a relative part because depth ``~ 1 / disparity`` magnifies float error on far pixels).

    Returns:
        dict with ``max_abs_diff``, ``max_rel_diff``, ``format``, ``output``, ``path``, ``height``,
        ``width``, ``num_parameters`` and ``metadata``.

    Raises:
        InputError: unknown format/output, bad size, unreadable checkpoint, missing ONNX packages.
        RuntimeError: the exported model disagrees with PyTorch beyond the tolerance.
    """
    if format not in FORMATS:
        raise InputError("--format", f"must be one of {FORMATS}, got {format!r}")
    if output not in OUTPUTS:
        raise InputError("--kind", f"must be one of {OUTPUTS}, got {output!r}")
    if format == "onnx":
        _require_onnx()
    model, cfg = inference_model(checkpoint, output)
    height, width = height or cfg.data.height, width or cfg.data.width
    if height % 32 or width % 32 or height <= 0 or width <= 0:
        raise InputError("--height/--width", f"must be positive multiples of 32, got {height}x{width}")
    metadata = _metadata(checkpoint, cfg, model, output, height, width)
    example = _check_inputs(height, width, 2)
    if format == "torchscript":
        data = _torchscript_bytes(model, example, metadata)
    else:
        data = _onnx_bytes(model, example, metadata)
    out_path = Path(out_path)
    atomic_write_bytes(out_path, data)
    other = _check_inputs(height + 32, width + 64, 1)
    diffs = [_compare(model, out_path, format, x, rtol, atol) for x in (example, other)]
    result = {
        "format": format,
        "output": output,
        "path": str(out_path),
        "height": height,
        "width": width,
        "max_abs_diff": max(d[0] for d in diffs),
        "max_rel_diff": max(d[1] for d in diffs),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "metadata": metadata,
    }
    if not all(d[2] <= 1.0 for d in diffs):
        raise RuntimeError(
            f"{out_path}: exported model disagrees with PyTorch (max abs diff {result['max_abs_diff']:.3g}, "
            f"max rel diff {result['max_rel_diff']:.3g}; tolerance atol={atol}, rtol={rtol})"
        )
    logger.info("exported %s: max abs diff %.3g", out_path, result["max_abs_diff"])
    return result


def _metadata(checkpoint, cfg, model: DepthExportModel, output: str, height: int, width: int) -> dict:
    from sa4depth.predict import _checkpoint_intrinsics

    K, source = _checkpoint_intrinsics(Path(checkpoint), cfg)
    return {
        "input": "image (B, 3, H, W) float32 RGB in [0, 1]; H, W multiples of 32",
        "output": output,
        "output_shape": "(B, 1, H, W)",
        "train_height": cfg.data.height,
        "train_width": cfg.data.width,
        "export_height": height,
        "export_width": width,
        "min_depth": model.net.min_depth,
        "max_depth": model.net.max_depth,
        "depth_units": "network units (relative; scale unknown)",
        "encoder": cfg.model.encoder,
        "K_train": None if K is None else K.tolist(),
        "K_source": source,
        "checkpoint": str(checkpoint),
    }


def _torchscript_bytes(model: nn.Module, example: torch.Tensor, metadata: dict) -> bytes:
    with torch.no_grad(), warnings.catch_warnings():
        # The shape checks at the network's edge become constants of the trace: expected, and harmless
        # because the check below runs the saved file on another image size.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        traced = torch.jit.trace(model, example, check_trace=False)
    buf = io.BytesIO()
    torch.jit.save(traced, buf, _extra_files={METADATA_FILE: json.dumps(metadata)})
    return buf.getvalue()


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise InputError(
            "--format onnx",
            f"needs the onnx and onnxruntime packages ({e.name} missing): pip install 'sa4depth[export]'",
        ) from None


def _onnx_bytes(model: nn.Module, example: torch.Tensor, metadata: dict) -> bytes:
    import onnx

    dynamic = {0: "batch", 2: "height", 3: "width"}
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="Constant folding")
        # The TorchScript-based exporter: 0.5 s instead of 10 s for the torch.export one here, no
        # onnxscript dependency, and dynamic axes by name; torch is pinned, so its deprecation is moot.
        torch.onnx.export(
            model,
            (example,),
            buf,
            input_names=["image"],
            output_names=[model.output],
            dynamic_axes={"image": dynamic, model.output: dynamic},
            opset_version=17,
            dynamo=False,
        )
    proto = onnx.load_from_string(buf.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_FILE, json.dumps(metadata)
    return proto.SerializeToString()


def load_exported(path: str | os.PathLike, format: str | None = None):
    """A callable ``image (B, 3, H, W) tensor -> (B, 1, H, W) tensor`` for an exported file, and its metadata.

    Args:
        format: "torchscript" or "onnx"; default from the suffix (``.onnx`` -> ONNX).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "exported model not found")
    format = format or ("onnx" if path.suffix.lower() == ".onnx" else "torchscript")
    if format == "torchscript":
        extra = {METADATA_FILE: ""}
        try:
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except RuntimeError as e:
            raise InputError(path, f"not a TorchScript file ({str(e).splitlines()[0][:100]})") from None
        metadata = json.loads(extra[METADATA_FILE]) if extra[METADATA_FILE] else {}

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return module(x)

        return run, metadata
    _require_onnx()
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for invalid files
        raise InputError(path, f"not a valid ONNX model ({e.__class__.__name__})") from None
    props = session.get_modelmeta().custom_metadata_map
    metadata = json.loads(props[METADATA_FILE]) if METADATA_FILE in props else {}
    name = session.get_inputs()[0].name

    def run_onnx(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: x.numpy()})[0])

    return run_onnx, metadata


def _compare(model: nn.Module, path: Path, format: str, x: torch.Tensor, rtol: float, atol: float):
    """``(max abs diff, max rel diff, worst |diff| / (atol + rtol |ref|))`` of file vs PyTorch on ``x``."""
    run, _ = load_exported(path, format)
    with torch.no_grad():
        ref = model(x).double().numpy()
    got = run(x).double().numpy()
    if got.shape != ref.shape:
        raise RuntimeError(f"{path}: exported output shape {got.shape} != PyTorch {ref.shape}")
    diff = np.abs(got - ref)
    rel = diff / np.maximum(np.abs(ref), 1e-12)
    return float(diff.max()), float(rel.max()), float((diff / (atol + rtol * np.abs(ref))).max())
