"""Reads the sa4depth folder layout (`sa4depth.data.layout`): the synthetic world and prepared videos.

Any sequence of frames with a ``cam.txt`` trains; ``poses.txt`` and ``depth/`` add ground truth.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from sa4depth.data import layout
from sa4depth.data.base import SnippetDataset
from sa4depth.data.transforms import resize_depth, resize_with_camera, to_tensor_images
from sa4depth.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class SequenceFolder:
    """One sequence folder: sorted frame paths, K, and optional poses and depth maps."""

    def __init__(self, path: Path):
        self.path = path
        image_dir = path / "images"
        if not image_dir.is_dir():
            raise InputError(image_dir, "sequence has no images/ folder")
        self.frames = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.frames:
            raise InputError(image_dir, "no .png/.jpg frames in folder")
        self.K = layout.read_cam(path / "cam.txt")
        poses_path = path / "poses.txt"
        self.T_world_cam = layout.read_poses(poses_path) if poses_path.is_file() else None
        if self.T_world_cam is not None and len(self.T_world_cam) != len(self.frames):
            raise InputError(poses_path, f"{len(self.T_world_cam)} poses for {len(self.frames)} frames")

    def depth_path(self, index: int) -> Path | None:
        stem = self.frames[index].stem
        for suffix in (".npz", ".npy"):
            candidate = self.path / "depth" / (stem + suffix)
            if candidate.is_file():
                return candidate
        return None


class FolderDataset(SnippetDataset):
    """Snippets ``(target, target + offsets...)`` from the folder layout, listed by a split file.

    Args:
        root: dataset root containing ``sequences/`` and ``splits/``.
        split: split name (``splits/<split>.txt``) or a path to a split file.
        height, width: network resolution; frames and K are resized to it.
        offsets: source frame offsets relative to the target.
        train: apply augmentation (flip, colour jitter).
        seed: base seed of the augmentation RNG (combined with the index and epoch).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        height: int,
        width: int,
        offsets: tuple[int, ...] = (-1, 1),
        train: bool = False,
        seed: int = 0,
    ):
        super().__init__(root, split, height, width, offsets, train, seed)
        if not (self.root / "sequences").is_dir():
            raise InputError(
                self.root,
                "not a dataset root (no sequences/ folder); run `sa4depth synth` or "
                "`sa4depth prepare` to make one",
            )
        split_path = Path(split) if Path(split).suffix == ".txt" else self.root / "splits" / f"{split}.txt"
        self.items = layout.read_split(split_path)
        if not self.items:
            raise InputError(split_path, "split lists no frames")
        self.sequences: dict[str, SequenceFolder] = {}
        for line_no, (name, index) in enumerate(self.items, start=1):
            seq = self._sequence(name, split_path)
            for offset in (0, *self.offsets):
                if not 0 <= index + offset < len(seq.frames):
                    raise InputError(
                        split_path,
                        f"entry {line_no} ({name} {index}): frame {index + offset} "
                        f"does not exist ({len(seq.frames)} frames)",
                    )

    def _sequence(self, name: str, split_path: Path) -> SequenceFolder:
        if name not in self.sequences:
            path = layout.sequence_dir(self.root, name)
            if not path.is_dir():
                raise InputError(split_path, f"sequence {name!r} not found under {self.root / 'sequences'}")
            self.sequences[name] = SequenceFolder(path)
        return self.sequences[name]

    def __len__(self) -> int:
        return len(self.items)

    @functools.cached_property
    def _identity_poses(self) -> torch.Tensor:
        return torch.eye(4).expand(len(self.offsets), 4, 4).clone()

    def __getitem__(self, idx: int) -> dict:
        name, index = self.items[idx]
        seq = self.sequences[name]
        frames, target_shape = [], None
        for offset in (0, *self.offsets):
            path = seq.frames[index + offset]
            image = layout.read_image(path)
            if target_shape is not None and image.shape != target_shape:
                raise InputError(
                    path,
                    f"frame size {image.shape[1]}x{image.shape[0]} differs from the "
                    f"target's {target_shape[1]}x{target_shape[0]}",
                )
            target_shape = image.shape
            resized, K = resize_with_camera(image, seq.K, self.height, self.width)
            frames.append(resized)
        images = to_tensor_images(frames)
        sample = {
            "images": images,
            "images_aug": images,
            "K": torch.as_tensor(K, dtype=torch.float32),
            "sequence": name,
            "frame": index,
        }
        depth_path = seq.depth_path(index)
        if depth_path is not None:
            depth = layout.read_depth(depth_path)
            if depth.shape != target_shape[:2]:
                # Resizing would hide a map of another frame or camera (evaluate then scores garbage).
                raise InputError(
                    depth_path,
                    f"depth map is {depth.shape[1]}x{depth.shape[0]} but its image "
                    f"{seq.frames[index].name} is {target_shape[1]}x{target_shape[0]}: "
                    "ground truth must have the size of its image",
                )
            depth = resize_depth(depth, self.height, self.width)
            sample["depth"], sample["has_depth"] = torch.from_numpy(depth)[None], True
        else:
            sample["depth"], sample["has_depth"] = torch.zeros(1, self.height, self.width), False
        if seq.T_world_cam is not None:
            T_world_tgt = seq.T_world_cam[index]
            rel = [np.linalg.inv(seq.T_world_cam[index + o]) @ T_world_tgt for o in self.offsets]
            sample["T_src_tgt"], sample["has_pose"] = (
                torch.as_tensor(np.stack(rel), dtype=torch.float32),
                True,
            )
        else:
            sample["T_src_tgt"], sample["has_pose"] = self._identity_poses, False
        return self.finish(sample, idx)
