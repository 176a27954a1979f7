"""``sa4depth prepare``: turns videos and folders of frames into the training layout (`sa4depth.data.layout`).

Frames are centre-cropped to the training aspect and resized with their intrinsics, frames where the camera
did not move are dropped, and the sequences are split into train and val by sequence, never by frame.

Rules, in order, for each input (a video file, or a folder of ``.png``/``.jpg`` frames in natural name order):

1. **Subsample in time** (optional): ``stride=N`` keeps every N-th frame; ``fps=F`` keeps the first frame of
   each ``1/F`` s period of a video (using the video's own frame rate).
2. **Crop and resize** to ``height x width``: the largest centred crop with the target aspect, then a resize;
   K follows through `sa4depth.data.transforms.resize_with_camera` (the one place intrinsics are rescaled).
3. **Drop static frames**: a frame is kept only if the mean absolute difference between its grey
   ``THUMBNAIL_WIDTH``-pixel-wide thumbnail and that of the previous *kept* frame, both with their mean
   brightness removed (so auto-exposure or flicker alone does not count as motion), is at least
   ``static_threshold`` (intensities in [0, 1]). The first frame is always kept. Slow motion therefore keeps
   every k-th frame once enough motion has accumulated; nothing assumes the camera moves forward.
4. **Split by sequence**: each input is one sequence and the last ``round(val_fraction * n)`` of them (at
   least one when there are two or more, in the order given) are validation sequences. A single input is cut
   into ``max(2, kept // chunk)`` contiguous chunks of equal length so that the last chunk can validate.

Intrinsics at the input's native resolution come from, in order: ``cam`` (a ``cam.txt`` with a 3x3 K),
``focal`` (pixels) or ``fov`` (horizontal, degrees), a ``cam.txt`` inside a frame folder, else a horizontal
field of view of `DEFAULT_FOV_DEG` degrees with a logged warning.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from sa4depth.data import layout
from sa4depth.data.folder import IMAGE_SUFFIXES
from sa4depth.data.intrinsics import intrinsics_from_fov
from sa4depth.data.transforms import resize_with_camera
from sa4depth.data.video import VIDEO_SUFFIXES, open_video
from sa4depth.errors import InputError

log = logging.getLogger(__name__)

#: Assumed horizontal field of view (degrees) when no intrinsics are given: a phone's main camera filming
#: video (about 26 mm equivalent, stabilised). Dashcams and action cameras are wider (90-140 degrees).
DEFAULT_FOV_DEG = 60.0
#: Default `static_threshold`: about 1.3 grey levels of 255 on the mean-free thumbnail; above the noise of a
#: still camera, far below a moving one (KITTI at 0.5 m/frame: 0.07-0.12; the built-in driving world at
#: 0.13 m/frame: about 0.013 at 96 x 320).
DEFAULT_STATIC_THRESHOLD = 0.005
#: Width in pixels of the grey thumbnail compared by the static-frame filter (height keeps the aspect).
THUMBNAIL_WIDTH = 64
#: Frames a sequence needs: a target and its previous and next frame.
MIN_FRAMES = 3
#: Output frame sizes allowed, per side: 8 is the least the networks' pyramids make sense of; 4096 (50 MB
#: per RGB frame) is far above any training resolution.
MIN_SIZE, MAX_SIZE = 8, 4096
FORMAT_VERSION = 1


def _natural_key(path: Path) -> list:
    """Sort ``frame2.png`` before ``frame10.png``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _sequence_name(path: Path) -> str:
    """A split-file-safe sequence name (no whitespace) from an input's file or folder name."""
    stem = path.stem if path.is_file() else path.name
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "sequence"
    return name


# ------------------------------------------------------------------------------------------------ inputs


@dataclass
class _Source:
    """One input: a video file, or a folder whose images form one sequence."""

    path: Path
    kind: str  # "video" or "folder"
    name: str
    frames: list[Path] = field(default_factory=list)  # folder frames in natural order
    cam: Path | None = None  # a cam.txt found beside a folder's frames


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key
    )


def collect_sources(inputs: Sequence[str | os.PathLike]) -> list[_Source]:
    """Expand the inputs into sources, one per sequence, with unique names.

    A folder holding images is one sequence (its ``cam.txt`` is used when present); a folder with no images
    but an ``images/`` or ``data/`` subfolder (our layout, KITTI raw) uses that subfolder; a folder holding
    only videos contributes each video.

    Raises:
        InputError: a missing path, an unsupported file type, or a folder without frames or videos.
    """
    sources: list[_Source] = []
    for item in map(Path, inputs):
        if item.is_file():
            if item.suffix.lower() not in VIDEO_SUFFIXES:
                raise InputError(
                    item,
                    f"unsupported input type {item.suffix!r} (expected a video {'/'.join(VIDEO_SUFFIXES)} "
                    "or a folder of frames)",
                )
            sources.append(_Source(item, "video", _sequence_name(item)))
        elif item.is_dir():
            frame_dir = item
            frames = _images_in(item)
            for sub in ("images", "data"):
                if not frames and (item / sub).is_dir():
                    frame_dir, frames = item / sub, _images_in(item / sub)
            if frames:
                cams = [d / "cam.txt" for d in (frame_dir, item) if (d / "cam.txt").is_file()]
                sources.append(
                    _Source(item, "folder", _sequence_name(item), frames, cams[0] if cams else None)
                )
                continue
            videos = (p for p in item.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            found = sorted(videos, key=_natural_key)
            if not found:
                raise InputError(item, f"empty folder: no {'/'.join(IMAGE_SUFFIXES)} frames and no videos")
            sources.extend(_Source(p, "video", _sequence_name(p)) for p in found)
        else:
            raise InputError(item, "input not found")
    seen: dict[str, int] = {}
    for source in sources:
        count = seen.get(source.name, 0)
        seen[source.name] = count + 1
        if count:
            source.name = f"{source.name}_{count + 1}"
    return sources


# ------------------------------------------------------------------------------------------------ frames


def center_crop_box(width: int, height: int, out_height: int, out_width: int) -> tuple[int, int, int, int]:
    """Find the largest centred crop of an image that has the aspect ratio of the output size.

    Args:
        width: image width in pixels.
        height: image height in pixels.
        out_height: output height in pixels (only the ratio to ``out_width`` matters).
        out_width: output width in pixels.

    Returns:
        The box ``(left, top, crop_width, crop_height)`` in pixels.

    Example:
        >>> center_crop_box(1280, 720, 192, 640)  # 16:9 video to 10:3: rows are cut
        (0, 168, 1280, 384)
    """
    target = out_width / out_height
    if width / height > target:
        crop_w = min(width, round(height * target))
        return (width - crop_w) // 2, 0, crop_w, height
    crop_h = min(height, round(width / target))
    return 0, (height - crop_h) // 2, width, crop_h


def photometric_thumbnail(image: np.ndarray) -> np.ndarray:
    """A small grey version of an ``H x W x 3`` uint8 image, in [0, 1] with its mean removed.

    Removing the mean makes the static-frame test ignore global brightness changes (auto-exposure, flicker).
    """
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    h = max(1, round(THUMBNAIL_WIDTH * grey.shape[0] / grey.shape[1]))
    small = cv2.resize(grey, (THUMBNAIL_WIDTH, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return small - small.mean()


def photometric_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two `photometric_thumbnail` arrays (0 for identical frames)."""
    return float(np.abs(a - b).mean())


def _temporal_keep(stride: int, fps: float | None, source_fps: float | None):
    """Predicate ``keep(index)`` for subsampling in time by ``stride`` or to ``fps`` frames per second."""
    if fps is None or source_fps is None or fps >= source_fps:
        return lambda i: i % stride == 0
    ratio = fps / source_fps
    # Keep the first frame of each output period: floor(i * ratio) steps up at i.
    return lambda i: i == 0 or math.floor(i * ratio) > math.floor((i - 1) * ratio)


def _video_fps(cap) -> float | None:
    fps = cap.get(cv2.CAP_PROP_FPS)
    return float(fps) if math.isfinite(fps) and fps > 0 else None


def _iter_video(path: Path, keep) -> Iterator[tuple[int, np.ndarray | None]]:
    """Read a video frame by frame, decoding only the frames that are kept.

    Args:
        path: the video file.
        keep: predicate on the frame index (see `_temporal_keep`); other frames are grabbed, not decoded.

    Yields:
        ``(index, frame)`` for every frame: an ``(H, W, 3)`` uint8 RGB array, or None when skipped.

    Raises:
        InputError: not even the first frame can be read.
    """
    cap = open_video(path)
    try:
        index = 0
        while True:
            if keep(index):
                ok, frame = cap.read()
            else:
                ok, frame = cap.grab(), None
            if not ok:
                if index == 0:
                    raise InputError(path, "cannot decode video: no frame could be read")
                return
            yield index, None if frame is None else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        cap.release()


# ------------------------------------------------------------------------------------------- intrinsics


@dataclass
class _Intrinsics:
    cam: Path | None
    focal: float | None
    fov: float | None


def _check_principal_point(K: np.ndarray, width: int, height: int, path, what: str) -> None:
    if not (0 <= K[0, 2] < width and 0 <= K[1, 2] < height):
        raise InputError(
            path,
            f"principal point ({K[0, 2]:g}, {K[1, 2]:g}) lies outside the {width}x{height} frames of {what}: "
            "K must be given at the input's resolution",
        )


def _native_K(source: _Source, width: int, height: int, opts: _Intrinsics) -> tuple[np.ndarray, str]:
    """K at the input's native ``width x height`` and a description of where it came from."""
    if opts.cam is not None:
        K = layout.read_cam(opts.cam)
        _check_principal_point(K, width, height, opts.cam, source.path)
        return K, f"cam {opts.cam}"
    if opts.focal is not None:
        return intrinsics_from_fov(width, height, fx=opts.focal), f"focal {opts.focal:g} px"
    if opts.fov is not None:
        return intrinsics_from_fov(width, height, fov=opts.fov), f"fov {opts.fov:g} deg"
    if source.cam is not None:
        K = layout.read_cam(source.cam)
        _check_principal_point(K, width, height, source.cam, source.path)
        return K, f"cam {source.cam}"
    K = intrinsics_from_fov(width, height, fov=DEFAULT_FOV_DEG)
    log.warning(
        "%s: no intrinsics given; assuming a %g deg horizontal field of view (fx = %.1f px at %dx%d). "
        "Depth scale and accuracy suffer if this is wrong: pass --cam, --focal or --fov",
        source.path,
        DEFAULT_FOV_DEG,
        K[0, 0],
        width,
        height,
    )
    return K, f"default fov {DEFAULT_FOV_DEG:g} deg (assumed)"


# ----------------------------------------------------------------------------------------- one source


def _prepare_source(source: _Source, staging: Path, size, opts: _Intrinsics, selection, advance) -> dict:
    """Read, subsample, crop/resize and filter one source; write kept frames as ``staging/NNNNNN.png``.

    Returns its statistics (and ``K`` at the output size, ``source_frames``: input indices of kept frames).
    """
    height, width = size
    stride, fps, threshold = selection
    source_fps = None
    if source.kind == "video":
        cap = open_video(source.path)
        source_fps, total = _video_fps(cap), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        if fps is not None and source_fps is None:
            raise InputError(source.path, "video frame rate unknown: use --stride instead of --fps")
        keep = _temporal_keep(stride, fps, source_fps)
        frames = ((i, source.path, image) for i, image in _iter_video(source.path, keep))
    else:
        if fps is not None:
            log.warning("%s: a folder of frames has no frame rate; --fps ignored", source.path)
        keep = _temporal_keep(stride, None, None)
        total = len(source.frames)
        frames = ((i, p, layout.read_image(p) if keep(i) else None) for i, p in enumerate(source.frames))
    stats = {
        "source": str(source.path.resolve()),
        "kind": source.kind,
        "name": source.name,
        "source_fps": source_fps,
        "frames": 0,
        "skipped_subsample": 0,
        "dropped_static": 0,
        "kept": 0,
    }
    native = crop = K = previous = None
    source_frames: list[int] = []
    for index, path, image in frames:
        stats["frames"] += 1
        advance()
        if image is None:
            stats["skipped_subsample"] += 1
            continue
        if native is None:
            native = image.shape[:2]
            K_native, stats["intrinsics"] = _native_K(source, native[1], native[0], opts)
            crop = center_crop_box(native[1], native[0], height, width)
            if min(crop[2:]) < MIN_SIZE:
                raise InputError(
                    path,
                    f"frames are {native[1]}x{native[0]}: the {width}:{height} crop of them is "
                    f"{crop[2]}x{crop[3]}, smaller than {MIN_SIZE}x{MIN_SIZE} pixels",
                )
            stats["native_size"] = [native[1], native[0]]
            stats["crop"] = list(crop)
            stats["K_native"] = K_native.tolist()
            if crop[2] < width or crop[3] < height:
                log.warning(
                    "%s: frames are upscaled (crop %dx%d -> %dx%d); consider a smaller --height/--width",
                    source.path,
                    crop[2],
                    crop[3],
                    width,
                    height,
                )
        elif image.shape[:2] != native:
            where = path if source.kind == "folder" else f"{path} (frame {index})"
            raise InputError(
                where,
                f"frame size {image.shape[1]}x{image.shape[0]} differs from the first frame's "
                f"{native[1]}x{native[0]}: one sequence needs one size",
            )
        resized, K = resize_with_camera(image, K_native, height, width, crop=crop)
        thumb = photometric_thumbnail(resized)
        if previous is not None and photometric_difference(thumb, previous) < threshold:
            stats["dropped_static"] += 1
            continue
        previous = thumb
        layout.write_image(staging / f"{layout.frame_name(len(source_frames))}.png", resized)
        source_frames.append(index)
    stats["kept"] = len(source_frames)
    if stats["kept"] < MIN_FRAMES:
        raise InputError(
            source.path,
            f"only {stats['kept']} frame(s) left of {stats['frames']} after subsampling "
            f"({stats['skipped_subsample']}) and dropping static frames ({stats['dropped_static']}); "
            f"a sequence needs at least {MIN_FRAMES}",
        )
    if source.kind == "video" and total > 0 and stats["frames"] < total:
        log.warning(
            "%s: decoding stopped at frame %d of %d (truncated video?)", source.path, stats["frames"], total
        )
    stats["K"] = K.tolist()
    stats["source_frames"] = source_frames
    return stats


# --------------------------------------------------------------------------------------------- dataset


def _chunk_bounds(n: int, chunk: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` chunks of about ``chunk`` frames (at least 2, each >= `MIN_FRAMES`)."""
    if chunk <= 0 or n < 2 * MIN_FRAMES:
        return [(0, n)]
    count = max(2, n // chunk)
    edges = np.linspace(0, n, count + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def _check_options(height, width, cam, focal, fov, stride, fps, static_threshold, val_fraction, chunk):
    for label, value in (("--height", height), ("--width", width)):
        if int(value) != value or not MIN_SIZE <= value <= MAX_SIZE:
            raise InputError(label, f"must be an integer in [{MIN_SIZE}, {MAX_SIZE}], got {value}")
    if sum(x is not None for x in (cam, focal, fov)) > 1:
        raise InputError("--cam/--focal/--fov", "give at most one source of intrinsics")
    if focal is not None and not (math.isfinite(focal) and focal > 0):
        raise InputError("--focal", f"focal length must be a positive number of pixels, got {focal}")
    if fov is not None and not 0 < fov < 180:
        raise InputError("--fov", f"horizontal field of view must be in (0, 180) degrees, got {fov}")
    if int(stride) != stride or stride < 1:
        raise InputError("--stride", f"must be an integer >= 1, got {stride}")
    if fps is not None and stride != 1:
        raise InputError("--stride/--fps", "give --stride or --fps, not both")
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise InputError("--fps", f"must be a positive frame rate, got {fps}")
    if not (math.isfinite(static_threshold) and static_threshold >= 0):
        raise InputError("--static-threshold", f"must be >= 0, got {static_threshold}")
    if not 0 < val_fraction < 1:
        raise InputError("--val-fraction", f"must be in (0, 1), got {val_fraction}")
    if int(chunk) != chunk or (0 < chunk < MIN_FRAMES) or chunk < 0:
        raise InputError("--chunk", f"must be 0 (no chunking) or an integer >= {MIN_FRAMES}, got {chunk}")


def _check_out(out: Path, inputs: Sequence[str | os.PathLike], overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(out, "output exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise InputError(out, "output folder exists and is not empty (pass --overwrite to replace it)")
        resolved = out.resolve()
        for item in map(Path, inputs):
            if item.exists() and item.resolve().is_relative_to(resolved):
                raise InputError(
                    item, f"input lies inside the output folder {out}, which --overwrite deletes"
                )


def prepare_dataset(
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    height: int = 192,
    width: int = 640,
    cam: str | os.PathLike | None = None,
    focal: float | None = None,
    fov: float | None = None,
    stride: int = 1,
    fps: float | None = None,
    static_threshold: float = DEFAULT_STATIC_THRESHOLD,
    val_fraction: float = 0.2,
    chunk: int = 200,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Turn videos and/or folders of frames into a training dataset at ``out`` (see the module docstring).

    Everything is written into a temporary folder beside ``out`` that is renamed at the end, so a failure or
    a kill leaves no half-written dataset (and the next run deletes a killed run's temporary folder).

    Args:
        inputs: video files, folders of frames, or folders of videos.
        out: dataset root to create (must not exist or be empty, unless ``overwrite``).
        height: output frame height in pixels (the training height, or larger).
        width: output frame width in pixels (the training width, or larger).
        cam: a ``cam.txt`` (3x3 K) at the inputs' native resolution, for every input.
        focal: focal length in pixels at the inputs' native resolution (square pixels, principal point at
            the image centre).
        fov: horizontal field of view of the native frames, in degrees.
        stride: keep every ``stride``-th frame.
        fps: subsample videos to this frame rate (exclusive with ``stride``).
        static_threshold: minimum photometric change to the previous kept frame (see `photometric_thumbnail`).
        val_fraction: fraction of sequences for validation (at least one when there are two or more).
        chunk: frames per chunk when a single input is cut into sequences (0 = do not cut).
        overwrite: replace an existing ``out``.
        progress: show a rich progress bar.

    Returns:
        The summary also saved as ``out/meta.yaml``: settings, per-input ``frames``, ``skipped_subsample``,
        ``dropped_static``, ``kept``, intrinsics and K, and per-sequence ``name``, ``split``, ``frames``.

    Raises:
        InputError: a bad option, a missing, undecodable or empty input, mixed frame sizes in a sequence, a
            sequence with fewer than 3 frames left, a malformed ``cam.txt``, or a non-empty ``out``.
    """
    _check_options(height, width, cam, focal, fov, stride, fps, static_threshold, val_fraction, chunk)
    out = Path(out)
    _check_out(out, inputs, overwrite)
    sources = collect_sources(inputs)
    opts = _Intrinsics(Path(cam) if cam is not None else None, focal, fov)
    if opts.cam is not None:
        layout.read_cam(opts.cam)  # a malformed file fails before any decoding
    # Locked while in use, so the next run can tell a killed run's leftover from a live one and delete it.
    with layout.staging_folder(out) as tmp:
        summary = _build(
            tmp,
            sources,
            (int(height), int(width)),
            opts,
            (int(stride), fps, float(static_threshold)),
            val_fraction,
            int(chunk),
            progress,
        )
        summary["settings"].update(cam=None if cam is None else str(cam), focal=focal, fov=fov)
        import yaml

        layout.atomic_write_text(
            tmp / "meta.yaml", yaml.safe_dump(summary, sort_keys=False, default_flow_style=None)
        )
        layout.replace_folder(tmp, out)
    summary["out"] = str(out)
    log.info("prepared %d sequences in %s", len(summary["sequences"]), out)
    return summary


def _total_frames(source: _Source) -> int:
    if source.kind == "folder":
        return len(source.frames)
    cap = open_video(source.path)
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    return max(count, 0)


def _build(
    tmp: Path, sources, size, opts, selection, val_fraction: float, chunk: int, progress: bool
) -> dict:
    """Stage every source's kept frames, then cut them into sequences, write cam.txt and the splits."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    staging = tmp / ".staging"
    columns = (
        TextColumn("preparing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("frames"),
        TimeRemainingColumn(),
    )
    inputs = []
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("prepare", total=sum(_total_frames(s) for s in sources) or None)
        for source in sources:
            inputs.append(
                _prepare_source(
                    source, staging / source.name, size, opts, selection, lambda: bar.advance(task)
                )
            )
    sequences = []
    for stats in inputs:
        bounds = _chunk_bounds(stats["kept"], chunk) if len(inputs) == 1 else [(0, stats["kept"])]
        for k, (start, stop) in enumerate(bounds):
            name = stats["name"] if len(bounds) == 1 else f"{stats['name']}_{k:03d}"
            seq_dir = layout.sequence_dir(tmp, name)
            (seq_dir / "images").mkdir(parents=True)
            for j, i in enumerate(range(start, stop)):
                src = staging / stats["name"] / f"{layout.frame_name(i)}.png"
                os.replace(src, seq_dir / "images" / f"{layout.frame_name(j)}.png")
            layout.write_cam(seq_dir / "cam.txt", np.asarray(stats["K"]))
            sequences.append(
                {
                    "name": name,
                    "source": stats["source"],
                    "frames": stop - start,
                    "source_frames": stats["source_frames"][start:stop],
                }
            )
    shutil.rmtree(staging)
    n = len(sequences)
    n_val = min(n - 1, max(1, round(val_fraction * n))) if n >= 2 else 0
    for i, seq in enumerate(sequences):
        seq["split"] = "val" if i >= n - n_val else "train"
    targets = {
        split: [(s["name"], i) for s in sequences if s["split"] == split for i in range(1, s["frames"] - 1)]
        for split in ("train", "val")
    }
    val_is_train = n_val == 0
    if val_is_train:
        log.warning(
            "only one sequence (%s): validation reuses its training frames; give two or more inputs, "
            "or a longer one, for a held-out validation sequence",
            sequences[0]["name"],
        )
        targets["val"] = targets["train"]
    targets["test"] = targets["val"]  # no ground truth in a video: test repeats val so tools find the file
    for split, items in targets.items():
        layout.write_split(tmp / "splits" / f"{split}.txt", items)
    height, width = size
    stride, fps, threshold = selection
    return {
        "generator": "sa4depth.data.prepare",
        "format_version": FORMAT_VERSION,
        "height": height,
        "width": width,
        "settings": {
            "stride": stride,
            "fps": fps,
            "static_threshold": threshold,
            "thumbnail_width": THUMBNAIL_WIDTH,
            "val_fraction": val_fraction,
            "chunk": chunk,
        },
        "inputs": inputs,
        "sequences": sequences,
        "splits": {split: len(items) for split, items in targets.items()},
        "val_is_train": val_is_train,
    }


def format_summary(summary: dict) -> str:
    """A short plain-text table of a `prepare_dataset` summary: frames read, skipped, dropped, kept."""
    header = ("input", "frames", "subsampled", "static", "kept")
    rows = [
        (Path(s["source"]).name, s["frames"], s["skipped_subsample"], s["dropped_static"], s["kept"])
        for s in summary["inputs"]
    ]
    name_width = max(len(header[0]), *(len(r[0]) for r in rows))
    lines = [f"{header[0]:<{name_width}}  {'  '.join(f'{h:>10}' for h in header[1:])}  intrinsics"]
    for row, s in zip(rows, summary["inputs"], strict=True):
        lines.append(f"{row[0]:<{name_width}}  {'  '.join(f'{v:>10}' for v in row[1:])}  {s['intrinsics']}")
    for split in ("train", "val"):
        names = [f"{q['name']} ({q['frames']})" for q in summary["sequences"] if q["split"] == split]
        if names:
            lines.append(f"{split}: {summary['splits'][split]} target frames from {', '.join(names)}")
    if summary["val_is_train"]:
        lines.append("val: no held-out sequence; validation reuses the training frames")
    return "\n".join(lines)
