"""One synthetic sequence: its spec, its camera intrinsics, and rendering it frame by frame or into memory.

`render_sequence` returns the frames, z-depths and poses; `iter_frames` streams them (the writer's path).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sa4depth.data.synthetic.raycast import _Renderer
from sa4depth.data.synthetic.scenes import SCENES
from sa4depth.data.synthetic.trajectories import BASE_SPEED, CAMERA_HEIGHT_RANGE, _driving, _indoor

#: KITTI's normalised intrinsics ``(fx / W, fy / H, cx / W, cy / H)``; cx = 0.5 is the image centre.
KITTI_INTRINSICS = (0.58, 1.92, 0.5, 0.5)


def intrinsics_matrix(height: int, width: int, intrinsics: Sequence[float] = KITTI_INTRINSICS) -> np.ndarray:
    """The 3x3 K of a ``height x width`` image from normalised ``(fx/W, fy/H, cx/W, cy/H)``.

    Normalised principal points are measured from the image's top-left corner (not pixel centre), so
    ``cx = 0.5`` gives ``(W - 1) / 2`` in the pixel-centre convention of `sa4depth.geometry`.

    Example:
        >>> intrinsics_matrix(192, 640)[:2].round(2).tolist()
        [[371.2, 0.0, 319.5], [0.0, 368.64, 95.5]]
    """
    fx, fy, cx, cy = (float(x) for x in intrinsics)
    return np.array([[fx * width, 0, cx * width - 0.5], [0, fy * height, cy * height - 0.5], [0, 0, 1]])


@dataclass(frozen=True)
class SequenceSpec:
    """Everything that determines one synthetic sequence (its frames follow bit-exactly from this)."""

    scene: str = "driving"
    seed: int = 0
    frames: int = 30
    speed: float = 1.0  # factor on BASE_SPEED[scene]
    camera_height: float | None = None  # metres; None = middle of CAMERA_HEIGHT_RANGE[scene]

    def resolved_height(self) -> float:
        if self.camera_height is not None:
            return float(self.camera_height)
        return float(np.mean(CAMERA_HEIGHT_RANGE[self.scene]))

    def speed_m_per_frame(self, base_speed: float | None = None) -> float:
        return float(self.speed) * (BASE_SPEED[self.scene] if base_speed is None else base_speed)


@dataclass
class SyntheticSequence:
    """A rendered sequence.

    Attributes:
        images: ``(N, H, W, 3)`` uint8 RGB frames.
        depth: ``(N, H, W)`` float32 z-depth in metres, 0 for sky.
        T_world_cam: ``(N, 4, 4)`` float64 camera-to-world poses.
        K: ``(3, 3)`` intrinsics at ``H x W``.
        spec: what was rendered.
    """

    images: np.ndarray
    depth: np.ndarray
    T_world_cam: np.ndarray
    K: np.ndarray
    spec: SequenceSpec


def _check_spec(spec: SequenceSpec) -> None:
    if spec.scene not in SCENES:
        raise ValueError(f"unknown scene {spec.scene!r}; choose one of {', '.join(SCENES)}")
    if spec.frames < 3:
        raise ValueError(
            f"a sequence needs at least 3 frames (a target and two neighbours), got {spec.frames}"
        )
    if not spec.speed > 0:
        raise ValueError(f"speed factor must be positive, got {spec.speed}")


def _setup(spec, height, width, intrinsics, supersample, base_speed):
    """Build the scene, camera path and renderer of one sequence."""
    _check_spec(spec)
    if height < 8 or width < 8:
        raise ValueError(f"image size must be at least 8 x 8, got {height} x {width}")
    rng = np.random.default_rng(spec.seed)
    make = _driving if spec.scene == "driving" else _indoor
    scene, T = make(rng, spec.frames, spec.speed_m_per_frame(base_speed), spec.resolved_height())
    K = intrinsics_matrix(height, width, intrinsics)
    return _Renderer(scene, K, height, width, supersample), T, K


def iter_frames(
    spec: SequenceSpec,
    height: int = 192,
    width: int = 640,
    intrinsics: Sequence[float] = KITTI_INTRINSICS,
    supersample: int = 3,
    base_speed: float | None = None,
):
    """Yield ``(index, image (H, W, 3) uint8, depth (H, W) float32, T_world_cam (4, 4))`` for one sequence.

    Renders lazily, one frame at a time (what `render_dataset` uses to stream frames to disk).
    """
    renderer, T, _ = _setup(spec, height, width, intrinsics, supersample, base_speed)
    for i, pose in enumerate(T):
        image, depth = renderer.render(pose)
        yield i, image, depth, pose


def render_sequence(
    scene: str = "driving",
    frames: int = 30,
    height: int = 192,
    width: int = 640,
    seed: int = 0,
    speed: float = 1.0,
    camera_height: float | None = None,
    intrinsics: Sequence[float] = KITTI_INTRINSICS,
    supersample: int = 3,
    base_speed: float | None = None,
) -> SyntheticSequence:
    """Render one sequence into memory.

    Args:
        scene: "driving" or "indoor".
        frames: number of frames (>= 3).
        height: image height in pixels.
        width: image width in pixels.
        seed: scene layout, camera path and noise all follow from it.
        speed: factor on the scene's mean base speed (`BASE_SPEED`: 0.75 m/frame driving, 0.06 indoor).
        camera_height: metres above the ground; None = middle of `CAMERA_HEIGHT_RANGE`.
        intrinsics: normalised ``(fx/W, fy/H, cx/W, cy/H)``; KITTI's by default.
        supersample: sub-pixel rays per axis at geometric edges (1 = off).
        base_speed: overrides the scene's base speed (metres per frame at speed 1).

    Returns:
        A `SyntheticSequence` with images ``(N, H, W, 3)``, depth ``(N, H, W)``, poses ``(N, 4, 4)``, K.

    Example:
        >>> seq = render_sequence("indoor", frames=3, height=24, width=32, seed=1)
        >>> seq.images.shape, seq.depth.dtype.name, seq.T_world_cam.shape
        ((3, 24, 32, 3), 'float32', (3, 4, 4))
    """
    spec = SequenceSpec(scene, seed, frames, speed, camera_height)
    renderer, T, K = _setup(spec, height, width, intrinsics, supersample, base_speed)
    images = np.empty((frames, height, width, 3), dtype=np.uint8)
    depth = np.empty((frames, height, width), dtype=np.float32)
    for i, pose in enumerate(T):
        images[i], depth[i] = renderer.render(pose)
    return SyntheticSequence(images, depth, T, K, spec)
