"""The inference loader: the depth network of a training checkpoint or a weights file, and its camera.

Builds only `DepthNet` (from the file's ``model.*`` config and its depth-net weights), not the training
system; a missing, corrupt, foreign or incompatible file, or NaN weights, is a one-line `InputError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sa4depth.config import Config, config_from_dict
from sa4depth.errors import InputError
from sa4depth.geometry import Camera
from sa4depth.models.depth_net import DepthNet

INTRINSICS_KEY = "sa4depth_intrinsics"
"""Optional checkpoint entry ``{"K": 3x3 list, "width": W, "height": H}``: the training camera."""
TRAINING_DATA_KEY = "sa4depth_training_data"
"""Optional checkpoint entry ``{"root": str, "generator": str | None}`` (weights exports carry it): the
training dataset and the ``generator`` of its ``meta.yaml``, for when that dataset is not on disk."""
WEIGHTS_KEY = "sa4depth_depth_net"
"""Entry of a weights file (``sa4depth export --format weights``) holding the depth network's state_dict.
Beside it: ``sa4depth_config`` (the training config, which rebuilds the network), ``sa4depth_metadata``,
and the `INTRINSICS_KEY` and `TRAINING_DATA_KEY` entries."""
CHECKPOINT_PREFIX = "model.depth_net."
"""Prefix of the depth network's weights in a training checkpoint's ``state_dict``."""


@dataclass(frozen=True)
class DepthCheckpoint:
    """What inference needs from a checkpoint or weights file.

    Attributes:
        depth_net: the `DepthNet`, weights loaded, in eval mode on the CPU.
        cfg: the training config (``cfg.data.height`` x ``cfg.data.width`` is the training resolution).
        K: ``(3, 3)`` float64 training intrinsics at the training resolution (`INTRINSICS_KEY`), or None
            when the file records none.
        training_data: the file's `TRAINING_DATA_KEY` entry, or None.
    """

    depth_net: DepthNet
    cfg: Config
    K: np.ndarray | None
    training_data: dict | None


def read_entries(path: str | os.PathLike, mmap: bool = True) -> dict:
    """The top-level dict of a ``torch.save`` file; a missing or unreadable file raises `InputError`.

    Only tensors and plain containers are unpickled (``weights_only``), so a crafted file cannot run code.

    Args:
        path: the file.
        mmap: map tensor storages instead of reading them, so the entries not used are never read.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint not found")
    try:
        entries = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # torch raises many types for a damaged zip/pickle
        raise InputError(
            path, f"cannot read checkpoint ({e.__class__.__name__}); file corrupt or not a checkpoint"
        ) from None
    if not isinstance(entries, dict):
        raise InputError(path, "not an sa4depth training checkpoint (no sa4depth_config)")
    return entries


def load_depth_net(path: str | os.PathLike) -> DepthCheckpoint:
    """The depth network of a training checkpoint or a weights file, with its config and camera.

    Args:
        path: a training checkpoint (``state_dict`` with ``model.depth_net.*`` weights and
            ``sa4depth_config``) or a weights file (`WEIGHTS_KEY`).

    Returns:
        The `DepthCheckpoint`.

    Raises:
        InputError: a missing, corrupt or foreign file, a config the network cannot be built from,
            weights that do not fit it, NaN/Inf weights, or a malformed `INTRINSICS_KEY` entry.
    """
    path = Path(path)
    entries = read_entries(path)
    weights_file = WEIGHTS_KEY in entries
    kind = "weights file" if weights_file else "checkpoint"
    saved = entries.get("sa4depth_config")
    state = entries.get(WEIGHTS_KEY if weights_file else "state_dict")
    if weights_file and not (isinstance(state, dict) and isinstance(saved, dict)):
        raise InputError(path, f"not an sa4depth weights file ({WEIGHTS_KEY} or sa4depth_config malformed)")
    if not isinstance(saved, dict):
        raise InputError(path, "not an sa4depth training checkpoint (no sa4depth_config)")
    if not isinstance(state, dict):
        raise InputError(path, "not an sa4depth training checkpoint (no state_dict)")
    try:
        cfg = config_from_dict(saved)
    except InputError as e:
        raise InputError(path, f"{kind} config: {e.problem}") from None
    prefix = "" if weights_file else CHECKPOINT_PREFIX
    state = {k[len(prefix) :]: v for k, v in state.items() if isinstance(k, str) and k.startswith(prefix)}
    m = cfg.model
    try:
        # pretrained=None: the file holds every weight, so no ImageNet file is needed (nor read).
        net = DepthNet(encoder=m.encoder, pretrained=None, min_depth=m.min_depth, max_depth=m.max_depth)
    except ValueError as e:
        raise InputError(path, str(e).splitlines()[0]) from None
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    found = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in state.items()}
    if found != expected:
        wrong = sorted(k for k in expected.keys() | found.keys() if found.get(k) != expected.get(k))
        raise InputError(
            path,
            f"weights do not fit the {m.encoder} depth network of its config ({len(wrong)} tensors "
            f"missing, extra or mis-shaped, e.g. {prefix + wrong[0]!r})",
        )
    # NaN weights (a diverged run, or a crafted file) would give NaN depth with exit 0 everywhere.
    broken = [k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()]
    if broken:
        detail = f"{len(broken)} tensors, e.g. {prefix + broken[0]!r}"
        raise InputError(path, f"weights hold NaN or Inf ({detail}); did the training diverge?")
    net.load_state_dict(state)
    K = _training_K(path, entries.get(INTRINSICS_KEY), cfg)
    data = entries.get(TRAINING_DATA_KEY)
    return DepthCheckpoint(net.eval(), cfg, K, data if isinstance(data, dict) else None)


def _training_K(path: Path, entry, cfg: Config) -> np.ndarray | None:
    """The `INTRINSICS_KEY` entry's K resized to the training resolution, or None without an entry."""
    if entry is None:
        return None
    try:
        K = torch.as_tensor(np.asarray(entry["K"], dtype=np.float64).reshape(3, 3))
        camera = Camera.from_K(K, entry["width"], entry["height"])
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(path, f"malformed {INTRINSICS_KEY} entry ({e.__class__.__name__})") from None
    return camera.resize_to(cfg.data.width, cfg.data.height).K().numpy()
