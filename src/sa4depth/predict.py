"""Depth prediction for image files and folders with a trained checkpoint (the depth net only).

Writes, per input, a colour-mapped ``<name>_depth.png`` and the raw ``<name>_depth.npy`` (network units).
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import torch
from matplotlib import colormaps

from sa4depth.data.folder import IMAGE_SUFFIXES
from sa4depth.data.layout import atomic_write_bytes, read_image, write_image
from sa4depth.errors import InputError


def collect_images(inputs: list[str | Path]) -> list[Path]:
    """Expand files and folders (recursively) into a sorted list of image paths."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(item, "folder contains no .png/.jpg images")
            paths.extend(found)
        elif item.is_file():
            if item.suffix.lower() not in IMAGE_SUFFIXES:
                raise InputError(
                    item, f"unsupported input type {item.suffix!r} (expected .png/.jpg or a folder)"
                )
            paths.append(item)
        else:
            raise InputError(item, "input not found")
    return paths


def colorize_depth(depth: np.ndarray, cmap: str = "magma") -> np.ndarray:
    """Colour-map inverse depth (near = bright), 1-99 percentile range: ``H x W`` -> ``H x W x 3`` uint8."""
    disp = 1.0 / np.maximum(depth, 1e-6)
    vmin, vmax = np.percentile(disp, 1), np.percentile(disp, 99)
    normed = np.clip((disp - vmin) / max(vmax - vmin, 1e-9), 0, 1)
    return (colormaps[cmap](normed)[..., :3] * 255).astype(np.uint8)


def save_depth_outputs(out_dir: Path, name: str, depth: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, depth.astype(np.float32))
    atomic_write_bytes(out_dir / f"{name}_depth.npy", buf.getvalue())
    write_image(out_dir / f"{name}_depth.png", colorize_depth(depth))


@torch.inference_mode()
def predict_paths(
    checkpoint: str | Path, inputs: list[str | Path], out_dir: str | Path, batch_size: int = 4
) -> int:
    """Predict depth for every image in ``inputs`` at the checkpoint's training resolution.

    Depth is resized back to each image's own size. Returns the number of maps written.
    """
    from sa4depth.train.run import load_checkpoint

    paths = collect_images(inputs)
    system, cfg = load_checkpoint(checkpoint)
    depth_net = system.model.depth_net.eval()
    H, W = cfg.data.height, cfg.data.width
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        originals = [read_image(p) for p in chunk]
        batch = np.stack([cv2.resize(im, (W, H), interpolation=cv2.INTER_AREA) for im in originals])
        images = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255.0
        depth = depth_net.predict_depth(images)[:, 0].numpy()
        for path, image, d in zip(chunk, originals, depth, strict=True):
            full = cv2.resize(d, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
            save_depth_outputs(out_dir, path.stem, full)
    return len(paths)
