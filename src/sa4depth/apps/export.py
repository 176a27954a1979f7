"""Export the inference model of a checkpoint (the depth network alone) to TorchScript, ONNX or weights.

The feature network and LM refinement are training-only, so baseline and SA4Depth exports look the same.
A weights file (``--format weights``) is the depth network's state_dict with the config that rebuilds it:
a quarter of a training checkpoint's size; `sa4depth.inference.load_depth_net` reads both kinds.
"""

from __future__ import annotations

import inspect
import io
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sa4depth.apps.predict.intrinsics import training_data, training_intrinsics
from sa4depth.config import Config, config_to_dict
from sa4depth.errors import InputError
from sa4depth.inference import INTRINSICS_KEY, TRAINING_DATA_KEY, WEIGHTS_KEY, DepthCheckpoint, load_depth_net
from sa4depth.models.depth_net import disp_to_depth

logger = logging.getLogger(__name__)

FORMATS = ("torchscript", "onnx", "weights")
OUTPUTS = ("depth", "disparity")
METADATA_FILE = "sa4depth.json"
"""Name of the metadata entry: a TorchScript extra file, the ONNX ``metadata_props`` key, or (as
``sa4depth_metadata``) an entry of a weights file (`sa4depth.inference.WEIGHTS_KEY`)."""


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


def inference_model(checkpoint: str | os.PathLike, output: str = "depth") -> tuple[DepthExportModel, Config]:
    """``(DepthExportModel in eval mode on CPU, config)`` of a training checkpoint or weights file."""
    loaded = load_depth_net(checkpoint)
    return DepthExportModel(loaded.depth_net, output).eval(), loaded.cfg


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
    stay dynamic (a weights file is not traced; the size only sets its check). The file is written to a
    temporary name beside ``out_path``, reloaded (``torch.jit.load`` / onnxruntime /
    `sa4depth.inference.load_depth_net`) and run on two images at the export size and one at another
    size; only when its output matches the PyTorch model's is it renamed to ``out_path``, so a failed
    export leaves no file (and an older file at ``out_path`` untouched).

    Metadata (``sa4depth.json``: output kind, input layout, training resolution, depth range, the training
    camera when known) goes into the TorchScript file's extra files, the ONNX ``metadata_props`` or the
    weights file's ``sa4depth_metadata`` entry.

    Args:
        checkpoint: training checkpoint.
        out_path: output file (``.pt``/``.ts`` for TorchScript, ``.onnx``, e.g. ``depth_weights.pt``).
        format: "torchscript", "onnx" (needs the ``onnx`` and ``onnxruntime`` packages) or "weights"
            (the depth network's state_dict and config; see `sa4depth.inference.WEIGHTS_KEY`).
        output: "depth" or "disparity" (see `DepthExportModel`); a weights file is always "depth".
        height: input height in pixels to trace and check at, a positive multiple of 32 (default: the
            training height).
        width: input width in pixels, a positive multiple of 32 (default: the training width).
        rtol: relative tolerance of the check, elementwise ``|a - b| <= atol + rtol * |b|`` (a relative
            part because depth ``~ 1 / disparity`` magnifies float error on far pixels).
        atol: absolute tolerance of the same check, in the output's units (metres or disparity).

    Returns:
        dict with ``max_abs_diff``, ``max_rel_diff``, ``format``, ``output``, ``path``, ``height``,
        ``width``, ``num_parameters``, ``metadata`` and ``tracer_warnings`` (the tracer's warnings other
        than the known input-shape checks, as ``"file:line: message"``; empty for a size-independent trace).

    Raises:
        InputError: unknown format/output, bad size, unreadable or non-finite checkpoint, missing ONNX
            packages, an unwritable ``out_path``, a model the exporter cannot trace, or an exported model
            that disagrees with PyTorch beyond the tolerance.
    """
    if format not in FORMATS:
        raise InputError("--format", f"must be one of {FORMATS}, got {format!r}")
    if output not in OUTPUTS:
        raise InputError("--kind", f"must be one of {OUTPUTS}, got {output!r}")
    if format == "weights" and output != "depth":
        raise InputError("--kind", "a weights file holds the network itself; --kind is for torchscript/onnx")
    if format == "onnx":
        _require_onnx()
    loaded = load_depth_net(checkpoint)
    model, cfg = DepthExportModel(loaded.depth_net, output).eval(), loaded.cfg
    if height is None and width is None and (cfg.data.height % 32 or cfg.data.width % 32):
        raise InputError(
            checkpoint,
            f"training resolution {cfg.data.height}x{cfg.data.width} is not a multiple of 32; "
            "pass --height and --width",
        )
    height, width = height or cfg.data.height, width or cfg.data.width
    if height % 32 or width % 32 or height <= 0 or width <= 0:
        raise InputError("--height/--width", f"must be positive multiples of 32, got {height}x{width}")
    out_path = Path(out_path)
    if out_path.is_dir():
        raise InputError(out_path, "is a folder; give the output file's name, e.g. depth.onnx")
    metadata = _metadata(checkpoint, loaded, model, output, height, width)
    example = _check_inputs(height, width, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        try:
            if format == "torchscript":
                data = torchscript_bytes(model, example, metadata)
            elif format == "onnx":
                data = onnx_bytes(model, example, metadata)
            else:
                data = _weights_bytes(checkpoint, loaded, model, metadata)
        except Exception as e:  # the tracer and the ONNX exporter raise many types
            raise InputError(checkpoint, f"{format} export failed ({_first_line(e)})") from None
    tracer_warnings = _unexpected_tracer_warnings(caught)
    tmp = _write_temporary(out_path, data)
    try:
        other = _check_inputs(height + 32, width + 64, 1)
        hint = _hint(tracer_warnings)
        diffs = [_compare(model, tmp, out_path, format, x, rtol, atol, hint) for x in (example, other)]
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
            "tracer_warnings": tracer_warnings,
        }
        if not all(d[2] <= 1.0 for d in diffs):
            raise InputError(
                out_path,
                f"exported model disagrees with PyTorch (max abs diff {result['max_abs_diff']:.3g}, max rel "
                f"diff {result['max_rel_diff']:.3g}; tolerance atol={atol}, rtol={rtol}){hint}",
            )
        try:
            os.replace(tmp, out_path)
        except OSError as e:
            raise _cannot_write(out_path, e) from None
    finally:
        tmp.unlink(missing_ok=True)
    for text in tracer_warnings:  # the export passed its checks, but other sizes may still differ
        logger.warning("%s: the tracer warned: %s", out_path, text)
    logger.info("exported %s: max abs diff %.3g", out_path, result["max_abs_diff"])
    return result


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{e.__class__.__name__}: {lines[0][:200]}" if lines else e.__class__.__name__


def _hint(tracer_warnings: list[str]) -> str:
    """The first tracer warning, which usually names the line that made the trace size-specific."""
    return f"; the tracer warned: {tracer_warnings[0]}" if tracer_warnings else ""


def _input_guard_lines() -> set[tuple[str, int]]:
    """``(file, line)`` of the ``if`` statements that check the input's shape at the network's edge.

    The tracer warns that their conditions become constants of the trace: expected and harmless, since
    `export_model` checks the size itself and the guards only raise. Every other tracer warning may mean
    a size frozen into the trace (as ``math.ceil`` in the EfficientNet padding once did) and is reported.
    """
    from sa4depth.models import depth_net, efficientnet_lite, resnet

    lines = set()
    for fn in (
        depth_net.check_image_shape,
        resnet.ResnetEncoder.forward,
        efficientnet_lite.EfficientNetLiteEncoder.forward,
    ):
        source, start = inspect.getsourcelines(fn)
        file = os.path.realpath(inspect.getsourcefile(fn))
        lines.update((file, start + i) for i, line in enumerate(source) if line.lstrip().startswith("if "))
    return lines


def _unexpected_tracer_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """Tracer warnings in ``caught`` other than the input guards', as ``"file:line: message"``, once each.

    Warnings of other kinds are issued again, as if they had not been recorded.
    """
    guards = _input_guard_lines()
    found = []
    for w in caught:
        if not issubclass(w.category, torch.jit.TracerWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            continue
        if (os.path.realpath(w.filename), w.lineno) in guards and "Python boolean" in str(w.message):
            continue
        # The first sentence says what was frozen; the rest is the same advice in every tracer warning.
        text = f"{w.filename}:{w.lineno}: {str(w.message).split('. ')[0]}"
        if text not in found:
            found.append(text)
    return found


def _write_temporary(out_path: Path, data: bytes) -> Path:
    """Write ``data`` to a new hidden file beside ``out_path`` (same file system, so a rename is atomic)."""
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    except OSError as e:
        raise _cannot_write(out_path, e) from None
    tmp = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; an exported model is meant to be shared like any file
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _cannot_write(out_path, e) from None
        raise
    return tmp


def _cannot_write(out_path: Path, e: OSError) -> InputError:
    return InputError(out_path, f"cannot write ({e.strerror or e.__class__.__name__})")


def _metadata(
    checkpoint, loaded: DepthCheckpoint, model: DepthExportModel, output: str, height: int, width: int
) -> dict:
    """The ``sa4depth.json`` metadata of an export of ``loaded`` at ``height x width``."""
    cfg = loaded.cfg
    K, source = training_intrinsics(loaded)
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


def torchscript_bytes(model: nn.Module, example: torch.Tensor, metadata: dict) -> bytes:
    """The TorchScript file of ``model`` traced on ``example`` ``(B, 3, H, W)``; ``metadata`` in it."""
    with torch.no_grad(), warnings.catch_warnings():
        # torch is pinned, so the deprecation of tracing is moot; tracer warnings reach export_model.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
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


def onnx_bytes(model: nn.Module, example: torch.Tensor, metadata: dict) -> bytes:
    """The ONNX file (opset 17, dynamic batch and size) of ``model`` run on ``example`` ``(B, 3, H, W)``."""
    import onnx

    dynamic = {0: "batch", 2: "height", 3: "width"}
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
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


def _weights_bytes(checkpoint, loaded: DepthCheckpoint, model: DepthExportModel, metadata: dict) -> bytes:
    """A weights file: the depth net's state_dict, its config, metadata, training camera and data."""
    entries = {
        WEIGHTS_KEY: model.net.state_dict(),
        "sa4depth_config": config_to_dict(loaded.cfg),
        "sa4depth_metadata": metadata,
        # Recorded now: the training data and its camera may be gone where the file is used.
        TRAINING_DATA_KEY: training_data(Path(checkpoint), loaded.cfg, loaded.training_data),
    }
    if metadata["K_train"] is not None:
        entries[INTRINSICS_KEY] = {
            "K": metadata["K_train"],
            "width": metadata["train_width"],
            "height": metadata["train_height"],
        }
    buf = io.BytesIO()
    torch.save(entries, buf)
    return buf.getvalue()


def load_exported(
    path: str | os.PathLike, format: str | None = None, optimize: bool = False, threads: int | None = None
):
    """A callable ``image (B, 3, H, W) tensor -> (B, 1, H, W) tensor`` for an exported file, and its metadata.

    Args:
        path: the exported file.
        format: "torchscript", "onnx" or "weights" (depth); default from the suffix (``.onnx`` -> ONNX,
            else TorchScript).
        optimize: TorchScript only: freeze the module and run ``torch.jit.optimize_for_inference``
            (conv + batch norm folded), the faster form for CPU inference.
        threads: ONNX only: onnxruntime's intra-op threads (default: its own choice).

    Returns:
        ``(run, metadata)``: the callable (gradient-free) and the ``sa4depth.json`` metadata dict.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "exported model not found")
    format = format or ("onnx" if path.suffix.lower() == ".onnx" else "torchscript")
    if format == "weights":
        net = load_depth_net(path).depth_net
        metadata = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["sa4depth_metadata"]

        def run_weights(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return net.predict_depth(x)

        return run_weights, metadata
    if format == "torchscript":
        extra = {METADATA_FILE: ""}
        try:
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except RuntimeError as e:
            raise InputError(path, f"not a TorchScript file ({str(e).splitlines()[0][:100]})") from None
        metadata = json.loads(extra[METADATA_FILE]) if extra[METADATA_FILE] else {}
        if optimize:
            with warnings.catch_warnings():
                # Deprecated in favour of torch.compile, which was not faster here; torch is pinned.
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                module = torch.jit.optimize_for_inference(torch.jit.freeze(module.eval()))

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return module(x)

        return run, metadata
    _require_onnx()
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for invalid files
        raise InputError(path, f"not a valid ONNX model ({e.__class__.__name__})") from None
    props = session.get_modelmeta().custom_metadata_map
    metadata = json.loads(props[METADATA_FILE]) if METADATA_FILE in props else {}
    name = session.get_inputs()[0].name

    def run_onnx(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: x.contiguous().numpy()})[0])

    return run_onnx, metadata


def _compare(
    model: nn.Module,
    path: Path,
    name: Path,
    format: str,
    x: torch.Tensor,
    rtol: float,
    atol: float,
    hint: str,
):
    """Run the exported file on ``x`` and measure how far its output is from the PyTorch model's.

    Args:
        model: the PyTorch reference (`DepthExportModel` in eval mode).
        path: the exported file to run.
        name: the path the errors name (the final one, not the temporary file).
        format: the file's format, "torchscript", "onnx" or "weights" (see `load_exported`).
        x: ``(B, 3, H, W)`` check images in [0, 1].
        rtol: relative tolerance, used for the third number only.
        atol: absolute tolerance, used for the third number only.
        hint: appended to the errors (the tracer's first warning).

    Returns:
        ``(max abs diff, max rel diff, worst |diff| / (atol + rtol |ref|))`` as floats; the check passes
        when the third is at most 1.

    Raises:
        InputError: the file fails to run on ``x`` or outputs a different shape than PyTorch.
    """
    run, _ = load_exported(path, format)
    with torch.no_grad():
        ref = model(x).double().numpy()
    try:
        got = run(x).double().numpy()
    except Exception as e:  # TorchScript and onnxruntime raise their own types for a size-specific graph
        raise InputError(
            name, f"exported model fails at input {tuple(x.shape)} ({_first_line(e)}){hint}"
        ) from None
    if got.shape != ref.shape:
        raise InputError(
            name, f"exported model outputs {got.shape} for input {tuple(x.shape)}, PyTorch {ref.shape}{hint}"
        )
    diff = np.abs(got - ref)
    rel = diff / np.maximum(np.abs(ref), 1e-12)
    return float(diff.max()), float(rel.max()), float((diff / (atol + rtol * np.abs(ref))).max())
