"""The training loop: SGD with warm-up and steps, AMP, DDP, checkpoints, metrics, COCO evaluation.

How to read this file: from top to bottom, the functions follow one run.

1. :func:`train` locks the run directory, builds the run, restores its checkpoint when resuming, and
   trains it to the end.
2. :func:`build_run` builds a :class:`Run`, everything the run needs: the datasets and the training
   loader; the network(s) and the teacher in the :class:`~lad_edu.train.learner.Learner` that computes
   their step (:func:`build_learner`); the optimiser, learning-rate schedule and gradient scaler
   (:class:`Optimization`).
3. :func:`save_run_state` and :func:`restore_run_state`: a checkpoint holds the run's state, its weights,
   optimiser and position (``run.epoch``, ``run.iteration``).
4. :func:`fit` loops over the epochs (a checkpoint and maybe an evaluation at each end),
   :func:`train_one_epoch` over the batches of one: the step's losses (:func:`step_losses`, which raises
   when the step diverged), backward and SGD, a metrics row every ``log_every`` iterations, a checkpoint
   every ``checkpoint_every``.
5. The metrics (:class:`LogWindow`, :class:`MetricsLog`) and the evaluation (:func:`evaluate`,
   :func:`evaluate_detector`).

A run directory holds everything a run produces (the contract scripts and notebooks rely on):

====================================  =================================================================
``config.yaml``                       the resolved config
``metrics.jsonl``                     one JSON object per line: ``"kind": "train"`` every ``log_every``
                                      iterations (losses, lr, assignment statistics, CoLAD's choice),
                                      ``"kind": "eval"`` after each evaluation (the 12 COCO numbers);
                                      strict JSON: a number with nothing to measure is ``null``
``checkpoint.pt``                     the last checkpoint: every epoch, every ``checkpoint_every``
                                      iterations, at ``max_iters``, on Ctrl-C
``eval/detections.json``              COCO results of the last evaluation (original category ids)
``eval/coco_stats.json``              its 12 numbers by name (``eval_partner/`` for CoLAD's network 2)
``snapshots.jsonl``                   with ``snapshot.images``: the assignment of those validation images
                                      before the first epoch and every ``snapshot.every`` epochs
                                      (:mod:`lad_edu.train.snapshots`)
``.lock``                             while a training writes the directory: its pid, host and start
====================================  =================================================================

A directory that holds a run is trained into again only with ``resume=True`` or ``overwrite=True`` (see
:mod:`lad_edu.train.run_dir`). ``resume=True`` continues from ``checkpoint.pt`` exactly: the same weights,
optimiser momentum, learning rate and scaler, and (because batches and augmentations are drawn from the
seed, the epoch and the image index) the very batches the interrupted run would have seen next; the
metrics rows and snapshots written after the checkpoint are dropped, as those iterations are trained again.
Resuming a finished run trains nothing and returns ``"already_finished": True``.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import yaml
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from lad_edu.atomic import atomic_open
from lad_edu.data.coco import CocoDetection
from lad_edu.model import Detector, build_detector
from lad_edu.model.checkpoint import load_strict
from lad_edu.train.checkpoint import check_category_ids, load_run_checkpoint, save_checkpoint
from lad_edu.train.config import ConfigError, OptimConfig, TrainConfig, config_to_dict, other_network
from lad_edu.train.data import eval_loader, load_datasets, train_loader
from lad_edu.train.distributed import Dist, all_gather_objects, any_true, init_distributed, shutdown
from lad_edu.train.evaluate import coco_evaluate, to_coco_results
from lad_edu.train.learner import Learner, Networks, load_teacher
from lad_edu.train.run_dir import RunLock, prepare_run_dir, strict_json, truncate_metrics
from lad_edu.train.snapshots import SNAPSHOTS_FILE, check_snapshot_images, take_snapshots
from lad_edu.train.stats import summarize

__all__ = [
    "LogWindow",
    "MetricsLog",
    "NonFiniteLossError",
    "Optimization",
    "Run",
    "RunInterrupted",
    "autocast_factory",
    "build_learner",
    "build_networks",
    "build_run",
    "evaluate",
    "evaluate_detector",
    "fit",
    "lr_factor",
    "restore_run_state",
    "save_run_state",
    "step_losses",
    "train",
    "train_one_epoch",
]


class NonFiniteLossError(RuntimeError):
    """A training step diverged (a NaN or infinite loss or prediction); the last good checkpoint is kept."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the training after a checkpoint of the interrupted position was written."""

    def __init__(self, checkpoint: Path, epoch: int, iteration: int):
        super().__init__(f"checkpoint of epoch {epoch + 1}, iteration {iteration} written to {checkpoint}")
        self.checkpoint, self.epoch, self.iteration = checkpoint, epoch, iteration

    def __reduce__(self):  # pickled with its own arguments: a worker process can send it to its parent
        return type(self), (self.checkpoint, self.epoch, self.iteration)


def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = False, overwrite: bool = False) -> dict:
    """Train (and evaluate) as ``cfg`` says, writing the run directory described in the module docstring.

    Launched by ``torchrun``, every process calls this; see :mod:`lad_edu.train.distributed`.

    Args:
        resume: continue the run in ``run_dir`` from its ``checkpoint.pt``.
        overwrite: remove the files of a run already in ``run_dir`` first.

    Returns:
        On rank 0 ``{"epoch", "iter", "eval": last COCO numbers or None, "already_finished"}``; on other
        ranks ``eval`` is None. ``already_finished`` is True when ``resume`` found nothing left to train.

    Raises:
        RunDirError: ``run_dir`` holds a run and neither flag is given, ``resume`` finds no checkpoint,
            or another process is training into ``run_dir``.
        CheckpointError / ConfigError: the checkpoint to resume or the teacher does not fit.
        NonFiniteLossError: a step diverged (the last checkpoint is kept).
        RunInterrupted: a KeyboardInterrupt, after writing a checkpoint of the interrupted position.
    """
    run_dir = Path(run_dir)
    dist = init_distributed(cfg.device)
    try:
        with RunLock(run_dir, enabled=dist.is_main):
            if dist.is_main:
                prepare_run_dir(run_dir, resume, overwrite)
            run = build_run(cfg, run_dir, dist)
            if resume:
                restore_run_state(run)
                if run.finished:
                    return {"epoch": run.epoch, "iter": run.iteration, "eval": None, "already_finished": True}
            _write_config(run)
            last_eval = fit(run)
            return {"epoch": run.epoch, "iter": run.iteration, "eval": last_eval, "already_finished": False}
    finally:
        shutdown()


# building the run


@dataclass
class Run:
    """Everything a run needs (built by :func:`build_run`), and how far it has trained.

    ``epoch`` epochs are complete and ``iteration`` iterations of the next one trained; a checkpoint
    saves this position with the weights (:func:`save_run_state`).
    """

    cfg: TrainConfig
    dist: Dist
    run_dir: Path
    train_set: CocoDetection
    val_set: CocoDetection
    loader: DataLoader  # the training batches, cfg.data.batch_size images per process
    learner: Learner  # the network(s) to train, the teacher, one step's losses
    optimization: Optimization  # SGD, the learning-rate schedule, the fp16 gradient scaler
    autocast: Callable[[], contextlib.AbstractContextManager]  # the forward's precision (cfg.amp)
    epoch: int = 0
    iteration: int = 0

    @property
    def networks(self) -> Networks:
        return self.learner.networks

    @property
    def iters_per_epoch(self) -> int:
        return self.loader.batch_sampler.batches_per_epoch

    @property
    def images_per_iter(self) -> int:
        """The total batch: the images of every process."""
        return self.cfg.data.batch_size * self.dist.world_size

    @property
    def global_iter(self) -> int:
        """Iterations trained since the run began."""
        return self.epoch * self.iters_per_epoch + self.iteration

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    @property
    def reached_max_iters(self) -> bool:
        return self.cfg.max_iters is not None and self.global_iter >= self.cfg.max_iters

    @property
    def finished(self) -> bool:
        return self.epoch >= self.cfg.optim.epochs or self.reached_max_iters


def build_run(cfg: TrainConfig, run_dir: Path, dist: Dist) -> Run:
    """The run of ``cfg`` at its beginning (epoch 0, iteration 0); :func:`restore_run_state` resumes it."""
    autocast = autocast_factory(cfg.amp, dist.device)  # refuses fp16 on a CPU before anything is loaded
    train_set, val_set = load_datasets(cfg.data)
    check_snapshot_images(cfg, val_set)
    if dist.is_main:
        _warn_if_without_objects(train_set, val_set)
    learner = build_learner(cfg, train_set.category_ids, dist)
    loader = train_loader(train_set, cfg.data, cfg.seed, dist)
    optimization = Optimization.build(
        cfg,
        learner.networks,
        iters_per_epoch=loader.batch_sampler.batches_per_epoch,
        total_batch=cfg.data.batch_size * dist.world_size,
    )
    return Run(cfg, dist, run_dir, train_set, val_set, loader, learner, optimization, autocast)


def autocast_factory(amp: str, device: torch.device):
    """A no-argument context-manager factory: ``torch.autocast`` in ``amp``'s precision, or nothing."""
    if amp == "none":
        return contextlib.nullcontext
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("amp='fp16' needs a CUDA device; on the CPU use amp=bf16 or amp=none")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return partial(torch.autocast, device_type=device.type, dtype=dtype)


def _warn_if_without_objects(train_set: CocoDetection, val_set: CocoDetection) -> None:
    consequences = [
        (train_set, "the detector learns background only; pos_per_gt & co. are null in metrics.jsonl"),
        (val_set, "every AP and AR is -1, COCOeval's 'nothing to measure'"),
    ]
    for dataset, consequence in consequences:
        if dataset.num_objects == 0:
            warnings.warn(f"{dataset.annotation_file} has no objects: {consequence}", stacklevel=4)


def build_learner(
    cfg: TrainConfig,
    category_ids: Sequence[int],
    dist: Dist,
    *,
    make_teacher: Callable[[TrainConfig, Sequence[int], Detector, torch.device], Detector] = load_teacher,
) -> Learner:
    """The network(s) to train and the frozen teacher, in the :class:`Learner` that computes their step.

    The initial weights are drawn from ``cfg.seed``. ``learner.networks`` is what the optimiser trains
    and a checkpoint saves; ``learner.trained`` what the forward runs through (DDP's wrapper when
    distributed).

    Args:
        category_ids: the training data's categories; the detectors predict ``len(category_ids)`` classes.
        make_teacher: ``(cfg, category_ids, student, device) -> teacher`` for soft / lad / solad; by
            default :func:`~lad_edu.train.learner.load_teacher` from ``distill.teacher_checkpoint``
            (the training benchmark passes an untrained one).
    """
    torch.manual_seed(cfg.seed)
    networks, trained = build_networks(cfg, len(category_ids), dist)
    teacher = None
    if cfg.distill.mode in ("soft", "lad", "solad"):
        teacher = make_teacher(cfg, category_ids, networks.model, dist.device)
    return Learner(cfg, networks, trained, teacher)


def build_networks(cfg: TrainConfig, num_classes: int, dist: Dist) -> tuple[Networks, nn.Module]:
    """The network(s) to train, in training mode, and what the forward runs through (DDP when distributed)."""
    model = build_detector(cfg.model, num_classes)
    partner = None
    if cfg.distill.mode == "colad":  # CoLAD's second network, trained alongside (section 3.4)
        partner = build_detector(other_network(cfg, imagenet=True), num_classes)
    networks = Networks(model, partner).to(dist.device).train()  # train(): frozen layers stay in eval
    if dist.world_size == 1:
        return networks, networks
    device_ids = [dist.device.index] if dist.device.type == "cuda" else None
    return networks, DistributedDataParallel(networks, device_ids=device_ids)


def lr_factor(iteration: int, iters_per_epoch: int, cfg: OptimConfig) -> float:
    """The learning-rate multiplier at ``iteration``: linear warm-up, then ``gamma`` at each milestone epoch.

    >>> cfg = OptimConfig(warmup_iters=10, warmup_factor=0.1, milestones=(2,), gamma=0.1)
    >>> [round(lr_factor(i, 20, cfg), 3) for i in (0, 5, 10, 39, 40)]
    [0.1, 0.55, 1.0, 1.0, 0.1]
    """
    warmup = 1.0
    if iteration < cfg.warmup_iters:
        warmup = cfg.warmup_factor + (1 - cfg.warmup_factor) * iteration / cfg.warmup_iters
    epoch = iteration // max(iters_per_epoch, 1)
    return warmup * cfg.gamma ** sum(epoch >= m for m in cfg.milestones)


@dataclass
class Optimization:
    """What an optimiser step changes, so what a checkpoint saves and a resume restores."""

    networks: Networks
    optimizer: torch.optim.SGD
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    grad_clip: float | None

    @classmethod
    def build(cls, cfg: TrainConfig, networks: Networks, *, iters_per_epoch: int, total_batch: int):
        """SGD at ``cfg.optim.lr`` scaled to ``total_batch`` images a step, :func:`lr_factor`'s schedule."""
        optimizer = torch.optim.SGD(
            [p for p in networks.parameters() if p.requires_grad],
            lr=cfg.optim.lr * total_batch / cfg.optim.base_batch_size,  # the linear scaling rule
            momentum=cfg.optim.momentum,
            weight_decay=cfg.optim.weight_decay,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, partial(lr_factor, iters_per_epoch=iters_per_epoch, cfg=cfg.optim)
        )
        device_type = next(networks.parameters()).device.type
        scaler = torch.amp.GradScaler(device_type, enabled=cfg.amp == "fp16")
        return cls(networks, optimizer, scheduler, scaler, cfg.optim.grad_clip)

    def step(self, loss: Tensor) -> None:
        """Backward (scaled under fp16), clip, SGD step, learning-rate schedule."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()

    def state_dict(self) -> dict:
        state = {
            "model": self.networks.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }
        if self.networks.partner is not None:
            state["partner"] = self.networks.partner.state_dict()
        return state

    def load_state_dict(self, state: dict, source: str) -> None:
        """Restore a run checkpoint's ``state``; the weights strictly (errors name ``source`` and keys)."""
        load_strict(self.networks.model, state["model"], source)
        if self.networks.partner is not None:
            load_strict(self.networks.partner, state["partner"], f"{source} (partner)")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


# checkpoints: the run's state


def save_run_state(run: Run) -> None:
    """Rank 0 writes ``checkpoint.pt``: the optimisation's state, the position, the config, the categories."""
    if run.dist.is_main:
        state = {"epoch": run.epoch, "iter": run.iteration, "config": config_to_dict(run.cfg)}
        state["category_ids"] = list(run.train_set.category_ids)
        save_checkpoint({**run.optimization.state_dict(), **state}, run.checkpoint_path)


def restore_run_state(run: Run) -> None:
    """Move ``run`` to its ``checkpoint.pt``; drop the metrics rows and snapshots written after it.

    Raises:
        CheckpointError: the file is not a complete run checkpoint.
        ConfigError: it was trained on other categories than the data's.
        ValueError: its weights do not fit the config's network(s).
    """
    path = run.checkpoint_path
    state = load_run_checkpoint(path, map_location=run.dist.device)
    where = str(run.train_set.annotation_file)
    check_category_ids(state["category_ids"], run.train_set.category_ids, f"checkpoint {path}", where)
    changed = _differences(state["config"], config_to_dict(run.cfg))
    if changed and run.dist.is_main:
        warnings.warn(f"resuming {path} with a changed config: {'; '.join(changed)}", stacklevel=3)
    run.optimization.load_state_dict(state, str(path))
    run.epoch, run.iteration = state["epoch"], state["iter"]
    if run.dist.is_main:
        truncate_metrics(run.run_dir / "metrics.jsonl", run.epoch, run.iteration)
        truncate_metrics(run.run_dir / SNAPSHOTS_FILE, run.epoch, run.iteration)


def _differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def _write_config(run: Run) -> None:
    if run.dist.is_main:
        with atomic_open(run.run_dir / "config.yaml") as f:
            yaml.safe_dump(config_to_dict(run.cfg), f, sort_keys=False)


# training


def fit(run: Run) -> dict[str, float] | None:
    """Train from the run's position to its end: the last epoch, or ``max_iters``.

    Each complete epoch is checkpointed, and evaluated every ``eval_every`` epochs and after the last;
    ``max_iters`` within an epoch writes a checkpoint too. With ``snapshot.images``, the assignment of those
    validation images is recorded before the first epoch and at the ends of epochs
    (:func:`lad_edu.train.snapshots.take_snapshots`). Ctrl-C writes a checkpoint of the interrupted
    position, then raises :class:`RunInterrupted`.

    Returns:
        The last evaluation's 12 COCO numbers on rank 0; None on other ranks or without evaluation.
    """
    cfg, last_eval, window = run.cfg, None, LogWindow()
    with MetricsLog(run.run_dir, enabled=run.dist.is_main) as log:
        try:
            if run.global_iter == 0:
                take_snapshots(run)  # epoch 0: the untrained network
            while not run.finished:
                train_one_epoch(run, log, window)
                if run.iteration == run.iters_per_epoch:  # the epoch is complete
                    run.epoch, run.iteration = run.epoch + 1, 0
                    take_snapshots(run)  # before the checkpoint: a resume from it never misses one
                    save_run_state(run)
                    if (cfg.eval_every and run.epoch % cfg.eval_every == 0) or run.epoch == cfg.optim.epochs:
                        last_eval = evaluate(run, log)
                else:  # stopped by max_iters within the epoch
                    save_run_state(run)
        except KeyboardInterrupt:
            save_run_state(run)
            raise RunInterrupted(run.checkpoint_path, run.epoch, run.iteration) from None
    return last_eval


def train_one_epoch(run: Run, log: MetricsLog, window: LogWindow) -> None:
    """Train epoch ``run.epoch`` from iteration ``run.iteration`` to its end, or until ``max_iters``.

    Each iteration: the step's losses (:func:`step_losses`), backward and SGD (:meth:`Optimization.step`),
    a ``"train"`` row of the ``window``'s means every ``log_every`` iterations, and a checkpoint every
    ``checkpoint_every`` iterations (the epoch's end is checkpointed by :func:`fit`).
    """
    cfg = run.cfg
    run.loader.batch_sampler.set_epoch(run.epoch, start_batch=run.iteration)  # skips what was trained
    run.loader.dataset.epoch = run.epoch  # each image's augmentation is drawn from (seed, epoch, index)
    progress = tqdm(
        total=run.iters_per_epoch,
        initial=run.iteration,
        desc=f"epoch {run.epoch + 1}/{cfg.optim.epochs}",
        disable=not run.dist.is_main or None,
    )
    with progress:  # closed (its line ended) also on Ctrl-C
        for images, targets in run.loader:
            loss, logs, counts = step_losses(run, images, targets)
            run.optimization.step(loss)
            run.iteration += 1
            progress.update()
            window.add(logs, counts)
            if run.global_iter % cfg.log_every == 0:
                row = _train_row(run, window)
                log.write(row, run.global_iter)
                progress.set_postfix(loss=f"{sum(v for k, v in row.items() if k.startswith('loss')):.3f}")
            within_epoch = run.iteration < run.iters_per_epoch
            if cfg.checkpoint_every and run.global_iter % cfg.checkpoint_every == 0 and within_epoch:
                save_run_state(run)
            if run.reached_max_iters:
                return


def _train_row(run: Run, window: LogWindow) -> dict:
    """A ``"train"`` row of metrics.jsonl: the position, the learning rate, the window's means and rates."""
    row = {"kind": "train", "epoch": run.epoch + 1, "iter": run.iteration, "global_iter": run.global_iter}
    row["lr"] = run.optimization.optimizer.param_groups[0]["lr"]
    return row | window.flush(run.images_per_iter)


def step_losses(run: Run, images: Tensor, targets: list[dict]) -> tuple[Tensor, dict[str, float], dict]:
    """One step's total loss, logged values and assignment counts (:meth:`Learner.step`), all finite.

    The step diverged when its loss is not finite, or when :meth:`Learner.step` raised
    ``FloatingPointError`` (non-finite predictions: nothing to assign). The processes agree first
    (:func:`any_true`), then every one raises :class:`NonFiniteLossError`: one that raised alone would
    leave the others waiting for it in DDP's gradient all-reduce.

    Args:
        images: ``[B, 3, H, W]`` padded, from the loader; moved to the run's device here.
        targets: one dict per image (see :meth:`Learner.step`).
    """
    images = images.to(run.dist.device, non_blocking=True).float()
    try:
        loss, logs, counts = run.learner.step(images, targets, run.autocast)
        diverged = None if math.isfinite(loss.item()) else _non_finite_losses(loss, logs)
    except FloatingPointError as error:
        diverged = str(error)
    if any_true(diverged is not None, run.dist.device):
        raise NonFiniteLossError(
            f"non-finite loss at epoch {run.epoch + 1}, iteration {run.iteration + 1} "
            f"({diverged or 'in another process'}); the last good checkpoint {run.checkpoint_path} is "
            "kept. Try a lower optim.lr, a longer optim.warmup_iters, optim.grad_clip, or amp=none"
        )
    return loss, logs, counts


def _non_finite_losses(loss: Tensor, logs: dict[str, float]) -> str:
    """``"loss_cls=nan, loss_bbox=inf"``: the loss terms that are not finite (the total if none is)."""
    bad = [f"{k}={v}" for k, v in logs.items() if k.startswith("loss") and not math.isfinite(v)]
    return ", ".join(bad) or f"loss={loss.item()}"


# metrics


class LogWindow:
    """Losses and assignment counts summed over the iterations since the last metrics row."""

    def __init__(self):
        self._start()

    def _start(self) -> None:
        self.logs, self.counts, self.iters = defaultdict(float), defaultdict(float), 0
        self.tick = time.perf_counter()

    def add(self, logs: dict, counts: dict) -> None:
        self.iters += 1
        for key, value in logs.items():
            self.logs[key] += value
        for key, value in counts.items():
            self.counts[key] = self.counts[key] + value

    def flush(self, images_per_iter: int) -> dict:
        """The window's throughput, mean losses and assignment rates; starts a new window."""
        out = {
            "images_per_s": self.iters * images_per_iter / (time.perf_counter() - self.tick),
            **{key: value / self.iters for key, value in self.logs.items()},
            **summarize(self.counts),
        }
        self._start()
        return out


class MetricsLog:
    """``metrics.jsonl`` (always) and TensorBoard (when installed), written by rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.enabled, self.path, self.board = enabled, run_dir / "metrics.jsonl", None
        if enabled:
            with contextlib.suppress(ImportError):  # TensorBoard is optional
                from torch.utils.tensorboard import SummaryWriter

                self.board = SummaryWriter(str(run_dir / "tensorboard"))

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def write(self, record: dict, step: int) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(strict_json(record) + "\n")
        if self.board is not None:
            for key, value in record.items():
                if isinstance(value, float) and math.isfinite(value):
                    self.board.add_scalar(f"{record['kind']}/{key}", value, step)

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


# evaluation


def evaluate(run: Run, log: MetricsLog) -> dict[str, float] | None:
    """COCO-evaluate the detector (and CoLAD's partner) after epoch ``run.epoch``: ``"eval"`` rows.

    Returns the detector's 12 numbers on rank 0, None on the other ranks.
    """
    networks, epoch = run.networks, run.epoch
    stats = evaluate_detector(networks.model, run.val_set, run.cfg, run.dist, run.run_dir / "eval")
    log.write({"kind": "eval", "epoch": epoch, **(stats or {})}, epoch)
    if networks.partner is not None:
        stats_2 = evaluate_detector(
            networks.partner, run.val_set, run.cfg, run.dist, run.run_dir / "eval_partner"
        )
        log.write({"kind": "eval", "network": 2, "epoch": epoch, **(stats_2 or {})}, epoch)
    return stats


@torch.no_grad()
def evaluate_detector(
    detector: Detector,
    dataset: CocoDetection,
    cfg: TrainConfig,
    dist: Dist,
    out_dir: Path,
) -> dict[str, float] | None:
    """Detect on every image of ``dataset`` (shared among ranks) and run COCOeval on rank 0.

    Writes ``out_dir/detections.json`` and ``out_dir/coco_stats.json``; returns the 12 numbers on rank 0,
    None on the others.
    """
    was_training = detector.training
    detector.eval()
    autocast = autocast_factory(cfg.amp, dist.device)
    results = []
    loader = eval_loader(dataset, cfg.data, dist)
    for images, targets in tqdm(loader, desc="eval", leave=False, disable=not dist.is_main or None):
        with autocast():
            detections = detector.predict(
                images.to(dist.device).float(),
                [t["size"] for t in targets],
                scale_factors=[t["scale_factor"] for t in targets],  # boxes in the original pixels
            )
        for det, target in zip(detections, targets, strict=True):
            results += to_coco_results(
                target["image_id"],
                det["boxes"].float().cpu(),
                det["scores"].float().cpu(),
                det["labels"].cpu(),
                dataset.category_ids,
            )
    detector.train(was_training)
    gathered = all_gather_objects(results)
    if not dist.is_main:
        return None
    return coco_evaluate(dataset.coco, [r for part in gathered for r in part], out_dir)
