"""KITTI odometry (``dataset/sequences/NN``): snippets of a sequence with the devkit's ground-truth poses.

Used to train on sequences 00-08 and to evaluate visual odometry on 09 and 10.

Layout (the colour, calibration and poses downloads unpacked into one ``root``)::

    root/sequences/09/image_2/000000.png ...   left colour (image_3: right colour)
    root/sequences/09/calib.txt                P0..P3 (rectified 3x4 projections) and Tr (Velodyne -> cam 0)
    root/poses/09.txt                          T_world_cam0, one 3x4 row-major matrix per frame (00-10)

Poses: the devkit's poses are those of the left GRAY camera 0. The colour cameras share its rotation
(rectified rig) and sit at a fixed offset ``t_X`` read from ``P_X`` (``P2``: 6 cm to the side), so the
samples' ``T_src_tgt`` use the exact colour-camera poses ``T_world_cam0 @ inv([I | t_X])``; the per-frame
difference from using the camera-0 poses as they are is millimetres. The odometry evaluation
(`sa4depth.apps.odometry.evaluate_odometry`) compares against ``poses/NN.txt`` as it is, like the
devkit and Monodepth2, so that its numbers are comparable with published ones.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from sa4depth.data import layout
from sa4depth.data.base import SnippetDataset
from sa4depth.data.datamodule import register_dataset
from sa4depth.data.kitti_calib import OdometryCalib, load_odometry_calib
from sa4depth.data.kitti_raw import (
    SIDES,
    list_frames,
    resolve_split_file,
    snippet_frames,
    snippet_sample,
)
from sa4depth.errors import InputError

_SEQUENCE_LIST = re.compile(r"^\d{1,2}(\s*,\s*\d{1,2})*$")


def sequence_name(value: str | int) -> str:
    """Two-digit sequence name: ``9`` and ``"09"`` both give ``"09"``."""
    return f"{int(value):02d}"


def read_odometry_split(path: str | os.PathLike) -> list[tuple[str, int | None, str, int]]:
    """Read an odometry split file.

    Lines are ``<sequence> <frame> [l|r]`` (Monodepth2's ``splits/odom``: ``9 0 l``) or a bare
    ``<sequence>`` meaning every frame of it. Blank lines and ``#`` comments are skipped.

    Returns:
        ``(sequence "09", frame or None, side, line number)`` per entry.

    Raises:
        InputError: missing file, a malformed line (naming its number) or no entries.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "split file not found")
    items = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        side = tokens[2] if len(tokens) == 3 else "l"
        ok = tokens[0].isdigit() and len(tokens) <= 3 and side in SIDES
        if ok and len(tokens) >= 2:
            ok = tokens[1].isdigit()
        if not ok:
            raise InputError(
                path,
                f"line {line_no}: expected '<sequence> <frame> [l|r]' or '<sequence>', got {line.strip()!r}",
            )
        frame = int(tokens[1]) if len(tokens) >= 2 else None
        items.append((sequence_name(tokens[0]), frame, side, line_no))
    if not items:
        raise InputError(path, "split lists no frames")
    return items


class OdometrySequence:
    """One sequence: frame paths per camera, calibration and (for 00-10) the ground-truth poses."""

    def __init__(self, root: Path, name: str):
        self.name = name
        self.path = root / "sequences" / name
        if not self.path.is_dir():
            raise InputError(self.path, "sequence folder not found")
        self.calib: OdometryCalib = load_odometry_calib(self.path / "calib.txt")
        self._frames: dict[int, dict[int, Path]] = {}
        self.poses_path = root / "poses" / f"{name}.txt"
        self.T_world_cam0 = layout.read_poses(self.poses_path) if self.poses_path.is_file() else None

    def frames(self, cam: int) -> dict[int, Path]:
        """Frame number -> image path of ``image_<cam>``; raises if the folder is missing or empty."""
        if cam not in self._frames:
            folder = self.path / f"image_{cam}"
            frames = list_frames(folder)
            if not frames:
                raise InputError(folder, "no numbered .png/.jpg frames (folder missing or empty)")
            if self.T_world_cam0 is not None and len(self.T_world_cam0) != len(frames):
                raise InputError(self.poses_path, f"{len(self.T_world_cam0)} poses for {len(frames)} frames")
            self._frames[cam] = frames
        return self._frames[cam]

    def T_world_cam(self, cam: int, frames: list[int]) -> np.ndarray | None:
        """``(N, 4, 4)`` poses of colour camera ``cam`` at ``frames`` (None without ground truth)."""
        if self.T_world_cam0 is None:
            return None
        return self.T_world_cam0[frames] @ np.linalg.inv(self.calib.T_cam_cam0(cam))


class KittiOdometryDataset(SnippetDataset):
    """Snippets ``(target, target + offsets...)`` of KITTI odometry sequences.

    Args:
        root: the odometry ``dataset`` folder (``sequences/``, ``poses/``).
        split: sequence names (``"09"``, ``"9"``, ``"09,10"``: every frame whose snippet fits) or a split
            file (path, relative to the working directory or ``root``, or ``root/splits/<name>.txt``; see
            `read_odometry_split`).
        height, width: network resolution; frames and K are resized to it.
        offsets: source frame offsets relative to the target.
        train: apply augmentation (flip, colour jitter). In evaluation a split-file source past a
            sequence's first or last frame repeats the target and the sample has ``has_pose`` False.
        seed: base seed of the augmentation RNG.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | os.PathLike,
        height: int,
        width: int,
        offsets: tuple[int, ...] = (-1, 1),
        train: bool = False,
        seed: int = 0,
    ):
        super().__init__(root, split, height, width, offsets, train, seed)
        if not (self.root / "sequences").is_dir():
            raise InputError(
                self.root, "not a KITTI odometry root (no sequences/ folder; see docs/datasets_kitti.md)"
            )
        self.sequences: dict[str, OdometrySequence] = {}
        # (sequence, side, frames of the snippet, complete)
        self.items: list[tuple[str, str, list[int], bool]] = []
        if _SEQUENCE_LIST.match(str(split).strip()):
            for name in (sequence_name(s) for s in str(split).split(",")):
                available = self._sequence(name).frames(SIDES["l"])
                for f in sorted(available):
                    result = snippet_frames(f, self.offsets, available, allow_repeat_at_ends=False)
                    if not isinstance(result, str):
                        self.items.append((name, "l", *result))
            if not self.items:
                raise InputError(split, f"no frame of sequence(s) {split} has all offsets {self.offsets}")
            return
        split_path = resolve_split_file(self.root, split)
        for name, frame, side, line_no in read_odometry_split(split_path):
            try:
                available = self._sequence(name).frames(SIDES[side])
            except InputError as e:
                raise InputError(split_path, f"line {line_no}: {e}") from None
            targets = sorted(available) if frame is None else [frame]
            for f in targets:
                result = snippet_frames(f, self.offsets, available, allow_repeat_at_ends=not train)
                if isinstance(result, str):
                    if frame is None:
                        continue  # a whole-sequence line keeps the frames whose snippet fits
                    folder = self.root / "sequences" / name / f"image_{SIDES[side]}"
                    raise InputError(split_path, f"line {line_no} ({name} {f} {side}): {result} in {folder}")
                self.items.append((name, side, *result))

    def _sequence(self, name: str) -> OdometrySequence:
        if name not in self.sequences:
            self.sequences[name] = OdometrySequence(self.root, name)
        return self.sequences[name]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> dict:
        name, side, frames, complete = self.items[idx]
        seq = self.sequences[name]
        cam = SIDES[side]
        files = seq.frames(cam)
        sample = snippet_sample(
            [files[f] for f in frames],
            seq.calib.K(cam),
            self.height,
            self.width,
            T_world_cam=seq.T_world_cam(cam, frames) if complete else None,
            depth=None,
            sequence=name,
            frame=frames[0],
        )
        return self.finish(sample, idx)


register_dataset("kitti_odometry", KittiOdometryDataset)
