"""Video reading: the suffixes taken as videos, opening with a one-line error, frames and frame rate.

Shared by `sa4depth.data.prepare` (videos into training sequences) and the prediction app.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from sa4depth.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def open_video(path: Path) -> cv2.VideoCapture:
    """Open a video; one that OpenCV cannot open or decode a first frame of raises `InputError`."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(path, "cannot decode video (corrupt, or a codec this OpenCV build lacks)")
    return cap


def video_frames(path: Path, every: int = 1, limit: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, RGB uint8 frame)`` of a video, every ``every``-th frame, at most ``limit`` frames."""
    cap = open_video(path)
    try:
        index = yielded = 0
        while limit is None or yielded < limit:
            if index % every:
                ok = cap.grab()  # skip without converting the frame
            else:
                ok, frame = cap.read()
            if not ok:
                if index == 0:
                    raise InputError(path, "cannot decode video: no frame could be read")
                break
            if index % every == 0:
                yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                yielded += 1
            index += 1
    finally:
        cap.release()


def video_info(path: Path) -> tuple[int, float]:
    """``(frame count, frames per second)`` of a video; 0 frames when unknown, 10 fps when not said."""
    cap = open_video(path)
    count, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return max(count, 0), (fps if math.isfinite(fps) and fps > 0 else 10.0)
