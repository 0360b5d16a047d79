"""``lad-edu compare``: train several assignment strategies on the same data, network, schedule and seeds,
and report what each one gave and what each one did to the anchors.

A *strategy* is one base config (default ``classroom_compare``: ``classroom_paa`` at 128 px) with two
fields changed, the assigner and the distillation mode; nothing else differs between the runs of a
comparison, so a difference in AP is a difference of assignment (and, for the LAD family, of who predicts
for the assigner; LAD's box loss is also not IoU-weighted, as in MMDetection's ``LADHead``):

==========  ======================  ================  ==================================================
strategy    ``assign.assigner``     ``distill.mode``  teacher
==========  ======================  ================  ==================================================
fixed       fixed                   none
atss        atss                    none
paa         paa                     none
soft        paa                     soft              the ``paa`` run of the same seed
lad         paa                     lad               the ``paa`` run of the same seed
solad       paa                     solad             the ``paa`` run of the same seed
colad       paa                     colad             none: a second network of the base's backbone
any other   the assigner so named   none              (a name of :data:`lad_edu.assign.ASSIGNERS`)
==========  ======================  ================  ==================================================

The LAD family's teacher is the ``paa`` run of its seed, trained first: the paper's "same-size teacher"
setting (a teacher of the student's own architecture and schedule). Asking for ``lad`` (or ``soft``,
``solad``) without ``paa`` adds ``paa`` to the comparison, as it is trained anyway.

Seeds ``0 .. seeds-1`` (``seed=k``) are given to every strategy. ``epochs`` overrides ``optim.epochs`` and
scales ``optim.milestones`` with it: each milestone ``m`` of an ``E``-epoch schedule becomes
``round(m * epochs / E)``, and those that land on 0 or on ``epochs`` or later are dropped
(``classroom_paa``'s ``[16, 22]`` of 24 epochs becomes ``[8, 11]`` for 12, none for 1). ``overrides``
(``--set``) apply to every run, before the strategy's fields and the seed.

Runs: ``jobs`` worker processes (``spawn``, one thread each, ``OMP_NUM_THREADS=1``; a worker trains one run
after the other, so torch is imported once per worker, not per run) train the runs, a LAD-family run when
its teacher has finished. Each run's output goes to its ``train.log``; one progress bar counts the
iterations of all runs (its ETA comes from this session's speed), and a line is printed per finished run.

Re-running the same comparison reuses what is done. A run directory that holds a run is compared with the
config the comparison wants (its ``config.yaml``):

* the same config and finished (with its final evaluation): reused, not trained;
* the same config, not finished: resumed from its ``checkpoint.pt`` (a kill loses at most
  ``checkpoint_every`` iterations or the epoch in progress, whichever is shorter), or started again if it
  was killed before its first checkpoint;
* another config: an error naming the differing keys; with ``overwrite=True`` (``--overwrite``) it is
  trained again from scratch (its files deleted). Matching runs are reused even with ``overwrite``: use a
  new ``--out`` to train everything again.

The report directory ``out``::

    out/<strategy>/seed<k>/   a run directory of lad_edu.train (config.yaml, metrics.jsonl, checkpoint.pt,
                              eval/coco_stats.json, eval/detections.json), plus train.log (the run's output)
                              and compare.json ({"train_seconds", "finished"}, written by the comparison)
    out/results.json          the numbers below
    out/results.md            the same as tables, with the figures
    out/figures/*.png         ap, loss_curves, positives_vs_size, level_share, side_by_side, colad_timeline

``results.json``::

    {"settings": {"config", "overrides", "data", "train_images", "val_images", "strategies", "seeds",
                  "epochs", "milestones", "strides", "size_images"},
     "size_bins": {"labels": [...], "edges": [...], "num_gts": [...]},
     "strategies": {name: {
         "summary": {key: {"mean", "std"}},        # over seeds; std null with one seed
         "runs": [{"seed", "run_dir", "state", "teacher", "train_seconds",
                   "coco": {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", ... the 12 numbers},
                   "detections",                   # the run's eval/detections.json (the data's category ids)
                   "assignment": {"pos_per_gt", "gts_without_pos", "pos_iou", "level_share": [L],
                                  "pos_per_gt_by_size": [bins]}}]}},
     "figures": {name: path relative to out}}

* ``coco``: the last evaluation, as pycocotools gives it (0-1; its ``-1``, "nothing to measure", is null).
* ``train_seconds``: the wall time of ``train`` in the run's process (training and its periodic evaluations,
  summed over the sessions that trained it, a session killed by a signal other than Ctrl-C excepted; under
  ``jobs > 1`` the runs share the cores). A LAD run's time excludes its teacher's. Null for a run that the
  comparison found finished without having trained it.
* ``assignment``, from training (the mean of the last epoch's ``metrics.jsonl`` rows): ``pos_per_gt``
  (positive anchors per GT), ``gts_without_pos`` (the share of GTs that no anchor learns), ``pos_iou`` (the
  mean IoU of a positive anchor with its GT), ``level_share`` (the share of positives on each FPN level, P3
  first).
* ``pos_per_gt_by_size``: positives per GT for the GTs of each size bin, on the first ``size_images``
  validation images, labelled as training would label them with the run's final checkpoint
  (:func:`checkpoint_assigner`; the networks in eval mode). The bins are cut at each level's anchor side
  (``octave_base_scale * stride``, in the network's input pixels): "16-32" holds the objects between the P3
  and the P4 anchor. Bins without any GT are left out. Not COCO's small / medium / large, which are absolute
  areas for COCO's image sizes (on the 128 px classroom images nothing is "large").
* ``summary``: for every key of ``coco``, ``train_seconds`` and ``assignment``, the mean and std (ddof 1)
  over the seeds; lists entry by entry (:func:`lad_edu.viz.seed_mean_std`).

The numbers are what the runs give: every strategy gets the same settings, none is tuned to win.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from lad_edu.assign import ASSIGNERS
from lad_edu.assign.result import AssignResult
from lad_edu.atomic import atomic_open
from lad_edu.model import ModelConfig
from lad_edu.train.checkpoint import load_run_checkpoint
from lad_edu.train.config import OptimConfig, TrainConfig, config_from_dict, config_to_dict, load_config
from lad_edu.train.distributed import Dist
from lad_edu.train.labels import Labelled, labeller
from lad_edu.train.run_dir import RUN_FILES, RunDirError

__all__ = [
    "DEFAULT_STRATEGIES",
    "STRATEGIES",
    "RunFailedError",
    "RunSpec",
    "add_compare_arguments",
    "checkpoint_assigner",
    "compare",
    "plan_runs",
    "resolve_jobs",
    "run_compare",
    "run_state",
    "schedule_overrides",
    "strategy_overrides",
]

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
COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # the table's columns
MARKER = "compare.json"  # in each run directory: {"train_seconds", "finished"}
HOW = {"new": "trained", "restart": "trained from scratch", "resume": "resumed", "finished": "reused"}
POLL_SECONDS = 2.0  # how often the progress bar reads the running runs' metrics


class RunFailedError(RuntimeError):
    """A run of the comparison failed; the message names it, the error, and its log."""


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


def strategy_names(requested: Sequence[str]) -> list[str]:
    """The strategies to report, in the order asked, with ``paa`` added first when a LAD-family strategy
    needs it as teacher.

    >>> strategy_names(["fixed", "lad"])
    ['paa', 'fixed', 'lad']
    >>> strategy_names(["hungarian"])
    Traceback (most recent call last):
    ...
    ValueError: unknown strategy 'hungarian'; valid strategies: fixed, atss, paa, soft, lad, solad, colad
    """
    valid = list(STRATEGIES) + [name for name in ASSIGNERS if name not in STRATEGIES]
    for name in requested:
        if name not in valid:
            raise ValueError(f"unknown strategy {name!r}; valid strategies: {', '.join(valid)}")
    names = list(dict.fromkeys(requested))
    if any(name in WITH_TEACHER for name in names) and TEACHER not in names:
        names.insert(0, TEACHER)
    return names


def strategy_overrides(name: str, seed: int, out: Path, base: TrainConfig) -> list[str]:
    """The ``key=value`` overrides that turn the base config into strategy ``name`` (see the module table).

    >>> strategy_overrides("lad", 1, Path("runs/cmp"), TrainConfig())
    ['assign.assigner=paa', 'distill.mode=lad', 'distill.teacher_checkpoint=runs/cmp/paa/seed1/checkpoint.pt']
    """
    assigner, mode = STRATEGIES.get(name, (name, "none"))
    overrides = [f"assign.assigner={assigner}", f"distill.mode={mode}"]
    if name in WITH_TEACHER:
        overrides.append(f"distill.teacher_checkpoint={out / TEACHER / f'seed{seed}' / 'checkpoint.pt'}")
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
) -> list[RunSpec]:
    """Every run of the comparison, teachers first (so that the LAD family can start early).

    Raises:
        ConfigError: a bad ``config`` or ``overrides`` (naming the key).
        ValueError: an unknown strategy, or fewer than one seed.
    """
    if seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {seeds}")
    names = strategy_names(strategies)
    base = load_config(config, overrides)
    shared = [*overrides, *schedule_overrides(base.optim, epochs)]
    specs = []
    for seed in range(seeds):
        for name in names:
            cfg = load_config(config, [*shared, *strategy_overrides(name, seed, out, base), f"seed={seed}"])
            teacher = f"{TEACHER}/seed{seed}" if name in WITH_TEACHER else None
            specs.append(RunSpec(name, seed, out / name / f"seed{seed}", cfg, teacher))
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


# one run, in a worker process


_CTRL_C = {"handler": signal.default_int_handler}  # in a worker: what Ctrl-C does during a run


def _start_worker() -> None:
    """A worker process computes on one thread (``jobs`` runs share the cores without oversubscribing) and
    ignores Ctrl-C while it waits for a run: only a run is interrupted, and it writes its checkpoint."""
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"  # also for its loader workers
    torch.set_num_threads(1)
    _CTRL_C["handler"] = signal.signal(signal.SIGINT, signal.SIG_IGN)


def _last_eval_epoch(run_dir: Path) -> int | None:
    rows = read_metrics(run_dir, "eval")
    epochs = [row["epoch"] for row in rows if "network" not in row]
    return epochs[-1] if epochs else None


def _evaluate_checkpoint(cfg: TrainConfig, run_dir: Path) -> None:
    """Evaluate the run's checkpoint (an ``"eval"`` row and ``eval/``): a run killed during its final
    evaluation has a finished checkpoint, which ``train(resume=True)`` does not evaluate again."""
    from lad_edu.train.distributed import init_distributed
    from lad_edu.train.engine import MetricsLog, build_run, evaluate, restore_run_state
    from lad_edu.train.run_dir import RunLock

    with RunLock(run_dir):
        run = build_run(cfg, run_dir, init_distributed(cfg.device))
        restore_run_state(run)
        with MetricsLog(run_dir, enabled=True) as log:
            evaluate(run, log)


def _train_run(spec: RunSpec, state: str) -> dict:
    """Train ``spec`` as ``state`` says, in a worker process (:func:`_train_and_time`).

    Ctrl-C stops the run after the engine wrote a checkpoint of where it was; the ``KeyboardInterrupt``
    goes back to the parent as a plain one (``RunInterrupted`` cannot be unpickled there).
    """
    signal.signal(signal.SIGINT, _CTRL_C["handler"])
    try:
        return _train_and_time(spec, state)
    except KeyboardInterrupt as interrupt:
        raise KeyboardInterrupt(str(interrupt)) from None
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _train_and_time(spec: RunSpec, state: str) -> dict:
    """Train ``spec``, its output into ``run_dir/train.log``; evaluate its checkpoint if the last
    evaluation is missing. Returns its ``compare.json``: ``{"train_seconds", "finished": True}``.
    """
    from lad_edu.train import train

    spec.run_dir.mkdir(parents=True, exist_ok=True)
    before = read_marker(spec.run_dir)["train_seconds"] if state == "resume" else 0.0
    write_marker(spec.run_dir, before, finished=False)  # until train() returns, whatever was there before
    start, result = time.perf_counter(), None
    try:
        with (
            open(spec.run_dir / "train.log", "a") as log,
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
        ):
            print(f"== lad-edu compare: {state} {spec.key}, {datetime.now().isoformat(timespec='seconds')}")
            result = train(spec.cfg, spec.run_dir, resume=state == "resume", overwrite=state == "restart")
            if _last_eval_epoch(spec.run_dir) != result["epoch"]:
                _evaluate_checkpoint(spec.cfg, spec.run_dir)
    finally:  # this session's time counts, also when it was interrupted (then the run is not finished)
        if result is not None and result["already_finished"]:  # trained elsewhere: its time is unknown here
            seconds = before
        else:
            seconds = (before or 0.0) + time.perf_counter() - start
        marker = write_marker(spec.run_dir, seconds, finished=result is not None)
    return marker


# the scheduler: a process pool that starts a run when its teacher is done


def _trained_iters(run_dir: Path) -> int:
    """The ``global_iter`` of the last ``"train"`` row of ``run_dir/metrics.jsonl`` (read from its end)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return 0
    with path.open("rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
        lines = f.read().decode(errors="replace").splitlines()
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            row = json.loads(line)
            if row.get("kind") == "train":
                return int(row["global_iter"])
    return 0


def _iterations(spec: RunSpec, iters_per_epoch: int) -> int:
    """The iterations a whole run trains (``max_iters`` stops it sooner)."""
    total = spec.cfg.optim.epochs * iters_per_epoch
    return total if spec.cfg.max_iters is None else min(total, spec.cfg.max_iters)


class Progress:
    """One bar over the iterations of every run, and a line per finished run.

    Args:
        specs: all runs; states: their :func:`run_state`; iters_per_epoch: of the training data.
        enabled: show the bar (the lines are printed either way).
    """

    def __init__(self, specs: Sequence[RunSpec], states: dict[str, str], iters_per_epoch: int, enabled: bool):
        self.totals = {spec.key: _iterations(spec, iters_per_epoch) for spec in specs}
        self.done = {spec.key: self._trained(spec, states[spec.key]) for spec in specs}
        self.bar = tqdm(
            total=sum(self.totals.values()),
            initial=sum(self.done.values()),
            unit="it",
            desc="compare",
            disable=not enabled,
            dynamic_ncols=True,
        )

    def _trained(self, spec: RunSpec, state: str) -> int:
        """Iterations of ``spec`` already trained: all when finished, up to its last row when resumed."""
        if state == "finished":
            return self.totals[spec.key]
        if state == "resume":
            return min(self.totals[spec.key], _trained_iters(spec.run_dir))
        return 0

    def poll(self, running: Sequence[RunSpec]) -> None:
        """Read how far the running runs are."""
        for spec in running:
            self.done[spec.key] = self._trained(spec, "resume")
        self.bar.update(sum(self.done.values()) - self.bar.n)

    def finished(self, spec: RunSpec, marker: dict, state: str) -> None:
        """Count ``spec`` as done, and print its line: strategy, seed, AP, minutes, how (:data:`HOW`)."""
        self.done[spec.key] = self.totals[spec.key]
        self.bar.update(sum(self.done.values()) - self.bar.n)
        stats = json.loads((spec.run_dir / "eval" / "coco_stats.json").read_text())
        seconds = marker["train_seconds"]
        took = "" if seconds is None else f" in {seconds / 60:.1f} min"
        self.bar.write(
            f"{spec.strategy:>8} seed {spec.seed}: AP {100 * stats['AP']:5.1f}{took} ({HOW[state]})"
        )

    def close(self) -> None:
        self.bar.close()


def _failure(spec: RunSpec, error: BaseException) -> str:
    return f"{spec.key}: {type(error).__name__}: {error} (its log: {spec.run_dir / 'train.log'})"


def train_runs(
    specs: Sequence[RunSpec], states: dict[str, str], *, jobs: int, progress: Progress
) -> dict[str, dict]:
    """Train every run that is not ``"finished"``, ``jobs`` at a time, each when its teacher is done.

    Returns:
        ``{key: compare.json of the run}`` for every run.

    Raises:
        RunFailedError: after the other runs ended, naming every run that failed (and those that could not
            start because their teacher failed). A rerun resumes them.
    """
    markers = {spec.key: read_marker(spec.run_dir) for spec in specs if states[spec.key] == "finished"}
    waiting = [spec for spec in specs if spec.key not in markers]
    failures: list[str] = []
    context = get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker) as pool:
        running: dict[Future, RunSpec] = {}
        while waiting or running:
            for spec in [s for s in waiting if s.teacher is None or s.teacher in markers]:
                if len(running) < jobs:
                    waiting.remove(spec)
                    running[pool.submit(_train_run, spec, states[spec.key])] = spec
            if not running:  # what is left waits for a teacher that failed
                failures += [
                    f"{spec.key}: not started, its teacher {spec.teacher} failed" for spec in waiting
                ]
                break
            done, _ = wait(running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            for future in done:
                spec = running.pop(future)
                try:
                    markers[spec.key] = future.result()
                except Exception as error:  # the run's own error, re-raised from its process
                    failures.append(_failure(spec, error))
                else:
                    progress.finished(spec, markers[spec.key], states[spec.key])
            progress.poll(list(running.values()))
    if failures:
        raise RunFailedError(f"{len(failures)} run(s) failed: " + "; ".join(failures))
    return markers


# what each run gave


def read_metrics(run_dir: Path, kind: str) -> list[dict]:
    """The rows of ``run_dir/metrics.jsonl`` of one ``kind`` (``"train"`` or ``"eval"``)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [row for row in rows if row["kind"] == kind]


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def training_assignment(rows: Sequence[dict]) -> dict:
    """What the assigner did during the last epoch: the mean of its ``"train"`` rows' ``pos_per_gt``,
    ``gts_without_pos``, ``pos_iou`` and ``pos_share_l{i}`` (as ``level_share [L]``); null when unmeasured."""
    last = [row for row in rows if row["epoch"] == max((r["epoch"] for r in rows), default=None)]
    levels = sorted(
        {int(k.removeprefix("pos_share_l")) for row in last for k in row if k.startswith("pos_share_l")}
    )
    out = {key: _mean([row.get(key) for row in last]) for key in ("pos_per_gt", "gts_without_pos", "pos_iou")}
    out["level_share"] = [_mean([row.get(f"pos_share_l{i}") for row in last]) for i in levels]
    return out


def checkpoint_assigner(checkpoint: Path) -> Callable[[torch.Tensor, list[dict]], Labelled]:
    """The labels training would give a batch with the network(s) of a run's checkpoint
    (:func:`lad_edu.train.labels.labeller`: the run's own assigner on the predictions its mode names, crowd
    regions ignored, the networks in eval mode)."""
    state = load_run_checkpoint(checkpoint)
    return labeller(config_from_dict(state["config"]), state["category_ids"], state, source=str(checkpoint))


def validation_batches(cfg: TrainConfig, val_set, count: int) -> list[tuple[torch.Tensor, list[dict]]]:
    """The first ``count`` validation images as the evaluation sees them (resized, padded), in batches."""
    from lad_edu.train.data import eval_loader

    batches, seen = [], 0
    for images, targets in eval_loader(val_set, cfg.data, Dist(0, 1, torch.device("cpu"))):
        keep = min(len(targets), count - seen)
        if keep <= 0:
            break
        batches.append((images[:keep], targets[:keep]))
        seen += keep
    return batches


def _gt_sizes(targets: Sequence[dict]) -> list[torch.Tensor]:
    """Each image's GT sizes: ``sqrt(width * height)`` in input pixels."""
    return [((t["boxes"][:, 2:] - t["boxes"][:, :2]).clamp(min=0).prod(dim=1)).sqrt() for t in targets]


def _all_gt_sizes(batches: Sequence[tuple[torch.Tensor, list[dict]]]) -> torch.Tensor:
    """``[G]``: the sizes of every GT of ``batches``, image after image."""
    return torch.cat([s for _, targets in batches for s in _gt_sizes(targets)] or [torch.zeros(0)])


def _in_bin(sizes: torch.Tensor, low: float, high: float | None) -> torch.Tensor:
    return (sizes >= low) & (sizes < (float("inf") if high is None else high))


def _bin_label(low: float, high: float | None) -> str:
    if high is None:
        return f">= {low:g}"
    return f"< {high:g}" if low == 0 else f"{low:g}-{high:g}"


def size_bins(model: ModelConfig, batches: Sequence[tuple[torch.Tensor, list[dict]]]) -> dict:
    """The object-size bins (see the module docstring) that hold at least one GT of ``batches``:
    ``{"edges": [[low, high]], "labels", "num_gts"}`` (high is null for the last bin)."""
    cuts = [model.octave_base_scale * stride for stride in model.strides]
    sizes = _all_gt_sizes(batches)
    bins = {"edges": [], "labels": [], "num_gts": []}
    for low, high in zip([0.0, *cuts], [*cuts, None], strict=True):
        count = int(_in_bin(sizes, low, high).sum())
        if count:
            bins["edges"].append([low, high])
            bins["labels"].append(_bin_label(low, high))
            bins["num_gts"].append(count)
    return bins


def positives_by_size(
    labelled: Sequence[Labelled], batches: Sequence[tuple[torch.Tensor, list[dict]]], bins: dict
) -> list[float | None]:
    """Positives per GT in each size bin of ``bins``, over every image of ``batches``."""
    results = [result for results, _, _ in labelled for result in results]
    positives = torch.cat([r.positives_per_gt().float() for r in results] or [torch.zeros(0)])
    sizes = _all_gt_sizes(batches)
    means = [positives[_in_bin(sizes, low, high)].mean() for low, high in bins["edges"]]
    return [None if mean.isnan() else float(mean) for mean in means]


def pick_image(batches: Sequence[tuple[torch.Tensor, list[dict]]]) -> tuple[int, int]:
    """``(batch, image)`` of the image to draw: of those with 1-6 GTs (each keeps its own colour), the one
    whose objects span the widest range of sizes; the first image if none has GTs."""
    best, where = -1.0, (0, 0)
    for b, (_, targets) in enumerate(batches):
        for i, sizes in enumerate(_gt_sizes(targets)):
            if 1 <= len(sizes) <= 6:
                spread = float(sizes.max() / sizes.min().clamp(min=1.0)) + 0.01 * len(sizes)
                if spread > best:
                    best, where = spread, (b, i)
    return where


def collect_run(spec: RunSpec, marker: dict, state: str, by_size: list[float | None]) -> dict:
    """One run's entry of ``results.json`` (see the module docstring)."""
    stats = json.loads((spec.run_dir / "eval" / "coco_stats.json").read_text())
    assignment = training_assignment(read_metrics(spec.run_dir, "train")) | {"pos_per_gt_by_size": by_size}
    return {
        "seed": spec.seed,
        "run_dir": str(spec.run_dir),
        "state": HOW[state],
        "teacher": spec.teacher,
        "train_seconds": marker["train_seconds"],
        "coco": {name: None if value == -1 else value for name, value in stats.items()},
        "detections": str(spec.run_dir / "eval" / "detections.json"),
        "assignment": assignment,
    }


def _nulls(values) -> list[float | None]:
    return [None if v != v else float(v) for v in values]  # v != v: NaN


def summarize(runs: Sequence[dict]) -> dict:
    """``{key: {"mean", "std"}}`` over the seeds' runs, for every number of their ``coco``,
    ``train_seconds`` and ``assignment`` (lists entry by entry); null where there is nothing to average."""
    from lad_edu.viz import seed_mean_std

    numbers = [{**run["coco"], "train_seconds": run["train_seconds"], **run["assignment"]} for run in runs]
    summary = {}
    for key, first in numbers[0].items():
        is_list = isinstance(first, list)
        mean, std = (_nulls(v) for v in seed_mean_std([n[key] if is_list else [n[key]] for n in numbers]))
        summary[key] = {"mean": mean, "std": std} if is_list else {"mean": mean[0], "std": std[0]}
    return summary


@dataclass
class Picture:
    """The validation image every strategy labels in the side-by-side figure (seed 0's runs)."""

    image: torch.Tensor  # [3, H, W] as the network saw it, without padding
    gt_boxes: torch.Tensor  # [G, 4] xyxy
    anchors: torch.Tensor | None = None  # [N, 4]
    num_level_anchors: list[int] | None = None
    results: dict[str, AssignResult] | None = None  # {strategy: its labels of the image}


def label_runs(
    specs: Sequence[RunSpec], batches: Sequence[tuple[torch.Tensor, list[dict]]], bins: dict, progress: bool
) -> tuple[dict[str, list[float | None]], Picture]:
    """Every run's positives per GT by size bin on ``batches``; the picked image labelled by seed 0's runs."""
    b, i = pick_image(batches)
    picked_images, picked_targets = batches[b]
    height, width = picked_targets[i]["size"]
    picture = Picture(picked_images[i, :, :height, :width], picked_targets[i]["boxes"], results={})
    by_size = {}
    for spec in tqdm(specs, desc="labelling validation images", disable=not progress, leave=False):
        assign = checkpoint_assigner(spec.run_dir / "checkpoint.pt")
        labelled = [assign(images, targets) for images, targets in batches]
        by_size[spec.key] = positives_by_size(labelled, batches, bins)
        if spec.seed == 0:
            results, picture.anchors, picture.num_level_anchors = labelled[b]
            picture.results[spec.strategy] = results[i]
    return by_size, picture


def _cell(stat: dict, scale: float = 1.0, digits: int = 1) -> str:
    """``"mean ± std"`` of a summary entry (``"—"``: nothing measured)."""
    mean, std = stat["mean"], stat["std"]
    if mean is None:
        return "—"
    return f"{scale * mean:.{digits}f}" + ("" if std is None else f" ± {scale * std:.{digits}f}")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _spread(stat: dict) -> list[dict]:
    """A summary entry of lists, ``{"mean": [...], "std": [...]}``, as one ``{"mean", "std"}`` per entry."""
    return [{"mean": m, "std": d} for m, d in zip(stat["mean"], stat["std"], strict=True)]


def _tables(report: dict) -> list[str]:
    """The three tables of ``results.md``: AP, the assignment during training, positives by size."""
    settings, bins = report["settings"], report["size_bins"]
    summaries = {name: entry["summary"] for name, entry in report["strategies"].items()}
    ap = [
        [name, *(_cell(s[k], 100) for k in COCO_KEYS), _cell(s["train_seconds"], 1 / 60)]
        for name, s in summaries.items()
    ]
    training = [
        [
            name,
            _cell(s["pos_per_gt"], digits=2),
            _cell(s["gts_without_pos"], 100),
            _cell(s["pos_iou"], digits=2),
        ]
        + [_cell(share, 100) for share in _spread(s["level_share"])]
        for name, s in summaries.items()
    ]
    by_size = [
        [name, *(_cell(value, digits=2) for value in _spread(s["pos_per_gt_by_size"]))]
        for name, s in summaries.items()
    ]
    levels = [f"P{round(math.log2(stride))} share (%)" for stride in settings["strides"]]
    sizes = [f"{label} ({n} GTs)" for label, n in zip(bins["labels"], bins["num_gts"], strict=True)]
    return [
        f"## COCO box AP on the validation images (x 100, mean ± std over {len(settings['seeds'])} seed(s))",
        "",
        *_table(["strategy", *COCO_KEYS, "train min"], ap),
        "",
        "—: nothing to measure (pycocotools' -1; COCO's size ranges are absolute areas). Train minutes: "
        "wall time of the run's process, which shares the cores with the other runs when jobs > 1.",
        "",
        "## What the assigners did during training (last epoch)",
        "",
        *_table(
            ["strategy", "positives / GT", "GTs without a positive (%)", "IoU of positives", *levels],
            training,
        ),
        "",
        f"## Positives per GT by object size (first {settings['size_images']} validation images, final "
        "checkpoints; sqrt(area) in input pixels, cut at each level's anchor side)",
        "",
        *_table(["strategy", *sizes], by_size),
        "",
        "lad and solad label with their teacher, the final `paa` checkpoint of their seed, so here (and in "
        "the side-by-side figure) their labels are the `paa` run's own; during training they differed, as "
        "the `paa` network was still learning.",
    ]


def markdown(report: dict) -> str:
    """``results.md``: the settings, the tables, the figures."""
    settings = report["settings"]
    intro = (
        f"Base config `{settings['config']}`, overrides {settings['overrides'] or 'none'}; data "
        f"`{settings['data']}` ({settings['train_images']} training, {settings['val_images']} validation "
        f"images); {settings['epochs']} epoch(s), lr steps after epochs {settings['milestones']}; seeds "
        f"{settings['seeds']}. Every strategy trained on the same data, network, schedule and seeds; only "
        "the assignment differs (soft, lad, solad: the teacher is the `paa` run of the same seed). The "
        "numbers are what the runs gave: no strategy was tuned."
    )
    figures = [f"![{name}]({path})" for name, path in report["figures"].items()]
    return "\n".join(
        ["# Label assignment compared", "", intro, "", *_tables(report), "", "## Figures", "", *figures, ""]
    )


def write_figures(report: dict, specs: Sequence[RunSpec], picture: Picture, out: Path) -> dict[str, str]:
    """Every figure of the report as ``out/figures/<name>.png``; returns ``{name: path relative to out}``."""
    import matplotlib.pyplot as plt

    from lad_edu import viz

    strategies = report["strategies"]
    runs = {name: entry["runs"] for name, entry in strategies.items()}
    cfg = specs[0].cfg
    figures = {
        "ap": viz.plot_ap_by_strategy(
            {
                name: [None if r["coco"]["AP"] is None else 100 * r["coco"]["AP"] for r in rs]
                for name, rs in runs.items()
            }
        ),
        "loss_curves": viz.plot_loss_curves(
            {name: [read_metrics(Path(r["run_dir"]), "train") for r in rs] for name, rs in runs.items()}
        ),
        "positives_vs_size": viz.plot_positives_vs_size(
            {name: [r["assignment"]["pos_per_gt_by_size"] for r in rs] for name, rs in runs.items()},
            report["size_bins"]["labels"],
            report["size_bins"]["num_gts"],
        ),
        "level_share": viz.plot_level_share(
            {name: [r["assignment"]["level_share"] for r in rs] for name, rs in runs.items()},
            cfg.model.strides,
        ),
        "side_by_side": viz.draw_strategies_side_by_side(
            picture.image,
            picture.anchors,
            picture.num_level_anchors,
            picture.gt_boxes,
            {name: picture.results[name] for name in strategies},
            cfg.model.strides,
        ),
    }
    if "colad" in strategies:
        colad = next(spec for spec in specs if spec.strategy == "colad" and spec.seed == 0)
        figures["colad_timeline"] = viz.plot_colad_timeline(read_metrics(colad.run_dir, "train"))
    (out / "figures").mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, figure in figures.items():
        paths[name] = f"figures/{name}.png"
        figure.savefig(out / paths[name], dpi=110)
        plt.close(figure)
    return paths


# the comparison


def resolve_jobs(jobs: int | str) -> int:
    """``"auto"``: the cores this process may use; else a positive number."""
    if jobs == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if int(jobs) < 1:
        raise ValueError(f"--jobs must be 'auto' or at least 1, got {jobs}")
    return int(jobs)


def _train_all(
    specs: Sequence[RunSpec], states: dict[str, str], train_set, *, jobs: int, progress: bool
) -> dict[str, dict]:
    """Train what is not finished, under one progress bar; a line per run (the reused ones first)."""
    from lad_edu.train.data import train_loader

    cfg = specs[0].cfg
    loader = train_loader(train_set, cfg.data, cfg.seed, Dist(0, 1, torch.device("cpu")))
    bar = Progress(specs, states, loader.batch_sampler.batches_per_epoch, progress)
    try:
        for spec in specs:
            if states[spec.key] == "finished":
                bar.finished(spec, read_marker(spec.run_dir), "finished")
        return train_runs(specs, states, jobs=jobs, progress=bar)
    finally:
        bar.close()


def compare(
    *,
    data: str | Path | None = None,
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    seeds: int = 1,
    epochs: int | None = None,
    config: str = "classroom_compare",
    overrides: Sequence[str] = (),
    out: str | Path = "runs/compare",
    jobs: int | str = "auto",
    overwrite: bool = False,
    size_images: int = 100,
    progress: bool = True,
) -> dict:
    """Train ``strategies`` x ``seeds`` on one base config and write the report (see the module docstring).

    Args:
        data: a COCO-layout dataset root (default: the config's ``data.root``).
        strategies: names of the module table (or of :data:`lad_edu.assign.ASSIGNERS`).
        seeds: seeds ``0 .. seeds-1`` for every strategy.
        epochs: ``optim.epochs``, milestones scaled (default: the config's schedule).
        config: the base config, a shipped name or a YAML path; overrides: ``key=value`` for every run.
        out: the report directory; its runs are reused or resumed when their config matches.
        jobs: runs trained at once (``"auto"``: one per core).
        overwrite: train again the runs in ``out`` whose config differs (else an error).
        size_images: validation images labelled for positives per GT by size.
        progress: show the progress bars (the line per finished run is printed either way).

    Returns:
        The report, as written to ``out/results.json``.

    Raises:
        ValueError / ConfigError: a bad strategy, data or override, each in one line that names it.
        RunDirError: a run directory of ``out`` holds another config (without ``overwrite``).
        RunFailedError: a run failed (the others ran to their end; a rerun resumes).
    """
    out = Path(out)
    sets = [f"data.root={json.dumps(str(data))}", *overrides] if data is not None else list(overrides)
    specs = plan_runs(
        config=config, overrides=sets, strategies=strategies, seeds=seeds, epochs=epochs, out=out
    )
    train_set, val_set = load_data(specs[0].cfg)
    states = {spec.key: run_state(spec, overwrite) for spec in specs}  # every refusal before any training
    markers = _train_all(specs, states, train_set, jobs=resolve_jobs(jobs), progress=progress)

    cfg = specs[0].cfg
    batches = validation_batches(cfg, val_set, size_images)
    bins = size_bins(cfg.model, batches)
    by_size, picture = label_runs(specs, batches, bins, progress)
    settings = {
        "config": config,
        "overrides": list(overrides),
        "data": cfg.data.root,
        "train_images": len(train_set),
        "val_images": len(val_set),
        "strategies": strategy_names(strategies),
        "seeds": list(range(seeds)),
        "epochs": cfg.optim.epochs,
        "milestones": list(cfg.optim.milestones),
        "strides": list(cfg.model.strides),
        "size_images": sum(len(targets) for _, targets in batches),
    }
    report = {"settings": settings, "size_bins": bins, "strategies": {}}
    for name in settings["strategies"]:
        runs = [
            collect_run(s, markers[s.key], states[s.key], by_size[s.key]) for s in specs if s.strategy == name
        ]
        report["strategies"][name] = {"summary": summarize(runs), "runs": runs}
    report["figures"] = write_figures(report, specs, picture, out)
    with atomic_open(out / "results.json") as f:
        json.dump(report, f, indent=1)
    with atomic_open(out / "results.md") as f:
        f.write(markdown(report))
    return report


# the command line: `lad-edu compare`


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``lad-edu compare`` (and of ``benchmarks/bench_demo.py``)."""
    parser.add_argument(
        "--data", type=Path, default=None, help="COCO-layout dataset root (default: the config's)"
    )
    parser.add_argument(
        "--strategies",
        default=",".join(DEFAULT_STRATEGIES),
        help=f"comma-separated (default {','.join(DEFAULT_STRATEGIES)}); any of {', '.join(STRATEGIES)}",
    )
    parser.add_argument(
        "--seeds", type=int, default=1, help="seeds 0..SEEDS-1 for every strategy (default 1)"
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="training epochs, lr steps scaled (default: config's)"
    )
    parser.add_argument(
        "--config", default="classroom_compare", help="base config (default classroom_compare)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field of every run"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/compare"), help="report directory")
    parser.add_argument("--jobs", default="auto", help="runs trained at once (default auto: one per core)")
    parser.add_argument(
        "--overwrite", action="store_true", help="train again runs in --out of another config"
    )


def run_compare(args: argparse.Namespace) -> dict:
    """``lad-edu compare``: :func:`compare` with the parsed options; prints the tables, where the report and
    its figures are, and what to do next."""
    from lad_edu.data.classroom import data_root

    if args.data is None:  # the default classroom data is written on first use, as for `lad-edu train`
        data_root(None, load_config(args.config, args.set).data.root)
    report = compare(
        data=args.data,
        strategies=[name.strip() for name in args.strategies.split(",") if name.strip()],
        seeds=args.seeds,
        epochs=args.epochs,
        config=args.config,
        overrides=args.set,
        out=args.out,
        jobs=args.jobs,
        overwrite=args.overwrite,
    )
    figures = "\n".join(f"  {args.out / path}" for path in report["figures"].values())
    print(
        "\n".join(_tables(report)) + f"\n\nreport: {args.out / 'results.md'} (and results.json)\n"
        f"figures:\n{figures}\n\n"
        "next: step through the rules in the notebooks (`.venv/bin/jupyter lab notebooks/`), or train one "
        "strategy yourself (`lad-edu train --config classroom_paa`)"
    )
    return report
