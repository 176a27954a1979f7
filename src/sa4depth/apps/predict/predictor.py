"""The depth predictor: a checkpoint's depth network run on images of any size, with its training camera.

`DepthPredictor.from_checkpoint` loads it with `sa4depth.inference.load_depth_net`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from sa4depth.apps.predict.intrinsics import (
    SYNTHETIC_GENERATOR,
    in_synthetic_world,
    training_data,
    training_intrinsics,
)
from sa4depth.apps.predict.metric_scale import fit_ground_height
from sa4depth.data.intrinsics import intrinsics_from_fov
from sa4depth.errors import InputError
from sa4depth.geometry import Camera
from sa4depth.inference import load_depth_net

logger = logging.getLogger(__name__)

ASPECT_WARN_FACTOR = 1.5
"""Inputs whose width / height differs from the training resolution's by more than this factor (either
way) get a warning: resizing squashes every shape, a square photo into 64 x 192 by a factor of 3."""


class DepthPredictor:
    """The depth network of a checkpoint with its input size and training camera.

    Args:
        depth_net: a `sa4depth.models.depth_net.DepthNet`.
        height, width: the training resolution (multiples of 32): inputs are resized to it.
        K_train: ``3 x 3`` training intrinsics at that resolution, or None if unknown.
        device: torch device; default CUDA when available, else CPU.

    Attributes:
        training_data: ``{"root", "generator"}`` of the training dataset (`training_data`); None if unknown.
    """

    def __init__(self, depth_net, height: int, width: int, K_train: np.ndarray | None = None, device=None):
        if device is None:
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.device = torch.device(device)
        self.depth_net = depth_net.eval().to(self.device)
        self.height, self.width = height, width
        self.K_train = K_train
        self.intrinsics_source = "none" if K_train is None else "given"
        self.training_data: dict | None = None
        self._warned: set[str] = set()  # kinds of warning given: each once per predictor

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike, device=None) -> DepthPredictor:
        """The predictor of a training checkpoint or a weights file (``sa4depth export --format weights``)."""
        loaded = load_depth_net(checkpoint)
        cfg = loaded.cfg
        K, source = training_intrinsics(loaded)
        predictor = cls(loaded.depth_net, cfg.data.height, cfg.data.width, K, device)
        predictor.intrinsics_source = source
        predictor.training_data = training_data(Path(checkpoint), cfg, loaded.training_data)
        return predictor

    def _warn_once(self, kind: str, message: str, *args) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            logger.warning(message, *args)

    def warn_if_synthetic(self, checkpoint, inputs: Sequence[Path]) -> None:
        """Warn once if the model saw only the synthetic world and an input lies outside such a dataset."""
        data = self.training_data or {}
        if data.get("generator") != SYNTHETIC_GENERATOR:
            return
        folders: dict[Path, Path] = {}  # each folder checked once, named by its first input
        for p in inputs:
            folders.setdefault(Path(p).resolve().parent, p)
        outside = [p for folder, p in folders.items() if not in_synthetic_world(folder)]
        if outside:
            self._warn_once(
                "synthetic",
                "%s: trained only on the rendered synthetic world (%s); its depth of real images such as "
                "%s is unreliable (to train on your own video see docs/own_video.md)",
                checkpoint,
                data["root"],
                outside[0],
            )

    def _check_aspect(self, name, width: int, height: int) -> None:
        aspect, trained = width / height, self.width / self.height
        if max(aspect / trained, trained / aspect) > ASPECT_WARN_FACTOR:
            self._warn_once(
                "aspect",
                "%s: %dx%d input (aspect %.2f) resized to the %dx%d the model was trained at (aspect %.2f) "
                "distorts every shape, and depth with it; crop it to about %.2f:1 first",
                name,
                width,
                height,
                aspect,
                self.width,
                self.height,
                trained,
                trained,
            )

    @torch.inference_mode()
    def predict(self, images: Sequence[np.ndarray], names: Sequence | None = None) -> list[np.ndarray]:
        """Depth in network units for uint8 ``H x W x 3`` images, each returned at its own size (float32).

        The first image whose aspect ratio is far from the training resolution's (`ASPECT_WARN_FACTOR`)
        is logged as a warning, once per predictor, named by ``names`` (its file) if given.
        """
        for i, im in enumerate(images):
            self._check_aspect(names[i] if names is not None else "input", im.shape[1], im.shape[0])
        batch = np.stack([self._resize(im, self.width, self.height) for im in images])
        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        depth = self.depth_net.predict_depth(x)[:, 0].float().cpu().numpy()
        return [
            self._resize(d, im.shape[1], im.shape[0]).astype(np.float32)
            for d, im in zip(depth, images, strict=True)
        ]

    @staticmethod
    def _resize(array: np.ndarray, width: int, height: int) -> np.ndarray:
        if array.shape[:2] == (height, width):
            return array
        shrinking = array.shape[0] > height or array.shape[1] > width
        return cv2.resize(
            array, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        )

    def intrinsics(self, width: int, height: int, fx: float | None = None, fov: float | None = None):
        """K for an input of ``width x height``: from ``fx``/``fov`` if given, else the training camera.

        Raises:
            InputError: neither is given and the checkpoint has no known camera.
        """
        if fx is not None or fov is not None:
            return intrinsics_from_fov(width, height, fx, fov)
        if self.K_train is None:
            raise InputError(
                "intrinsics",
                "the checkpoint records no camera and its training data is not on disk; pass --fx or --fov",
            )
        cam = Camera.from_K(torch.as_tensor(self.K_train), self.width, self.height).resize_to(width, height)
        return cam.K().numpy()

    def height_scale(
        self, images, depths, camera_height: float, name, fx: float | None = None, fov: float | None = None
    ) -> tuple[float, float]:
        """Find the factor that makes ``depths`` metric from the camera's height above the ground.

        ``h_net`` is the median of `fit_ground_height` over the images (each with its own intrinsics,
        see `intrinsics`), and the factor is ``camera_height / h_net``.

        Args:
            images: ``(H, W, 3)`` uint8 images, one per depth map (they set the intrinsics' size).
            depths: ``(H, W)`` depth maps in network units.
            camera_height: the camera's height above the ground in metres.
            name: the input the error names.
            fx: focal length in pixels, or None.
            fov: horizontal field of view in degrees, or None.

        Returns:
            ``(factor, h_net)``: the metres per network unit and the fitted height in network units.

        Raises:
            InputError: naming ``name``, when no image shows a ground plane.
        """
        heights = []
        for image, depth in zip(images, depths, strict=True):
            h = fit_ground_height(depth, self.intrinsics(image.shape[1], image.shape[0], fx, fov))
            if h is not None:
                heights.append(h)
        if not heights:
            raise InputError(
                name,
                "no ground plane found in the bottom of the image; use --scale instead of --camera-height",
            )
        h_net = float(np.median(heights))
        return camera_height / h_net, h_net
