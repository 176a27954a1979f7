"""The built-in synthetic video world: driving and indoor scenes ray-cast with exact z-depth and poses.

Deterministic from a seed, any resolution, numpy only (no OpenGL); `render_dataset` writes `layout` folders.

World frame: x right, y down (gravity), z forward along the street; the ground is the plane y = 0, so a camera
``h`` metres high sits at y = -h. A scene is a list of axis-aligned textured rectangles ("quads": walls,
ground, box faces, pictures) and spheres (tree crowns, plants), ray-cast by a z-buffer over each primitive's
screen bounding box. Appearance is view-independent: textures are tiled in world coordinates and shading is
Lambertian from a fixed light, so warping frame t+1 into t with the ground-truth depth and pose reproduces
frame t up to occlusions and resampling. Anti-aliasing: mip-mapped trilinear texture sampling with a
footprint from the hit distance and incidence angle, plus ``supersample x supersample`` rays at geometric
edges (pixels whose primitive differs from a neighbour's). Depth is the z-depth of the pixel-centre ray;
**sky has depth 0 (unknown)**: it is infinitely far, so any ground-truth warp must mask it.
"""

from sa4depth.data.synthetic.benchmark import (
    BENCHMARK_SEED,
    BENCHMARK_SPLITS,
    benchmark_set,
    benchmark_specs,
    ensure_benchmark,
)
from sa4depth.data.synthetic.contact_sheet import contact_sheet
from sa4depth.data.synthetic.raycast import SKY_DEPTH
from sa4depth.data.synthetic.scenes import SCENES
from sa4depth.data.synthetic.sequences import (
    KITTI_INTRINSICS,
    SequenceSpec,
    SyntheticSequence,
    intrinsics_matrix,
    iter_frames,
    render_sequence,
)
from sa4depth.data.synthetic.sequences import (
    _setup as _setup,  # benchmarks/bench_synth.py times the renderer of one sequence through it
)
from sa4depth.data.synthetic.trajectories import BASE_SPEED, CAMERA_HEIGHT_RANGE, WORLD_VERSION
from sa4depth.data.synthetic.writer import FORMAT_VERSION, render_dataset

__all__ = [
    "BASE_SPEED",
    "BENCHMARK_SEED",
    "BENCHMARK_SPLITS",
    "CAMERA_HEIGHT_RANGE",
    "FORMAT_VERSION",
    "KITTI_INTRINSICS",
    "SCENES",
    "SKY_DEPTH",
    "SequenceSpec",
    "SyntheticSequence",
    "WORLD_VERSION",
    "benchmark_set",
    "benchmark_specs",
    "contact_sheet",
    "ensure_benchmark",
    "intrinsics_matrix",
    "iter_frames",
    "render_dataset",
    "render_sequence",
]
