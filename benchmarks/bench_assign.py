"""Time the assigners: fixed IoU and ATSS per image; the prediction-based rules on a batch vs MMDetection.

    python -m benchmarks.bench_assign [--repeats 30] [--device cpu cuda] [--threads N] [--full]

**Box-only rules, one image.** For each scale (COCO: an 800x1216 image, strides 8-128; classroom: 320x320),
number of GTs (5, 30) and device, the median milliseconds of one ``.assign`` call (one image) of the
assigners :func:`lad_edu.assign.build_assigner` makes:

* fixed IoU (0.5 / 0.4) on RetinaNet's 9 anchors per location (~180k at COCO scale), and next to it
  torchvision's ``Matcher(0.5, 0.4, allow_low_quality_matches=True)`` on the same boxes, IoU included
  (``box_iou`` + matcher: the same work), with the ratio ours / torchvision (target: <= 1);
* fixed IoU (0.1 / 0.1, PAA's pre-assignment) on one anchor per location (~20k);
* ATSS (topk 9) on one anchor per location.

**Prediction-based rules, a batch of B = 8 images.** For each scale, number of GTs per image (5, 30, 300),
device and rule (task-aligned with TOOD's defaults, SimOTA, Hungarian with DINO's costs; one anchor per
location, 80 classes):

* "ours ms": the median milliseconds of one ``assign_batch`` call on the 8 images (dense ``[B, G, N]``
  work under ``max_pairs``), ``build_assigner(rule)`` with its defaults;
* "MMDet ms": MMDetection 3.3's per-image code, one image after the other (:func:`tal_mmdet`,
  :func:`simota_mmdet`, :func:`hungarian_mmdet`: MMDetection's vectorised torch code written out here, on
  the same device, with a Python loop over the GTs only where MMDetection has one, SimOTA's dynamic-k
  selection); "ratio" is ours / MMDetection (below 1: ours is faster). MMDetection's assigners return less
  than ours computes (ours adds each anchor's best IoU, the soft target ``quality`` and per-GT ``details``),
  and that extra work is in our time;
* "MiB": the peak memory of one call above what was allocated before it (:func:`measured`): on CUDA
  ``torch.cuda.max_memory_allocated``, on the CPU the peak of the running sum of the torch profiler's
  allocation events (``profile_memory=True``); numpy and scipy memory is not counted;
* "same gt_inds": in how many of the 8 images ours and MMDetection's code label every anchor alike.

Then the memory bound at work: each rule on COCO with 300 GTs per image and 8 images (48 M image-GT-anchor
triples), once with the default ``max_pairs`` (2^24: two images per piece) and once with ``max_pairs =
2^20`` (pieces of 51 GTs of one image): the peak memory of one call, and in how many images the two
give equal ``gt_inds`` and ``quality``.

The GTs are random boxes (log-uniform sides) from fixed seeds, so every run times the same inputs; the
predictions are synthetic (:func:`synthetic_predictions`): jittered anchors as boxes, and logits with a
bonus for the class of the most-overlapped GT that grows with the IoU, so that every rule picks
non-trivial positives. A prediction-based cell is called once under :func:`measured`, then timed for as
many rounds as fit in ~3 s, at least one and at most ``--repeats`` (the "calls" column). On the CPU the
COCO cells with 300 GTs take minutes (MMDetection's SimOTA alone builds ``[V, G, C]`` = 20k x 300 x 80
tensors per image, 5 GiB at its peak), so they run on CUDA, and on the CPU only with ``--full``. On a
machine shared with other work, ``--threads 1`` gives steadier CPU numbers (see :mod:`benchmarks.bench_paa`).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
import torchvision
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torchvision.models.detection._utils import Matcher

from lad_edu.anchors import retinanet, single
from lad_edu.assign import AssignResult, Predictions, build_assigner
from lad_edu.assign.dense import DEFAULT_MAX_PAIRS, chunks
from lad_edu.boxes import box_centers, box_iou

SCALES = {"COCO 800x1216": (800, 1216), "classroom 320x320": (320, 320)}
NUM_GTS = (5, 30)
PREDICTION_RULES = ("tal", "simota", "hungarian")
RULE_NAMES = {"tal": "task-aligned (TOOD)", "simota": "SimOTA", "hungarian": "Hungarian (DINO)"}
PREDICTION_NUM_GTS = (5, 30, 300)
BATCH = 8  # images per assign_batch call of the prediction-based rules
NUM_CLASSES = 80
SMALL_MAX_PAIRS = 2**20  # COCO, 300 GTs: one image is 6 M triples, so GT groups of 2^20 // 20267 = 51
CELL_BUDGET_S = 3.0  # a prediction-based cell gets as many timed rounds as fit in this (at least 1)
MMDET_INF = 1e8  # TaskAlignedAssigner's INF
MMDET_SIMOTA_INF = 1e5  # SimOTAAssigner's INF: the cost added outside a GT's box and centre square


def random_gts(image_size: tuple[int, int], num_gts: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_gts`` boxes with log-uniform sides between 1/40 and 1/2 of the short side (bench_paa's too)."""
    g = torch.Generator().manual_seed(seed)
    height, width = image_size
    short = min(height, width)
    sides = torch.exp(
        torch.empty(num_gts, 2).uniform_(*torch.log(torch.tensor([short / 40, short / 2])), generator=g)
    )
    x1 = torch.rand(num_gts, generator=g) * (width - sides[:, 0])
    y1 = torch.rand(num_gts, generator=g) * (height - sides[:, 1])
    boxes = torch.stack([x1, y1, x1 + sides[:, 0], y1 + sides[:, 1]], dim=1)
    labels = torch.randint(0, 80, (num_gts,), generator=g)
    return boxes, labels


def median_ms(fns: list, device: str, repeats: int, warmup: int = 3) -> list[float]:
    """Median wall time in milliseconds of each function in ``fns``.

    The functions are called round-robin (one call of each per repeat) so that a slow spell of the
    machine hits all of them alike; CUDA is synchronised around every call; ``warmup`` rounds first.
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, fn_times in zip(fns, times, strict=True):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            fn_times.append((time.perf_counter() - start) * 1e3)
    return [statistics.median(t) for t in times]


def bench_one(device: str, image_size: tuple[int, int], num_gts: int, repeats: int) -> list[dict]:
    """The rows of one (scale, number of GTs, device) cell."""
    retina_anchors, _ = retinanet()(image_size, device=device)
    single_anchors, num_level_anchors = single()(image_size, device=device)
    gts, labels = (t.to(device) for t in random_gts(image_size, num_gts))
    retina_fixed = build_assigner("fixed", pos_iou_thr=0.5, neg_iou_thr=0.4)
    paa_pre = build_assigner("paa").pre_assigner  # fixed IoU at 0.1 / 0.1
    atss = build_assigner("atss", topk=9)
    matcher = Matcher(0.5, 0.4, allow_low_quality_matches=True)

    ours, theirs, pre, atss_ms = median_ms(
        [
            lambda: retina_fixed.assign(retina_anchors, gts, labels),
            lambda: matcher(box_iou(gts, retina_anchors)),  # the same work: IoU + matching
            lambda: paa_pre.assign(single_anchors, gts, labels),
            lambda: atss.assign(single_anchors, num_level_anchors, gts, labels),
        ],
        device,
        repeats,
    )
    return [
        {
            "assigner": "fixed IoU 0.5/0.4",
            "anchors": len(retina_anchors),
            "ms": ours,
            "torchvision ms": theirs,
        },
        {"assigner": "fixed IoU 0.1/0.1 (PAA pre)", "anchors": len(single_anchors), "ms": pre},
        {"assigner": "ATSS topk 9", "anchors": len(single_anchors), "ms": atss_ms},
    ]


def bench(device: str, repeats: int) -> list[dict]:
    rows = []
    for scale, image_size in SCALES.items():
        for num_gts in NUM_GTS:
            cell = {"scale": scale, "GTs": num_gts, "device": device}
            rows += [{**cell, **row} for row in bench_one(device, image_size, num_gts, repeats)]
    return rows


# ---------------------------------------------------------------------------------------------------------
# The prediction-based rules on a batch, against MMDetection's per-image code


@dataclass(frozen=True, eq=False)
class SyntheticBatch:
    """``B`` images of one size sharing one anchor set, with GTs and partly-trained-looking predictions.

    Attributes:
        anchors: ``[N, 4]`` xyxy (:func:`lad_edu.anchors.single`: one ``8·stride`` square per location).
        num_level_anchors: anchors per level.
        priors: ``[N, 4]`` ``(cx, cy, stride, stride)``, MMDetection's point priors for SimOTA.
        gt_boxes, gt_labels: one ``[G, 4]`` and one ``[G]`` tensor per image.
        predictions: ``cls_logits [B, N, C]``, ``boxes [B, N, 4]`` and every image's ``(h, w)``.
    """

    anchors: Tensor
    num_level_anchors: list[int]
    priors: Tensor
    gt_boxes: list[Tensor]
    gt_labels: list[Tensor]
    predictions: Predictions

    @property
    def image_size(self) -> tuple[int, int]:
        return self.predictions.image_sizes[0]


def synthetic_predictions(
    anchors: Tensor, gt_boxes: Tensor, gt_labels: Tensor, seed: int, num_classes: int = NUM_CLASSES
) -> tuple[Tensor, Tensor]:
    """One image's predictions as a partly trained detector makes them (bench_paa's recipe, on every anchor).

    Every anchor's box is the anchor jittered by 10% of its side; its logits are noise around -4, plus, at
    the class of the GT it overlaps most, a bonus of ``8 · IoU`` (and noise): the better an anchor sits on a
    GT, the surer it is of that GT's class.

    Args:
        anchors: ``[N, 4]``; gt_boxes: ``[G, 4]``; gt_labels: ``[G]`` in ``[0, num_classes)`` (on the CPU).

    Returns:
        ``cls_logits [N, C]`` and ``boxes [N, 4]`` (xyxy, at least 1 px wide and high).
    """
    g = torch.Generator().manual_seed(seed)
    num_anchors = len(anchors)
    logits = torch.randn(num_anchors, num_classes, generator=g) - 4
    if len(gt_boxes):
        best_iou, best_gt = box_iou(anchors, gt_boxes).max(dim=1)
        bonus = (8 * best_iou + torch.randn(num_anchors, generator=g)) * (best_iou > 0)
        logits[torch.arange(num_anchors), gt_labels[best_gt]] += bonus
    sides = (anchors[:, 2:] - anchors[:, :2]).repeat(1, 2)
    boxes = anchors + torch.randn(num_anchors, 4, generator=g) * sides * 0.1
    boxes = torch.cat([boxes[:, :2], torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)], dim=1)
    return logits, boxes


def synthetic_batch(
    image_size: tuple[int, int], num_gts: int, num_images: int, device: str
) -> SyntheticBatch:
    """``num_images`` images of ``image_size`` with ``num_gts`` :func:`random_gts` each (image ``b``: seed
    ``b``) and their :func:`synthetic_predictions`, on ``device``."""
    generator = single()
    anchors, num_level_anchors = generator(image_size)
    strides = torch.repeat_interleave(
        torch.tensor(generator.strides, dtype=anchors.dtype), torch.tensor(num_level_anchors)
    )
    priors = torch.cat([box_centers(anchors), strides[:, None].expand(-1, 2)], dim=1)
    images = [random_gts(image_size, num_gts, seed=b) for b in range(num_images)]
    logits, boxes = zip(
        *(synthetic_predictions(anchors, *gts, seed=1000 + b) for b, gts in enumerate(images)), strict=True
    )
    return SyntheticBatch(
        anchors.to(device),
        num_level_anchors,
        priors.to(device),
        [gts.to(device) for gts, _ in images],
        [labels.to(device) for _, labels in images],
        Predictions(
            torch.stack(logits).to(device), torch.stack(boxes).to(device), (image_size,) * num_images
        ),
    )


def tal_mmdet(
    anchors: Tensor,
    cls_logits: Tensor,
    pred_boxes: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    *,
    topk: int = 13,
    alpha: float = 1.0,
    beta: float = 6.0,
) -> Tensor:
    """MMDetection 3.3's ``TaskAlignedAssigner.assign`` for one image, vectorised as MMDetection writes it.

    MMDetection's ``bbox_overlaps`` is ``torchvision.ops.box_iou`` here: the same arithmetic but for its
    ``1e-6`` floor on the union, which boxes of a pixel or more never reach (so in :func:`simota_mmdet`; and
    :func:`hungarian_mmdet` uses ``generalized_box_iou``, without the same floor on union and hull).

    Args:
        anchors: ``[N, 4]`` xyxy priors; cls_logits: ``[N, C]`` raw logits; pred_boxes: ``[N, 4]`` xyxy.
        gt_boxes: ``[G, 4]`` xyxy; gt_labels: ``[G]``.

    Returns:
        ``gt_inds [N]``: 0 negative, ``k >= 1`` GT ``k - 1``.
    """
    gt_inds = torch.zeros(len(anchors), dtype=torch.long, device=anchors.device)
    if len(gt_boxes) == 0 or len(anchors) == 0:
        return gt_inds
    overlaps = torchvision.ops.box_iou(pred_boxes, gt_boxes)  # [N, G] predicted boxes vs GTs
    metric = cls_logits.sigmoid()[:, gt_labels] ** alpha * overlaps**beta  # t = s^alpha u^beta, [N, G]
    candidates = metric.topk(min(topk, len(anchors)), dim=0).indices  # [k, G], over all levels
    gt_index = torch.arange(len(gt_boxes), device=anchors.device).expand_as(candidates)
    centres = box_centers(anchors)[candidates]  # [k, G, 2]
    margins = torch.cat([centres - gt_boxes[:, :2], gt_boxes[:, 2:] - centres], dim=-1)  # [k, G, 4]
    positive = (metric[candidates, gt_index] > 0) & (margins.amin(dim=-1) > 0.01)
    # an anchor positive for several GTs goes to the GT its predicted box overlaps most
    chosen = torch.full_like(overlaps, -MMDET_INF)
    rows, cols = candidates[positive], gt_index[positive]
    chosen[rows, cols] = overlaps[rows, cols]
    best, best_gt = chosen.max(dim=1)
    return torch.where(best > -MMDET_INF, best_gt + 1, 0)


def simota_regions(priors: Tensor, gt_boxes: Tensor, center_radius: float) -> tuple[Tensor, Tensor]:
    """MMDetection's ``get_in_gt_and_in_center_info`` before its reductions: whether each prior centre lies
    strictly inside each GT box, and strictly inside its centre square ``± center_radius · stride``.

    Args:
        priors: ``[N, 4]`` ``(cx, cy, stride_x, stride_y)``; gt_boxes: ``[G, 4]`` xyxy.

    Returns:
        ``in_box [N, G]`` and ``in_centre [N, G]``, bool.
    """
    points, half = priors[:, None, :2], center_radius * priors[:, None, 2:]  # [N, 1, 2] each
    in_box = torch.cat([points - gt_boxes[:, :2], gt_boxes[:, 2:] - points], dim=-1).amin(dim=-1) > 0
    gt_centres = box_centers(gt_boxes)  # [G, 2]
    in_centre = torch.cat([points - (gt_centres - half), gt_centres + half - points], dim=-1).amin(dim=-1) > 0
    return in_box, in_centre


def simota_mmdet(
    priors: Tensor,
    cls_logits: Tensor,
    pred_boxes: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    *,
    center_radius: float = 2.5,
    candidate_topk: int = 10,
    iou_weight: float = 3.0,
    cls_weight: float = 1.0,
) -> Tensor:
    """MMDetection 3.3's ``SimOTAAssigner.assign`` for one image, vectorised as MMDetection writes it: the
    class cost through ``[V, G, C]`` copies of the scores and one-hot labels, one ``topk`` per GT.

    MMDetection computes its class cost only under ``is_cuda_available()`` (or MUSA): on a machine without
    a GPU its ``assign`` fails. The cost is computed here the same way on every device.

    Args:
        priors: ``[N, 4]`` ``(cx, cy, stride_x, stride_y)``; cls_logits: ``[N, C]``; pred_boxes: ``[N, 4]``.
        gt_boxes: ``[G, 4]`` xyxy; gt_labels: ``[G]``.

    Returns:
        ``gt_inds [N]``: 0 negative, ``k >= 1`` GT ``k - 1``.
    """
    num_gts = len(gt_boxes)
    gt_inds = torch.zeros(len(priors), dtype=torch.long, device=priors.device)
    if num_gts == 0 or len(priors) == 0:
        return gt_inds
    in_box, in_centre = simota_regions(priors, gt_boxes, center_radius)
    valid = in_box.any(dim=1) | in_centre.any(dim=1)  # in some GT's box or centre square
    num_valid = int(valid.sum())
    if num_valid == 0:
        return gt_inds
    ious = torchvision.ops.box_iou(pred_boxes[valid], gt_boxes)  # [V, G]
    scores = cls_logits[valid].sigmoid().float()[:, None, :].repeat(1, num_gts, 1)  # [V, G, C]
    onehot = F.one_hot(gt_labels, cls_logits.shape[1]).float()[None].repeat(num_valid, 1, 1)  # [V, G, C]
    cls_cost = F.binary_cross_entropy(scores, onehot, reduction="none").sum(dim=-1)  # [V, G]
    cost = (
        cls_cost * cls_weight
        + -torch.log(ious + 1e-7) * iou_weight
        + (~(in_box[valid] & in_centre[valid])) * MMDET_SIMOTA_INF
    )
    # dynamic k: the sum of the top IoUs, at least 1; each GT takes its k cheapest valid priors
    top_ious = ious.topk(min(candidate_topk, num_valid), dim=0).values
    dynamic_k = top_ious.sum(dim=0).int().clamp(min=1)
    matching = torch.zeros_like(cost, dtype=torch.uint8)
    for gt in range(num_gts):  # MMDetection's per-GT loop
        matching[cost[:, gt].topk(int(dynamic_k[gt]), largest=False).indices, gt] = 1
    shared = matching.sum(dim=1) > 1  # taken by several GTs: the GT of least cost among all
    if shared.any():
        matching[shared] = 0
        matching[shared, cost[shared].argmin(dim=1)] = 1
    taken = matching.sum(dim=1) > 0
    valid_index = valid.nonzero().squeeze(1)
    gt_inds[valid_index[taken]] = matching[taken].argmax(dim=1) + 1
    return gt_inds


def hungarian_mmdet(
    cls_logits: Tensor,
    pred_boxes: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    image_size: tuple[int, int],
    *,
    cls_weight: float = 2.0,
    l1_weight: float = 5.0,
    giou_weight: float = 2.0,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> Tensor:
    """MMDetection 3.3's ``HungarianAssigner.assign`` for one image with DINO's ``FocalLossCost``,
    ``BBoxL1Cost(box_format='xywh')`` and ``IoUCost('giou')``, vectorised as MMDetection writes them; the
    ``[N, G]`` cost goes to the CPU for scipy.

    Args:
        cls_logits: ``[N, C]``; pred_boxes: ``[N, 4]`` xyxy pixels; gt_boxes: ``[G, 4]``; gt_labels: ``[G]``.
        image_size: ``(h, w)``, MMDetection's ``img_meta['img_shape']``.

    Returns:
        ``gt_inds [N]``: 0 negative, ``k >= 1`` GT ``k - 1``.
    """
    gt_inds = torch.zeros(len(pred_boxes), dtype=torch.long, device=pred_boxes.device)
    if len(gt_boxes) == 0 or len(pred_boxes) == 0:
        return gt_inds
    p = cls_logits.sigmoid()  # [N, C]: the focal loss if positive, minus the one if background
    neg = -(1 - p + 1e-12).log() * (1 - alpha) * p.pow(gamma)
    pos = -(p + 1e-12).log() * alpha * (1 - p).pow(gamma)
    cls_cost = (pos[:, gt_labels] - neg[:, gt_labels]) * cls_weight  # [N, G]
    height, width = image_size
    factor = gt_boxes.new_tensor([width, height, width, height])
    pred_cxcywh = torchvision.ops.box_convert(pred_boxes, "xyxy", "cxcywh") / factor
    gt_cxcywh = torchvision.ops.box_convert(gt_boxes, "xyxy", "cxcywh") / factor
    l1_cost = torch.cdist(pred_cxcywh, gt_cxcywh, p=1) * l1_weight
    giou_cost = -torchvision.ops.generalized_box_iou(pred_boxes, gt_boxes) * giou_weight
    cost = torch.stack([cls_cost, l1_cost, giou_cost]).sum(dim=0).cpu()  # [N, G]
    rows, cols = (torch.from_numpy(i).to(gt_inds.device) for i in linear_sum_assignment(cost.numpy()))
    gt_inds[rows] = cols + 1
    return gt_inds


def mmdet_per_image(rule: str, batch: SyntheticBatch) -> list[Tensor]:
    """MMDetection's per-image reference for ``rule``, one image after the other: ``gt_inds [N]`` each."""
    logits, boxes = batch.predictions.cls_logits, batch.predictions.boxes
    images = zip(logits, boxes, batch.gt_boxes, batch.gt_labels, strict=True)
    if rule == "tal":
        return [tal_mmdet(batch.anchors, *image) for image in images]
    if rule == "simota":
        return [simota_mmdet(batch.priors, *image) for image in images]
    return [hungarian_mmdet(*image, batch.image_size) for image in images]


class Measured(NamedTuple):
    """One call of a function: what it returned, its wall time and its peak memory."""

    value: object
    seconds: float  # on the CPU with the profiler running: for choosing the number of timed calls only
    mib: float


def measured(fn: Callable[[], object], device: str) -> Measured:
    """Call ``fn()`` once and measure the peak memory it allocates above what was allocated before it.

    CUDA: ``torch.cuda.max_memory_allocated`` (peak statistics reset before the call). CPU: torch keeps no
    allocator statistics there, so the call runs under ``torch.profiler`` with ``profile_memory=True``, which
    records every allocation and free of a torch tensor: the peak of their running sum. Memory outside torch
    (numpy, scipy's matching) is not counted on either device.
    """
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before, start = torch.cuda.memory_allocated(), time.perf_counter()
        value = fn()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        return Measured(value, seconds, (torch.cuda.max_memory_allocated() - before) / 2**20)
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True)
    with _quiet_stderr():  # kineto logs its start, its stop and the missing GPU to the C stderr
        profiler.start()
    start = time.perf_counter()
    try:
        value = fn()
    finally:
        seconds = time.perf_counter() - start
        with _quiet_stderr():
            profiler.stop()
    events = profiler.profiler.kineto_results.events()  # the raw events: one "[memory]" per (de)allocation
    changes = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    return Measured(value, seconds, max(itertools.accumulate(n for _, n in changes), default=0) / 2**20)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 (the stderr of C and C++ code) to /dev/null for the ``with`` block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def calls_within(seconds_per_round: float, repeats: int, budget_s: float = CELL_BUDGET_S) -> int:
    """How many timed rounds a cell gets: ``repeats``, or as many as fit in ``budget_s`` (at least one)."""
    return max(1, min(repeats, int(budget_s / max(seconds_per_round, 1e-9))))


def bench_rule(rule: str, batch: SyntheticBatch, device: str, repeats: int) -> dict:
    """One row: ``build_assigner(rule).assign_batch`` on the batch against :func:`mmdet_per_image`.

    Each is first called once under :func:`measured` (warm-up, peak memory, and the results whose
    ``gt_inds`` are compared image by image), then both are timed round-robin by :func:`median_ms`.
    """
    assigner = build_assigner(rule)
    args = (batch.anchors, batch.num_level_anchors, batch.gt_boxes, batch.gt_labels, batch.predictions)
    ours_fn, reference_fn = (lambda: assigner.assign_batch(*args)), (lambda: mmdet_per_image(rule, batch))
    ours, reference = measured(ours_fn, device), measured(reference_fn, device)
    same = sum(bool(r.gt_inds.equal(g)) for r, g in zip(ours.value, reference.value, strict=True))
    calls = calls_within(ours.seconds + reference.seconds, repeats)
    ours_ms, reference_ms = median_ms([ours_fn, reference_fn], device, calls, warmup=0)
    return {
        "rule": RULE_NAMES[rule],
        "anchors": len(batch.anchors),
        "calls": calls,
        "ms": ours_ms,
        "mmdet ms": reference_ms,
        "MiB": ours.mib,
        "mmdet MiB": reference.mib,
        "same": f"{same}/{len(reference.value)}",
    }


def bench_prediction_rules(device: str, repeats: int, *, coco_300: bool = True) -> list[dict]:
    """The rows of every scale, number of GTs and prediction-based rule on ``device``; with ``coco_300``
    False, without the COCO cells of 300 GTs (minutes on a CPU)."""
    rows = []
    for scale, image_size in SCALES.items():
        for num_gts in PREDICTION_NUM_GTS:
            if num_gts == 300 and scale.startswith("COCO") and not coco_300:
                continue
            batch = synthetic_batch(image_size, num_gts, BATCH, device)
            cell = {"scale": scale, "GTs": num_gts, "device": device}
            rows += [{**cell, **bench_rule(rule, batch, device, repeats)} for rule in PREDICTION_RULES]
    return rows


def bench_memory_bound(
    device: str, *, batch: SyntheticBatch | None = None, small_max_pairs: int = SMALL_MAX_PAIRS
) -> list[dict]:
    """Each rule with the default ``max_pairs`` and with ``small_max_pairs`` (GT pieces of one image) on
    ``batch`` (default: COCO, 300 GTs, :data:`BATCH` images), one :func:`measured` call each: the peak
    memory, and (on the second row) in how many images both give equal ``gt_inds`` and ``quality``.

    The Hungarian rule keeps the whole ``[B, G, N]`` cost on the CPU for scipy (185 MiB at the default
    scale) whatever ``max_pairs`` is: the bound is on the work in flight, not on that result.
    """
    batch = batch or synthetic_batch(SCALES["COCO 800x1216"], 300, BATCH, device)
    args = (batch.anchors, batch.num_level_anchors, batch.gt_boxes, batch.gt_labels, batch.predictions)
    shape = {"num_images": len(batch.gt_boxes), "max_gts": max(map(len, batch.gt_boxes))}
    rows = []
    for rule in PREDICTION_RULES:
        settings = (DEFAULT_MAX_PAIRS, small_max_pairs)
        runs = [
            measured(functools.partial(build_assigner(rule, max_pairs=m).assign_batch, *args), device)
            for m in settings
        ]
        equal = sum(map(same_result, runs[0].value, runs[1].value))
        for max_pairs, run, equal_cell in zip(
            settings, runs, (None, f"{equal}/{len(runs[0].value)}"), strict=True
        ):
            pieces = chunks(**shape, num_anchors=len(batch.anchors), max_pairs=max_pairs)
            rows.append(
                {
                    "rule": RULE_NAMES[rule],
                    "device": device,
                    "max_pairs": max_pairs,
                    "pieces": len(pieces),
                    "MiB": run.mib,
                    "equal": equal_cell,
                }
            )
    return rows


def same_result(a: AssignResult, b: AssignResult) -> bool:
    """Whether two results have equal ``gt_inds`` and ``quality`` (both None, or equal tensors)."""
    if (a.quality is None) != (b.quality is None):
        return False
    return bool(a.gt_inds.equal(b.gt_inds)) and (a.quality is None or bool(a.quality.equal(b.quality)))


# ---------------------------------------------------------------------------------------------------------
# Tables

# (key, title, width, number format): "" for text, left-aligned
BOX_COLUMNS = [
    ("scale", "scale", 18, ""),
    ("device", "device", 6, ""),
    ("GTs", "GTs", 3, "d"),
    ("assigner", "assigner", 27, ""),
    ("anchors", "anchors", 7, "d"),
    ("ms", "median ms", 9, ".2f"),
    ("torchvision ms", "torchvision Matcher ms", 22, ".2f"),
    ("ratio", "ratio", 5, ".2f"),
]
PREDICTION_COLUMNS = [
    ("scale", "scale", 18, ""),
    ("device", "device", 6, ""),
    ("GTs", "GTs/image", 9, "d"),
    ("rule", "rule (B = 8)", 19, ""),
    ("anchors", "anchors", 7, "d"),
    ("calls", "calls", 5, "d"),
    ("ms", "ours ms", 8, ".1f"),
    ("mmdet ms", "MMDet ms", 8, ".1f"),
    ("ratio", "ratio", 5, ".2f"),
    ("MiB", "ours MiB", 8, ".1f"),
    ("mmdet MiB", "MMDet MiB", 9, ".1f"),
    ("same", "same gt_inds", 12, ""),
]
MEMORY_COLUMNS = [
    ("rule", "rule (COCO, 300 GTs, B = 8)", 27, ""),
    ("device", "device", 6, ""),
    ("max_pairs", "max_pairs", 9, "d"),
    ("pieces", "pieces", 6, "d"),
    ("MiB", "peak MiB", 8, ".1f"),
    ("equal", "equal results", 13, ""),
]


def print_table(rows: list[dict], columns: list[tuple[str, str, int, str]] = BOX_COLUMNS) -> None:
    """``rows`` as a markdown table of ``columns`` (key, title, width, format); a row without a key, or
    with None there, leaves its cell blank. A row with ``ms`` and a reference time gets its ``ratio``."""
    widths = [max(width, len(title)) for _, title, width, _ in columns]
    print(
        "| " + " | ".join(f"{title:<{w}}" for (_, title, _, _), w in zip(columns, widths, strict=True)) + " |"
    )
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        reference = row.get("torchvision ms", row.get("mmdet ms"))
        row = {**row, "ratio": row["ms"] / reference if reference else None}
        cells = [
            " " * w if row.get(key) is None else f"{row[key]:>{w}{fmt}}" if fmt else f"{row[key]:<{w}}"
            for (key, _, _, fmt), w in zip(columns, widths, strict=True)
        ]
        print("| " + " | ".join(cells) + " |")


def benchmark_parser(doc: str, default_repeats: int) -> argparse.ArgumentParser:
    """The benchmarks' shared command line: ``--repeats``, ``--device``, ``--threads`` (a benchmark may add
    its own options before parsing)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=default_repeats, help="timed calls per cell (median)")
    parser.add_argument(
        "--device", nargs="+", default=None, help="devices (default: cpu, and cuda if present)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    return parser


def benchmark_setup(
    doc: str, default_repeats: int, args: argparse.Namespace | None = None
) -> tuple[int, list[str], str]:
    """Parse the command line of :func:`benchmark_parser` (or take ``args``, already parsed from it) and set
    the CPU threads.

    Returns the repeats, the devices to time (cpu, and cuda when present) and a one-line description of
    the machine for the table's header.
    """
    args = args or benchmark_parser(doc, default_repeats).parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cuda" in devices and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch.cuda.is_available() is False")
    gpu = f", {torch.cuda.get_device_name()}" if "cuda" in devices else ""
    return args.repeats, devices, f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads{gpu}"


def main() -> None:
    parser = benchmark_parser(__doc__, default_repeats=30)
    parser.add_argument(
        "--full",
        action="store_true",
        help="on the CPU too, the prediction-based rules on COCO with 300 GTs (~5 more minutes on 2 cores)",
    )
    args = parser.parse_args()
    repeats, devices, machine = benchmark_setup(__doc__, 30, args)
    print(f"{machine}; median of {repeats} calls (prediction-based rules: of the calls column)\n")
    print_table([row for device in devices for row in bench(device, repeats)])
    print(f"\nB = {BATCH} images per call; 'ratio' is ours / MMDetection's per-image code\n")
    rows = [
        row
        for device in devices
        for row in bench_prediction_rules(device, repeats, coco_300=args.full or device == "cuda")
    ]
    print_table(rows, PREDICTION_COLUMNS)
    print()
    print_table([row for device in devices for row in bench_memory_bound(device)], MEMORY_COLUMNS)


if __name__ == "__main__":
    main()
