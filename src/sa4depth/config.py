"""Typed, strict configuration: one dataclass per component, merged from YAML and CLI overrides.

A typo in a key or a value of the wrong type is an `InputError` naming the key, never a silent default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sa4depth.errors import InputError


@dataclass
class DataConfig:
    dataset: str = "folder"
    root: str = "data/synthetic_benchmark"
    height: int = 96
    width: int = 320
    offsets: list[int] = field(default_factory=lambda: [-1, 1])
    batch_size: int = 4
    num_workers: int = 0
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    augment: bool = True
    max_val_samples: int = 64


@dataclass
class ModelConfig:
    encoder: str = "resnet18"
    pretrained: str | None = None
    # The pose net's encoder: "resnet18" (Monodepth2) or "small" (a 5-layer CNN, the CPU recipe's).
    pose_encoder: str = "resnet18"
    min_depth: float = 0.1
    max_depth: float = 100.0


@dataclass
class LossConfig:
    pipeline: str = "monodepth2"
    ssim_alpha: float = 0.85
    automask: bool = True
    smoothness_weight: float = 1e-3
    geometry_weight: float = 0.5
    num_scales: int = 4


@dataclass
class RefineConfig:
    """SA4Depth's LM pose refinement; the fields shared with `sa4depth.refine.LMConfig` mean the same there.

    ``warmup_steps``: optimizer steps trained without refinement first (the LM needs a usable depth;
    see docs/design.md). ``checkpoint_lm``: recompute each LM step in the backward pass (less memory).
    ``grad_through_lm=false`` leaves learned features untrained (their only signal passes the LM).
    """

    enabled: bool = False
    features: str = "learned"
    share_encoder: bool = False
    levels: int = 3
    iterations: int = 5
    robust: str = "cauchy"
    robust_scale: float = 0.1
    depth_pool: str = "inverse_area"
    damping: float = 1e-2
    learned_damping: bool = False
    use_confidence: bool = True
    min_valid: int = 10
    detach_between_levels: bool = False
    grad_through_lm: bool = True
    pose_photometric_weight: float = 1.0
    pose_consistency_weight: float = 0.0
    warmup_steps: int = 0
    checkpoint_lm: bool = False


@dataclass
class OptimConfig:
    """Adam and its learning-rate schedule.

    ``schedule="step"``: Monodepth2's, ``lr`` times ``gamma`` every ``step_size`` epochs.
    ``schedule="cosine"``: linear warm-up over ``warmup_steps`` optimizer steps, then a cosine decay to
    zero at ``trainer.max_steps`` (short step budgets, the CPU recipe).
    """

    lr: float = 1e-4
    step_size: int = 15
    gamma: float = 0.1
    grad_clip: float | None = None
    schedule: str = "step"
    warmup_steps: int = 0


@dataclass
class TrainerConfig:
    max_steps: int = -1
    max_epochs: int = 20
    val_check_interval: Any = None  # fraction of an epoch (float) or a number of steps (int)
    log_every_n_steps: int = 25
    seed: int = 0
    accelerator: str = "auto"
    devices: Any = 1
    strategy: str = "auto"
    num_nodes: int = 1
    deterministic: bool = False
    precision: str = "32-true"
    # last.ckpt is also written every this many optimizer steps (and at each epoch end), for resume.
    checkpoint_every_n_steps: int = 500
    # Batch-norm statistics over the global batch in multi-process training (DDP on GPUs only).
    sync_batchnorm: bool = False
    # Sum gradients over this many batches per optimizer step (a larger effective batch).
    accumulate_grad_batches: int = 1


@dataclass
class Config:
    output_dir: str = "runs/default"
    eval_protocol: str = "synthetic"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def _merge(base, update, source: str):
    try:
        return OmegaConf.merge(base, update)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        reason = str(e).splitlines()[0]
        raise InputError(source, f"config key {key!r}: {reason}") from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file, then ``key=value`` overrides (e.g. ``refine.enabled=true``).

    Example:
        >>> load_config(overrides=["refine.enabled=true"]).refine.enabled
        True
    """
    conf = OmegaConf.structured(Config)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "config file not found")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise InputError(path, f"invalid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise InputError(path, "config must be a mapping of sections")
        conf = _merge(conf, OmegaConf.create(loaded), str(path))
    if overrides:
        for item in overrides:
            if "=" not in item:
                raise InputError("command line", f"override {item!r} is not key=value")
        conf = _merge(conf, OmegaConf.from_dotlist(list(overrides)), "command line")
    return OmegaConf.to_object(conf)


def config_to_dict(config: Config) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)


def config_from_dict(values: dict) -> Config:
    return OmegaConf.to_object(_merge(OmegaConf.structured(Config), OmegaConf.create(values), "checkpoint"))
