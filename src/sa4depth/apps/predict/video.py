"""Video output: the atomic side-by-side mp4 writer and the labelled panels it shows.

Reading videos is `sa4depth.data.video`'s (shared with dataset preparation).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from sa4depth.errors import InputError


class AtomicVideoWriter:
    """An mp4 ('mp4v') writer that renders into a temporary file and renames it on a clean close."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
        os.close(fd)
        self.tmp = Path(tmp)
        _chmod_like_new_file(self.tmp)
        self.size = size
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self.writer.isOpened():
            self.tmp.unlink(missing_ok=True)
            raise InputError(path, "cannot write video: this OpenCV has no 'mp4v' encoder")

    def write(self, rgb: np.ndarray) -> None:
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            raise ValueError(f"frame size {rgb.shape[1]}x{rgb.shape[0]} != video size {self.size}")
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def __enter__(self) -> AtomicVideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.writer.release()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def _chmod_like_new_file(path: Path) -> None:
    """Give ``path`` the permissions a plain ``open`` would, ``0666 & ~umask``.

    ``tempfile.mkstemp`` creates its files 0600, which the renamed output would otherwise keep.

    Args:
        path: the file to change.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def label_panel(image: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` into the top-left corner of a copy of an image panel.

    The text is white on a dark outline, readable on any content, and its size follows the panel's
    height.

    Args:
        image: ``(H, W, 3)`` uint8 panel (left unchanged).
        text: the label.

    Returns:
        The labelled ``(H, W, 3)`` uint8 copy.

    Example:
        >>> panel = label_panel(np.zeros((64, 192, 3), np.uint8), "input")
        >>> bool((panel[:20, :60] > 128).any()), bool((panel[20:] > 0).any())
        (True, False)
    """
    out = np.ascontiguousarray(image).copy()
    scale = max(0.3, image.shape[0] / 480)
    origin = (4, 4 + int(22 * scale))
    for colour, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)
    return out
