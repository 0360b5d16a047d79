"""Training configuration: plain dataclasses whose defaults are MMDetection's ``paa_r50_fpn_1x`` recipe.

Every default lives in this file (and :class:`lad_edu.model.ModelConfig`). A YAML file states only what
differs, optionally on top of another shipped config::

    base: classroom_paa          # start from lad_edu/configs/classroom_paa.yaml
    assign:
      assigner: atss

and ``--set key=value`` overrides one field on the command line (``--set optim.lr=0.02``,
``--set model.backbone=resnet101``, ``--set optim.milestones=[16,22]``; values are read as YAML). A key
that does not exist is an error naming it and the keys that do.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lad_edu.assign import (
    ASSIGNERS,
    Assigner,
    PAAAssigner,
    assigner_class,
    assigner_options,
    build_assigner,
)
from lad_edu.model import ModelConfig

__all__ = [
    "AssignConfig",
    "ConfigError",
    "DataConfig",
    "DistillConfig",
    "OptimConfig",
    "other_network",
    "SnapshotConfig",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "override_config",
    "shipped_configs",
]

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
DISTILL_MODES = ("none", "soft", "lad", "solad", "colad")
AMP_MODES = ("none", "bf16", "fp16")


class ConfigError(ValueError):
    """A config file, key or value that cannot be used; the message says which and what to do."""


@dataclass
class DataConfig:
    """Where the images come from and how they are resized (COCO recipe: 800 / 1333, flip 0.5)."""

    root: str = "data/classroom"
    train_split: str = "train"
    val_split: str = "val"
    short_sides: tuple[int, ...] = (800,)  # several values: multi-scale training
    max_size: int = 1333
    eval_short_side: int = 800
    flip_prob: float = 0.5
    aspect_ratio_grouping: bool = True
    batch_size: int = 2  # images per process (MMDetection: 2 per GPU x 8 GPUs)
    num_workers: int = 2
    min_box_size: float = 1.0  # boxes narrower or lower than this (px) are dropped


@dataclass
class AssignConfig:
    """Which anchors learn which object. One head and one set of losses for every assigner.

    A field named like an option of the chosen assigner (a keyword argument of its constructor) configures
    it; the others are ignored by it (:meth:`build_assigner`). A field left at None is not passed, so the
    assigner keeps its own default (``topk``: 9 for ATSS and PAA, 13 for the task-aligned rule).
    """

    assigner: str = "paa"  # a name of lad_edu.assign.ASSIGNERS: fixed | atss | paa | tal | simota | hungarian
    pos_iou_thr: float = 0.5  # fixed (RetinaNet's MaxIoU)
    neg_iou_thr: float = 0.4  # fixed
    topk: int | None = None  # atss, paa (9), tal (13)
    bbox_weight: float = 1.3  # paa cost: weight of (1 - GIoU); 1.0 = original PAA
    loc_loss: str = "giou"  # paa cost: giou | iou (the paper's eq. 2)
    keep_single_candidate: bool = False  # paa: original-PAA variant
    all_if_no_fg: bool = False  # paa: original-PAA variant
    alpha: float | None = None  # tal: exponent of the score in t = s^alpha u^beta (1.0)
    beta: float | None = None  # tal: exponent of the predicted box's IoU (6.0)
    variant: str | None = None  # tal: mmdet | ultralytics
    center_radius: float | None = None  # simota: the centre region's half side, in strides (2.5)
    candidate_topk: int | None = None  # simota: IoUs summed for the dynamic k (10)
    iou_weight: float | None = None  # simota: weight of -log IoU in the cost (3.0)
    cls_weight: float | None = None  # simota (1.0), hungarian (2.0): weight of the classification cost
    l1_weight: float | None = None  # hungarian: weight of the L1 cost on normalised cxcywh (5.0)
    giou_weight: float | None = None  # hungarian: weight of the -GIoU cost (2.0)
    max_pairs: int | None = None  # tal, simota, hungarian: (image, GT, anchor) triples at once (2^24)
    soft_target: bool = True  # tal, simota: train classification on the assigner's quality (QFL)
    crowd_iof_thr: float = 0.5  # negatives this much inside an iscrowd box are ignored

    def build_assigner(self, num_classes: int) -> Assigner:
        """The assigner ``assigner`` names, with the fields that are its options (and ``num_classes``, so
        that a GT label outside the classes is an error, where it takes one)."""
        options = assigner_options(self.assigner)
        values = dataclasses.asdict(self) | {"num_classes": num_classes}
        chosen = {key: values[key] for key in options if values.get(key) is not None}
        return build_assigner(self.assigner, **chosen)


@dataclass
class DistillConfig:
    """Learning from another network (paper sections 3.1-3.4).

    ``soft``: the student's own PAA labels plus soft-label distillation (eq. 1); ``lad``: the teacher's
    PAA labels (section 3.2); ``solad``: both; ``colad``: two networks trained together, the labels from
    whichever is the better teacher at each step (section 3.4).
    """

    mode: str = "none"  # none | soft | lad | solad | colad
    teacher_checkpoint: str | None = (
        None  # soft / lad / solad: a lad_edu checkpoint or an MMDetection zoo file
    )
    teacher_backbone: str = (
        "resnet101"  # the teacher's backbone when its checkpoint carries no config; colad's second network
    )
    # colad: network 2's ImageNet weights (a local .pth); None: the student's model.backbone_weights when
    # both backbones are the same, else random init (refused if the student starts from ImageNet)
    teacher_backbone_weights: str | None = None
    soft_gamma: float = 0.5  # eq. 1's focal exponent (Table 2: 0.5)
    soft_weight: float = 1.0
    criterion: str = "std_mean"  # colad: std_mean | fisher
    granularity: str = "iteration"  # colad: iteration (the paper) | group (the authors' code)


def other_network(cfg: TrainConfig, *, imagenet: bool) -> ModelConfig:
    """The model of the other network: CoLAD's network 2, or a LAD teacher read from an MMDetection file.

    Its backbone is ``distill.teacher_backbone``, every other setting the student's. ``imagenet``: its
    backbone starts from ImageNet (training CoLAD): ``distill.teacher_backbone_weights``, or the student's
    ``model.backbone_weights`` when both backbones are the same; without (a checkpoint gives every weight)
    it loads no backbone file.

    Raises:
        ConfigError: the student starts from ImageNet weights, network 2 has another backbone, and
            ``distill.teacher_backbone_weights`` is not given (its weights would not fit).
    """
    backbone, weights = cfg.distill.teacher_backbone, None
    if imagenet:
        weights = cfg.distill.teacher_backbone_weights
        if weights is None and backbone == cfg.model.backbone:
            weights = cfg.model.backbone_weights
        elif weights is None and cfg.model.backbone_weights is not None:
            raise ConfigError(
                f"model.backbone_weights={cfg.model.backbone_weights} are {cfg.model.backbone} weights; "
                f"CoLAD's network 2 is a {backbone}: give its own with distill.teacher_backbone_weights=PATH"
            )
    return dataclasses.replace(cfg.model, backbone=backbone, backbone_weights=weights)


@dataclass
class OptimConfig:
    """SGD with linear warm-up and a step schedule (MMDetection's 1x: 12 epochs, steps at 8 and 11)."""

    lr: float = 0.01  # for a total batch of base_batch_size, scaled linearly to the actual one
    base_batch_size: int = 16
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 500
    warmup_factor: float = 0.001
    epochs: int = 12
    milestones: tuple[int, ...] = (8, 11)  # epochs after which the lr is multiplied by gamma
    gamma: float = 0.1
    grad_clip: float | None = None  # max gradient norm; None = no clipping


@dataclass
class SnapshotConfig:
    """Snapshots of the assignment of a few fixed validation images as training goes
    (:mod:`lad_edu.train.snapshots`): per GT its candidates, costs, GMM and positives, in
    ``RUN_DIR/snapshots.jsonl``. Taken before the first epoch, every ``every`` epochs and after the last.
    """

    images: tuple[int, ...] = ()  # indices into the validation split; none = no snapshots
    every: int = 1  # epochs between snapshots


@dataclass
class TrainConfig:
    """Everything a run needs; saved resolved as ``RUN_DIR/config.yaml``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    assign: AssignConfig = field(default_factory=AssignConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    snapshot: SnapshotConfig = field(default_factory=SnapshotConfig)
    amp: str = "none"  # none | bf16 | fp16 (autocast on CUDA; bf16 also on CPU)
    seed: int = 0
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda
    log_every: int = 20  # iterations between metrics lines
    eval_every: int = 1  # epochs between evaluations; 0 = only after the last epoch
    # iterations between checkpoints within an epoch (one is also written at each epoch's end); 0 = only at
    # epoch ends. 200: classroom_paa took 0.33 s an iteration on a 2-core CPU and 0.11 s to write its 12 MB
    # checkpoint, so a kill -9 loses at most ~70 s of training for 0.2% extra time (its 50-iteration epochs
    # end sooner still); a COCO epoch (7330 iterations at batch 16) gets 36 checkpoints instead of one.
    checkpoint_every: int = 200
    max_iters: int | None = None  # stop (with a checkpoint) after this many iterations: smoke runs

    def __post_init__(self) -> None:
        checks = [
            ("assign.assigner", self.assign.assigner, tuple(ASSIGNERS)),
            ("distill.mode", self.distill.mode, DISTILL_MODES),
            ("distill.criterion", self.distill.criterion, ("std_mean", "fisher")),
            ("distill.granularity", self.distill.granularity, ("iteration", "group")),
            ("assign.loc_loss", self.assign.loc_loss, ("giou", "iou")),
            ("amp", self.amp, AMP_MODES),
            ("device", self.device, ("auto", "cpu", "cuda")),
        ]
        for key, value, allowed in checks:
            if value not in allowed:
                raise ConfigError(f"{key} must be one of {list(allowed)}, got {value!r}")
        counts = [
            ("optim.epochs", self.optim.epochs, 1),
            ("log_every", self.log_every, 1),
            ("checkpoint_every", self.checkpoint_every, 0),
            ("snapshot.every", self.snapshot.every, 1),
            *(("snapshot.images", index, 0) for index in self.snapshot.images),
        ]
        for key, value, least in counts:
            if value < least:
                raise ConfigError(f"{key} must be at least {least}, got {value}")
        try:  # the assigner's own checks (topk >= 1, a known variant, ...), before any run starts
            self.assign.build_assigner(num_classes=None)
        except ValueError as error:
            raise ConfigError(f"assign ({self.assign.assigner}): {error}") from error
        assigner = assigner_class(self.assign.assigner)
        if self.distill.mode in ("lad", "solad") and not assigner.uses_predictions:
            using = [name for name, cls in ASSIGNERS.items() if cls.uses_predictions]
            raise ConfigError(
                f"distill.mode={self.distill.mode!r} feeds the teacher's predictions to the assigner, which "
                f"assign.assigner={self.assign.assigner!r} ignores: set assign.assigner to one of {using}"
            )
        if self.distill.mode == "colad" and not issubclass(assigner, PAAAssigner):
            raise ConfigError(
                "distill.mode='colad' compares the two networks' PAA costs: set assign.assigner=paa"
            )


# dict <-> dataclass, with the errors a YAML file or --set can cause


def _coerce(value, hint, key: str):
    """``value`` (from YAML) checked against the field's type ``hint``; lists become tuples."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            value = [value]
        return tuple(_coerce(v, args[0], key) for v in value)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint in (int, str, bool) and type(value) is hint:
        return value
    raise ConfigError(f"{key} must be {getattr(hint, '__name__', hint)}, got {value!r}")


def _build(cls, values: dict, prefix: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix or 'the config'} must be a mapping of keys, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key {full!r}; valid keys here: {', '.join(names)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, f"{full}.")
        else:
            kwargs[key] = _coerce(value, hint, full)
    return cls(**kwargs)


def config_from_dict(values: dict) -> TrainConfig:
    """A :class:`TrainConfig` from nested dicts (missing keys keep their defaults)."""
    return _build(TrainConfig, values, "")


def config_to_dict(config: TrainConfig) -> dict:
    """Nested plain dicts of YAML-friendly values (tuples become lists)."""

    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def shipped_configs() -> list[str]:
    """The names of the configs shipped in ``lad_edu/configs``."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _read_yaml(name_or_path: str, seen: tuple[str, ...] = ()) -> dict:
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"no shipped config named {name_or_path!r}; shipped: {', '.join(shipped_configs())} "
                "(or give a path to a .yaml file)"
            )
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if str(path) in seen:
        raise ConfigError(f"config {path}: 'base' chain loops back to itself ({' -> '.join(seen)})")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, got {type(values).__name__}")
    base = values.pop("base", None)
    if base is None:
        return values
    return _merge(_read_yaml(str(base), (*seen, str(path))), values)


def _parse_override(item: str) -> dict:
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects key=value (e.g. optim.lr=0.02), got {item!r}")
    value = yaml.safe_load(text) if text else None
    nested: dict = value
    for part in reversed(key.split(".")):
        nested = {part: nested}
    return nested


def load_config(name_or_path: str, overrides: list[str] = ()) -> TrainConfig:
    """A shipped config by name (``classroom_paa``) or a YAML path, with ``key=value`` overrides."""
    return override_config(_read_yaml(name_or_path), overrides)


def override_config(values: dict, overrides: list[str] = ()) -> TrainConfig:
    """A :class:`TrainConfig` from nested dicts (a file's, a checkpoint's) and ``key=value`` overrides."""
    for item in overrides:
        values = _merge(values, _parse_override(item))
    return config_from_dict(values)
