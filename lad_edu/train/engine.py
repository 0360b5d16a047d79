"""The training loop: SGD with warm-up and steps, AMP, DDP, checkpoints, metrics, COCO evaluation.

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
``.lock``                             while a training writes the directory: its pid, host and start
====================================  =================================================================

A directory that holds a run is trained into again only with ``resume=True`` or ``overwrite=True`` (see
:mod:`lad_edu.train.run_dir`). ``resume=True`` continues from ``checkpoint.pt`` exactly: the same weights,
optimiser momentum, learning rate and scaler, and (because batches and augmentations are drawn from the
seed, the epoch and the image index) the very batches the interrupted run would have seen next; the
metrics rows written after the checkpoint are dropped, as those iterations are trained again. Resuming a
finished run trains nothing and returns ``"already_finished": True``.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from lad_edu.atomic import atomic_open
from lad_edu.data.coco import CocoDetection
from lad_edu.model import Detector, build_detector
from lad_edu.model.checkpoint import load_strict
from lad_edu.train.checkpoint import check_category_ids, load_run_checkpoint, save_checkpoint
from lad_edu.train.config import ConfigError, OptimConfig, TrainConfig, config_to_dict
from lad_edu.train.data import eval_loader, load_datasets, train_loader
from lad_edu.train.distributed import Dist, all_gather_objects, any_true, init_distributed, shutdown
from lad_edu.train.evaluate import coco_evaluate, to_coco_results
from lad_edu.train.learner import Learner, Networks, load_teacher
from lad_edu.train.run_dir import RunLock, prepare_run_dir, truncate_metrics
from lad_edu.train.stats import summarize

__all__ = ["NonFiniteLossError", "RunInterrupted", "evaluate_detector", "lr_factor", "train"]


class NonFiniteLossError(RuntimeError):
    """The loss (or the predictions) became NaN or infinite; the last good checkpoint is kept."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the training after a checkpoint of the interrupted position was written."""

    def __init__(self, checkpoint: Path, epoch: int, iteration: int):
        super().__init__(f"checkpoint of epoch {epoch + 1}, iteration {iteration} written to {checkpoint}")
        self.checkpoint = checkpoint


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


def autocast_factory(amp: str, device: torch.device):
    """A no-argument context-manager factory: ``torch.autocast`` in ``amp``'s precision, or nothing."""
    if amp == "none":
        return contextlib.nullcontext
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("amp='fp16' needs a CUDA device; on the CPU use amp=bf16 or amp=none")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return partial(torch.autocast, device_type=device.type, dtype=dtype)


def strict_json(record: dict) -> str:
    """``record`` as one line of strict JSON: a non-finite number (a rate with nothing to count) is null.

    ``json.dumps`` writes ``NaN`` and ``Infinity`` by default, which JSON does not have (many readers
    refuse them); COCOeval's ``-1`` ("nothing to measure") is finite and stays.

    >>> strict_json({"AP": -1.0, "pos_iou": float("nan")})
    '{"AP": -1.0, "pos_iou": null}'
    """
    finite = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
    return json.dumps(finite, allow_nan=False)


class MetricsLog:
    """``metrics.jsonl`` (always) and TensorBoard (when installed), written by rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.enabled, self.path, self.board = enabled, run_dir / "metrics.jsonl", None
        if enabled:
            with contextlib.suppress(ImportError):  # TensorBoard is optional
                from torch.utils.tensorboard import SummaryWriter

                self.board = SummaryWriter(str(run_dir / "tensorboard"))

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


def _differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


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
        NonFiniteLossError: the loss became NaN or infinite (the last checkpoint is kept).
        RunInterrupted: a KeyboardInterrupt, after writing a checkpoint of the interrupted position.
    """
    run_dir = Path(run_dir)
    dist = init_distributed(cfg.device)
    try:
        with RunLock(run_dir, enabled=dist.is_main):
            if dist.is_main:
                prepare_run_dir(run_dir, resume, overwrite)
            return _train(cfg, run_dir, resume, dist)
    finally:
        shutdown()


def _warn_if_without_objects(train_set: CocoDetection, val_set: CocoDetection) -> None:
    consequences = [
        (train_set, "the detector learns background only; pos_per_gt & co. are null in metrics.jsonl"),
        (val_set, "every AP and AR is -1, COCOeval's 'nothing to measure'"),
    ]
    for dataset, consequence in consequences:
        if dataset.num_objects == 0:
            warnings.warn(f"{dataset.annotation_file} has no objects: {consequence}", stacklevel=4)


def _build_networks(cfg: TrainConfig, num_classes: int, dist: Dist) -> tuple[Networks, torch.nn.Module]:
    """The network(s) to train, and what the forward runs through (DDP's wrapper when distributed)."""
    model = build_detector(cfg.model, num_classes)
    partner = None
    if cfg.distill.mode == "colad":  # CoLAD's second network, trained alongside (section 3.4)
        partner = build_detector(replace(cfg.model, backbone=cfg.distill.teacher_backbone), num_classes)
    networks = Networks(model, partner).to(dist.device)
    if dist.world_size == 1:
        return networks, networks
    device_ids = [dist.device.index] if dist.device.type == "cuda" else None
    return networks, DistributedDataParallel(networks, device_ids=device_ids)


@dataclass
class Optimization:
    """What an optimiser step changes, so what a checkpoint saves and a resume restores."""

    networks: Networks
    optimizer: torch.optim.SGD
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    grad_clip: float | None

    @classmethod
    def build(cls, cfg: TrainConfig, networks: Networks, iters_per_epoch: int, total_batch: int):
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

    def step(self, loss: torch.Tensor) -> None:
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


def _resume(optimization: Optimization, cfg: TrainConfig, path: Path, train_set: CocoDetection, dist: Dist):
    """Restore the checkpoint at ``path``; drop the metrics rows written after it. Returns (epoch, iter)."""
    state = load_run_checkpoint(path, map_location=dist.device)
    where = str(train_set.annotation_file)
    check_category_ids(state["category_ids"], train_set.category_ids, f"checkpoint {path}", where)
    changed = _differences(state["config"], config_to_dict(cfg))
    if changed and dist.is_main:
        warnings.warn(f"resuming {path} with a changed config: {'; '.join(changed)}", stacklevel=4)
    optimization.load_state_dict(state, str(path))
    if dist.is_main:
        truncate_metrics(path.parent / "metrics.jsonl", state["epoch"], state["iter"])
    return state["epoch"], state["iter"]


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


def _stop_if_not_finite(loss, logs: dict, epoch: int, iteration: int, checkpoint: Path, dist: Dist) -> None:
    if any_true(not math.isfinite(loss.item()), dist.device):
        bad = {k: v for k, v in logs.items() if k.startswith("loss") and not math.isfinite(v)}
        raise NonFiniteLossError(
            f"non-finite loss at epoch {epoch + 1}, iteration {iteration + 1} "
            f"({bad or logs or 'the predictions are not finite'}); "
            f"the last good checkpoint {checkpoint} is kept. Try a lower optim.lr, a longer "
            "optim.warmup_iters, optim.grad_clip, or amp=none"
        )


def _finished(cfg: TrainConfig, epoch: int, global_iter: int) -> bool:
    return epoch >= cfg.optim.epochs or (cfg.max_iters is not None and global_iter >= cfg.max_iters)


def _train(cfg: TrainConfig, run_dir: Path, resume: bool, dist: Dist) -> dict:
    device = dist.device
    autocast = autocast_factory(cfg.amp, device)
    torch.manual_seed(cfg.seed)
    train_set, val_set = load_datasets(cfg.data)
    if dist.is_main:
        _warn_if_without_objects(train_set, val_set)
    networks, trained = _build_networks(cfg, len(train_set.category_ids), dist)
    teacher = None
    if cfg.distill.mode in ("soft", "lad", "solad"):
        teacher = load_teacher(cfg, train_set.category_ids, networks.model, device)
    learner = Learner(cfg, networks, trained, teacher)

    loader = train_loader(train_set, cfg.data, cfg.seed, dist)
    sampler = loader.batch_sampler
    iters_per_epoch = sampler.batches_per_epoch
    total_batch = cfg.data.batch_size * dist.world_size
    optimization = Optimization.build(cfg, networks, iters_per_epoch, total_batch)

    checkpoint_path = run_dir / "checkpoint.pt"
    epoch, start = 0, 0
    if resume:
        epoch, start = _resume(optimization, cfg, checkpoint_path, train_set, dist)
    global_iter = epoch * iters_per_epoch + start
    if resume and _finished(cfg, epoch, global_iter):
        return {"epoch": epoch, "iter": start, "eval": None, "already_finished": True}
    if dist.is_main:
        with atomic_open(run_dir / "config.yaml") as f:
            yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)
    log = MetricsLog(run_dir, dist.is_main)

    def checkpoint(epoch: int, iteration: int) -> None:
        if dist.is_main:
            state = {"epoch": epoch, "iter": iteration, "config": config_to_dict(cfg)}
            state["category_ids"] = list(train_set.category_ids)
            save_checkpoint({**optimization.state_dict(), **state}, checkpoint_path)

    def evaluate(epoch: int) -> dict | None:
        stats = evaluate_detector(networks.model, val_set, cfg, dist, run_dir / "eval")
        log.write({"kind": "eval", "epoch": epoch, **(stats or {})}, epoch)
        if networks.partner is not None:
            stats_2 = evaluate_detector(networks.partner, val_set, cfg, dist, run_dir / "eval_partner")
            log.write({"kind": "eval", "network": 2, "epoch": epoch, **(stats_2 or {})}, epoch)
        return stats

    last_eval, position, window = None, (epoch, start), LogWindow()
    networks.train()
    try:
        while epoch < cfg.optim.epochs:
            sampler.set_epoch(epoch, start_batch=start)  # a resumed epoch skips the batches it trained on
            loader.dataset.epoch = epoch
            with tqdm(
                total=iters_per_epoch,
                initial=start,
                desc=f"epoch {epoch + 1}/{cfg.optim.epochs}",
                disable=not dist.is_main or None,
            ) as bar:  # closed (its line ended) also on Ctrl-C
                for iteration, (images, targets) in enumerate(loader, start=start):
                    images = images.to(device, non_blocking=True).float()
                    loss, logs, step_counts = learner.step(images, targets, autocast)
                    _stop_if_not_finite(loss, logs, epoch, iteration, checkpoint_path, dist)
                    optimization.step(loss)
                    global_iter += 1
                    position = (epoch, iteration + 1)
                    bar.update()
                    window.add(logs, step_counts)
                    if global_iter % cfg.log_every == 0:
                        lr = optimization.optimizer.param_groups[0]["lr"]
                        record = {"kind": "train", "epoch": epoch + 1, "iter": iteration + 1}
                        record |= {"global_iter": global_iter, "lr": lr, **window.flush(total_batch)}
                        log.write(record, global_iter)
                        bar.set_postfix(
                            loss=f"{sum(v for k, v in record.items() if k.startswith('loss')):.3f}"
                        )
                    within_epoch = position[1] < iters_per_epoch  # the epoch's end writes its own checkpoint
                    if cfg.checkpoint_every and global_iter % cfg.checkpoint_every == 0 and within_epoch:
                        checkpoint(*position)
                    if cfg.max_iters is not None and global_iter >= cfg.max_iters:
                        break
            if position[1] == iters_per_epoch:  # the epoch is complete
                epoch, start = epoch + 1, 0
                position = (epoch, 0)
                checkpoint(*position)
                if (cfg.eval_every and epoch % cfg.eval_every == 0) or epoch == cfg.optim.epochs:
                    last_eval = evaluate(epoch)
            if cfg.max_iters is not None and global_iter >= cfg.max_iters:
                checkpoint(*position)
                break
    except KeyboardInterrupt:
        checkpoint(*position)
        raise RunInterrupted(checkpoint_path, *position) from None
    finally:
        log.close()
    return {"epoch": position[0], "iter": position[1], "eval": last_eval, "already_finished": False}
