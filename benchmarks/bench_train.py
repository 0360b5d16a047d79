"""Training throughput and peak memory of a config, against torchvision's RetinaNet on the same batch.

    python -m benchmarks.bench_train [--config NAME] [--set key=value ...] [--device cpu|cuda]
                                     [--batch N] [--size H W] [--amp none|bf16|fp16] [--steps 10]
                                     [--threads N] [--no-memory]

Defaults: on the CPU ``classroom_paa`` with its batch (8) and image size (256x256); on CUDA
``paa_r50_fpn_1x`` with a batch of 8 at 800x1333 (padded to 800x1344, as the data loader pads) in bf16.

**What one step is.** Ours: the engine's per-iteration work (:func:`lad_edu.train.engine.train_one_epoch`)
on what the engine builds: the network(s), teacher and :class:`~lad_edu.train.learner.Learner` of
:func:`~lad_edu.train.engine.build_learner` and the SGD, schedule and scaler of
:class:`~lad_edu.train.engine.Optimization`; a step is ``Learner.step`` (forward, anchors, assignment,
losses), a check that the loss is finite, then ``Optimization.step`` (backward, SGD, schedule). The
reference: torchvision's :class:`~torchvision.models.detection.RetinaNet` in training mode (its transform,
forward, anchors, ``box_iou`` + ``Matcher``, losses), the sum of its losses, backward and the same SGD,
as torchvision's ``references/detection`` train it. Both get the same batch: random pixels in 0..255 and
``--gts`` random boxes per image with random labels (fixed seed), on the device before timing starts.
Both run under the same autocast (``--amp``) with a ``GradScaler`` for fp16.

**The reference.** For a ResNet config, RetinaNet built as ``retinanet_resnet50_fpn`` builds it
(``resnet_fpn_backbone`` with P6/P7 from P5, torchvision's default anchors, 9 per location, and head) with
our config's depth and freezing: ``frozen_stages=1, norm_eval=True`` becomes ``trainable_layers=3`` with
frozen BatchNorm, torchvision's recipe for an ImageNet backbone (with ``frozen_stages=-1,
norm_eval=False`` it is exactly ``retinanet_resnet50_fpn(weights=None)``, which trains every layer). For
the small classroom backbone, RetinaNet is built around *our* backbone + FPN, with torchvision's default
head (4 convolutions per tower, no normalisation) and 9 anchors per location of
``octave_base_scale · stride · {1, 2^(1/3), 2^(2/3)}`` with ratios 0.5, 1, 2. Either way its transform
normalises with our ``pixel_mean`` / ``pixel_std`` and does not resize (``min_size`` and ``max_size``
are the batch's sides), so both networks see the same pixels.

**What is printed.** The median of ``--steps`` steps after 3 warm-up rounds, the two models' steps
called in turn so that a busy spell of a shared machine slows both alike: ms per step, images per second
and our throughput over the reference's (target: >= 1). "assign ms" is the assignment alone, timed in the
same rounds on the arguments a step passed it: :meth:`Learner.assign` for ours (PAA: candidates, costs,
GMM split), ``box_iou`` + ``Matcher`` per image for RetinaNet; "assign %" is its share of the step
(target for PAA-R50 on a GPU: <= 10%). "peak MB" is each model's peak memory while it is built and
trains 2 steps, alone in a fresh process, minus what that process held before: weights, gradients,
momentum and activations. On CUDA it is ``torch.cuda.max_memory_allocated``; on the CPU the growth of the
peak resident set size (``ru_maxrss``), which also counts memory the C allocator keeps after freeing it.

On a CPU that other processes share, pass ``--threads 1``: with several threads every operation waits for
its slowest thread, and a busy core turns steps erratic and up to 10x slower.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import resource
import sys
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops import FrozenBatchNorm2d, box_iou
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from benchmarks.bench_assign import median_ms, random_gts
from lad_edu.data.classroom import CLASSES
from lad_edu.data.transforms import collate
from lad_edu.model import Detector, build_detector
from lad_edu.model.detector import NETWORK_STRIDES
from lad_edu.train.config import ConfigError, TrainConfig, load_config
from lad_edu.train.distributed import Dist
from lad_edu.train.engine import Optimization, autocast_factory, build_learner

CUDA_BATCH = 8  # the GPU target: PAA-R50-FPN at 800x1333, batch 8, AMP
COCO_CLASSES = 80
MEMORY_STEPS = 2  # the first step creates the momentum buffers, the second runs with them
ITERS_PER_EPOCH = 10**6  # for the learning-rate schedule: a benchmark stays in the warm-up of epoch 1
ASSIGNER_NAMES = {"fixed": "fixed IoU", "atss": "ATSS", "paa": "PAA"}
RETINANET_RATIOS = (0.5, 1.0, 2.0)  # h / w, torchvision's and MMDetection's RetinaNet
RETINANET_SCALES = 3  # anchor sides per level: base · 2^(i / 3)


@dataclass(frozen=True)
class Setup:
    """Everything that decides what is timed; sent whole to the processes that measure memory."""

    config: str
    overrides: tuple[str, ...]
    device: str
    batch: int
    size: tuple[int, int]  # (height, width) before padding to a multiple of 32
    amp: str
    classes: int
    gts: int  # boxes per image
    threads: int
    seed: int = 0

    def train_config(self) -> TrainConfig:
        """The config, its seed (the networks' initial weights) the benchmark's."""
        return replace(load_config(self.config, list(self.overrides)), seed=self.seed)


class Trainee(NamedTuple):
    """One model ready to train on the benchmark's batch."""

    name: str
    step: Callable[[], None]  # one training step: forward, assignment, losses, backward, SGD
    assign: Callable[[], object]  # the step's assignment alone, on the arguments the last step passed it
    params: int  # trainable parameters


# helpers


def synthetic_batch(setup: Setup) -> tuple[Tensor, list[dict[str, Tensor]]]:
    """``[B, 3, H, W]`` random pixels in 0..255, padded by the loader's ``collate``, and ``setup.gts`` boxes
    per image (``bench_assign.random_gts``: log-uniform sides from 1/40 to 1/2 of the short side) with
    random labels; on ``setup.device``."""
    g = torch.Generator().manual_seed(setup.seed)
    height, width = setup.size
    samples = []
    for i in range(setup.batch):
        image = torch.randint(0, 256, (3, height, width), generator=g).float()
        boxes, _ = random_gts(setup.size, setup.gts, seed=setup.seed + i)
        labels = torch.randint(setup.classes, (setup.gts,), generator=g)
        target = {"boxes": boxes, "labels": labels, "crowd_boxes": torch.zeros(0, 4), "size": (height, width)}
        samples.append((image, target))
    images, targets = collate(samples)
    device = torch.device(setup.device)
    on_device = [{k: v.to(device) if isinstance(v, Tensor) else v for k, v in t.items()} for t in targets]
    return images.to(device), on_device


@contextlib.contextmanager
def recording(obj, method: str):
    """Inside the block, every call of ``obj.method`` appends its positional arguments to the list yielded."""
    calls, original = [], getattr(obj, method)

    def record(*args):
        calls.append(args)
        return original(*args)

    setattr(obj, method, record)  # an instance attribute hides the class's method...
    try:
        yield calls
    finally:
        delattr(obj, method)  # ...until it is deleted


def stop_if_not_finite(loss: Tensor) -> None:
    """Both recipes stop on a non-finite loss, which costs a sync (the engine's check does the same)."""
    if not math.isfinite(loss.item()):
        raise FloatingPointError("the loss is not finite; try --amp none")


# the two models


def untrained_teacher(
    cfg: TrainConfig, category_ids: Sequence[int], student: Detector, device: torch.device
) -> Detector:
    """A frozen teacher of ``distill.teacher_backbone`` with random weights: the same work per step as a
    trained one (``build_learner``'s ``make_teacher``; ``student`` is not needed)."""
    network = build_detector(replace(cfg.model, backbone=cfg.distill.teacher_backbone), len(category_ids))
    return network.requires_grad_(False).to(device).eval()


def ours(setup: Setup, images: Tensor, targets: list[dict]) -> Trainee:
    """The config's detector(s), teacher and optimisation as the engine builds them, trained as it does.

    A distillation config gets an untrained teacher (``soft`` / ``lad`` / ``solad``); CoLAD's partner
    (``colad``) is the engine's, untrained as at the start of every run.
    """
    cfg = setup.train_config()
    dist = Dist(rank=0, world_size=1, device=images.device)
    learner = build_learner(cfg, range(setup.classes), dist, make_teacher=untrained_teacher)
    optimization = Optimization.build(
        cfg, learner.networks, iters_per_epoch=ITERS_PER_EPOCH, total_batch=setup.batch
    )
    autocast = autocast_factory(setup.amp, dist.device)

    def step() -> None:
        loss, _, _ = learner.step(images, targets, autocast)
        stop_if_not_finite(loss)
        optimization.step(loss)

    with recording(learner, "assign") as calls:
        step()
    name = f"lad_edu {ASSIGNER_NAMES[cfg.assign.assigner]}"
    if cfg.distill.mode != "none":
        name += f" + {cfg.distill.mode}"
    trained = optimization.optimizer.param_groups[0]["params"]
    return Trainee(name, step, lambda: learner.assign(*calls[-1]), sum(p.numel() for p in trained))


class OurPyramid(nn.Module):
    """Our backbone + FPN as a torchvision detector backbone: images -> ``{"p3": P3, ..., "p7": P7}``."""

    def __init__(self, backbone: nn.Module, neck: nn.Module):
        super().__init__()
        self.body, self.fpn, self.out_channels = backbone, neck, neck.out_channels

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        return OrderedDict((f"p{level}", p) for level, p in enumerate(self.fpn(self.body(images)), start=3))


def retinanet_model(cfg: TrainConfig, num_classes: int, image_size: tuple[int, int]) -> tuple[nn.Module, str]:
    """torchvision's RetinaNet with ``cfg``'s backbone (see the module docstring), for padded images of
    ``image_size``, and its name in the table."""
    m = cfg.model
    # torchvision resizes by min(min_size / short side, max_size / long side): 1 here, so the same pixels
    same_pixels = {
        "min_size": min(image_size),
        "max_size": max(image_size),
        "image_mean": list(m.pixel_mean),
        "image_std": list(m.pixel_std),
    }
    if m.backbone.startswith("resnet"):
        backbone = resnet_fpn_backbone(
            backbone_name=m.backbone,
            weights=None,
            norm_layer=FrozenBatchNorm2d if m.norm_eval else nn.BatchNorm2d,
            trainable_layers=5 if m.frozen_stages < 0 else 4 - m.frozen_stages,  # 5: conv1, bn1 and layer1..4
            returned_layers=[2, 3, 4],
            extra_blocks=LastLevelP6P7(256, 256),
        )
        model = RetinaNet(backbone, num_classes, **same_pixels)  # retinanet_resnet50_fpn's anchors and head
        return model, f"torchvision RetinaNet-R{m.backbone.removeprefix('resnet')}-FPN"
    detector = build_detector(m, num_classes)
    sizes = [
        tuple(m.octave_base_scale * stride * 2 ** (i / RETINANET_SCALES) for i in range(RETINANET_SCALES))
        for stride in NETWORK_STRIDES
    ]
    anchors = AnchorGenerator(tuple(sizes), (RETINANET_RATIOS,) * len(sizes))
    model = RetinaNet(
        OurPyramid(detector.backbone, detector.neck), num_classes, anchor_generator=anchors, **same_pixels
    )
    return model, f"torchvision RetinaNet, our {m.backbone} backbone + FPN"


def retinanet(setup: Setup, images: Tensor, targets: list[dict]) -> Trainee:
    """torchvision's RetinaNet (:func:`retinanet_model`) trained as torchvision's ``references/detection``
    train it: the sum of its losses, backward, SGD with the engine's hyper-parameters at the learning rate
    of the warm-up's first iteration."""
    cfg = setup.train_config()
    torch.manual_seed(setup.seed)
    model, name = retinanet_model(cfg, setup.classes, tuple(images.shape[-2:]))
    model = model.to(images.device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    lr = cfg.optim.lr * setup.batch / cfg.optim.base_batch_size * cfg.optim.warmup_factor
    optimizer = torch.optim.SGD(
        params, lr=lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay
    )
    scaler = torch.amp.GradScaler(images.device.type, enabled=setup.amp == "fp16")
    autocast = autocast_factory(setup.amp, images.device)
    image_list = list(images.unbind(0))
    boxes_and_labels = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]

    def step() -> None:
        with autocast():
            losses = model(image_list, boxes_and_labels)
        loss = sum(losses.values())
        stop_if_not_finite(loss)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    with recording(model, "compute_loss") as calls:  # compute_loss(targets, head_outputs, anchors)
        step()
    matched_targets, _, matched_anchors = calls[-1]

    def assign() -> list[Tensor]:  # what RetinaNet.compute_loss does before the losses
        return [
            model.proposal_matcher(box_iou(t["boxes"], a))
            for t, a in zip(matched_targets, matched_anchors, strict=True)
        ]

    return Trainee(name, step, assign, sum(p.numel() for p in params))


MODELS = {"ours": ours, "reference": retinanet}


# peak memory, one fresh process per model


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def peak_memory_mb(setup: Setup, model: str) -> float:
    """Build ``MODELS[model]`` and train it ``MEMORY_STEPS`` steps; the peak memory above the start (MB).

    Meant to run alone in a fresh process (:func:`measure_memory`), where nothing else has used memory.
    """
    torch.set_num_threads(setup.threads)
    images, targets = synthetic_batch(setup)
    cuda = setup.device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = torch.cuda.memory_allocated() / 2**20 if cuda else peak_rss_mb()
    trainee = MODELS[model](setup, images, targets)  # builds, and trains one step
    for _ in range(MEMORY_STEPS - 1):
        trainee.step()
    if cuda:
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20 - start
    return peak_rss_mb() - start


def measure_memory(setup: Setup, model: str) -> float:
    """:func:`peak_memory_mb` in a new ``spawn``-ed Python process (no CUDA state or freed memory shared)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(peak_memory_mb, setup, model).result()


# the benchmark


def bench(setup: Setup, steps: int, memory: bool) -> list[dict]:
    """One row per model: ours first, then the reference."""
    peaks = {model: measure_memory(setup, model) if memory else float("nan") for model in MODELS}
    images, targets = synthetic_batch(setup)
    trainees = {model: build(setup, images, targets) for model, build in MODELS.items()}
    steps_and_assigns = [t.step for t in trainees.values()] + [t.assign for t in trainees.values()]
    times = median_ms(steps_and_assigns, setup.device, steps)
    step_ms, assign_ms = times[: len(MODELS)], times[len(MODELS) :]
    _, reference_ms = step_ms
    return [
        {
            "model": t.name,
            "params M": t.params / 1e6,
            "step ms": s,
            "images/s": setup.batch / s * 1e3,
            "vs reference": reference_ms / s,
            "assign ms": a,
            "assign %": 100 * a / s,
            "peak MB": peaks[model],
        }
        for (model, t), s, a in zip(trainees.items(), step_ms, assign_ms, strict=True)
    ]


def print_table(rows: list[dict]) -> None:
    # (column, width, number format)
    columns = [
        ("model", max(len(r["model"]) for r in rows), ""),
        ("params M", 8, ".2f"),
        ("step ms", 8, ".1f"),
        ("images/s", 8, ".1f"),
        ("vs reference", 12, ".2f"),
        ("assign ms", 9, ".2f"),
        ("assign %", 8, ".1f"),
        ("peak MB", 7, ".0f"),
    ]
    print("| " + " | ".join(f"{name:<{width}}" for name, width, _ in columns) + " |")
    print("|" + "|".join("-" * (width + 2) for _, width, _ in columns) + "|")
    for row in rows:
        cells = [
            f"{row[name]:<{width}}" if not fmt else f"{row[name]:>{width}{fmt}}"
            for name, width, fmt in columns
        ]
        print("| " + " | ".join(cells) + " |")


def parse_setup(argv: list[str] | None) -> tuple[Setup, int, bool]:
    """The command line (see the module docstring) with its device-dependent defaults filled in."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="shipped config or YAML path (default: by device)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if present")
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        help=f"images per step (default: the config's; {CUDA_BATCH} on cuda)",
    )
    parser.add_argument(
        "--size", type=int, nargs=2, default=None, metavar=("H", "W"), help="default: the config's largest"
    )
    parser.add_argument(
        "--amp", choices=("none", "bf16", "fp16"), default=None, help="default: the config's; bf16 on cuda"
    )
    parser.add_argument(
        "--classes",
        type=int,
        default=None,
        help=f"default: {len(CLASSES)} for classroom data, else {COCO_CLASSES}",
    )
    parser.add_argument("--gts", type=int, default=7, help="boxes per image (COCO averages 7.3)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model (median)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--no-memory", dest="memory", action="store_false", help="skip the peak-memory processes"
    )
    args = parser.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch.cuda.is_available() is False")
    cuda = device == "cuda"
    config = args.config or ("paa_r50_fpn_1x" if cuda else "classroom_paa")
    try:
        cfg = load_config(config, args.set)
        amp = args.amp or ("bf16" if cuda and cfg.amp == "none" else cfg.amp)
        autocast_factory(amp, torch.device(device))  # fp16 needs CUDA
    except ConfigError as error:
        parser.error(str(error))
    if args.threads:
        torch.set_num_threads(args.threads)
    setup = Setup(
        config=config,
        overrides=tuple(args.set),
        device=device,
        batch=args.batch or (CUDA_BATCH if cuda else cfg.data.batch_size),
        size=tuple(args.size or (max(cfg.data.short_sides), cfg.data.max_size)),
        amp=amp,
        classes=args.classes or (len(CLASSES) if "classroom" in cfg.data.root else COCO_CLASSES),
        gts=args.gts,
        threads=torch.get_num_threads(),
    )
    return setup, args.steps, args.memory


def main(argv: list[str] | None = None) -> list[dict]:
    setup, steps, memory = parse_setup(argv)
    gpu = f", {torch.cuda.get_device_name()}" if setup.device == "cuda" else ""
    height, width = setup.size
    config = " ".join([setup.config, *setup.overrides])
    print(
        f"torch {torch.__version__}, {setup.threads} CPU threads, {setup.device}{gpu}; {config}: batch "
        f"{setup.batch} of {height}x{width}, amp {setup.amp}, {setup.classes} classes, {setup.gts} GTs per "
        f"image; median of {steps} steps\n"
    )
    rows = bench(setup, steps, memory)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
