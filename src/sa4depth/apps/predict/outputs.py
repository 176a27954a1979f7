"""Prediction of files: images, folders and videos to depth maps, colour PNGs, side-by-side videos, manifest.

`predict_paths` is ``sa4depth predict``; every output is staged and moved into place at the end.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from sa4depth.apps.predict.colormap import colorize_depth, disparity_range, legend_image
from sa4depth.apps.predict.inputs import (
    MANIFEST,
    InputItem,
    collect_inputs,
    output_claims,
    plan_outputs,
    read_manifest,
)
from sa4depth.apps.predict.metric_scale import (
    NETWORK_UNITS,
    camera_height_label,
    check_scaling,
    user_scale_label,
)
from sa4depth.apps.predict.predictor import DepthPredictor
from sa4depth.apps.predict.video import AtomicVideoWriter, label_panel
from sa4depth.data.layout import (
    atomic_write_bytes,
    atomic_write_text,
    check_output_folder,
    read_image,
    replace_folder,
    staging_folder,
    write_image,
)
from sa4depth.data.video import video_frames, video_info
from sa4depth.errors import InputError

logger = logging.getLogger(__name__)

VIDEO_SCALE_FRAMES = 16


def save_depth_outputs(
    out_dir: Path,
    name: str | Path,
    depth: np.ndarray,
    legend: str | None = None,
    disp_range: tuple[float, float] | None = None,
) -> dict[str, str]:
    """Write ``<name>_depth.npy`` (float32) and the colour PNG ``<name>_depth.png`` atomically.

    Args:
        out_dir: folder to write into (must exist).
        name: output name relative to ``out_dir``, without the ``_depth`` suffix.
        depth: ``(H, W)`` depth map, in the units the caller scaled it to.
        legend: the units (see `legend_image`); when given the PNG carries a colour bar and caption.
        disp_range: colour range (see `colorize_depth`); default the 1-99 percentile range of ``depth``.

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
            (`sa4depth.apps.export.load_depth_net`).
        inputs: image files, video files and folders.
        out_dir: output folder (created).
        batch_size: images per network call.
        video_out: also write side-by-side videos for video inputs.
        scale: multiply depth by this factor (metric if the user's factor is).
        camera_height: camera height above the ground in metres: metric depth by a ground-plane fit
            (see the module docstring); needs intrinsics (checkpoint, ``fx`` or ``fov``).
        legend: add a colour bar with depth values to the PNGs.
        fx: focal length of the inputs in pixels at their own resolution (see
            `DepthPredictor.intrinsics`); overrides the checkpoint's camera.
        fov: horizontal field of view of the inputs in degrees, used instead of ``fx`` (give one of
            them at most).
        progress: show a rich progress bar.

    Returns:
        The number of depth maps written (images plus video frames).

    Raises:
        InputError: missing/corrupt/unsupported inputs, an unreadable checkpoint or manifest, an output
            folder that is a file or not writable, bad options.
    """
    if batch_size < 1:
        raise InputError("--batch-size", f"must be at least 1, got {batch_size}")
    check_scaling(scale, camera_height)
    out_dir = check_output_folder(out_dir)
    items = collect_inputs(inputs, exclude=out_dir)
    manifest_path = out_dir / MANIFEST
    earlier = read_manifest(manifest_path)
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
    totals = [len(images)] + [video_info(v.path)[0] for v in videos]
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
        predictor: the `DepthPredictor` of the checkpoint.
        chunk: the image `InputItem`s of this batch.
        places: ``(staging folder, output folder)``.
        entries: the run's manifest entries; one per image is appended.
        scale: user depth factor, or None (see `predict_paths`).
        camera_height: camera height in metres for ground-plane metric scaling, or None.
        legend: give the PNGs a colour bar and units caption.
        fx: focal length of the inputs in pixels, or None.
        fov: horizontal field of view of the inputs in degrees, or None.

    Returns:
        The number of depth maps written (``len(chunk)``).
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

    With ``camera_height`` one factor is fitted for the whole video, the median over up to
    `VIDEO_SCALE_FRAMES` sampled frames, and the colour range is fixed by the first frame, so that
    neither flickers.

    Args:
        predictor: the `DepthPredictor` of the checkpoint.
        item: the video's `InputItem`.
        places: ``(staging folder, output folder)``.
        batch_size: frames per network call.
        video_out: also write the side-by-side (input | depth) video.
        entries: the run's manifest entries; the video's one is appended.
        advance: called with the number of frames of each finished batch (the progress bar).
        scale: user depth factor, or None (see `predict_paths`).
        camera_height: camera height in metres for ground-plane metric scaling, or None.
        legend: give the frame PNGs a colour bar and units caption.
        fx: focal length of the frames in pixels, or None.
        fov: horizontal field of view of the frames in degrees, or None.

    Returns:
        The number of frames decoded and written.
    """
    stage, out_dir = places
    count, fps = video_info(item.path)
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
