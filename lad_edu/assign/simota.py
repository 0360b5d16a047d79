"""SimOTA: every GT takes the ``k`` priors that would cost it least, ``k`` read from its IoUs.

YOLOX (Ge et al., 2021, section 2.2 "SimOTA") simplifies optimal-transport assignment (OTA) to a greedy rule.
The cost of a prior ``i`` learning GT ``j`` is the loss it would have as that GT's positive::

    c_ij = L_cls(p_i, class_j) + λ · L_reg(b_i, B_j)      (+ 1e5 when i is not in j's centre region)

and each GT gets its own number of positives, its *dynamic k*: "the sum of the top-10 IoUs" of the predicted
boxes with the GT, rounded down (at least 1). A GT that the network already covers well gets more positives.
In MMDetection 3.3's ``SimOTAAssigner`` (the semantics reproduced here) the steps are:

1. **Priors**: anchor *centres* ``(cx, cy)`` with their level's stride ``s`` (YOLOX's points).
2. **Regions**: prior ``i`` is *in the box* of GT ``j`` when its centre lies strictly inside it, *in the
   centre region* when it lies strictly inside the square ``GT centre ± center_radius · s`` (``2.5 · s``).
   A prior in the box or the centre region of *any* GT is **valid**; the others are negative and take no
   further part. The *candidates* of GT ``j`` are the priors in its box **and** its centre region.
3. **Cost** (valid priors only): ``cls_weight · Σ_c BCE(sigmoid(logit_ic), onehot(class_j)_c)`` (float32,
   each log clamped at -100 as ``F.binary_cross_entropy`` does) ``+ iou_weight · -log(IoU(b_i, B_j) + 1e-7)``
   ``+ 1e5`` unless ``i`` is a candidate of ``j``; defaults ``cls_weight = 1``, ``iou_weight = 3``.
4. **Dynamic k**: ``k_j = max(1, floor(Σ of the top min(candidate_topk, #valid) IoUs of GT j))`` over all
   valid priors (candidates of ``j`` or not); ``candidate_topk = 10``.
5. **Selection**: GT ``j`` takes its ``k_j`` lowest-cost valid priors.
6. **Conflicts**: a prior taken by two or more GTs goes to the GT of lowest cost among *all* GTs, not only
   those that took it (an exact tie goes to the lower GT index). The others do not get a replacement.
7. Taken priors are positives, every other prior negative; SimOTA ignores nothing.

Worked example (the doctest of :class:`SimOTAAssigner`). One level, stride 8, so centre regions are
``± 20`` px; one class, every logit 0, so every classification cost is the same ``ln 2 = 0.693`` and only
the IoU cost ``3 · -ln IoU`` ranks. Two GTs ``A = [0, 0, 40, 40]``, ``B = [20, 0, 60, 40]`` (centre regions
equal to the boxes); five priors at ``y = 20``, ``x = 8, 16, 32, 48, 56``; every predicted box spans
``y ∈ [0, 40]`` like the GTs, so an IoU is a ratio of x-lengths:

=====  ==========  ================  =================  =========  =========
prior  pred x      IoU with A        IoU with B         cost A     cost B
=====  ==========  ================  =================  =========  =========
x=8    [0, 40]     40/40 = 1         20/60 = 0.333      0.69       1e5 + 4.0
x=16   [0, 20]     20/40 = 0.5       0/60  = 0          2.77       1e5 + 49.0
x=32   [12, 52]    28/52 = 0.538     32/48 = 0.667      2.55       1.91
x=48   [20, 60]    20/60 = 0.333     40/40 = 1          1e5 + 4.0  0.69
x=56   [40, 56]    0/56  = 0         16/40 = 0.4        1e5 + 49.0 3.44
=====  ==========  ================  =================  =========  =========

(``cost = 0.693 + 3 · -ln(IoU + 1e-7)``; priors x = 8, 16, 32 are A's candidates, 32, 48, 56 B's.)
``k_A = floor(1 + 0.538 + 0.5 + 0.333 + 0) = floor(2.37) = 2``: A takes x = 8 and x = 32 (costs 0.69, 2.55;
x = 16 costs 2.77). ``k_B = floor(1 + 0.667 + 0.4 + 0.333) = floor(2.40) = 2``: B takes x = 48 and x = 32.
Prior x = 32 is taken twice and goes to B (1.91 < 2.55). Result: A keeps one positive (x = 8), B has two
(x = 32, 48); x = 16 and x = 56 are negative. The soft classification targets (``quality``, the matched
predicted box's IoU) are 1, 0.667 and 1.

**A GT with no candidate** (no prior centre in both its box and its centre region) still has a dynamic k
and still takes its ``k`` lowest-cost valid priors: all its costs carry the ``1e5``, so these are the valid
priors with the lowest classification + IoU cost, which often belong to another GT. Where another GT also took
one, that GT wins it (its cost has no ``1e5``) if the prior is its candidate; a prior that no other GT took
stays with the GT, a positive whose centre lies outside that GT's box or centre region. The same holds for
a GT with fewer candidates than its ``k``: it fills up with such priors. (In float32, ``1e5 + c`` is rounded
to a multiple of 1/128, so costs that close are equal there, and equal costs go to the lower prior index.)
**No valid prior at all**: every prior is negative (MMDetection returns before computing ``k``; ``details``
reports ``dynamic_k = 0``). Since ``k_j <= #valid`` always holds (IoUs are at most 1), a GT never asks for
more priors than exist; ``k_j`` is also clamped to it explicitly.

**What the head does with it** (MMDetection's ``YOLOXHead._get_targets_single``): the classification target
of a positive is ``one_hot(class) × IoU of its predicted box with its GT`` (MMDetection's ``max_overlaps``;
here :attr:`AssignResult.quality`), the objectness target 1 on positives, the box target its GT.

**How it is computed.** One core, :func:`simota_cost` then :func:`lowest_k`, on dense ``[B, G, N]`` tensors
(every image's GTs padded to the batch's most, :mod:`lad_edu.assign.dense`), on the inputs' device, in
pieces of at most ``max_pairs`` (image, GT, prior) triples: the valid priors of each image first (they depend
on all its GTs), then cost, dynamic k and selection per piece, and the conflicts through a running minimum
of the cost over the pieces in GT order, so that a chunked run equals an unchunked one exactly. The per-GT
top-k with a varying ``k`` is one ``topk`` of width ``min(candidate_topk, N)`` (``k_j <= candidate_topk``)
and a ``cost < k-th cost`` mask, with no loop over GTs.

Differences from MMDetection's ``SimOTAAssigner`` (see docs/assigners/simota.md):

* equal costs at the ``k``-th place go to the lower prior index (MMDetection's ``topk`` leaves them
  implementation-defined);
* the class cost is summed as "every class negative, corrected at the GT's class" (one ``[N, C]`` pass instead
  of a ``[N, G, C]`` tensor): equal to MMDetection's sum up to float rounding;
* the scores are ``sigmoid(cls_logits)``: YOLOX's ``sqrt(sigmoid(cls) · sigmoid(objectness))`` has no
  objectness branch here; the priors are the anchors' centres (YOLOX uses its cells' centres, as anchors with
  ``center_offset = 0.5``);
* ``max_iou`` is each anchor box's best IoU with any GT (as the other assigners report it), the matched
  predicted box's IoU is in ``quality``; degenerate (zero-area) GTs are dropped first and never matched;
  predictions with a NaN or an infinity are a ``ValueError`` instead of a silent assignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce

import torch
import torch.nn.functional as F
from torch import Tensor

from lad_edu.anchors import level_strides
from lad_edu.assign.dense import DEFAULT_MAX_PAIRS, check_dense_inputs, chunks, padded_gts
from lad_edu.assign.interface import Predictions, one_image_predictions
from lad_edu.assign.result import AssignResult, gt_columns_to_all
from lad_edu.boxes import box_centers, centers_inside

__all__ = ["SimOTAAssigner", "SimOTACost", "batched_box_iou", "lowest_k", "prior_points", "simota_cost"]

OUTSIDE_COST = 1e5  # MMDetection's INF: the cost added where the prior is not a candidate of the GT
IOU_EPS = 1e-7  # inside the log of the IoU cost


def batched_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-6) -> Tensor:
    """IoU of every box of ``boxes1 [..., G, 4]`` with every box of ``boxes2 [..., N, 4]`` (xyxy, leading dims
    broadcast) -> ``[..., G, N]``; the union is clamped at ``eps`` as MMDetection's ``bbox_overlaps`` does.

    torchvision's ``box_iou`` takes one ``[G, 4]`` and one ``[N, 4]``: this is its arithmetic over a batch.
    """
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])  # [..., G]
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])  # [..., N]
    top_left = torch.maximum(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    bottom_right = torch.minimum(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)  # [..., G, N, 2]
    inter = wh[..., 0] * wh[..., 1]
    union = area1[..., :, None] + area2[..., None, :] - inter
    return inter / union.clamp(min=eps)


def prior_points(
    anchors: Tensor, num_level_anchors: list[int], strides: Sequence[float] | None = None
) -> tuple[Tensor, Tensor]:
    """SimOTA's priors: the anchors' centres ``[N, 2]`` and each one's level stride ``[N]``.

    Args:
        anchors: ``[N, 4]`` xyxy, level-major; num_level_anchors: anchors per level.
        strides: one stride per level; None reads them from the anchors
            (:func:`lad_edu.anchors.level_strides`).
    """
    if strides is None:
        strides = (
            level_strides(anchors, num_level_anchors) if len(anchors) else [0.0] * len(num_level_anchors)
        )
    elif len(strides) != len(num_level_anchors):
        raise ValueError(
            f"strides must give one stride per level ({len(num_level_anchors)}), got {list(strides)}"
        )
    counts = torch.tensor(list(num_level_anchors), device=anchors.device)
    per_prior = torch.repeat_interleave(anchors.new_tensor(list(strides)), counts)  # [N]
    return box_centers(anchors), per_prior


def prior_regions(
    centres: Tensor, strides: Tensor, gt_boxes: Tensor, center_radius: float
) -> tuple[Tensor, Tensor]:
    """Step 2: which prior centres lie strictly inside each GT box, and inside each GT's centre region.

    Args:
        centres: ``[N, 2]``; strides: ``[N]``; gt_boxes: ``[B, G, 4]`` xyxy.
        center_radius: the centre region is ``GT centre ± center_radius · stride``.

    Returns:
        ``in_box [B, G, N]`` and ``in_centre [B, G, N]``, bool.
    """
    points = centres[None, None]  # [1, 1, N, 2]
    in_box = centers_inside(points, gt_boxes[:, :, None], eps=0.0)  # min(l, t, r, b) > 0
    half = center_radius * strides[None, None, :, None]  # [1, 1, N, 1]
    gt_centre = box_centers(gt_boxes.reshape(-1, 4)).view(*gt_boxes.shape[:2], 1, 2)  # [B, G, 1, 2]
    region = torch.cat([gt_centre - half, gt_centre + half], dim=-1)  # [B, G, N, 4]
    return in_box, centers_inside(points, region, eps=0.0)


def valid_prior_mask(
    centres: Tensor, strides: Tensor, gt_boxes: Tensor, gt_valid: Tensor, center_radius: float
) -> Tensor:
    """Step 2's valid priors: ``[B, N]`` bool, in the box or the centre region of any real GT of the image."""
    in_box, in_centre = prior_regions(centres, strides, gt_boxes, center_radius)
    return ((in_box | in_centre) & gt_valid[..., None]).any(dim=1)


@dataclass(frozen=True, eq=False)
class SimOTACost:
    """What :func:`simota_cost` computes for ``B`` images, ``G`` GT slots and ``N`` priors.

    Attributes:
        cost: ``[B, G, N]`` step 3's cost; ``inf`` on priors that are not valid and on padded GT slots.
        iou: ``[B, G, N]`` IoU of each prior's predicted box with each GT (every prior, valid or not).
        candidate: ``[B, G, N]`` bool, the prior is in the GT's box and centre region (False on padding).
        dynamic_k: ``[B, G]`` long, step 4's ``k``; 0 on padded slots and in images without a valid prior.
    """

    cost: Tensor
    iou: Tensor
    candidate: Tensor
    dynamic_k: Tensor


def class_cost(cls_logits: Tensor, gt_labels: Tensor) -> Tensor:
    """Step 3's ``Σ_c BCE(sigmoid(logit_c), onehot(label)_c)`` for every (image, GT, prior): ``[B, G, N]``.

    Computed as the all-negative sum ``Σ_c BCE(p_c, 0)`` corrected at the GT's class by
    ``BCE(p_k, 1) - BCE(p_k, 0)``: the ``[B, N, C]`` work is done once, not once per GT. In float32 and
    through ``F.binary_cross_entropy`` (logs clamped at -100) as MMDetection does; returned in the dtype of
    ``cls_logits`` ``[B, N, C]``. ``gt_labels``: ``[B, G]`` long, in ``[0, C)``.
    """
    with torch.autocast(cls_logits.device.type, enabled=False):  # BCE is autocast-unsafe: keep float32
        probs = cls_logits.sigmoid().float()
        negative = F.binary_cross_entropy(probs, torch.zeros_like(probs), reduction="none")  # [B, N, C]
        positive = F.binary_cross_entropy(probs, torch.ones_like(probs), reduction="none")
    correction = (positive - negative).transpose(1, 2)  # [B, C, N]
    at_label = correction.gather(1, gt_labels[..., None].expand(-1, -1, cls_logits.shape[1]))  # [B, G, N]
    return (negative.sum(dim=-1)[:, None, :] + at_label).to(cls_logits.dtype)


def simota_cost(
    *,
    centres: Tensor,
    strides: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    cls_logits: Tensor,
    pred_boxes: Tensor,
    gt_valid: Tensor | None = None,
    valid_priors: Tensor | None = None,
    center_radius: float = 2.5,
    candidate_topk: int = 10,
    iou_weight: float = 3.0,
    cls_weight: float = 1.0,
) -> SimOTACost:
    """Steps 2-4 of the module docstring for ``B`` images sharing ``N`` priors.

    Args:
        centres: ``[N, 2]`` prior centres; strides: ``[N]`` their strides (:func:`prior_points`).
        gt_boxes: ``[B, G, 4]`` xyxy; gt_labels: ``[B, G]`` long class ids in ``[0, C)``.
        cls_logits: ``[B, N, C]`` raw logits; pred_boxes: ``[B, N, 4]`` decoded xyxy boxes.
        gt_valid: ``[B, G]`` bool, False on padded GT slots (:func:`lad_edu.assign.dense.padded_gts`);
            None: every slot is a GT.
        valid_priors: ``[B, N]`` bool (:func:`valid_prior_mask` over *all* the images' GTs, when ``gt_boxes``
            is a piece of them); None: computed from ``gt_boxes``.
        center_radius, candidate_topk, iou_weight, cls_weight: see :class:`SimOTAAssigner`.
    """
    if gt_valid is None:
        gt_valid = torch.ones(gt_boxes.shape[:2], dtype=torch.bool, device=gt_boxes.device)
    if valid_priors is None:
        valid_priors = valid_prior_mask(centres, strides, gt_boxes, gt_valid, center_radius)
    # half-precision predictions (autocast) are computed in float32, float64 ones stay float64
    cls_logits = cls_logits.to(torch.promote_types(cls_logits.dtype, torch.float32))
    pred_boxes = pred_boxes.to(torch.promote_types(pred_boxes.dtype, torch.float32))

    in_box, in_centre = prior_regions(centres, strides, gt_boxes, center_radius)
    candidate = in_box & in_centre & gt_valid[..., None]  # [B, G, N]
    iou = batched_box_iou(gt_boxes, pred_boxes)  # [B, G, N]
    cost = (
        class_cost(cls_logits, gt_labels) * cls_weight
        + -torch.log(iou + IOU_EPS) * iou_weight
        + candidate.logical_not() * OUTSIDE_COST
    )  # MMDetection's order of terms, so that its float rounding at 1e5 is the same
    usable = valid_priors[:, None, :] & gt_valid[..., None]
    cost = cost.masked_fill(usable.logical_not(), float("inf"))

    # step 4: k = max(1, floor(sum of the top IoUs)) over valid priors; the zeros of the others add nothing
    width = min(candidate_topk, iou.shape[-1])
    top_iou = iou.masked_fill(valid_priors[:, None, :].logical_not(), 0.0).topk(width, dim=-1).values
    dynamic_k = top_iou.sum(dim=-1).int().clamp(min=1, max=width)  # .int() truncates, as MMDetection's
    num_valid = valid_priors.sum(dim=-1, keepdim=True)  # [B, 1]: k never exceeds what exists
    dynamic_k = torch.minimum(dynamic_k.long(), num_valid).masked_fill(gt_valid.logical_not(), 0)
    return SimOTACost(cost=cost, iou=iou, candidate=candidate, dynamic_k=dynamic_k)


def lowest_k(cost: Tensor, k: Tensor, width: int) -> Tensor:
    """Step 5: the ``k`` lowest entries of every row, equal costs at the ``k``-th place to the lower index.

    Everything below the ``k``-th lowest cost, then as many entries *at* it as still needed, in index order:
    the first ``k`` of a stable sort, found with one ``topk`` of ``width`` columns.

    Args:
        cost: ``[..., N]``; k: ``[...]`` long, ``0 <= k <= width`` and at most the row's finite entries.
        width: ``max(k) <= width <= N`` (SimOTA: ``min(candidate_topk, N)``).

    Returns:
        ``[..., N]`` bool, exactly ``k`` True per row.

    >>> lowest_k(torch.tensor([[3.0, 1.0, 2.0, 1.0], [5.0, 4.0, 4.0, 4.0]]), torch.tensor([2, 2]), 2).int()
    tensor([[0, 1, 0, 1],
            [0, 1, 1, 0]], dtype=torch.int32)
    """
    if width == 0:
        return torch.zeros_like(cost, dtype=torch.bool)
    lowest = cost.topk(width, dim=-1, largest=False).values  # [..., width], sorted ascending
    kth = lowest.gather(-1, (k - 1).clamp(min=0)[..., None])  # [..., 1]
    below, at = cost < kth, cost == kth
    needed = k[..., None] - below.sum(dim=-1, keepdim=True)
    return (below | (at & (at.cumsum(dim=-1) <= needed))) & (k[..., None] > 0)


class _GTPerPrior:
    """A GT slot and its IoU for every (image, prior): ``gt [B, N]`` long, ``iou [B, N]``."""

    def __init__(self, num_images: int, num_priors: int, dtype: torch.dtype, device: torch.device):
        self.gt = torch.zeros((num_images, num_priors), dtype=torch.long, device=device)
        self.iou = torch.zeros((num_images, num_priors), dtype=dtype, device=device)

    def set_where(self, where: Tensor, images: slice, gt: Tensor, first_gt: int, iou: Tensor) -> None:
        """Where ``where [b, N]``, write GT ``first_gt + gt`` (``gt [b, 1, N]``: slots of the piece) and its
        IoU (from the piece's ``iou [b, g, N]``) for ``images``."""
        self.gt[images] = torch.where(where, gt[:, 0] + first_gt, self.gt[images])
        self.iou[images] = torch.where(where, iou.gather(1, gt)[:, 0], self.iou[images])


class _Matches:
    """Step 6 over pieces of GTs: the running state per (image, prior) that settles conflicts.

    A prior taken by one GT is that GT's (``taker``); taken by several, it is the GT of lowest cost among all
    of them (``cheapest``), the earlier GT on equal costs: ``min``'s first index within a piece, a strict
    ``<`` across the pieces, which come in GT order.
    """

    def __init__(self, num_images: int, num_priors: int, dtype: torch.dtype, device: torch.device):
        self.times_taken = torch.zeros((num_images, num_priors), dtype=torch.long, device=device)
        self.taker = _GTPerPrior(num_images, num_priors, dtype, device)
        self.cheapest = _GTPerPrior(num_images, num_priors, dtype, device)
        self.lowest_cost = torch.full((num_images, num_priors), float("inf"), dtype=dtype, device=device)

    def add(self, images: slice, first_gt: int, cost: Tensor, iou: Tensor, taken: Tensor) -> None:
        """One piece: ``cost``, ``iou``, ``taken`` ``[b, g, N]`` for GTs ``first_gt ..`` of ``images``."""
        count = taken.sum(dim=1)  # [b, N]
        self.times_taken[images] += count
        taker = taken.to(torch.uint8).argmax(dim=1, keepdim=True)  # the (first) GT that took the prior
        self.taker.set_where(count > 0, images, taker, first_gt, iou)
        lowest, lowest_gt = cost.min(dim=1, keepdim=True)  # first index on equal costs
        lower = lowest[:, 0] < self.lowest_cost[images]  # strict: an earlier piece keeps an equal cost
        self.lowest_cost[images] = torch.where(lower, lowest[:, 0], self.lowest_cost[images])
        self.cheapest.set_where(lower, images, lowest_gt, first_gt, iou)

    def result(self) -> tuple[Tensor, Tensor]:
        """``gt_inds [B, N]`` (1-based over the GT slots, 0 negative) and ``quality [B, N]`` (matched IoU)."""
        shared = self.times_taken > 1
        gt = torch.where(shared, self.cheapest.gt, self.taker.gt)
        quality = torch.where(shared, self.cheapest.iou, self.taker.iou)
        positive = self.times_taken > 0
        return torch.where(positive, gt + 1, 0), torch.where(positive, quality, 0.0)


class SimOTAAssigner:
    """YOLOX's SimOTA (see the module docstring).

    Args:
        center_radius: the centre region of a GT is its centre ``± center_radius · stride`` (2.5).
        candidate_topk: how many top IoUs are summed into a GT's dynamic k (10).
        iou_weight, cls_weight: the weights of the IoU cost and the classification cost (3 and 1).
        strides: one stride per anchor level; None reads them from the anchors' spacing
            (:func:`lad_edu.anchors.level_strides`).
        num_classes: when given, a GT label ``>= num_classes`` is a ``ValueError`` (labels must always lie in
            ``[0, C)``, the classes of the predictions).
        max_pairs: at most this many (image, GT, prior) triples at a time (:mod:`lad_edu.assign.dense`).

    The worked example of the module docstring:

    >>> x = torch.tensor([8.0, 16.0, 32.0, 48.0, 56.0])
    >>> anchors = torch.stack([x - 4, torch.full_like(x, 16), x + 4, torch.full_like(x, 24)], dim=1)
    >>> pred_x = torch.tensor([[0.0, 40.0], [0.0, 20.0], [12.0, 52.0], [20.0, 60.0], [40.0, 56.0]])
    >>> pred_boxes = torch.stack([pred_x[:, 0], torch.zeros(5), pred_x[:, 1], torch.full((5,), 40.0)], 1)
    >>> gt_boxes = torch.tensor([[0.0, 0.0, 40.0, 40.0], [20.0, 0.0, 60.0, 40.0]])
    >>> result = SimOTAAssigner(strides=(8,)).assign(
    ...     anchors, [5], gt_boxes, torch.tensor([0, 0]), torch.zeros(5, 1), pred_boxes)
    >>> result.gt_inds.tolist(), result.details["dynamic_k"].tolist()    # A: x = 8; B: x = 32, 48
    ([1, 0, 2, 2, 0], [2, 2])
    >>> [round(q, 3) for q in result.quality.tolist()]
    [1.0, 0.0, 0.667, 1.0, 0.0]
    """

    uses_predictions = True  # the cost reads the class scores and the predicted boxes

    def __init__(
        self,
        center_radius: float = 2.5,
        candidate_topk: int = 10,
        iou_weight: float = 3.0,
        cls_weight: float = 1.0,
        *,
        strides: Sequence[float] | None = None,
        num_classes: int | None = None,
        max_pairs: int = DEFAULT_MAX_PAIRS,
    ):
        if candidate_topk < 1:
            raise ValueError(f"candidate_topk must be >= 1, got {candidate_topk}")
        if center_radius < 0:
            raise ValueError(f"center_radius must be >= 0, got {center_radius}")
        if strides is not None and any(s <= 0 for s in strides):
            raise ValueError(f"strides must be positive, got {list(strides)}")
        if max_pairs < 1:
            raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
        self.center_radius, self.candidate_topk = center_radius, candidate_topk
        self.iou_weight, self.cls_weight = iou_weight, cls_weight
        self.strides = None if strides is None else tuple(float(s) for s in strides)
        self.num_classes, self.max_pairs = num_classes, max_pairs

    def __repr__(self) -> str:
        return (
            f"SimOTAAssigner(center_radius={self.center_radius}, candidate_topk={self.candidate_topk}, "
            f"iou_weight={self.iou_weight}, cls_weight={self.cls_weight}, strides={self.strides}, "
            f"num_classes={self.num_classes}, max_pairs={self.max_pairs})"
        )

    def assign(
        self,
        anchors: Tensor,
        num_level_anchors: list[int],
        gt_boxes: Tensor,
        gt_labels: Tensor,
        cls_logits: Tensor,
        pred_boxes: Tensor,
    ) -> AssignResult:
        """Label every anchor of one image: :meth:`assign_batch` with ``B = 1``.

        Args:
            anchors: ``[N, 4]`` xyxy, level-major; num_level_anchors: anchors per level.
            gt_boxes: ``[G, 4]`` xyxy; gt_labels: ``[G]`` class ids in ``[0, C)``.
            cls_logits: ``[N, C]`` raw logits; pred_boxes: ``[N, 4]`` decoded boxes, xyxy pixels.
        """
        predictions = one_image_predictions(anchors, cls_logits, pred_boxes)
        return self.assign_batch(anchors, num_level_anchors, [gt_boxes], [gt_labels], predictions)[0]

    def assign_batch(
        self,
        anchors: Tensor,
        num_level_anchors: list[int],
        gt_boxes: Sequence[Tensor],
        gt_labels: Sequence[Tensor],
        predictions: Predictions | None = None,
    ) -> list[AssignResult]:
        """Label every anchor of ``B`` images sharing one anchor set.

        Returns:
            One :class:`AssignResult` per image: ``gt_inds`` in {0, k >= 1} (SimOTA ignores nothing);
            ``quality [N]``, the positive's predicted-box IoU with its GT (0 elsewhere); ``max_iou``, each
            anchor box's best IoU with any GT; ``details``: ``dynamic_k [G]`` and ``num_candidates [G]``
            (priors in the GT's box and centre region), long, -1 for degenerate GTs.

        Raises:
            ValueError: when ``predictions`` is None, or naming the argument for inputs that do not fit
                (``"image b: ..."`` for image ``b``'s GTs or predictions).
        """
        predictions, kept = check_dense_inputs(
            self, anchors, num_level_anchors, gt_boxes, gt_labels, predictions
        )
        boxes, labels, gt_valid = padded_gts(
            [b[k] for b, k in zip(gt_boxes, kept, strict=True)],
            [lab[k] for lab, k in zip(gt_labels, kept, strict=True)],
        )
        gt_inds, quality, max_iou, dynamic_k, num_candidates = self._dense(
            anchors, num_level_anchors, boxes, labels, gt_valid, predictions
        )
        results = []
        for b, keep in enumerate(kept):
            count, num_given = len(keep), len(gt_labels[b])
            details = {
                "dynamic_k": gt_columns_to_all(dynamic_k[b, :count], keep, num_given, fill=-1),
                "num_candidates": gt_columns_to_all(num_candidates[b, :count], keep, num_given, fill=-1),
            }
            results.append(
                AssignResult.from_gt_inds(
                    gt_inds[b], max_iou[b], gt_labels[b], kept=keep, details=details, quality=quality[b]
                )
            )
        return results

    @torch.no_grad()
    def _dense(
        self,
        anchors: Tensor,
        num_level_anchors: list[int],
        boxes: Tensor,
        labels: Tensor,
        gt_valid: Tensor,
        predictions: Predictions,
    ) -> tuple[Tensor, ...]:
        """Steps 2-6 on the padded batch, piece by piece: ``gt_inds``, ``quality``, ``max_iou`` ``[B, N]``
        and ``dynamic_k``, ``num_candidates`` ``[B, G_max]``."""
        (num_images, max_gts), num_priors = boxes.shape[:2], len(anchors)
        centres, strides = prior_points(anchors, num_level_anchors, self.strides)
        pieces = [
            piece
            for piece in chunks(
                num_images=num_images, max_gts=max_gts, num_anchors=num_priors, max_pairs=self.max_pairs
            )
            if piece[1].stop > piece[1].start
        ]
        valid = torch.zeros((num_images, num_priors), dtype=torch.bool, device=anchors.device)
        for images, gts in pieces:  # valid priors first: they depend on all the image's GTs
            valid[images] |= valid_prior_mask(
                centres, strides, boxes[images, gts], gt_valid[images, gts], self.center_radius
            )
        cost_dtype = reduce(
            torch.promote_types,
            (predictions.cls_logits.dtype, predictions.boxes.dtype, boxes.dtype, torch.float32),
        )
        matches = _Matches(num_images, num_priors, cost_dtype, anchors.device)
        max_iou = anchors.new_zeros((num_images, num_priors))
        dynamic_k = torch.zeros((num_images, max_gts), dtype=torch.long, device=anchors.device)
        num_candidates = torch.zeros_like(dynamic_k)
        for images, gts in pieces:
            piece = simota_cost(
                centres=centres,
                strides=strides,
                gt_boxes=boxes[images, gts],
                gt_labels=labels[images, gts],
                cls_logits=predictions.cls_logits[images],
                pred_boxes=predictions.boxes[images],
                gt_valid=gt_valid[images, gts],
                valid_priors=valid[images],
                center_radius=self.center_radius,
                candidate_topk=self.candidate_topk,
                iou_weight=self.iou_weight,
                cls_weight=self.cls_weight,
            )
            taken = lowest_k(piece.cost, piece.dynamic_k, min(self.candidate_topk, num_priors))
            matches.add(images, gts.start, piece.cost, piece.iou, taken)
            dynamic_k[images, gts] = piece.dynamic_k
            num_candidates[images, gts] = piece.candidate.sum(dim=-1)
            anchor_iou = batched_box_iou(boxes[images, gts], anchors[None]) * gt_valid[images, gts, None]
            max_iou[images] = torch.maximum(max_iou[images], anchor_iou.amax(dim=1))
        gt_inds, quality = matches.result()
        return gt_inds, quality, max_iou, dynamic_k, num_candidates
