"""The training loop: SGD with warm-up and steps, AMP, DDP, checkpoints, metrics, COCO evaluation.

A run directory holds everything a run produces (the contract scripts and notebooks rely on):

====================================  =================================================================
``config.yaml``                       the resolved config
``metrics.jsonl``                     one JSON object per line: ``"kind": "train"`` every ``log_every``
                                      iterations (losses, lr, assignment statistics, CoLAD's choice),
                                      ``"kind": "eval"`` after each evaluation (the 12 COCO numbers)
``checkpoint.pt``                     the last checkpoint: every epoch, at ``max_iters``, on Ctrl-C
``eval/detections.json``              COCO results of the last evaluation (original category ids)
``eval/coco_stats.json``              its 12 numbers by name (``eval_partner/`` for CoLAD's network 2)
====================================  =================================================================

``resume=True`` continues from ``checkpoint.pt`` exactly: the same weights, optimiser momentum, learning
rate and scaler, and (because batches and augmentations are drawn from the seed, the epoch and the image
index) the very batches the interrupted run would have seen next.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from collections import defaultdict
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from lad_edu.data.coco import CocoDetection
from lad_edu.model import Detector, build_detector
from lad_edu.train.checkpoint import load_checkpoint, save_checkpoint
from lad_edu.train.config import ConfigError, OptimConfig, TrainConfig, config_to_dict
from lad_edu.train.data import eval_loader, load_datasets, train_loader
from lad_edu.train.distributed import Dist, all_gather_objects, any_true, init_distributed, shutdown
from lad_edu.train.evaluate import coco_evaluate, to_coco_results
from lad_edu.train.learner import Learner, Networks, load_teacher
from lad_edu.train.stats import summarize

__all__ = ["NonFiniteLossError", "evaluate_detector", "lr_factor", "train"]


class NonFiniteLossError(RuntimeError):
    """The loss (or the predictions) became NaN or infinite; the last good checkpoint is kept."""


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
            f.write(json.dumps(record) + "\n")
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
            detections = detector.predict(images.to(dist.device).float(), [t["size"] for t in targets])
        for det, target in zip(detections, targets, strict=True):
            results += to_coco_results(
                target["image_id"],
                det["boxes"].float().cpu(),
                det["scores"].float().cpu(),
                det["labels"].cpu(),
                dataset.category_ids,
                target["scale"],
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


def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = False) -> dict:
    """Train (and evaluate) as ``cfg`` says, writing the run directory described in the module docstring.

    Launched by ``torchrun``, every process calls this; see :mod:`lad_edu.train.distributed`.

    Returns:
        On rank 0 ``{"epoch", "iter", "eval": last COCO numbers or None}``; on other ranks the same
        without ``eval``.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite (the last checkpoint is kept).
        KeyboardInterrupt: after writing a checkpoint of the interrupted position.
    """
    dist = init_distributed(cfg.device)
    try:
        return _train(cfg, Path(run_dir), resume, dist)
    finally:
        shutdown()


def _train(cfg: TrainConfig, run_dir: Path, resume: bool, dist: Dist) -> dict:
    device = dist.device
    autocast = autocast_factory(cfg.amp, device)
    torch.manual_seed(cfg.seed)
    train_set, val_set = load_datasets(cfg.data)
    num_classes = len(train_set.category_ids)

    model = build_detector(cfg.model, num_classes)
    partner = None
    if cfg.distill.mode == "colad":  # CoLAD's second network, trained alongside (section 3.4)
        partner = build_detector(replace(cfg.model, backbone=cfg.distill.teacher_backbone), num_classes)
    networks = Networks(model, partner).to(device)
    trained = networks
    if dist.world_size > 1:
        trained = DistributedDataParallel(
            networks, device_ids=[device.index] if device.type == "cuda" else None
        )
    teacher = None
    if cfg.distill.mode in ("soft", "lad", "solad"):
        teacher = load_teacher(cfg, num_classes, model, device)
    learner = Learner(cfg, networks, trained, teacher)

    loader = train_loader(train_set, cfg.data, cfg.seed, dist)
    sampler = loader.batch_sampler
    iters_per_epoch = sampler.batches_per_epoch
    total_batch = cfg.data.batch_size * dist.world_size
    params = [p for p in networks.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params,
        lr=cfg.optim.lr * total_batch / cfg.optim.base_batch_size,  # the linear scaling rule
        momentum=cfg.optim.momentum,
        weight_decay=cfg.optim.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, partial(lr_factor, iters_per_epoch=iters_per_epoch, cfg=cfg.optim)
    )
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")

    checkpoint_path = run_dir / "checkpoint.pt"
    epoch, start = 0, 0
    if resume:
        state = load_checkpoint(checkpoint_path, map_location=device)
        changed = _differences(state["config"], config_to_dict(cfg))
        if changed and dist.is_main:
            warnings.warn(
                f"resuming {checkpoint_path} with a changed config: {'; '.join(changed)}", stacklevel=2
            )
        networks.model.load_state_dict(state["model"])
        if partner is not None:
            networks.partner.load_state_dict(state["partner"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        epoch, start = state["epoch"], state["iter"]
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    log = MetricsLog(run_dir, dist.is_main)

    def checkpoint(epoch: int, iteration: int) -> None:
        if not dist.is_main:
            return
        state = {
            "model": networks.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "epoch": epoch,
            "iter": iteration,
            "config": config_to_dict(cfg),
            "category_ids": list(train_set.category_ids),
        }
        if partner is not None:
            state["partner"] = networks.partner.state_dict()
        save_checkpoint(state, checkpoint_path)

    def evaluate(epoch: int) -> dict | None:
        stats = evaluate_detector(networks.model, val_set, cfg, dist, run_dir / "eval")
        log.write({"kind": "eval", "epoch": epoch, **(stats or {})}, epoch)
        if partner is not None:
            stats_2 = evaluate_detector(networks.partner, val_set, cfg, dist, run_dir / "eval_partner")
            log.write({"kind": "eval", "network": 2, "epoch": epoch, **(stats_2 or {})}, epoch)
        return stats

    global_iter = epoch * iters_per_epoch + start
    last_eval, position = None, (epoch, start)
    window, counts, tick = defaultdict(float), defaultdict(float), time.perf_counter()
    window_iters = 0
    networks.train()
    try:
        while epoch < cfg.optim.epochs:
            sampler.set_epoch(epoch, start_batch=start)  # a resumed epoch skips the batches it trained on
            loader.dataset.epoch = epoch
            bar = tqdm(
                total=iters_per_epoch,
                initial=start,
                desc=f"epoch {epoch + 1}/{cfg.optim.epochs}",
                disable=not dist.is_main or None,
            )
            for iteration, (images, targets) in enumerate(loader, start=start):
                loss, logs, step_counts = learner.step(
                    images.to(device, non_blocking=True).float(), targets, autocast
                )
                if any_true(not math.isfinite(loss.item()), device):
                    bad = {k: v for k, v in logs.items() if k.startswith("loss") and not math.isfinite(v)}
                    raise NonFiniteLossError(
                        f"non-finite loss at epoch {epoch + 1}, iteration {iteration + 1} "
                        f"({bad or logs or 'the predictions are not finite'}); "
                        f"the last good checkpoint {checkpoint_path} is kept. Try a lower optim.lr, a longer "
                        "optim.warmup_iters, optim.grad_clip, or amp=none"
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.optim.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                global_iter += 1
                position = (epoch, iteration + 1)
                bar.update()
                window_iters += 1
                for key, value in logs.items():
                    window[key] += value
                for key, value in step_counts.items():
                    counts[key] = counts[key] + value
                if global_iter % cfg.log_every == 0:
                    elapsed = time.perf_counter() - tick
                    record = {
                        "kind": "train",
                        "epoch": epoch + 1,
                        "iter": iteration + 1,
                        "global_iter": global_iter,
                        "lr": optimizer.param_groups[0]["lr"],
                        "images_per_s": window_iters * total_batch / elapsed,
                        **{key: value / window_iters for key, value in window.items()},
                        **summarize(counts),
                    }
                    log.write(record, global_iter)
                    bar.set_postfix(loss=f"{sum(v for k, v in record.items() if k.startswith('loss')):.3f}")
                    window, counts, tick, window_iters = (
                        defaultdict(float),
                        defaultdict(float),
                        time.perf_counter(),
                        0,
                    )
                if cfg.max_iters is not None and global_iter >= cfg.max_iters:
                    break
            bar.close()
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
        if dist.is_main:
            print(
                f"\ninterrupted: checkpoint of epoch {position[0] + 1}, iteration {position[1]} "
                f"written to {checkpoint_path}"
            )
        raise
    finally:
        log.close()
    return {"epoch": position[0], "iter": position[1], "eval": last_eval}
