"""A tiny folder-layout dataset for tests and teaching: a camera moving towards a textured wall.

Seconds to write and a few kilobytes per frame; it has depth, poses and splits, so every code path runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sa4depth.data import layout


def toy_world(
    root: str | Path,
    frames: int = 8,
    size: tuple[int, int] = (64, 192),
    sequences: tuple[str, ...] = ("a", "b"),
) -> Path:
    """Write a toy dataset in the `sa4depth.data.layout` format and return its root.

    Each sequence looks straight at a fronto-parallel textured wall 12 m away and moves 0.2 m towards
    it per frame, so depth is known exactly (``12 - 0.2 i`` everywhere) and the photometric loss has
    texture to fall on. Every split lists frames ``1 .. frames - 2`` of every sequence (targets with
    both neighbours for the default offsets ``[-1, 1]``).

    Args:
        root: output folder (created).
        frames: frames per sequence, at least 3.
        size: ``(H, W)`` of the frames.
        sequences: sequence names.

    Returns:
        ``root`` as a `Path`.

    Example:
        >>> import tempfile
        >>> from sa4depth.data.folder import FolderDataset
        >>> ds = FolderDataset(toy_world(tempfile.mkdtemp(), frames=4), "train", 64, 192)
        >>> len(ds), tuple(ds[0]["images"].shape)
        (4, (3, 3, 64, 192))
    """
    if frames < 3:
        raise ValueError(f"toy_world needs at least 3 frames per sequence, got {frames}")
    root = Path(root)
    rng = np.random.default_rng(0)
    H, W = size
    K = np.array([[100.0, 0, (W - 1) / 2], [0, 100.0, (H - 1) / 2], [0, 0, 1]])
    texture = rng.random((256, 256, 3))
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    for seq in sequences:
        d = layout.sequence_dir(root, seq)
        poses = []
        for i in range(frames):
            z0 = 0.2 * i
            depth = np.full((H, W), 12.0) - z0
            # Texture in wall coordinates (metres), so it moves consistently with the camera.
            x, y = (u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth
            tex = texture[(np.floor(y * 12) % 256).astype(int), (np.floor(x * 12) % 256).astype(int)]
            layout.write_image(d / "images" / f"{layout.frame_name(i)}.png", (tex * 255).astype(np.uint8))
            layout.write_depth(d / "depth" / f"{layout.frame_name(i)}.npz", depth.astype(np.float32))
            T_world_cam = np.eye(4)
            T_world_cam[2, 3] = z0
            poses.append(T_world_cam)
        layout.write_poses(d / "poses.txt", np.stack(poses))
        layout.write_cam(d / "cam.txt", K)
    items = [(s, i) for s in sequences for i in range(1, frames - 1)]
    for split in layout.SPLITS:
        layout.write_split(root / "splits" / f"{split}.txt", items)
    return root


def toy_run_overrides(root: str | Path, out: str | Path, batch_size: int = 2) -> list[str]:
    """Config overrides for a seconds-long, repeatable CPU training on a `toy_world` at ``root``.

    Example:
        >>> toy_run_overrides("w", "runs/t")[:2]
        ['data.root=w', 'output_dir=runs/t']
    """
    return [
        f"data.root={root}",
        f"output_dir={out}",
        "data.height=64",
        "data.width=192",
        f"data.batch_size={batch_size}",
        "data.augment=false",
        "loss.automask=false",  # the wall fills the view: auto-masking would hide it (see method.md)
        "trainer.accelerator=cpu",
        "trainer.deterministic=true",
    ]
