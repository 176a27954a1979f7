"""A contact sheet of a rendered synthetic dataset: frames over their colour-mapped depth, as one PNG.

For checking a rendered world by eye (`contact_sheet`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sa4depth.data import layout
from sa4depth.errors import InputError


def contact_sheet(
    root: str | os.PathLike | Sequence[str | os.PathLike],
    out_png: str | os.PathLike,
    sequences: int | Sequence[str] = 3,
    frames: int = 3,
    dpi: int = 100,
) -> Path:
    """Save a grid of frames over their colour-mapped depth (inverse depth, magma; sky black) as a PNG.

    Args:
        root: a dataset root in the `layout` format (with depth), or several (their rows are stacked).
        out_png: the picture to write.
        sequences: how many sequences per root (the first ones, by name), or their names.
        frames: frames per sequence, evenly spaced.
        dpi: figure resolution; one image pixel is one picture pixel.

    Returns:
        ``out_png`` as a Path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    roots = [root] if isinstance(root, (str, os.PathLike)) else list(root)
    rows = []
    for one_root in roots:
        seq_root = Path(one_root) / "sequences"
        if not seq_root.is_dir():
            raise InputError(seq_root, "no sequences folder: not a dataset root")
        names = sorted(p.name for p in seq_root.iterdir() if p.is_dir())
        names = names[:sequences] if isinstance(sequences, int) else list(sequences)
        if not names:
            raise InputError(seq_root, "no sequences found")
        for name in names:
            images = sorted((seq_root / name / "images").glob("*.png"))
            if not images:
                raise InputError(seq_root / name / "images", "no frames found")
            tiles = []
            for i in np.linspace(0, len(images) - 1, frames).round().astype(int):
                image = layout.read_image(images[i])
                depth = layout.read_depth(seq_root / name / "depth" / f"{images[i].stem}.npz")
                known = depth > 0
                inverse = np.where(known, 1.0 / np.maximum(depth, 1e-6), 0.0)
                scale = np.percentile(inverse[known], 99) if known.any() else 1.0
                coloured = plt.get_cmap("magma")(np.clip(inverse / scale, 0, 1))[..., :3]
                coloured[~known] = 0
                tile = np.concatenate([image / 255.0, coloured], axis=0)
                tiles.append(np.pad(tile, ((0, 4), (0, 4), (0, 0)), constant_values=1.0))
            rows.append(np.concatenate(tiles, axis=1))
    sheet = np.concatenate(rows, axis=0)[:-4, :-4]
    fig = plt.figure(figsize=(sheet.shape[1] / dpi, sheet.shape[0] / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(sheet, interpolation="nearest")
    ax.axis("off")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=dpi)
    plt.close(fig)
    return out_png
