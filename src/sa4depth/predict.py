"""Depth prediction with a trained checkpoint (the depth network only) for images, folders and videos.

Writes colour-mapped PNGs, raw ``.npy`` depth, optional side-by-side videos and a ``predictions.json``
manifest.

Units. A self-supervised monocular model predicts depth up to an unknown scale ("network units"). Two ways
to make it metric are offered, and every output says which one was used:

* ``scale=s``: multiply by a factor the user knows (e.g. from a measured distance);
* ``camera_height=h`` (metres): fit the ground plane to the 3D points of the bottom rows of the
  predicted depth (`fit_ground_height`); its distance to the camera centre is the camera height in network
  units ``h_net``, and depth is multiplied by ``h / h_net``. For a level camera this is the median of the
  ground points' Y (camera y points down); the plane fit also handles a camera pitched or rolled by up to
  30 degrees and ignores cars, walls or people in the bottom rows (RANSAC). A video gets one factor, ``h``
  over the median ``h_net`` of up to 16 evenly spaced frames, so its scale does not flicker.

Intrinsics (needed for ``camera_height`` and point clouds) default to the camera the model was trained
with, resized to the input: from the checkpoint's ``"sa4depth_intrinsics"`` entry if present, else from the
training dataset named in its config if that dataset is still on disk. Otherwise pass ``fx`` (pixels, at
the input's resolution) or ``fov`` (horizontal field of view, degrees); the principal point is then the
image centre. Inputs are resized (not cropped) to the training resolution: a camera with a different
aspect ratio or field of view than the training camera gets distorted, less accurate depth (an aspect
ratio off by more than `ASPECT_WARN_FACTOR` is warned about, as is a model trained only on the synthetic
world applied to other images).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import torch
from matplotlib import colormaps

from sa4depth.config import Config
from sa4depth.data.datamodule import dataset_intrinsics
from sa4depth.data.folder import IMAGE_SUFFIXES
from sa4depth.data.layout import (
    atomic_write_bytes,
    atomic_write_text,
    check_output_folder,
    read_image,
    replace_folder,
    staging_folder,
    write_image,
)
from sa4depth.errors import InputError
from sa4depth.geometry import Camera

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
INTRINSICS_KEY = "sa4depth_intrinsics"
"""Optional checkpoint entry ``{"K": 3x3 list, "width": W, "height": H}``: the training camera."""
TRAINING_DATA_KEY = "sa4depth_training_data"
"""Optional checkpoint entry ``{"root": str, "generator": str | None}`` (weights exports carry it): the
training dataset and the ``generator`` of its ``meta.yaml``, for when that dataset is not on disk."""
MANIFEST = "predictions.json"
NETWORK_UNITS = "network units (relative depth, unknown scale)"
VIDEO_SCALE_FRAMES = 16
SYNTHETIC_GENERATOR = "sa4depth.data.synthetic"
"""The ``generator`` in the ``meta.yaml`` of a dataset rendered by `sa4depth.data.synthetic`."""
ASPECT_WARN_FACTOR = 1.5
"""Inputs whose width / height differs from the training resolution's by more than this factor (either
way) get a warning: resizing squashes every shape, a square photo into 64 x 192 by a factor of 3."""


# ----------------------------------------------------------------------------------------------- inputs


@dataclass
class InputItem:
    """One input file: ``kind`` is "image" or "video"; ``stem`` names its outputs below the output folder.

    An image writes ``<stem>_depth.npy`` and ``<stem>_depth.png``; a video the folder ``<stem>/`` and,
    with ``video_out``, ``<stem>_side_by_side.mp4`` (see `output_claims`).
    """

    path: Path
    kind: str
    stem: PurePosixPath


def collect_inputs(
    inputs: Sequence[str | os.PathLike], exclude: str | os.PathLike | None = None
) -> list[InputItem]:
    """Expand files and folders (recursively) into images and videos, in a stable order.

    A file's outputs are named after its stem; a folder's files keep their path below the folder, so
    ``cam0/000001.png`` and ``cam1/000001.png`` do not overwrite each other. A name that is only dots (a
    video ``...mp4`` has the stem ``..``) gets underscores instead, so no output lands outside the
    output folder. Names may still collide: `plan_outputs` makes them distinct.

    Args:
        inputs: image files, video files and folders.
        exclude: a folder whose files are skipped when expanding folders (the output folder, so that
            predicting into ``photos/depth`` does not take earlier depth maps for photos).

    Raises:
        InputError: a missing path, an unsupported file type or an empty folder.
    """
    skip = Path(exclude).resolve() if exclude is not None else None
    items: list[InputItem] = []
    seen: set[Path] = set()
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(
                p
                for p in item.rglob("*")
                if p.is_file()
                and p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES
                and not (skip is not None and p.resolve().is_relative_to(skip))
            )
            if not found:
                raise InputError(item, "folder contains no .png/.jpg images or videos")
            named = [(p, p.relative_to(item).with_suffix("")) for p in found]
        elif item.is_file():
            if item.suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
                raise InputError(
                    item,
                    f"unsupported input type {item.suffix!r} (expected {'/'.join(IMAGE_SUFFIXES)}, "
                    f"a video {'/'.join(VIDEO_SUFFIXES)} or a folder)",
                )
            named = [(item, Path(item.stem))]
        else:
            raise InputError(item, "input not found")
        for path, stem in named:
            if path.resolve() in seen:  # the same file given twice (or inside a folder given too)
                continue
            seen.add(path.resolve())
            safe = PurePosixPath(*(_safe_part(part) for part in stem.parts))
            items.append(InputItem(path, _kind(path), safe))
    return items


def _safe_part(part: str) -> str:
    """A path component that cannot leave its folder: "." and ".." (any run of dots) become underscores."""
    return "_" * len(part) if set(part) <= {"."} else part


def output_claims(item: InputItem, video_out: bool) -> list[PurePosixPath]:
    """The paths, relative to the output folder, that ``item`` writes (a video's folder as a whole)."""
    if item.kind == "image":
        return [item.stem.with_name(item.stem.name + suffix) for suffix in ("_depth.npy", "_depth.png")]
    claims = [item.stem]
    if video_out:
        claims.append(item.stem.with_name(item.stem.name + "_side_by_side.mp4"))
    return claims


class _Claims:
    """Output paths taken so far; a new path collides with one that is equal, inside or around it."""

    def __init__(self):
        self.paths: set[PurePosixPath] = set()
        self.around: set[PurePosixPath] = set()  # every folder that holds a taken path

    def add(self, paths: Sequence[PurePosixPath]) -> None:
        self.paths.update(paths)
        for path in paths:
            self.around.update(path.parents)

    def collide(self, path: PurePosixPath) -> bool:
        return path in self.paths or path in self.around or any(p in self.paths for p in path.parents)


def _entry_name(entry: dict, out_dir: Path) -> PurePosixPath | None:
    """The output name of a manifest entry, relative to ``out_dir``, or None if it has no usable one.

    Entries have a ``name``; those written before it existed are named by their output paths (as
    typed then, so only when they still lead into ``out_dir`` from here).
    """
    name = entry.get("name")
    if name is None:
        suffix, key = ("", "frame_dir") if entry.get("kind") == "video" else ("_depth.npy", "npy")
        written = entry.get(key)
        if not isinstance(written, str) or not written.endswith(suffix):
            return None
        try:
            relative = Path(os.path.realpath(written)).relative_to(os.path.realpath(out_dir))
        except ValueError:
            return None
        name = relative.as_posix()[: len(relative.as_posix()) - len(suffix)]
    if not isinstance(name, str) or not name or name == ".":
        return None
    path = PurePosixPath(name)
    ok = not path.is_absolute() and all(_safe_part(part) == part for part in path.parts)
    return path if ok else None


def _on_disk(out_dir: Path, claim: PurePosixPath) -> bool:
    """Whether ``claim`` is taken in ``out_dir``: it exists, or a folder on its way is a file or a link
    (writing through a link could leave the output folder)."""
    for parent in reversed(claim.parents[:-1]):
        p = out_dir / parent
        if p.is_symlink() or (p.exists() and not p.is_dir()):
            return True
    p = out_dir / claim
    return p.exists() or p.is_symlink()


def plan_outputs(
    items: list[InputItem], out_dir: Path, earlier: list[dict], video_out: bool
) -> list[dict | None]:
    """Give every item output names that overwrite nothing but its own earlier outputs (sets ``stem``).

    An item keeps its name if it is free: not written by an item before it, not on disk, and not listed
    for another input in ``earlier`` (the manifest of previous runs into ``out_dir``); an input
    predicted before keeps the name it got then and replaces those files. A taken name gets ``_2``,
    ``_3``, ... (``x.mp4`` beside a folder ``x/`` writes its frames to ``x_2/``).

    Returns:
        Per item, the ``earlier`` entry its outputs replace, or None.
    """
    names = {id(e): _entry_name(e, out_dir) for e in earlier}
    by_input: dict[tuple[str, str], dict] = {}
    for entry in earlier:
        if names[id(entry)] is not None:
            by_input.setdefault((os.path.realpath(str(entry.get("input"))), entry.get("kind")), entry)
    previous = [by_input.get((os.path.realpath(item.path), item.kind)) for item in items]
    replaced = {id(e) for e in previous if e is not None}
    taken = _Claims()
    for entry in earlier:  # outputs of inputs not predicted again stay, and so do their names
        if names[id(entry)] is not None and id(entry) not in replaced:
            kind = "video" if entry.get("kind") == "video" else "image"
            taken.add(output_claims(InputItem(Path(), kind, names[id(entry)]), video_out=True))
    for i, item in enumerate(items):
        own: set[PurePosixPath] = set()
        if previous[i] is not None:
            item.stem = names[id(previous[i])]
            own = set(output_claims(item, video_out=True))
        base, k = item.stem, 1
        while any(
            taken.collide(c) or (c not in own and _on_disk(out_dir, c))
            for c in output_claims(item, video_out)
        ):
            if previous[i] is not None:  # renamed after all: the earlier outputs stay, with their entry
                taken.add(sorted(own))
                previous[i], own = None, set()
            k += 1
            item.stem = base.with_name(f"{base.name}_{k}")
        taken.add(output_claims(item, video_out))
    return previous


def _read_manifest(path: Path) -> list[dict]:
    """The ``outputs`` of an existing ``predictions.json`` ([] if there is none)."""
    if not path.exists():
        return []
    try:
        outputs = json.loads(path.read_text())["outputs"]
        if not isinstance(outputs, list) or not all(isinstance(e, dict) for e in outputs):
            raise TypeError("outputs is not a list of entries")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise InputError(
            path,
            f"not a predictions manifest ({e.__class__.__name__}); move it away or choose another --output",
        ) from None
    return outputs


def _kind(path: Path) -> str:
    return "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"


# ------------------------------------------------------------------------------------------- colouring


def disparity_range(depth: np.ndarray) -> tuple[float, float]:
    """The 1st-99th percentile range of inverse depth: the colour scale of `colorize_depth`."""
    disp = 1.0 / np.maximum(depth[np.isfinite(depth) & (depth > 0)], 1e-6)
    if disp.size == 0:
        return 0.0, 1.0
    vmin, vmax = float(np.percentile(disp, 1)), float(np.percentile(disp, 99))
    return vmin, max(vmax, vmin + 1e-9)


def colorize_depth(
    depth: np.ndarray, cmap: str = "magma", disp_range: tuple[float, float] | None = None
) -> np.ndarray:
    """Colour-map inverse depth (near = bright): ``H x W`` -> ``H x W x 3`` uint8.

    Args:
        depth: ``H x W`` depth (any units; the colouring is scale-invariant).
        cmap: matplotlib colour map.
        disp_range: inverse-depth values mapped to the ends of the colour map; default the 1-99
            percentile range of this map (`disparity_range`). Fix it to compare maps, e.g. video frames.

    Example:
        >>> colorize_depth(np.array([[1.0, 10.0]])).shape
        (1, 2, 3)
    """
    vmin, vmax = disp_range or disparity_range(depth)
    disp = 1.0 / np.maximum(depth, 1e-6)
    normed = np.clip((disp - vmin) / max(vmax - vmin, 1e-9), 0, 1)
    return (colormaps[cmap](normed)[..., :3] * 255).astype(np.uint8)


def _format_depth(depth: float) -> str:
    """Three significant digits, never an exponent: ``123``, ``4.93``, ``0.0123``."""
    return np.format_float_positional(depth, precision=3, fractional=False, trim="-")


def _depth_ticks(disp_range: tuple[float, float], min_gap: float = 0.08) -> list[tuple[float, str]]:
    """Colour-bar ticks ``(inverse depth, label)``, near end first: both ends and round depths between.

    The bar is linear in inverse depth, so round depths crowd at the far end: a tick is kept only if it
    is at least ``min_gap`` (a fraction of the bar) from every other one, the ends first, then depths
    1, 5, 2 x 10^k (rounder first). The ends are labelled with their depth as ``≤near`` and ``≥far``:
    nearer or farther pixels are clipped to the end colours (see `colorize_depth`); a far end at
    inverse depth 0 is ``∞``.

    Example:
        >>> [label for _, label in _depth_ticks((0.01, 1.0))]
        ['≤1', '2', '5', '10', '≥100']
    """
    from matplotlib.ticker import MaxNLocator

    vmin, vmax = disp_range
    span = vmax - vmin
    d_near, d_far = 1.0 / vmax, (1.0 / vmin if vmin > 0 else math.inf)
    far_finite = d_far if math.isfinite(d_far) else 1.0 / max(vmin + 0.01 * span, 1e-12)
    decades = range(math.floor(math.log10(d_near)), math.ceil(math.log10(far_finite)) + 1)
    # Rounder values first, so that where two would crowd each other the rounder one stays.
    candidates = [m * 10.0**e for m in (1, 5, 2) for e in decades]
    inside = [d for d in candidates if d_near < d < d_far]
    if len(inside) < 2:  # a narrow range (say 4.9 to 5.2 m): evenly spaced round values instead
        locator = MaxNLocator(5, steps=[1, 2, 5, 10])
        inside = [float(d) for d in locator.tick_values(d_near, far_finite) if d_near < d < d_far]
    far = "≥" + _format_depth(d_far) if math.isfinite(d_far) else "∞"  # disparity 0: infinitely far
    ticks = [(float(vmax), "≤" + _format_depth(d_near)), (float(vmin), far)]
    for depth in inside:
        label = _format_depth(depth)
        # A value the labels already show (a nearly constant map: "≤12", "12", "≥12") says nothing new.
        shown = {text.lstrip("≤≥") for _, text in ticks}
        if label not in shown and all(abs(1.0 / depth - pos) >= min_gap * span for pos, _ in ticks):
            ticks.append((1.0 / depth, label))
    return sorted(ticks, reverse=True)


LEGEND_FONT_PT = 8
"""Font size of the colour bar's labels and the caption."""


def _legend_figure(colored: np.ndarray, disp_range: tuple[float, float], units: str, cmap: str = "magma"):
    """The matplotlib figure of `legend_image` (on an Agg canvas), with the colour bar as ``fig.axes[1]``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    H, W = colored.shape[:2]
    width_in = max(6.0, W / 100)
    image_in = width_in * 0.8 * H / W
    fig = Figure(figsize=(width_in, image_in + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    bottom = 0.45 / (image_in + 0.6)
    height = 1 - bottom - 0.08 / (image_in + 0.6)  # room above the bar for half its near-end label
    ax = fig.add_axes((0.01, bottom, 0.8, height))
    ax.imshow(colored)
    ax.axis("off")
    cax = fig.add_axes((0.84, bottom, 0.025, height))
    bar = fig.colorbar(ScalarMappable(Normalize(*disp_range), cmap), cax=cax)
    # Labels at least 1.6 text lines apart, whatever the bar's height in pixels.
    bar_px = height * (image_in + 0.6) * fig.dpi
    min_gap = 1.6 * LEGEND_FONT_PT / 72 * fig.dpi / bar_px
    positions, labels = zip(*_depth_ticks(disp_range, min_gap), strict=True)
    bar.set_ticks(list(positions), labels=list(labels))
    bar.minorticks_off()
    bar.set_label("depth" if units == NETWORK_UNITS else "depth [m]", fontsize=LEGEND_FONT_PT)
    cax.tick_params(labelsize=LEGEND_FONT_PT)
    fig.text(0.01, 0.08 / (image_in + 0.6), f"depth: {units}", fontsize=LEGEND_FONT_PT)
    return fig


def legend_image(colored: np.ndarray, disp_range: tuple[float, float], units: str, cmap: str = "magma"):
    """The colour-mapped depth with a colour bar in depth values and a caption saying the units.

    The bar labels its near and far ends (the depths clipped to the end colours) and round depths
    between, none closer than 1.6 lines of text (`_depth_ticks`).

    Args:
        colored: ``H x W x 3`` output of `colorize_depth` with the same ``disp_range``.
        disp_range: inverse-depth range of the colouring.
        units: `NETWORK_UNITS` or a metric label such as "metric (scaled by camera height 1.65 m)".

    Returns:
        An RGB uint8 image (larger than ``colored``).
    """
    fig = _legend_figure(colored, disp_range, units, cmap)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


# ---------------------------------------------------------------------------------------- metric scale


def fit_ground_height(
    depth: np.ndarray,
    K: np.ndarray,
    bottom_fraction: float = 0.3,
    max_tilt_deg: float = 30.0,
    inlier_tol: float = 0.05,
    iterations: int = 200,
    min_inlier_fraction: float = 0.3,
    max_points: int = 4000,
) -> float | None:
    """Camera height above the ground plane, in the units of ``depth``, or None when no plane is found.

    The bottom ``bottom_fraction`` of the rows is back-projected with ``K``; RANSAC picks the plane
    ``n . X = h`` (unit ``n`` within ``max_tilt_deg`` of the camera's down axis, ``h > 0``) that most points
    lie on within ``inlier_tol * h`` (relative, since the units are unknown), and a least-squares fit to its
    inliers gives ``h``. Deterministic (fixed random seed).

    Args:
        depth: ``H x W`` z-depth; non-finite or non-positive pixels are ignored.
        K: ``3 x 3`` intrinsics of ``depth``'s resolution.
        bottom_fraction: share of the image height, from the bottom, assumed to show mostly ground.
        min_inlier_fraction: below this share of plane points the fit is rejected (returns None).

    Example:
        >>> K = np.array([[50.0, 0, 31.5], [0, 50.0, 31.5], [0, 0, 1]])
        >>> v = np.arange(64.0)[:, None].repeat(64, 1)
        >>> depth = np.where(v > 40, 2.0 * 50.0 / np.maximum(v - 31.5, 1e-3), 100.0)  # ground 2 below
        >>> round(fit_ground_height(depth, K), 6)
        2.0
    """
    H, W = depth.shape
    top = min(int(round(H * (1.0 - bottom_fraction))), H - 1)
    d = torch.as_tensor(depth[top:], dtype=torch.float64)
    v, u = torch.meshgrid(
        torch.arange(top, H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij"
    )
    valid = torch.isfinite(d) & (d > 0)
    uv = torch.stack([u[valid], v[valid]], dim=-1)
    camera = Camera.from_K(torch.as_tensor(K, dtype=torch.float64), W, H)
    points = camera.backproject(uv, d[valid]).numpy()
    if len(points) < 3:
        return None
    points = points[np.linspace(0, len(points) - 1, min(len(points), max_points)).astype(int)]
    min_cos = math.cos(math.radians(max_tilt_deg))

    def plane_from(normal: np.ndarray, point: np.ndarray) -> tuple[np.ndarray, float]:
        # Orient so that h = n . X > 0: the plane lies on the positive side, as ground below the camera.
        h = float(normal @ point)
        return (normal, h) if h >= 0 else (-normal, -h)

    rng = np.random.default_rng(0)
    samples = points[rng.integers(0, len(points), size=(iterations, 3))]
    normals = np.cross(samples[:, 1] - samples[:, 0], samples[:, 2] - samples[:, 0])
    lengths = np.linalg.norm(normals, axis=1)
    best, best_count = None, 0
    for normal, length, sample in zip(normals, lengths, samples, strict=True):
        if length < 1e-12:
            continue
        n, h = plane_from(normal / length, sample[0])
        if h <= 0 or n[1] < min_cos:
            continue
        count = int((np.abs(points @ n - h) < inlier_tol * h).sum())
        if count > best_count:
            best, best_count = (n, h), count
    if best is None:
        return None
    n, h = best
    inliers = points[np.abs(points @ n - h) < inlier_tol * h]
    centroid = inliers.mean(axis=0)
    normal = np.linalg.svd(inliers - centroid, full_matrices=False)[2][-1]
    n, h = plane_from(normal, centroid)
    if h <= 0 or n[1] < min_cos:
        return None
    if (np.abs(points @ n - h) < inlier_tol * h).mean() < min_inlier_fraction:
        return None
    return h


def _check_scaling(scale: float | None, camera_height: float | None) -> None:
    if scale is not None and camera_height is not None:
        raise InputError("--scale/--camera-height", "give at most one way of making depth metric")
    for name, value in (("--scale", scale), ("--camera-height", camera_height)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise InputError(name, f"must be a positive number, got {value}")


def camera_height_label(camera_height: float) -> str:
    return f"metric (scaled by camera height {camera_height:g} m)"


def user_scale_label(scale: float) -> str:
    return f"metric (scaled by user factor {scale:g})"


# ------------------------------------------------------------------------------------------- predictor


def intrinsics_from_fov(width: int, height: int, fx: float | None = None, fov: float | None = None):
    """``3 x 3`` K with square pixels and the principal point at the image centre, from fx or FOV.

    Args:
        fx: focal length in pixels at this resolution.
        fov: horizontal field of view in degrees (used when ``fx`` is None).

    Example:
        >>> intrinsics_from_fov(100, 50, fov=90.0)[0].round(6).tolist()
        [50.0, 0.0, 49.5]
    """
    if fx is not None and fov is not None:
        raise InputError("--fx/--fov", "give the focal length or the field of view, not both")
    if fx is None:
        if fov is None or not 0 < fov < 180:
            raise InputError("--fov", f"horizontal field of view must be in (0, 180) degrees, got {fov}")
        fx = (width / 2) / math.tan(math.radians(fov) / 2)
    if not (math.isfinite(fx) and fx > 0):
        raise InputError("--fx", f"focal length must be a positive number of pixels, got {fx}")
    return np.array([[fx, 0, (width - 1) / 2], [0, fx, (height - 1) / 2], [0, 0, 1]], dtype=np.float64)


def _checkpoint_intrinsics(path: Path, cfg: Config) -> tuple[np.ndarray | None, str]:
    """Training-resolution K and where it came from: the checkpoint entry, else the training dataset."""
    # Memory-mapped: the tensors are not read, so looking for one small entry costs little.
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    entry = ckpt.get(INTRINSICS_KEY) if isinstance(ckpt, dict) else None
    if entry is not None:
        try:
            K = torch.as_tensor(np.asarray(entry["K"], dtype=np.float64).reshape(3, 3))
            cam = Camera.from_K(K, entry["width"], entry["height"])
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(path, f"malformed {INTRINSICS_KEY} entry ({e.__class__.__name__})") from None
        return cam.resize_to(
            cfg.data.width, cfg.data.height
        ).K().numpy(), f"checkpoint entry {INTRINSICS_KEY}"
    K = dataset_intrinsics(cfg.data)
    return K, ("training dataset " + str(cfg.data.root)) if K is not None else "none"


def _meta_generator(folder: Path) -> str | None:
    """The ``generator`` named in ``folder/meta.yaml``, or None (no file, unreadable, or not said)."""
    import yaml

    meta = folder / "meta.yaml"
    try:
        if not meta.is_file() or meta.stat().st_size > 1_000_000:  # a dataset's meta.yaml is kilobytes
            return None
        data = yaml.safe_load(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        logger.debug("%s: not read (%s)", meta, e)
        return None
    generator = data.get("generator") if isinstance(data, dict) else None
    return generator if isinstance(generator, str) else None


def training_data(checkpoint: Path, cfg: Config) -> dict:
    """``{"root", "generator"}`` of the dataset a checkpoint was trained on (`TRAINING_DATA_KEY`).

    The checkpoint's own entry if it has one. Otherwise ``cfg.data.root``, as given and, when relative,
    also from the training run's working folder (the checkpoint lies in ``<output_dir>/checkpoints/``,
    and a relative ``output_dir`` and ``data.root`` share that folder), with the ``generator`` of the
    first of these that has a ``meta.yaml``; ``generator`` is None when no copy is found or it says none.
    """
    entry = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True).get(TRAINING_DATA_KEY)
    if isinstance(entry, dict):
        return {"root": str(entry.get("root")), "generator": entry.get("generator")}
    root, out = Path(cfg.data.root), Path(cfg.output_dir)
    candidates = [root]
    run = checkpoint.resolve().parent.parent
    n = len(out.parts)
    if not root.is_absolute() and not out.is_absolute() and ".." not in out.parts and n:
        if run.parts[-n:] == out.parts:
            candidates.append(Path(*run.parts[:-n]) / root)
    for folder in candidates:
        generator = _meta_generator(folder)
        if generator is not None:
            return {"root": str(folder), "generator": generator}
    return {"root": str(root), "generator": None}


def _in_synthetic_world(folder: Path) -> bool:
    """Whether ``folder`` or a folder above it is a dataset rendered by `sa4depth.data.synthetic`."""
    return any(_meta_generator(f) == SYNTHETIC_GENERATOR for f in (folder, *folder.parents))


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
        from sa4depth.export import load_depth_net

        depth_net, cfg = load_depth_net(checkpoint)
        K, source = _checkpoint_intrinsics(Path(checkpoint), cfg)
        predictor = cls(depth_net, cfg.data.height, cfg.data.width, K, device)
        predictor.intrinsics_source = source
        predictor.training_data = training_data(Path(checkpoint), cfg)
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
        outside = [p for folder, p in folders.items() if not _in_synthetic_world(folder)]
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
        """``(factor, h_net)`` making ``depths`` metric: ``camera_height / h_net``, ``h_net`` the median of
        `fit_ground_height` over the images (each with its own intrinsics).

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


# ------------------------------------------------------------------------------------------- writing


def save_depth_outputs(
    out_dir: Path,
    name: str | Path,
    depth: np.ndarray,
    legend: str | None = None,
    disp_range: tuple[float, float] | None = None,
) -> dict[str, str]:
    """Write ``<name>_depth.npy`` (float32) and the colour PNG ``<name>_depth.png`` atomically.

    Args:
        legend: the units (see `legend_image`); when given the PNG carries a colour bar and caption.
        disp_range: colour range (see `colorize_depth`).

    Returns:
        The written paths, keys ``"npy"`` and ``"png"``.
    """
    npy, png = out_dir / f"{name}_depth.npy", out_dir / f"{name}_depth.png"
    buf = io.BytesIO()
    np.save(buf, depth.astype(np.float32))
    atomic_write_bytes(npy, buf.getvalue())
    disp_range = disp_range or disparity_range(depth)
    colored = colorize_depth(depth, disp_range=disp_range)
    write_image(png, legend_image(colored, disp_range, legend) if legend else colored)
    return {"npy": str(npy), "png": str(png)}


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
    """mkstemp creates 0600 files; give the output the permissions a plain ``open`` would (0666 - umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def label_panel(image: np.ndarray, text: str) -> np.ndarray:
    """A copy of an ``H x W x 3`` uint8 panel with ``text`` in its top-left corner (white on a dark
    outline, readable on any content), sized to the panel's height.

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


def _video_info(path: Path) -> tuple[int, float]:
    cap = open_video(path)
    count, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return max(count, 0), (fps if math.isfinite(fps) and fps > 0 else 10.0)


def _batched(iterable, size: int) -> Iterator[list]:
    batch = []
    for x in iterable:
        batch.append(x)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ------------------------------------------------------------------------------------------- main entry


def predict_paths(
    checkpoint: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    batch_size: int = 4,
    video_out: bool = False,
    scale: float | None = None,
    camera_height: float | None = None,
    legend: bool = False,
    fx: float | None = None,
    fov: float | None = None,
    progress: bool = True,
) -> int:
    """Predict depth for images, folders (recursive) and videos with the checkpoint's depth network.

    Per image ``<name>``: ``<name>_depth.png`` (magma on inverse depth, near = bright; with a colour bar
    in depth units if ``legend``) and ``<name>_depth.npy`` (float32 ``H x W`` at the image's own size).
    Per video ``<name>``: the same per frame in ``<name>/<frame>_depth.*`` and, if ``video_out``,
    ``<name>_side_by_side.mp4`` (input | depth). ``predictions.json`` lists every output with its name,
    checkpoint, units, scale factor and intrinsics.

    Nothing already in ``out_dir`` is lost: names that collide (with each other, with files there, or
    with another input's outputs from an earlier run) get distinct names (`plan_outputs`); only an
    input predicted again replaces its own earlier outputs, and the manifest keeps the entries of
    earlier runs. Everything is written into a hidden staging folder in ``out_dir`` and moved into
    place at the end, so a failed run leaves no partial maps (a killed run's staging folder is deleted
    by the next run). No file is written outside ``out_dir``.

    Inputs unlike the training data get a logged warning, each kind once per run: an aspect ratio far
    from the training resolution's (`ASPECT_WARN_FACTOR`), and images outside the synthetic world for a
    model trained only on it (`DepthPredictor.warn_if_synthetic`).

    Args:
        checkpoint: a training checkpoint (`sa4depth.train.run.load_checkpoint`) or a weights file
            (`sa4depth.export.load_depth_net`).
        inputs: image files, video files and folders.
        out_dir: output folder (created).
        batch_size: images per network call.
        video_out: also write side-by-side videos for video inputs.
        scale: multiply depth by this factor (metric if the user's factor is).
        camera_height: camera height above the ground in metres: metric depth by a ground-plane fit
            (see the module docstring); needs intrinsics (checkpoint, ``fx`` or ``fov``).
        legend: add a colour bar with depth values to the PNGs.
        fx, fov: intrinsics of the inputs (see `DepthPredictor.intrinsics`).
        progress: show a rich progress bar.

    Returns:
        The number of depth maps written (images plus video frames).

    Raises:
        InputError: missing/corrupt/unsupported inputs, an unreadable checkpoint or manifest, an output
            folder that is a file or not writable, bad options.
    """
    if batch_size < 1:
        raise InputError("--batch-size", f"must be at least 1, got {batch_size}")
    _check_scaling(scale, camera_height)
    out_dir = check_output_folder(out_dir)
    items = collect_inputs(inputs, exclude=out_dir)
    manifest_path = out_dir / MANIFEST
    earlier = _read_manifest(manifest_path)
    predictor = DepthPredictor.from_checkpoint(checkpoint)
    predictor.warn_if_synthetic(checkpoint, [it.path for it in items])
    if camera_height is not None and fx is None and fov is None:
        predictor.intrinsics(predictor.width, predictor.height)  # fail now, not after the first batch
    previous = plan_outputs(items, out_dir, earlier, video_out)
    run = {
        "checkpoint": str(checkpoint),
        "network_resolution": [predictor.height, predictor.width],
        "units": (
            user_scale_label(scale)
            if scale is not None
            else camera_height_label(camera_height)
            if camera_height is not None
            else NETWORK_UNITS
        ),
        "intrinsics_source": "fx/fov" if fx is not None or fov is not None else predictor.intrinsics_source,
    }
    images = [it for it in items if it.kind == "image"]
    videos = [it for it in items if it.kind == "video"]
    totals = [len(images)] + [_video_info(v.path)[0] for v in videos]
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    created = not out_dir.exists()
    entries: list[dict] = []
    written = 0
    try:
        with staging_folder(manifest_path) as stage, Progress(*columns, disable=not progress) as bar:
            task = bar.add_task("predicting depth", total=sum(totals) or None)
            options = dict(scale=scale, camera_height=camera_height, legend=legend, fx=fx, fov=fov)
            places = (stage, out_dir)
            for chunk in _batched(images, batch_size):
                written += _predict_images(predictor, chunk, places, entries, **options)
                bar.advance(task, len(chunk))
            for item in videos:
                advance = functools.partial(bar.advance, task)
                written += _predict_video(
                    predictor, item, places, batch_size, video_out, entries, advance, **options
                )
            _move_into_place(items, stage, out_dir, video_out)
            replaced = {id(e) for e in previous if e is not None}
            outputs = [e for e in earlier if id(e) not in replaced]
            outputs += [{**e, "checkpoint": run["checkpoint"]} for e in entries]
            atomic_write_text(manifest_path, json.dumps({**run, "outputs": outputs}, indent=2) + "\n")
    except BaseException:
        if created:
            with contextlib.suppress(OSError):  # not empty: something was moved in; keep it
                out_dir.rmdir()
        raise
    return written


def _move_into_place(items: list[InputItem], stage: Path, out_dir: Path, video_out: bool) -> None:
    """Rename every staged output to its place in ``out_dir`` (a video's frame folder as a whole)."""
    for item in items:
        for claim in output_claims(item, video_out):
            staged, final = stage / claim, out_dir / claim
            if not staged.exists():
                continue
            final.parent.mkdir(parents=True, exist_ok=True)
            if staged.is_dir():
                replace_folder(staged, final)  # the same video predicted before: its old frames go
            else:
                os.replace(staged, final)


def _scaling(predictor, item, images, depths, scale, camera_height, fx, fov) -> tuple[float, str, dict]:
    """``(factor, units label, manifest extras)`` for one image or one video's sample frames."""
    if scale is not None:
        return scale, user_scale_label(scale), {}
    if camera_height is None:
        return 1.0, NETWORK_UNITS, {}
    factor, h_net = predictor.height_scale(images, depths, camera_height, item.path, fx, fov)
    return factor, camera_height_label(camera_height), {"camera_height_network_units": h_net}


def _predict_images(predictor, chunk, places, entries, *, scale, camera_height, legend, fx, fov) -> int:
    """Predict a batch of images into the staging folder; append their manifest entries (final paths).

    Args:
        places: ``(staging folder, output folder)``.
    """
    stage, out_dir = places
    originals = [read_image(it.path) for it in chunk]
    depths = predictor.predict(originals, names=[it.path for it in chunk])
    for item, image, depth in zip(chunk, originals, depths, strict=True):
        factor, units, extra = _scaling(predictor, item, [image], [depth], scale, camera_height, fx, fov)
        save_depth_outputs(stage, item.stem, depth * factor, legend=units if legend else None)
        npy, png = output_claims(item, video_out=False)
        try:
            K = predictor.intrinsics(image.shape[1], image.shape[0], fx, fov).tolist()
        except InputError:
            K = None
        entry = {"input": str(item.path), "kind": "image", "name": str(item.stem)}
        entry.update(npy=str(out_dir / npy), png=str(out_dir / png), units=units, scale_factor=factor)
        entries.append({**entry, "K": K, **extra})
    return len(chunk)


def _predict_video(
    predictor,
    item,
    places,
    batch_size,
    video_out,
    entries,
    advance,
    *,
    scale,
    camera_height,
    legend,
    fx,
    fov,
) -> int:
    """Predict every frame of a video into the staging folder; append its manifest entry (final paths).

    Args:
        places: ``(staging folder, output folder)``.
    """
    stage, out_dir = places
    count, fps = _video_info(item.path)
    sample, sample_depths = [], []
    if camera_height is not None:
        # One factor for the whole video (median over sampled frames): a per-frame one would flicker.
        every = max(1, count // VIDEO_SCALE_FRAMES)
        sample = [f for _, f in video_frames(item.path, every=every, limit=VIDEO_SCALE_FRAMES)]
        names = [item.path] * len(sample)
        sample_depths = [d for b in _batched(sample, batch_size) for d in predictor.predict(b, names)]
    factor, units, extra = _scaling(predictor, item, sample, sample_depths, scale, camera_height, fx, fov)
    label = units if legend else None
    frame_dir, *side_by_side = output_claims(item, video_out)
    disp_range, n = None, 0
    with contextlib.ExitStack() as stack:
        writer = None
        for batch in _batched(video_frames(item.path), batch_size):
            frames = [f for _, f in batch]
            depths = predictor.predict(frames, names=[item.path] * len(frames))
            for (index, frame), depth in zip(batch, depths, strict=True):
                depth = depth * factor
                # One colour range per video, from its first frame, so the brightness does not flicker.
                disp_range = disp_range or disparity_range(depth)
                save_depth_outputs(
                    stage / frame_dir, f"{index:06d}", depth, legend=label, disp_range=disp_range
                )
                if video_out:
                    if writer is None:
                        size = (2 * frame.shape[1], frame.shape[0])
                        writer = stack.enter_context(AtomicVideoWriter(stage / side_by_side[0], fps, size))
                    depth_panel = colorize_depth(depth, disp_range=disp_range)
                    writer.write(
                        np.hstack(
                            [label_panel(frame, "input"), label_panel(depth_panel, "depth (bright = near)")]
                        )
                    )
                n += 1
            advance(len(batch))
    if count and n < count:
        logger.warning("%s: decoded %d of %d frames (truncated or damaged file?)", item.path, n, count)
    entry = {"input": str(item.path), "kind": "video", "name": str(item.stem), "frames": n}
    entry["frame_dir"] = str(out_dir / frame_dir)
    entry["side_by_side"] = str(out_dir / side_by_side[0]) if video_out else None
    entries.append({**entry, "units": units, "scale_factor": factor, **extra})
    return n
