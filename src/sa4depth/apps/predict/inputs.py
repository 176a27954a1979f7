"""Prediction inputs and output names: files and folders expanded, names that overwrite nothing, the manifest.

`collect_inputs` lists the images and videos, `plan_outputs` names their outputs, `read_manifest` reads
the ``predictions.json`` of earlier runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sa4depth.data.folder import IMAGE_SUFFIXES
from sa4depth.data.video import VIDEO_SUFFIXES
from sa4depth.errors import InputError

MANIFEST = "predictions.json"


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
    """Tell whether the output name ``claim`` is already taken on disk in ``out_dir``.

    It is taken when it exists (or is a dangling link), or when a folder on its way is a file or a link:
    writing through a link could leave the output folder.

    Args:
        out_dir: the output folder.
        claim: an output path relative to ``out_dir`` (see `output_claims`).

    Returns:
        True when the name cannot be used.
    """
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


def read_manifest(path: Path) -> list[dict]:
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
