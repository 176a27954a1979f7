"""What a checkpoint says about its training: the camera (intrinsics) and the dataset it was trained on.

The training camera is the default camera of the inputs; the dataset tells whether a model saw only the
synthetic world.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from sa4depth.config import Config
from sa4depth.data.datamodule import dataset_intrinsics
from sa4depth.inference import INTRINSICS_KEY, DepthCheckpoint

logger = logging.getLogger(__name__)

SYNTHETIC_GENERATOR = "sa4depth.data.synthetic"
"""The ``generator`` in the ``meta.yaml`` of a dataset rendered by `sa4depth.data.synthetic`."""


def training_intrinsics(loaded: DepthCheckpoint) -> tuple[np.ndarray | None, str]:
    """The training camera of a loaded checkpoint, at its training resolution, and where it came from.

    Args:
        loaded: the `sa4depth.inference.load_depth_net` result.

    Returns:
        ``(K, source)``: K ``(3, 3)`` from the file's `INTRINSICS_KEY` entry, else from the training
        dataset if it is on disk, else None; ``source`` says which ("none" for None).
    """
    if loaded.K is not None:
        return loaded.K, f"checkpoint entry {INTRINSICS_KEY}"
    K = dataset_intrinsics(loaded.cfg.data)
    return K, ("training dataset " + str(loaded.cfg.data.root)) if K is not None else "none"


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


def training_data(checkpoint: Path, cfg: Config, recorded: dict | None = None) -> dict:
    """``{"root", "generator"}`` of the dataset a checkpoint was trained on (`TRAINING_DATA_KEY`).

    ``recorded``, the checkpoint's own entry (`sa4depth.inference.DepthCheckpoint.training_data`), if
    given. Otherwise ``cfg.data.root``, as given and, when relative,
    also from the training run's working folder (the checkpoint lies in ``<output_dir>/checkpoints/``,
    and a relative ``output_dir`` and ``data.root`` share that folder), with the ``generator`` of the
    first of these that has a ``meta.yaml``; ``generator`` is None when no copy is found or it says none.
    """
    if recorded is not None:
        return {"root": str(recorded.get("root")), "generator": recorded.get("generator")}
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


def in_synthetic_world(folder: Path) -> bool:
    """Whether ``folder`` or a folder above it is a dataset rendered by `sa4depth.data.synthetic`."""
    return any(_meta_generator(f) == SYNTHETIC_GENERATOR for f in (folder, *folder.parents))
