"""The on-disk dataset layout shared by the synthetic world, `sa4depth prepare` and the folder loader.

It mirrors KITTI odometry: one folder per sequence, camera-to-world ``poses.txt``, a ``cam.txt``::

    ROOT/
      sequences/<name>/images/000000.png ...   RGB frames, all the same size
      sequences/<name>/depth/000000.npz ...    optional z-depth in metres (key "depth", 0 = unknown)
      sequences/<name>/poses.txt               optional, one 3x4 row-major T_world_cam per frame
      sequences/<name>/cam.txt                 3x3 intrinsics K at the frames' resolution
      splits/{train,val,test}.txt              lines "<name> <frame index>" (target frames)
      meta.yaml                                optional: how the data was made

Datasets (and ``predict``'s outputs) are built in a locked hidden staging folder and moved into place
(`staging_folder`, `replace_folder`); the next run deletes the staging folders of killed runs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import logging
import os
import re
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sa4depth.errors import InputError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
#: Largest deviation of a pose's rotation block from orthonormal (``max |R^T R - I|``) that is accepted:
#: poses printed with 4 decimals are off by about 1e-4; a scaled or sheared matrix by far more.
RIGID_TOLERANCE = 1e-2


def _write_problem(error: OSError) -> str:
    """The one-line reason a write failed, in the user's terms."""
    if error.errno == errno.EISDIR:
        return "is a folder; expected a file name here"
    if error.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a folder"
    return f"cannot write ({error.strerror or error.__class__.__name__})"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename: a kill never leaves half a file.

    Raises:
        InputError: naming ``path``, when it cannot be written (read-only folder, a folder in its place,
            a full disk).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise InputError(path, _write_problem(e)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are meant to be shared like any file
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise InputError(path, _write_problem(e)) from None
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` as UTF-8 atomically (see `atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode())


def check_output_file(path: str | os.PathLike) -> Path:
    """Refuse, before any work, an output file that is an existing folder or lies in an unwritable one.

    Nothing is created: the nearest existing folder above ``path`` must be a writable folder.

    Raises:
        InputError: naming ``path`` and the problem.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "is a folder; expected a file name here")
    _check_writable_parent(path, path.parent)
    return path


def check_output_folder(path: str | os.PathLike) -> Path:
    """Refuse, before any work, an output folder that is a file or cannot be created or written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(path, "is a file; expected a folder here")
    _check_writable_parent(path, path)
    return path


def _check_writable_parent(path: Path, folder: Path) -> None:
    """Raise `InputError` naming ``path`` unless ``folder`` can be created and written in.

    That needs the nearest existing folder at or above ``folder`` to be a writable folder.
    """
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(path, f"{existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(path, f"folder {existing} is not writable")


def _is_abandoned(folder: Path) -> bool:
    """True when no process holds `staging_folder`'s lock on ``folder``.

    Locks end with their process, even on SIGKILL, so a folder without one was left by a run that died.
    """
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # another user's folder, say: not ours to judge
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError: a live run holds it
        return False
    finally:
        os.close(fd)  # also releases the lock just taken
    return True


def remove_abandoned(target: str | os.PathLike) -> list[Path]:
    """Delete the hidden ``.NAME.tmp-*`` and ``.NAME.old-*`` folders that killed runs left beside ``target``.

    A folder still locked by a running process is kept. An ``.old-*`` folder is a previous ``target``
    moved aside by an ``overwrite``; if ``target`` itself is missing (the run died between the two
    renames) it is the only copy, so it is kept and reported instead.

    Returns:
        The folders removed (each also logged as a warning, so the user learns where space went).

    Raises:
        InputError: ``target`` is missing while an abandoned ``.old-*`` copy of it exists.
    """
    target = Path(target)
    name = glob.escape(target.name)
    removed = []
    for kind in ("tmp", "old"):
        for folder in sorted(target.parent.glob(f".{name}.{kind}-*")):
            if not folder.is_dir() or not _is_abandoned(folder):
                continue
            if kind == "old" and not target.exists():
                raise InputError(
                    folder,
                    f"holds what was {target} before an interrupted overwrite; "
                    f"move it back to {target} or delete it",
                )
            shutil.rmtree(folder, ignore_errors=True)
            log.warning("removed %s, left behind by an interrupted run", folder)
            removed.append(folder)
    return removed


@contextlib.contextmanager
def staging_folder(target: str | os.PathLike) -> Iterator[Path]:
    """A new hidden folder ``.NAME.tmp-<random>`` beside ``target`` to build it in, locked while in use.

    Leftovers of killed runs are removed first (`remove_abandoned`). The folder is deleted when the
    block ends, whether it raises or not: to keep the result, move it (or what is in it) into place
    inside the block (`replace_folder`).

    Raises:
        InputError: ``target`` is the current folder or holds it (it could not be replaced), or its
            folder cannot be written.
    """
    target = Path(os.path.abspath(target))  # "." has no name to put beside it; ".." none to rename
    cwd = Path.cwd()
    if not target.name or cwd == target or target in cwd.parents:
        raise InputError(
            target,
            "is the current folder or holds it, so it cannot be replaced: give another output folder "
            "or run from elsewhere",
        )
    _check_writable_parent(target, target.parent)
    remove_abandoned(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Not tempfile.mkdtemp: that makes the folder private (0700), and it becomes the output itself.
        folder = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
        folder.mkdir()
    except OSError as e:
        raise InputError(target, _write_problem(e)) from None
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when this process ends, however it ends
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # gone already if it was moved into place
        os.close(fd)


def replace_folder(staged: Path, target: str | os.PathLike) -> None:
    """Move the finished ``staged`` folder to ``target``, replacing what is there (renames, no copies).

    An existing ``target`` is first renamed to ``.NAME.old-<random>`` (locked, like a staging folder)
    and deleted after the swap, so a kill at any point leaves the old or the new folder in place, never
    a mix, and `remove_abandoned` deletes what is left over.
    """
    target = Path(os.path.abspath(target))
    if not target.exists():
        os.replace(staged, target)
        return
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
    fd = os.open(target, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the lock stays with the folder through the rename
        os.replace(target, old)
        try:
            os.replace(staged, target)
        except BaseException:
            os.replace(old, target)  # put the previous one back rather than leave no target
            raise
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()
    finally:
        os.close(fd)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as upright RGB ``H x W x 3`` uint8: the one image reader of every command.

    Grey, palette and alpha images become RGB; 16-bit (and 32-bit integer) grey is scaled from
    [0, 65535] and floating-point grey from [0, 1] (Pillow's RGB conversion clips both, so a 16-bit
    frame read as all white); an EXIF orientation (phone photos) is applied, as every viewer does.

    Raises:
        InputError: a missing or undecodable file, or grey values outside the range of their type.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "image file not found")
    try:
        with Image.open(path) as im:
            im.load()
            try:
                upright = ImageOps.exif_transpose(im)  # a copy, which outlives the file
            except Exception as e:  # Pillow's EXIF parser raises many types for a damaged block
                raise InputError(path, f"unreadable EXIF orientation ({e.__class__.__name__})") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
        raise InputError(path, f"cannot decode image ({e.__class__.__name__}: {e})") from None
    if upright.mode not in ("I", "F") and not upright.mode.startswith("I;16"):
        return np.asarray(upright.convert("RGB"))
    grey = np.asarray(upright).astype(np.float64)
    top = 1.0 if upright.mode == "F" else 65535.0
    if grey.size and not (np.isfinite(grey).all() and grey.min() >= 0 and grey.max() <= top):
        raise InputError(
            path,
            f"{upright.mode} grey image with values in [{grey.min():g}, {grey.max():g}], "
            f"outside the [0, {top:g}] it is read in",
        )
    return np.repeat(np.round(grey * (255.0 / top)).astype(np.uint8)[..., None], 3, axis=2)


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an ``H x W x 3`` uint8 image as PNG, atomically."""
    import io

    buf = io.BytesIO()
    # Level 1: 4x faster than the default 6 for ~15% larger files; dataset writing is encode-bound.
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    atomic_write_bytes(path, buf.getvalue())


def read_text(path: Path) -> str:
    """Read a UTF-8 text file; binary garbage raises `InputError` instead of `UnicodeDecodeError`."""
    try:
        return path.read_text()
    except UnicodeDecodeError as e:
        raise InputError(path, f"not a text file (invalid UTF-8 at byte {e.start})") from None


def number_lines(path: str | os.PathLike) -> Iterator[tuple[int, list[float]]]:
    """The non-blank lines of a text file of whitespace-separated numbers: ``(line number, values)``.

    Raises:
        InputError: the file is missing or unreadable, or a line holds something that is not a number.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    for line_no, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield line_no, [float(x) for x in line.split()]
        except ValueError:
            raise InputError(path, f"line {line_no}: not numbers: {line.strip()[:60]!r}") from None


def read_matrix_rows(path: str | os.PathLike, cols: int) -> np.ndarray:
    """Read a text file of whitespace-separated numbers, ``cols`` per line, as ``N x cols`` float64."""
    rows = []
    for line_no, values in number_lines(path):
        if len(values) != cols:
            raise InputError(path, f"line {line_no}: expected {cols} numbers, found {len(values)}")
        rows.append(values)
    if not rows:
        raise InputError(path, "file is empty")
    arr = np.asarray(rows, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise InputError(path, "contains NaN or Inf")
    return arr


def read_poses(path: str | os.PathLike) -> np.ndarray:
    """Read KITTI-style camera-to-world poses as ``N x 4 x 4`` (``T_world_cam``).

    Raises:
        InputError: naming the line of the first pose that is not rigid (its 3x3 block is not a
            rotation within `RIGID_TOLERANCE`): such a matrix, even finite, may be singular.
    """
    rows = read_matrix_rows(path, 12).reshape(-1, 3, 4)
    R = rows[:, :, :3]
    error = np.abs(np.swapaxes(R, 1, 2) @ R - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(R)
    bad = np.flatnonzero((error > RIGID_TOLERANCE) | (det <= 0))
    if bad.size:
        i = int(bad[0])
        raise InputError(
            path,
            f"line {_content_line_numbers(Path(path))[i]}: not a rigid camera pose (the first 3x3 block "
            f"must be a rotation: max |R^T R - I| = {error[i]:.2g}, det {det[i]:.3g})",
        )
    T = np.tile(np.eye(4), (len(rows), 1, 1))
    T[:, :3] = rows
    return T


def _content_line_numbers(path: Path) -> list[int]:
    """1-based numbers of the non-blank lines of a text file (the rows `read_matrix_rows` returns)."""
    return [n for n, line in enumerate(read_text(path).splitlines(), start=1) if line.strip()]


def write_poses(path: str | os.PathLike, T_world_cam: np.ndarray) -> None:
    """Write ``(N, 4, 4)`` ``T_world_cam`` as KITTI pose lines (top 3 x 4, row-major; see `read_poses`)."""
    lines = [" ".join(f"{v:.9e}" for v in T[:3].reshape(-1)) for T in T_world_cam]
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_cam(path: str | os.PathLike) -> np.ndarray:
    """Read a 3x3 intrinsic matrix (9 numbers, any line breaks) with a positive focal length."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "calibration file not found")
    try:
        values = np.array([float(x) for x in read_text(path).split()], dtype=np.float64)
    except ValueError:
        raise InputError(path, "calibration is not 9 numbers") from None
    if values.size != 9 or not np.isfinite(values).all():
        raise InputError(path, f"calibration must be 9 finite numbers (a 3x3 K), found {values.size}")
    K = values.reshape(3, 3)
    if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], [0, 0, 1]):
        raise InputError(path, "calibration is not an intrinsic matrix (fx, fy > 0, last row 0 0 1)")
    return K


def write_cam(path: str | os.PathLike, K: np.ndarray) -> None:
    """Write a ``(3, 3)`` intrinsic matrix as three lines of numbers (read by `read_cam`)."""
    atomic_write_text(path, "\n".join(" ".join(f"{v:.9g}" for v in row) for row in K) + "\n")


def read_depth(path: str | os.PathLike) -> np.ndarray:
    """Read a z-depth map (``.npz`` key "depth" or ``.npy``) as ``H x W`` float32 metres, 0 = unknown."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "depth file not found")
    try:
        if path.suffix == ".npz":
            with np.load(path) as z:
                depth = z["depth"]
        else:
            depth = np.load(path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(path, f"cannot read depth ({e.__class__.__name__})") from None
    if depth.ndim != 2 or depth.size == 0:
        raise InputError(path, f"depth must be a non-empty H x W map, found shape {depth.shape}")
    if not (np.issubdtype(depth.dtype, np.integer) or np.issubdtype(depth.dtype, np.floating)):
        raise InputError(path, f"depth must be numeric, found dtype {depth.dtype}")
    return np.nan_to_num(depth.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def write_depth(path: str | os.PathLike, depth: np.ndarray) -> None:
    """Write an ``(H, W)`` z-depth map in metres (0 = unknown) as compressed ``.npz`` (see `read_depth`)."""
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, depth=depth.astype(np.float32))
    atomic_write_bytes(path, buf.getvalue())


def read_split(path: str | os.PathLike) -> list[tuple[str, int]]:
    """Read ``<sequence> <frame index>`` lines; a malformed line raises `InputError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "split file not found")
    items = []
    for line_no, line in enumerate(read_text(path).splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not re.fullmatch(r"-?[0-9]+", parts[1]):
            raise InputError(path, f"line {line_no}: expected '<sequence> <frame index>', got {line!r}")
        items.append((parts[0], int(parts[1])))
    return items


def write_split(path: str | os.PathLike, items: list[tuple[str, int]]) -> None:
    """Write ``(sequence, frame index)`` items as ``<sequence> <index>`` lines (read by `read_split`)."""
    atomic_write_text(path, "".join(f"{name} {index}\n" for name, index in items))


def sequence_dir(root: str | os.PathLike, name: str) -> Path:
    """The folder of sequence ``name``: ``root/sequences/name``."""
    return Path(root) / "sequences" / name


def frame_name(index: int) -> str:
    """The file stem of frame ``index``: six digits, e.g. ``000042``."""
    return f"{index:06d}"
