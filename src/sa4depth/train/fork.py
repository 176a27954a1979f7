"""Start a run from another run's kept checkpoint, at a step before which the two trainings are the same.

SA4Depth with ``refine.warmup_steps = n`` trains exactly as its baseline for its first n steps (same
weights, batches and augmentation; the LM's own weights only start to train at step n), so it can
continue from the baseline's ``step_<n>.ckpt`` (`sa4depth.train.run.kept_checkpoint`) instead of
repeating them.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import lightning as L

from sa4depth.config import Config, config_to_dict
from sa4depth.data.layout import atomic_write_text
from sa4depth.errors import InputError
from sa4depth.train.run import (
    FORK_RECORD,
    RUN_ENTRIES,
    AtomicCheckpointIO,
    build_system,
    checkpoint_config,
    checkpoint_dir,
    read_checkpoint,
)

logger = logging.getLogger(__name__)

# Config sections that may differ between the source run and the fork: where each writes, which steps
# each keeps, and the refinement, which only changes training from its warm-up's end.
_FREE = {"output_dir", "refine", "trainer.keep_checkpoint_steps"}


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts, outside `_FREE`."""
    found = []
    for key in sorted(a.keys() | b.keys()):
        name = prefix + key
        if name in _FREE:
            continue
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            found += _differences(va, vb, name + ".")
        elif va != vb:
            found.append(name)
    return found


def _check_forkable(source_cfg: Config, cfg: Config, step: int, path: Path) -> None:
    """`InputError` unless a run with ``cfg`` would have trained exactly as ``source_cfg`` up to ``step``."""
    differ = _differences(config_to_dict(source_cfg), config_to_dict(cfg))
    if differ:
        raise InputError(path, f"the fork's config differs from the checkpoint's in {', '.join(differ)}")
    for name, c in (("the checkpoint's", source_cfg), ("the fork's", cfg)):
        if c.refine.enabled and step > c.refine.warmup_steps:
            raise InputError(
                path,
                f"saved at step {step}, after {name} refinement warm-up ends (refine.warmup_steps="
                f"{c.refine.warmup_steps}): the two trainings already differ there",
            )


def _remap_optimizer(state: dict, source_names: set[str], system) -> dict:
    """The source's Adam state re-indexed for ``system``'s parameter groups.

    Torch numbers parameters through the groups in order; the fork has the source's parameters in the same
    order plus its own (the refinement's), which have no moments yet: they got no gradient before the
    warm-up's end, so Adam has not touched them.
    """
    names = {id(p): n for n, p in system.named_parameters()}
    groups = system.parameter_groups()
    if len(groups) != len(state["param_groups"]):
        raise ValueError(f"{len(state['param_groups'])} optimizer groups saved, {len(groups)} expected")
    moments, new_groups, index = {}, [], 0
    for group, saved in zip(groups, state["param_groups"], strict=True):
        indices = list(range(index, index + len(group["params"])))
        index += len(group["params"])
        shared = [i for i, p in zip(indices, group["params"], strict=True) if names[id(p)] in source_names]
        if len(shared) != len(saved["params"]):
            raise ValueError(f"a group of {len(saved['params'])} saved parameters, {len(shared)} expected")
        for new, old in zip(shared, saved["params"], strict=True):
            if old in state["state"]:
                moments[new] = state["state"][old]
        new_groups.append({**saved, "params": indices})
    return {"state": moments, "param_groups": new_groups}


def _copy_events(source_run: Path, target_run: Path, before_step: int) -> None:
    """Copy the source run's TensorBoard events logged before ``before_step`` into the target's log folder.

    Lightning logs a step's training loss and validation at ``global_step - 1``, so the points before the
    fork step are those of the shared training; the fork's own resumed logger adds the rest.
    """
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    files = sorted((source_run / "tensorboard").glob("events.out.tfevents.*"))
    if not files:
        return
    writer = EventFileWriter(str(target_run / "tensorboard"))
    try:
        for file in files:
            for raw in RawEventFileLoader(str(file)).Load():
                event = event_pb2.Event.FromString(raw)
                if event.HasField("summary") and event.step < before_step:
                    writer.add_event(event)
    finally:
        writer.close()


def fork_run(source: str | os.PathLike, cfg: Config) -> Path:
    """Write ``<cfg.output_dir>/checkpoints/last.ckpt`` so that resuming it continues ``source`` with ``cfg``.

    The result is the checkpoint a run with ``cfg`` from scratch would have saved at ``source``'s step:
    ``source``'s weights, Adam moments, schedule, counters and random state, and ``cfg``'s own freshly
    initialised weights (seeded as `sa4depth.train.run.train` seeds them) for what ``source`` lacks. Its
    TensorBoard points before that step are copied, so the fork's curve starts at step 0, and
    `FORK_RECORD` names the source. Its ``best.ckpt`` covers only the steps after the fork. Resume it
    with ``train(cfg, resume=True)``.

    Args:
        source: a ``step_<n>.ckpt`` (or ``last.ckpt``) of the run to fork from, inside its
            ``<run>/checkpoints`` folder.
        cfg: the fork's config; it may differ from the source's only in ``output_dir``,
            ``trainer.keep_checkpoint_steps`` and ``refine``, and the step must not be past either run's
            refinement warm-up.

    Returns:
        The fork's ``last.ckpt``.

    Raises:
        InputError: an unreadable checkpoint, a config that differs elsewhere, a step past the warm-up, or a
            fork folder that already holds a run.
    """
    source = Path(source)
    ckpt = read_checkpoint(source)
    source_cfg = checkpoint_config(ckpt, source)
    step = int(ckpt["global_step"])
    _check_forkable(source_cfg, cfg, step, source)
    out = Path(cfg.output_dir)
    found = [name for name in RUN_ENTRIES if (out / name).exists()]
    if found:
        raise InputError(out, f"holds a run already ({', '.join(found)}); fork into a new folder")

    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    system = build_system(cfg, "config")
    weights = system.state_dict()
    extra = sorted(weights.keys() - ckpt["state_dict"].keys())
    unknown = sorted(ckpt["state_dict"].keys() - weights.keys())
    if unknown or any(not k.startswith("model.refinement.") for k in extra):
        problem = f"unexpected {unknown[0]!r}" if unknown else f"missing {extra[0]!r}"
        raise InputError(source, f"weights do not fit the fork's networks ({problem})")
    for key, value in ckpt["state_dict"].items():
        if value.shape != weights[key].shape:
            shapes = f"{tuple(value.shape)}, the fork's {tuple(weights[key].shape)}"
            raise InputError(source, f"{key!r} is {shapes}")
    weights.update(ckpt["state_dict"])
    try:
        optimizers = [_remap_optimizer(ckpt["optimizer_states"][0], set(ckpt["state_dict"]), system)]
    except (ValueError, KeyError, IndexError) as e:
        raise InputError(source, f"optimizer state does not fit the fork's networks ({e})") from None

    fork = {
        **ckpt,
        "state_dict": weights,
        "optimizer_states": optimizers,
        # The source's best.ckpt lies in its own folder; the fork's best starts with its first validation.
        "callbacks": {k: v for k, v in ckpt["callbacks"].items() if not k.startswith("BestCheckpoint")},
        "sa4depth_config": config_to_dict(cfg),
    }
    # The checkpoint last: a fork cut short leaves no last.ckpt, so nothing would resume from it.
    _copy_events(source.parent.parent, out, step)
    record = {"checkpoint": str(source), "step": step}
    atomic_write_text(out / FORK_RECORD, json.dumps(record, indent=2) + "\n")
    target = checkpoint_dir(cfg) / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(fork, target)
    logger.info("forked %s at step %d into %s", source, step, target)
    return target
