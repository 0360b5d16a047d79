"""The plan of a comparison: which strategies, which runs with which configs, and what to do with each
run directory (reuse, resume, start)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from lad_edu.assign import ASSIGNERS
from lad_edu.atomic import atomic_open
from lad_edu.train.config import OptimConfig, TrainConfig, config_to_dict, load_config
from lad_edu.train.run_dir import RUN_FILES, RunDirError

# name -> (assign.assigner, distill.mode); any other name of ASSIGNERS is (name, "none")
STRATEGIES: dict[str, tuple[str, str]] = {
    "fixed": ("fixed", "none"),
    "atss": ("atss", "none"),
    "paa": ("paa", "none"),
    "soft": ("paa", "soft"),
    "lad": ("paa", "lad"),
    "solad": ("paa", "solad"),
    "colad": ("paa", "colad"),
}
TEACHER = "paa"  # the strategy whose run of seed k teaches the LAD family's runs of seed k
WITH_TEACHER = ("soft", "lad", "solad")
DEFAULT_STRATEGIES = ("fixed", "atss", "paa", "lad")
MARKER = "compare.json"  # in each run directory: {"train_seconds", "finished"}
HOW = {"new": "trained", "restart": "trained from scratch", "resume": "resumed", "finished": "reused"}


# the plan: which runs, with which configs


@dataclass(frozen=True)
class RunSpec:
    """One run of the comparison: a strategy, a seed, its directory and resolved config, its teacher."""

    strategy: str
    seed: int
    run_dir: Path
    cfg: TrainConfig
    teacher: str | None = None  # the key of the run it waits for (LAD family)

    @property
    def key(self) -> str:
        return f"{self.strategy}/seed{self.seed}"


def strategy_names(requested: Sequence[str], teacher: str | Path | None = None) -> list[str]:
    """The strategies to report, in the order asked, with ``paa`` added first when a LAD-family strategy
    needs it as teacher (not when ``teacher``, a checkpoint, teaches instead).

    >>> strategy_names(["fixed", "lad"])
    ['paa', 'fixed', 'lad']
    >>> strategy_names(["ota"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown strategy 'ota'; valid strategies: fixed, atss, paa, soft, lad, ..., simota, hungarian
    """
    valid = list(STRATEGIES) + [name for name in ASSIGNERS if name not in STRATEGIES]
    for name in requested:
        if name not in valid:
            raise ValueError(f"unknown strategy {name!r}; valid strategies: {', '.join(valid)}")
    names = list(dict.fromkeys(requested))
    if teacher is None and any(name in WITH_TEACHER for name in names) and TEACHER not in names:
        names.insert(0, TEACHER)
    return names


def strategy_overrides(
    name: str, seed: int, out: Path, base: TrainConfig, teacher: str | Path | None = None
) -> list[str]:
    """The ``key=value`` overrides that turn the base config into strategy ``name`` (see the module table);
    ``teacher``: the LAD family's teacher checkpoint instead of the ``paa`` run of the same seed.

    >>> strategy_overrides("lad", 1, Path("runs/cmp"), TrainConfig())
    ['assign.assigner=paa', 'distill.mode=lad', 'distill.teacher_checkpoint=runs/cmp/paa/seed1/checkpoint.pt']
    >>> strategy_overrides("lad", 1, Path("runs/cmp"), TrainConfig(), teacher="small/paa.pt")[-1]
    'distill.teacher_checkpoint=small/paa.pt'
    """
    assigner, mode = STRATEGIES.get(name, (name, "none"))
    overrides = [f"assign.assigner={assigner}", f"distill.mode={mode}"]
    if name in WITH_TEACHER:
        checkpoint = teacher if teacher is not None else out / TEACHER / f"seed{seed}" / "checkpoint.pt"
        overrides.append(f"distill.teacher_checkpoint={checkpoint}")
    if mode == "colad":
        overrides.append(f"distill.teacher_backbone={base.model.backbone}")
    return overrides


def schedule_overrides(optim: OptimConfig, epochs: int | None) -> list[str]:
    """``optim.epochs=epochs`` and the milestones scaled with it (see the module docstring); none for None.

    >>> schedule_overrides(OptimConfig(epochs=24, milestones=(16, 22)), 12)
    ['optim.epochs=12', 'optim.milestones=[8, 11]']
    >>> schedule_overrides(OptimConfig(epochs=24, milestones=(16, 22)), 1)
    ['optim.epochs=1', 'optim.milestones=[]']
    """
    if epochs is None:
        return []
    if epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {epochs}")
    scaled = sorted({round(m * epochs / optim.epochs) for m in optim.milestones})
    kept = [m for m in scaled if 0 < m < epochs]
    return [f"optim.epochs={epochs}", f"optim.milestones=[{', '.join(map(str, kept))}]"]


def plan_runs(
    *,
    config: str,
    overrides: Sequence[str],
    strategies: Sequence[str],
    seeds: int,
    epochs: int | None,
    out: Path,
    teacher: str | Path | None = None,
) -> list[RunSpec]:
    """Every run of the comparison, teachers first (so that the LAD family can start early); with
    ``teacher`` (a checkpoint) the LAD family learns from it and waits for no run.

    Raises:
        ConfigError: a bad ``config`` or ``overrides`` (naming the key).
        ValueError: an unknown strategy, or fewer than one seed.
    """
    if seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {seeds}")
    if teacher is not None and not Path(teacher).is_file():
        raise ValueError(f"--teacher {teacher}: no such checkpoint; give a lad-edu run's checkpoint.pt")
    names = strategy_names(strategies, teacher)
    base = load_config(config, overrides)
    shared = [*overrides, *schedule_overrides(base.optim, epochs)]
    specs = []
    for seed in range(seeds):
        for name in names:
            changes = strategy_overrides(name, seed, out, base, teacher)
            cfg = load_config(config, [*shared, *changes, f"seed={seed}"])
            waits_for = f"{TEACHER}/seed{seed}" if name in WITH_TEACHER and teacher is None else None
            specs.append(RunSpec(name, seed, out / name / f"seed{seed}", cfg, waits_for))
    return sorted(specs, key=lambda spec: spec.strategy != TEACHER)  # stable: then seed by seed


def load_data(cfg: TrainConfig):
    """The training and validation datasets of ``cfg.data``; a missing one is a one-line ``ValueError``
    naming the file and how to make one."""
    from lad_edu.train.data import load_datasets

    root = Path(cfg.data.root)
    for split in (cfg.data.train_split, cfg.data.val_split):
        path = root / "annotations" / f"instances_{split}.json"
        if not path.is_file():
            raise ValueError(
                f"dataset {root}: no annotation file {path}; give --data a COCO-layout dataset "
                f"(ROOT/annotations/instances_{{split}}.json, ROOT/{{split}}/) or write the classroom data "
                f"there with `lad-edu make-data --out {root}`"
            )
    return load_datasets(cfg.data)


# the run directories: reuse, resume, or start


def _flat(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(run_dir: Path, cfg: TrainConfig) -> list[str]:
    """``"key: in run_dir -> wanted"`` for each field where ``run_dir/config.yaml`` differs from ``cfg``."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return [f"{path} is missing"]
    saved, wanted = _flat(yaml.safe_load(path.read_text()) or {}), _flat(config_to_dict(cfg))
    keys = sorted(set(saved) | set(wanted))
    return [f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}" for k in keys if saved.get(k) != wanted.get(k)]


def read_marker(run_dir: Path) -> dict:
    """``run_dir/compare.json``: ``{"train_seconds": float | None, "finished": bool}``."""
    path = run_dir / MARKER
    return json.loads(path.read_text()) if path.is_file() else {"train_seconds": None, "finished": False}


def write_marker(run_dir: Path, train_seconds: float | None, finished: bool) -> dict:
    """Write (atomically) and return ``run_dir/compare.json``."""
    marker = {"train_seconds": train_seconds, "finished": finished}
    with atomic_open(run_dir / MARKER) as f:
        json.dump(marker, f)
    return marker


def run_state(spec: RunSpec, overwrite: bool = False) -> str:
    """What the comparison does with ``spec.run_dir`` (see the module docstring).

    Returns:
        ``"new"`` (nothing there), ``"finished"`` (reuse), ``"resume"``, or ``"restart"`` (train from
        scratch, deleting the files there: a run killed before its first checkpoint, or another config
        with ``overwrite``).

    Raises:
        RunDirError: the directory holds a run of another config and ``overwrite`` is False.
    """
    if not any((spec.run_dir / name).exists() for name in RUN_FILES):
        return "new"
    differences = config_differences(spec.run_dir, spec.cfg)
    if differences:
        if overwrite:
            return "restart"
        shown = "; ".join(differences[:4]) + (
            f"; ... ({len(differences)} in all)" if len(differences) > 4 else ""
        )
        raise RunDirError(
            f"{spec.run_dir} holds a run of another config ({shown}); compare into another --out, or give "
            "--overwrite to train it again"
        )
    finished = read_marker(spec.run_dir)["finished"] and (spec.run_dir / "eval" / "coco_stats.json").is_file()
    if finished:
        return "finished"
    return "resume" if (spec.run_dir / "checkpoint.pt").is_file() else "restart"
