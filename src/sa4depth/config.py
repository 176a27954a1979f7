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
from sa4depth.models.feature_net import MAX_STRIDE
from sa4depth.refine.lm import LMConfig


@dataclass
class DataConfig:
    """Which dataset (a `sa4depth.data.datamodule.DATASETS` name, a root), its splits, size and loading."""

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
    """The depth and pose networks: encoders, ImageNet weights, and the depth range of the output."""

    encoder: str = "resnet18"
    # ImageNet weights of the depth encoder: a file, "imagenet" for the packaged EfficientNet-Lite0, or None.
    pretrained: str | None = None
    # The pose net's encoder: "resnet18" (Monodepth2), "efficientnet_lite0" (the CPU recipe's) or "small".
    pose_encoder: str = "resnet18"
    # The pose encoder's ImageNet weights, as `pretrained` (Monodepth2 starts both encoders from ImageNet).
    pose_pretrained: str | None = None
    # Keep the ImageNet batch-norm statistics of the pretrained encoders during training (their layers
    # stay in eval mode; scale and shift still learn). With batch 4 the batch statistics are noisy and
    # the running averages lag the changing weights, so train and eval see different networks.
    freeze_bn: bool = False
    # The pose net's initial motion for a time-ordered pair: forward by this much per frame, in network
    # depth units (0: Monodepth2's identity start). For a camera that drives forward, the depth net then
    # gets a usable signal from the first step instead of from a near-zero translation.
    pose_forward_init: float = 0.0
    min_depth: float = 0.1
    max_depth: float = 100.0

    @staticmethod
    def weights(value: str | None) -> bool | str | None:
        """A ``pretrained`` value as the encoders take it: True for "imagenet" (the packaged Lite0)."""
        return True if value == "imagenet" else value


#: The loss recipes `loss.pipeline` names; `sa4depth.train.objectives.OBJECTIVES` implements each (the
#: list lives here so that config validation needs nothing from the training layer above it).
PIPELINES = ("monodepth2", "sc_depth")


@dataclass
class LossConfig:
    """The self-supervised loss: its recipe (`PIPELINES`) and weights."""

    pipeline: str = "monodepth2"
    ssim_alpha: float = 0.85
    automask: bool = True
    smoothness_weight: float = 1e-3
    geometry_weight: float = 0.5
    num_scales: int = 4


@dataclass
class RefineConfig(LMConfig):
    """SA4Depth's LM pose refinement: every `sa4depth.refine.LMConfig` field, plus how training uses the LM.

    The LM's own settings (``refine.levels``, ``refine.iterations``, ``refine.damping``, ...,
    ``refine.checkpoint_lm``) are inherited from `LMConfig`, so their meaning and defaults are defined
    once, there. ``warmup_steps``: optimizer steps trained without refinement first (the LM needs a
    usable depth; see docs/design.md). ``grad_through_lm=false`` leaves learned features untrained
    (their only signal passes the LM). ``finest_stride``: the learned features' finest level, in input
    pixels (levels at ``finest_stride * 2^k``, coarse to fine). ``pose_photometric_trains_depth``: the
    pose net's own photometric term also trains the depth net (by default it sees detached depth), so
    the depth's scale is tied to the pose net's as in the baseline; a probe of why the Monodepth2 +
    SA4Depth depth scale drifts per street (docs/design.md).
    """

    enabled: bool = False
    features: str = "learned"
    finest_stride: int = 4
    share_encoder: bool = False
    grad_through_lm: bool = True
    pose_photometric_weight: float = 1.0
    pose_consistency_weight: float = 0.0
    pose_photometric_trains_depth: bool = False
    warmup_steps: int = 0

    def __post_init__(self):
        """Skip `LMConfig`'s checks, which would raise a ValueError traceback.

        OmegaConf builds this object before `validate_config` runs, which reports a bad value as an
        InputError naming its key.
        """


@dataclass
class OptimConfig:
    """Adam and its learning-rate schedule.

    ``schedule="step"``: Monodepth2's, ``lr`` times ``gamma`` every ``step_size`` epochs.
    ``schedule="cosine"``: linear warm-up over ``warmup_steps`` optimizer steps, then a cosine decay to
    zero at ``trainer.max_steps`` (short step budgets, the CPU recipe). ``pose_lr_scale``: the pose
    net's learning rate is ``lr`` times this (1 everywhere but where a recipe says otherwise).
    """

    lr: float = 1e-4
    pose_lr_scale: float = 1.0
    step_size: int = 15
    gamma: float = 0.1
    grad_clip: float | None = None
    schedule: str = "step"
    warmup_steps: int = 0


@dataclass
class TrainerConfig:
    """The Lightning Trainer: step budget, validation, devices, precision, seeds and checkpoints."""

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
    # Steps whose last.ckpt is also kept as checkpoints/step_<n>.ckpt: where another run can fork from this
    # one (`sa4depth.train.fork`), e.g. SA4Depth from its baseline at the end of its refinement warm-up.
    keep_checkpoint_steps: list[int] = field(default_factory=list)
    # Also keep best.ckpt (lowest val/abs_rel); false keeps only last.ckpt, half the disk space of a run.
    save_best: bool = True
    # Batch-norm statistics over the global batch in multi-process training (DDP on GPUs only).
    sync_batchnorm: bool = False
    # Sum gradients over this many batches per optimizer step (a larger effective batch).
    accumulate_grad_batches: int = 1


@dataclass
class Config:
    """A whole run's config: one section per component, plus where the run writes and how it is scored."""

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
        loaded = _read_yaml(path)
        if not isinstance(loaded, dict):
            raise InputError(path, "config must be a mapping of sections")
        conf = _merge(conf, OmegaConf.create(loaded), str(path))
    if overrides:
        for item in overrides:
            if "=" not in item:
                raise InputError("command line", f"override {item!r} is not key=value")
        conf = _merge(conf, OmegaConf.from_dotlist(list(overrides)), "command line")
    return validate_config(OmegaConf.to_object(conf), str(path) if path is not None else "config", overrides)


def config_to_dict(config: Config) -> dict:
    """Plain nested dicts of ``config`` (what checkpoints and ``config.yaml`` store)."""
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)


def config_from_dict(values: dict) -> Config:
    """A validated `Config` from `config_to_dict` output (missing keys take their defaults).

    Raises:
        InputError: blaming "checkpoint", for an unknown key or a bad value.
    """
    cfg = OmegaConf.to_object(_merge(OmegaConf.structured(Config), OmegaConf.create(values), "checkpoint"))
    return validate_config(cfg, "checkpoint")


MAX_CONFIG_BYTES = 1_000_000
"""A config is a few kilobytes; a larger file is refused before YAML parses it."""
MAX_CONFIG_VALUES = 10_000
"""Values a YAML document may expand to once its aliases are resolved (a config has about a hundred)."""


def _read_yaml(path: Path) -> Any:
    """Parse a YAML config file; non-UTF-8 bytes, a huge file or an alias bomb raise `InputError`.

    YAML aliases share one object, so a 400-byte document of nested aliases ("billion laughs") loads
    instantly but expands to 10^9 values when OmegaConf copies it: the expanded size is counted first.
    """
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise InputError(path, f"config file is {size} bytes, more than the {MAX_CONFIG_BYTES} allowed")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(path, f"not a text file (invalid UTF-8 at byte {e.start})") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InputError(path, f"invalid YAML ({str(e).splitlines()[0]})") from None
    except RecursionError:
        raise InputError(path, "invalid YAML (nested too deeply)") from None
    sizes: dict[int, int] = {}  # id -> expanded size; shared (aliased) objects are counted once each use
    open_ids: set[int] = set()

    def expanded(node) -> int:
        if not isinstance(node, dict | list):
            return 1
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_ids:
            raise InputError(path, "a YAML alias refers to the node that contains it (infinite config)")
        open_ids.add(id(node))
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += expanded(child)
            if total > MAX_CONFIG_VALUES:
                raise InputError(
                    path,
                    f"expands to more than {MAX_CONFIG_VALUES} values (nested YAML aliases?); "
                    "a config has about a hundred",
                )
        open_ids.discard(id(node))
        sizes[id(node)] = total
        return total

    try:
        expanded(loaded)
    except RecursionError:
        raise InputError(path, "invalid YAML (nested too deeply)") from None
    return {} if loaded is None else loaded


_PRECISIONS = (
    "16-true",
    "16-mixed",
    "bf16-true",
    "bf16-mixed",
    "32-true",
    "64-true",
    "16",
    "32",
    "64",
    "bf16",
)
_PRECISIONS += ("transformer-engine", "transformer-engine-float16")
"""Lightning 2's ``precision`` values (its type is a private Literal, so they are listed here)."""


def _devices_ok(devices: Any) -> bool:
    """Lightning's ``devices``: "auto", a count (-1 = all), or GPU indices as a list or "0,1" string."""
    if isinstance(devices, bool):
        return False
    if isinstance(devices, int):
        return devices == -1 or devices >= 1
    if isinstance(devices, str):
        text = devices.strip()
        if text in ("auto", "-1"):
            return True
        if text.isdigit():
            return int(text) >= 1
        indices = text.rstrip(",").split(",")
        return "," in text and all(i.strip().isdigit() for i in indices) and len(set(indices)) == len(indices)
    if isinstance(devices, list | tuple):
        ints = [d for d in devices if isinstance(d, int) and not isinstance(d, bool) and d >= 0]
        return len(devices) > 0 and len(ints) == len(devices) and len(set(ints)) == len(ints)
    return False


def validate_config(cfg: Config, source: str = "config", overrides: list[str] | None = None) -> Config:
    """Check the range of every numeric option and every named choice; return ``cfg`` unchanged.

    Types are OmegaConf's job (``_merge``); this catches values of the right type that would train
    wrongly (``optim.grad_clip=-1`` flips the gradients) or fail deep inside a run.

    Args:
        cfg: the merged config.
        source: what the values came from (a YAML path, "checkpoint"), named in the error.
        overrides: the ``key=value`` overrides applied last; a key set there is blamed on "command line".

    Raises:
        InputError: ``"<source>: config key 'optim.lr': must be finite and > 0, got -1.0"``, for the first
            bad value.
    """
    import math

    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    from sa4depth.models.depth_net import ENCODERS
    from sa4depth.models.pose_net import POSE_ENCODERS
    from sa4depth.refine.lm import BACKWARD_MODES
    from sa4depth.refine.residuals import DEPTH_POOLS
    from sa4depth.refine.solver import ROBUST_KERNELS

    overridden = [item.split("=", 1)[0].strip() for item in overrides or ()]

    def need(key: str, ok: bool, requirement: str, *related: str) -> None:
        """Raise unless ``ok``; a check across keys names the ``related`` ones it also depends on."""
        if ok:
            return
        value: Any = cfg
        for part in key.split("."):
            value = getattr(value, part)
        given = [k for k in (key, *related) if any(k == o or k.startswith(o + ".") for o in overridden)]
        blame = "command line" if given else source
        raise InputError(blame, f"config key {key!r}: {requirement}, got {value!r}")

    def count(key: str, value: Any, least: int) -> None:
        need(
            key,
            isinstance(value, int) and not isinstance(value, bool) and value >= least,
            f"must be >= {least}",
        )

    def positive(key: str, value: float) -> None:
        need(key, math.isfinite(value) and value > 0, "must be finite and > 0")

    def weight(key: str, value: float) -> None:
        need(key, math.isfinite(value) and value >= 0, "must be finite and >= 0")

    def one_of(key: str, value: Any, choices) -> None:
        need(key, value in choices, f"must be one of {', '.join(map(str, choices))}")

    d, m, loss, r, o, t = cfg.data, cfg.model, cfg.loss, cfg.refine, cfg.optim, cfg.trainer
    for key, size in (("data.height", d.height), ("data.width", d.width)):
        # The encoders halve the image five times and the decoder's skips must line up again.
        need(key, size > 0 and size % 32 == 0, "must be a positive multiple of 32")
    need(
        "data.offsets",
        len(d.offsets) > 0 and 0 not in d.offsets and len(set(d.offsets)) == len(d.offsets),
        "must be a non-empty list of distinct non-zero frame offsets",
    )
    count("data.batch_size", d.batch_size, 1)
    count("data.num_workers", d.num_workers, 0)
    count("data.max_val_samples", d.max_val_samples, 0)
    one_of("model.encoder", m.encoder, ENCODERS)
    one_of("model.pose_encoder", m.pose_encoder, POSE_ENCODERS)
    for key, value, encoder in (
        ("model.pretrained", m.pretrained, m.encoder),
        ("model.pose_pretrained", m.pose_pretrained, m.pose_encoder),
    ):
        # Only EfficientNet-Lite0's weights ship in a package; other encoders need a file.
        need(
            key, value != "imagenet" or encoder == "efficientnet_lite0", "'imagenet' needs efficientnet_lite0"
        )
    need(
        "model.pose_pretrained",
        m.pose_pretrained is None or m.pose_encoder != "small",
        "the small pose encoder has no ImageNet weights",
    )
    need(
        "model.freeze_bn",
        not m.freeze_bn or m.pretrained is not None or m.pose_pretrained is not None,
        "needs a pretrained encoder (model.pretrained or model.pose_pretrained): "
        "untrained batch-norm statistics would be frozen at 0 and 1",
    )
    need("model.pose_forward_init", math.isfinite(m.pose_forward_init), "must be finite")
    positive("model.min_depth", m.min_depth)
    need(
        "model.max_depth",
        math.isfinite(m.max_depth) and m.max_depth > m.min_depth,
        "must be finite and > model.min_depth",
        "model.min_depth",
    )
    one_of("loss.pipeline", loss.pipeline, PIPELINES)
    need("loss.ssim_alpha", 0 <= loss.ssim_alpha <= 1, "must be in [0, 1]")
    weight("loss.smoothness_weight", loss.smoothness_weight)
    weight("loss.geometry_weight", loss.geometry_weight)
    need("loss.num_scales", 1 <= loss.num_scales <= 4, "must be in 1..4 (the decoder's output scales)")
    one_of("refine.features", r.features, ("learned", "rgb"))
    count("refine.levels", r.levels, 1)
    need(
        "refine.finest_stride",
        r.finest_stride >= 2 and r.finest_stride & (r.finest_stride - 1) == 0,
        "must be a power of 2, at least 2",
    )
    need(
        "refine.finest_stride",
        r.finest_stride * 2 ** (r.levels - 1) <= MAX_STRIDE,
        f"must keep the coarsest level at stride <= {MAX_STRIDE} (the feature encoder's deepest map)",
        "refine.levels",
    )
    count("refine.iterations", r.iterations, 0)
    one_of("refine.robust", r.robust, ROBUST_KERNELS)
    positive("refine.robust_scale", r.robust_scale)
    one_of("refine.depth_pool", r.depth_pool, DEPTH_POOLS)
    one_of("refine.backward", r.backward, BACKWARD_MODES)
    weight("refine.damping", r.damping)
    need("refine.damping_log_min", math.isfinite(r.damping_log_min), "must be finite")
    need(
        "refine.damping_log_max",
        math.isfinite(r.damping_log_max) and r.damping_log_max > r.damping_log_min,
        "must be finite and > refine.damping_log_min",
        "refine.damping_log_min",
    )
    need(
        "refine.damping",
        not r.learned_damping
        or (r.damping > 0 and r.damping_log_min < math.log10(r.damping) < r.damping_log_max),
        "must lie strictly between 10^refine.damping_log_min and 10^refine.damping_log_max "
        "with refine.learned_damping=true",
        "refine.learned_damping",
        "refine.damping_log_min",
        "refine.damping_log_max",
    )
    positive("refine.eps", r.eps)
    count("refine.min_valid", r.min_valid, 0)
    weight("refine.pose_photometric_weight", r.pose_photometric_weight)
    weight("refine.pose_consistency_weight", r.pose_consistency_weight)
    count("refine.warmup_steps", r.warmup_steps, 0)
    positive("optim.lr", o.lr)
    positive("optim.pose_lr_scale", o.pose_lr_scale)
    count("optim.step_size", o.step_size, 1)
    positive("optim.gamma", o.gamma)
    need(
        "optim.grad_clip",
        o.grad_clip is None or (math.isfinite(o.grad_clip) and o.grad_clip > 0),
        "must be null or finite and > 0",
    )
    one_of("optim.schedule", o.schedule, ("step", "cosine"))
    count("optim.warmup_steps", o.warmup_steps, 0)
    need("trainer.max_steps", t.max_steps == -1 or t.max_steps >= 1, "must be -1 (no limit) or >= 1")
    need("trainer.max_epochs", t.max_epochs == -1 or t.max_epochs >= 1, "must be -1 (no limit) or >= 1")
    need(
        "trainer.max_steps",
        t.max_steps >= 1 or t.max_epochs >= 1,
        "must be >= 1 when trainer.max_epochs is -1 (else training never ends)",
        "trainer.max_epochs",
    )
    need(
        "trainer.max_steps",
        o.schedule != "cosine" or t.max_steps >= 1,
        "must be >= 1 with optim.schedule=cosine (it decays to 0 there)",
        "optim.schedule",
    )
    v = t.val_check_interval
    need(
        "trainer.val_check_interval",
        v is None
        or (isinstance(v, int) and not isinstance(v, bool) and v >= 1)
        or (isinstance(v, float) and 0 < v <= 1),
        "must be null, a fraction of an epoch in (0, 1] or a number of steps >= 1",
    )
    count("trainer.log_every_n_steps", t.log_every_n_steps, 1)
    need("trainer.seed", 0 <= t.seed < 2**32, "must be in [0, 2^32)")
    one_of(
        "trainer.accelerator",
        t.accelerator,
        ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())],
    )
    need(
        "trainer.devices",
        _devices_ok(t.devices),
        "must be 'auto', -1, a count >= 1, or a list of distinct GPU indices",
    )
    need(
        "trainer.strategy",
        t.strategy == "auto" or t.strategy in StrategyRegistry.available_strategies(),
        "must be 'auto' or a Lightning strategy name (ddp, ddp_spawn, fsdp, deepspeed, ...)",
    )
    count("trainer.num_nodes", t.num_nodes, 1)
    one_of("trainer.precision", str(t.precision), _PRECISIONS)
    count("trainer.checkpoint_every_n_steps", t.checkpoint_every_n_steps, 0)
    for step in t.keep_checkpoint_steps:
        count("trainer.keep_checkpoint_steps", step, 1)
    need("trainer.save_best", isinstance(t.save_best, bool), "must be true or false")
    count("trainer.accumulate_grad_batches", t.accumulate_grad_batches, 1)
    return cfg
