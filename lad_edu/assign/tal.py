"""Task-aligned assignment (TOOD; YOLOv8's TAL): the anchors whose *predictions* are already good.

TOOD (Feng et al., ICCV 2021) picks positives with the network's own outputs. For GT ``g`` and anchor
``i``, with ``s`` the predicted probability of ``g``'s class and ``u`` the IoU of the predicted box with
``g``, the **task alignment metric** (TOOD, section 3.2) is::

    t = s^alpha * u^beta            (alpha = 1, beta = 6)

large only where classification *and* localisation are both good. Then, in MMDetection 3.3's
``TaskAlignedAssigner``:

1. **Candidates**: the ``topk = 13`` anchors of largest ``t`` over the whole pyramid (all levels at once,
   ``min(topk, N)`` when there are fewer anchors).
2. **Positives**: candidates with ``t > 0`` whose anchor centre lies inside the GT by more than 0.01 px.
3. **Conflicts**: an anchor positive for several GTs goes to the one its predicted box overlaps most
   (an exact tie to the lower GT index).
4. **Soft target** (``TOODHead._get_targets_single``): each positive's class target is TOOD's normalised
   ``t_hat = t / (max t + 1e-7) * max u``, the maxima taken over the GT's positives, so that the
   best-aligned anchor of a GT aims at the best IoU reached on that GT. It is :attr:`AssignResult.quality`.

MMDetection's ``TaskAlignedAssigner`` has no default ``topk``; TOOD's config sets 13 and passes
``alpha = 1``, ``beta = 6`` from its ``train_cfg``, the defaults here. TOOD's ``s`` is its T-head's aligned
score ``sqrt(sigmoid(cls) · sigmoid(prob))``; here it is the sigmoid of ``cls_logits``, whatever head made
them.

Worked example (one GT, ``topk = 3``, four anchors; ``s`` and ``u`` given, ``t = s·u^6``):

======  =====  =====  ==========  ========  ===============  =====================
anchor  s      u      t           top-3     centre inside    positive, t_hat
======  =====  =====  ==========  ========  ===============  =====================
A0      0.9    0.5    0.0140625   no (4th)  yes              no
A1      0.4    0.8    0.1048576   1st       yes              yes, 0.8
A2      0.8    0.7    0.0941192   2nd       **no**           no
A3      0.6    0.6    0.0279936   3rd       yes              yes, 0.2136
======  =====  =====  ==========  ========  ===============  =====================

A0 has the best score but a poor box, so it is not even a candidate; A2 is a candidate whose centre lies
outside the GT. The positives' largest ``t`` is A1's and their largest ``u`` is 0.8, so A1 learns
``0.1048576 / (0.1048576 + 1e-7) · 0.8 = 0.7999992`` and A3 ``0.0279936 / 0.1048576 · 0.8 = 0.2136``.
With ``variant="ultralytics"`` the centre test comes *before* the top-k: A2's metric is zeroed, the
top 3 become A1, A3, A0, and A0 is a positive too (``t_hat = 0.0140625 / 0.1048576 · 0.8 = 0.1073``).

``variant="ultralytics"`` is YOLOv8's ``ultralytics.utils.tal.TaskAlignedAssigner`` (read at commit
``6794f38``). Every difference from MMDetection:

* the centre test (margin ``1e-9`` instead of 0.01) comes first: ``s`` and ``u``, hence ``t``, are 0 for
  anchors whose centre is outside the GT, so the top-k only ranks the anchors inside it;
* ``u`` is the CIoU of the predicted box with the GT, clamped at 0, not the IoU;
* a candidate needs no ``t > 0``: a zero-metric anchor inside the GT that makes the top-k is positive;
* conflicts go to the GT of highest CIoU among *all* GTs (``argmax`` over every GT, not only those that
  chose the anchor), so an anchor can end up with a GT whose top-k it was not in;
* ``t_hat = t · max u / (max t + 1e-9)``, taken after the conflicts, as in MMDetection otherwise;
* ultralytics' own defaults are ``topk=10, alpha=0.5, beta=6.0`` (YOLOv8's loss); we keep TOOD's
  ``13, 1.0, 6.0`` for both variants, so pass them explicitly;
* ultralytics calls ``torch.topk(metric, topk)`` without ``min(topk, N)`` (an error for ``N < topk``).

Where this implementation differs from both, and why:

* ties in ``t`` at the top-k boundary go to the lower anchor index (``torch.topk`` leaves them
  implementation-defined, so CPU and CUDA can differ); this matters for MMDetection only through
  ``details`` (tied zero metrics are never positive there) but can change ultralytics' positives;
* ``max_iou`` is each **anchor box's** best IoU with any GT, as for the other assigners; the predicted
  box's IoU (CIoU for ultralytics) with the assigned GT is ``details["pred_iou"]`` (MMDetection's
  ``max_overlaps``, which is ``-1e8`` on non-positives);
* the CIoU is :func:`torchvision.ops.complete_box_iou`, whose ``1e-7`` sits in other places than in
  ultralytics' ``bbox_iou`` (a relative change of ~1e-8), a NaN from a zero-size predicted box becoming 0
  (ultralytics' clamp gives 0 there too);
* degenerate (zero-area) GTs are removed first; neither rule can match them, except ultralytics'
  all-zero ``argmax`` falling on GT 0, which then goes to the first usable GT;
* NaN or infinite predictions or GT coordinates are a ``ValueError``, not a silent assignment;
* ``s^alpha`` is taken per image on its ``[N, C]`` probabilities and ``u^beta`` by repeated squaring for a
  whole ``beta``, so that a (GT, anchor) pair gets the same bits alone, in a batch or in a chunk
  (``torch.pow`` and ``sigmoid`` on the CPU round the SIMD body and the scalar tail of a tensor
  differently); MMDetection's ``overlaps ** beta`` can differ in the last bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torchvision.ops
from torch import Tensor

from lad_edu.assign.atss import nearest_k
from lad_edu.assign.dense import DEFAULT_MAX_PAIRS, check_dense_inputs, chunks, padded_gts
from lad_edu.assign.interface import Predictions, one_image_predictions
from lad_edu.assign.result import AssignResult, gt_columns_to_all
from lad_edu.boxes import box_centers, box_iou, centers_inside

__all__ = ["TaskAlignedAssigner", "alignment_metric", "soft_targets"]

VARIANTS = ("mmdet", "ultralytics")
CENTER_EPS = {"mmdet": 0.01, "ultralytics": 1e-9}  # margin of the centre-inside test, in pixels
NORM_EPS = {"mmdet": 1e-7, "ultralytics": 1e-9}  # in t / (max t + eps): TOOD head's 10e-8, ultralytics' eps


def _power(values: Tensor, exponent: float) -> Tensor:
    """``values ** exponent``, by repeated squaring when ``exponent`` is a whole number in ``[0, 64]``.

    Products round the same way wherever an element sits in a tensor; ``torch.pow`` on the CPU does not
    (SIMD body, scalar tail), which would make a batch and a single image disagree in the last bit.
    """
    if not (float(exponent).is_integer() and 0 <= exponent <= 64):
        return values.pow(exponent)
    result, square, remaining = torch.ones_like(values), values, int(exponent)
    while remaining:
        if remaining & 1:
            result = result * square
        remaining >>= 1
        if remaining:
            square = square * square
    return result


def alignment_metric(
    cls_logits: Tensor, ious: Tensor, gt_labels: Tensor, *, alpha: float, beta: float
) -> Tensor:
    """TOOD's task alignment metric ``t = s^alpha · u^beta`` of every (image, GT, anchor).

    Args:
        cls_logits: ``[B, N, C]`` raw logits; ``s`` is the sigmoid of the GT's class.
        ious: ``[B, G, N]`` ``u``, the predicted boxes' overlap with each GT (IoU, or ultralytics' CIoU).
        gt_labels: ``[B, G]`` class ids.
        alpha, beta: the exponents (TOOD: 1 and 6).

    Returns:
        ``[B, G, N]`` metric, in ``[0, 1]`` when ``ious`` are.

    >>> logits = torch.logit(torch.tensor([[[0.9, 0.2], [0.4, 0.5]]]))     # B = 1, N = 2 anchors, C = 2
    >>> ious = torch.tensor([[[0.5, 1.0]]])                                # one GT
    >>> alignment_metric(logits, ious, torch.tensor([[0]]), alpha=1.0, beta=2.0)   # 0.9·0.25, 0.4·1
    tensor([[[0.2250, 0.4000]]])
    """
    num_anchors = cls_logits.shape[1]
    # s^alpha of every class, one image at a time (the same bits in a batch and alone, see _power)
    score_power = torch.stack([_power(image.sigmoid(), alpha) for image in cls_logits])  # [B, N, C]
    index = gt_labels[:, None, :].expand(-1, num_anchors, -1)  # [B, N, G]
    scores = score_power.gather(2, index).transpose(1, 2)  # [B, G, N]
    return scores * _power(ious, beta)


@dataclass
class _Best:
    """A running best over GTs per (image, anchor), kept across GT chunks: value, GT, and metric there."""

    value: Tensor  # [B, N], -inf where no GT was eligible
    gt: Tensor  # [B, N] long, index into the image's kept GTs; -1 where none
    metric: Tensor  # [B, N], t of (gt, anchor)

    @classmethod
    def empty(cls, num_images: int, num_anchors: int, like: Tensor) -> _Best:
        shape = (num_images, num_anchors)
        return cls(
            value=like.new_full(shape, float("-inf")),
            gt=torch.full(shape, -1, dtype=torch.long, device=like.device),
            metric=like.new_zeros(shape),
        )

    def update(self, images: slice, first_gt: int, values: Tensor, metric: Tensor, eligible: Tensor) -> None:
        """Fold in GTs ``first_gt ...`` of ``images``: ``values``, ``metric`` and ``eligible`` are
        ``[b, g, N]``. The first of equal values wins, so an exact tie keeps the lower GT index."""
        best, arg = values.masked_fill(~eligible, float("-inf")).max(dim=1)  # [b, N], first max on ties
        better = best > self.value[images]  # strict: an earlier chunk (lower GT index) keeps a tie
        self.value[images] = torch.where(better, best, self.value[images])
        self.gt[images] = torch.where(better, arg + first_gt, self.gt[images])
        self.metric[images] = torch.where(
            better, metric.gather(1, arg[:, None]).squeeze(1), self.metric[images]
        )

    def where(self, condition: Tensor, other: _Best) -> _Best:
        """This best where ``condition [B, N]`` holds, ``other``'s elsewhere."""
        return _Best(
            self.value.where(condition, other.value),
            self.gt.where(condition, other.gt),
            self.metric.where(condition, other.metric),
        )


class TaskAlignedAssigner:
    """Task-aligned assignment of TOOD, or of YOLOv8 (see the module docstring).

    Args:
        topk: candidates per GT over all levels (13 in TOOD; ultralytics uses 10).
        alpha, beta: the exponents of ``t = s^alpha · u^beta`` (TOOD: 1, 6; ultralytics: 0.5, 6).
        variant: ``"mmdet"`` (MMDetection 3.3 + TOOD head) or ``"ultralytics"`` (YOLOv8).
        num_classes: when given, a GT label ``>= num_classes`` is a ``ValueError`` (a negative one always is).
        max_pairs: at most this many (image, GT, anchor) triples in memory at a time
            (:func:`lad_edu.assign.dense.chunks`); the result does not depend on it.

    >>> from lad_edu.anchors import single
    >>> anchors, num_level_anchors = single(strides=(8, 16))((32, 32))     # 16 + 4 anchors
    >>> gt = torch.tensor([[4.0, 4.0, 20.0, 20.0]])
    >>> boxes = gt.expand(1, 20, 4).clone()                  # every anchor predicts the GT exactly (u = 1)
    >>> logits = torch.full((1, 20, 3), -5.0)
    >>> logits[0, [5, 6, 7, 19], 1] = torch.tensor([2.0, 1.0, 3.0, 4.0])   # class 1 at four anchors
    >>> result = TaskAlignedAssigner(topk=3).assign_batch(
    ...     anchors, num_level_anchors, [gt], [torch.tensor([1])], Predictions(logits, boxes))[0]
    >>> result.details["candidates"][:, 0].tolist()      # the top 3 metrics: anchors 19, 7, 5 (not 6)
    [19, 7, 5]
    >>> result.pos.nonzero().flatten().tolist()         # 7's centre (24, 8) lies outside the GT
    [5, 19]
    """

    uses_predictions = True  # the metric is made of the network's class scores and predicted boxes

    def __init__(
        self,
        topk: int = 13,
        alpha: float = 1.0,
        beta: float = 6.0,
        *,
        variant: str = "mmdet",
        num_classes: int | None = None,
        max_pairs: int = DEFAULT_MAX_PAIRS,
    ):
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        if alpha < 0 or beta < 0 or alpha == beta == 0:
            raise ValueError(f"alpha and beta must be >= 0 and not both 0, got alpha={alpha}, beta={beta}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if max_pairs < 1:
            raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
        self.topk, self.alpha, self.beta = topk, alpha, beta
        self.variant = variant
        self.num_classes = num_classes
        self.max_pairs = max_pairs

    def __repr__(self) -> str:
        return (
            f"TaskAlignedAssigner(topk={self.topk}, alpha={self.alpha}, beta={self.beta}, "
            f"variant={self.variant!r}, num_classes={self.num_classes}, max_pairs={self.max_pairs})"
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
            anchors: ``[N, 4]`` xyxy, level-major; only their centres enter the rule.
            num_level_anchors: anchors per level (checked; the top-k spans all levels).
            gt_boxes: ``[G, 4]`` xyxy; gt_labels: ``[G]`` class ids.
            cls_logits: ``[N, C]`` raw logits; pred_boxes: ``[N, 4]`` decoded xyxy boxes in pixels.
        """
        predictions = one_image_predictions(anchors, cls_logits, pred_boxes)
        return self.assign_batch(anchors, num_level_anchors, [gt_boxes], [gt_labels], predictions)[0]

    @torch.no_grad()
    def assign_batch(
        self,
        anchors: Tensor,
        num_level_anchors: list[int],
        gt_boxes: Sequence[Tensor],
        gt_labels: Sequence[Tensor],
        predictions: Predictions | None = None,
    ) -> list[AssignResult]:
        """Label every anchor of ``B`` images that share ``anchors``, in one dense ``[B, G_max, N]`` pass.

        Returns:
            One :class:`AssignResult` per image: ``gt_inds`` in {0, k >= 1} (nothing is ignored), ``quality``
            the soft target ``t_hat`` (0 off the positives), and ``details`` (empty when the image has no
            usable GT or no anchor): ``candidates [k, G]`` anchor indices by decreasing metric and their
            ``candidate_metric [k, G]`` (-1 / NaN in degenerate GTs' columns), ``metric [N]`` and
            ``pred_iou [N]``: ``t`` and ``u`` of each positive with its GT (0 elsewhere).

        Raises:
            ValueError: when ``predictions`` is None, for inputs that do not fit, or for a NaN or
                infinite GT coordinate or prediction; about image ``b``, starting with ``"image b: "``.
        """
        predictions, kept = check_dense_inputs(
            self, anchors, num_level_anchors, gt_boxes, gt_labels, predictions
        )
        if len(anchors) == 0 or all(len(keep) == 0 for keep in kept):
            return [_all_negative(anchors, len(boxes)) for boxes in gt_boxes]
        usable_boxes = [boxes[keep].to(anchors.dtype) for boxes, keep in zip(gt_boxes, kept, strict=True)]
        usable_labels = [labels[keep] for labels, keep in zip(gt_labels, kept, strict=True)]
        matches = self._match(anchors, *padded_gts(usable_boxes, usable_labels), predictions)
        return [
            matches.result(image, keep, labels) if len(keep) else _all_negative(anchors, len(labels))
            for image, (keep, labels) in enumerate(zip(kept, gt_labels, strict=True))
        ]

    def _match(
        self, anchors: Tensor, boxes: Tensor, labels: Tensor, valid: Tensor, predictions: Predictions
    ) -> _Matches:
        """Steps 1-4 for the padded GTs ``boxes [B, G, 4]``, ``labels [B, G]``, ``valid [B, G]``, one chunk of
        (image, GT) rows at a time; the conflicts between GTs are settled by running bests over the chunks."""
        (num_images, max_gts), num_anchors = labels.shape, len(anchors)
        k = min(self.topk, num_anchors)
        dtype = torch.promote_types(predictions.cls_logits.dtype, predictions.boxes.dtype)
        like = predictions.boxes.new_empty(0, dtype=dtype)  # the dtype and device of the scores
        # step 3 as running bests: u among the GTs the anchor is positive for, and (ultralytics) among all
        chosen = _Best.empty(num_images, num_anchors, like)
        overall = _Best.empty(num_images, num_anchors, like)
        count = torch.zeros((num_images, num_anchors), dtype=torch.long, device=anchors.device)
        candidates = torch.zeros((num_images, max_gts, k), dtype=torch.long, device=anchors.device)
        candidate_metric = like.new_zeros((num_images, max_gts, k))
        anchor_iou = anchors.new_zeros((num_images, num_anchors))
        centres = box_centers(anchors)
        for images, gts in chunks(
            num_images=num_images, max_gts=max_gts, num_anchors=num_anchors, max_pairs=self.max_pairs
        ):
            rows = (images, gts)
            logits, pred_boxes = predictions.cls_logits[images], predictions.boxes[images]
            metric, ious, positive, top, top_metric = self._score(
                centres, boxes[rows], labels[rows], valid[rows], logits, pred_boxes, k
            )
            candidates[rows], candidate_metric[rows] = top, top_metric
            chosen.update(images, gts.start, ious, metric, positive)
            if self.variant == "ultralytics":
                overall.update(images, gts.start, ious, metric, valid[rows][..., None].expand_as(positive))
                count[images] += positive.sum(dim=1)
            image_ious = [box_iou(anchors, image_boxes).amax(dim=1) for image_boxes in boxes[rows]]
            anchor_iou[images] = torch.maximum(anchor_iou[images], torch.stack(image_ious))
        positive = chosen.gt >= 0
        if self.variant == "ultralytics":  # chosen by several GTs: the GT of highest CIoU of all (argmax)
            chosen = chosen.where(count <= 1, overall)
        metric, pred_iou = chosen.metric.where(positive, 0), chosen.value.where(positive, 0)
        quality = soft_targets(chosen.gt, metric, pred_iou, positive, max_gts, NORM_EPS[self.variant])
        return _Matches(
            chosen.gt.where(positive, -1), metric, pred_iou, quality, anchor_iou, candidates, candidate_metric
        )

    def _score(
        self,
        centres: Tensor,
        gts: Tensor,
        labels: Tensor,
        valid: Tensor,
        cls_logits: Tensor,
        pred_boxes: Tensor,
        k: int,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Steps 1 and 2 for ``b`` images and ``g`` GT slots: ``gts [b, g, 4]``, ``labels``, ``valid [b, g]``,
        ``cls_logits [b, N, C]``, ``pred_boxes [b, N, 4]``, anchor ``centres [N, 2]``.

        Returns:
            ``metric``, ``ious`` and ``positive`` ``[b, g, N]``; ``candidates [b, g, k]`` by decreasing metric
            (ties: lower anchor index first) and their ``candidate_metric [b, g, k]``.
        """
        inside = centers_inside(centres, gts[:, :, None, :], eps=CENTER_EPS[self.variant])  # [b, g, N]
        ious = self._pred_ious(gts.to(pred_boxes.dtype), pred_boxes)  # [b, g, N]
        if self.variant == "ultralytics":  # u and s are 0 outside the GT, hence t: centre test first
            ious = ious.where(inside, 0)
        metric = alignment_metric(cls_logits, ious, labels, alpha=self.alpha, beta=self.beta)
        if self.variant == "ultralytics":
            metric = metric.where(inside, 0)
        # 1. candidates: the k largest metrics of every (image, GT) row over all levels
        num_rows, num_anchors = metric.shape[0] * metric.shape[1], metric.shape[2]
        candidates = nearest_k(-metric.reshape(num_rows, num_anchors).T, k).T.reshape(*metric.shape[:2], k)
        candidate_metric = metric.gather(2, candidates)
        # 2. positives: the candidates whose centre is inside the GT (and, for MMDetection, with t > 0)
        is_pos = inside.gather(2, candidates) & valid[..., None]
        if self.variant == "mmdet":
            is_pos &= candidate_metric > 0
        positive = torch.zeros_like(inside).scatter_(2, candidates, is_pos)
        order = candidate_metric.sort(dim=2, descending=True, stable=True).indices
        return metric, ious, positive, candidates.gather(2, order), candidate_metric.gather(2, order)

    def _pred_ious(self, gts: Tensor, pred_boxes: Tensor) -> Tensor:
        """``u`` of ``gts [b, g, 4]`` with ``pred_boxes [b, N, 4]``: ``[b, g, N]`` IoU (MMDetection), or CIoU
        clamped at 0 (ultralytics; torchvision's NaN for a zero-size predicted box becomes that 0 too)."""
        if self.variant == "mmdet":
            return torch.stack(
                [box_iou(image_gts, boxes) for image_gts, boxes in zip(gts, pred_boxes, strict=True)]
            )
        ciou = [
            torchvision.ops.complete_box_iou(image_gts, boxes)
            for image_gts, boxes in zip(gts, pred_boxes, strict=True)
        ]
        return torch.stack(ciou).nan_to_num(nan=0.0).clamp(min=0)


def soft_targets(
    gt: Tensor, metric: Tensor, iou: Tensor, positive: Tensor, max_gts: int, eps: float
) -> Tensor:
    """TOOD's normalised metric ``t / (max t + eps) · max u``, the maxima over each GT's positives.

    Args:
        gt: ``[B, N]`` long, each anchor's GT (index into the image's GTs, any value off the positives).
        metric, iou: ``[B, N]``, ``t >= 0`` and ``u >= 0`` of each positive with its GT.
        positive: ``[B, N]`` bool.
        max_gts: ``G``, GT slots per image.
        eps: 1e-7 (TOOD head) or 1e-9 (ultralytics).

    Returns:
        ``[B, N]``, 0 off the positives.

    >>> soft_targets(torch.tensor([[0, 0, 1]]), torch.tensor([[0.2, 0.1, 0.05]]),
    ...              torch.tensor([[0.6, 0.9, 0.5]]), torch.tensor([[True, True, True]]), 2, eps=0.0)
    tensor([[0.9000, 0.4500, 0.5000]])
    """
    num_images = len(gt)
    # one slot per (image, GT), and a last one where the non-positives drop their values
    slot = (gt + max_gts * torch.arange(num_images, device=gt.device)[:, None]).where(
        positive, num_images * max_gts
    )
    slot = slot.flatten()
    max_t = metric.new_zeros(num_images * max_gts + 1).scatter_reduce(0, slot, metric.flatten(), "amax")
    max_u = iou.new_zeros(num_images * max_gts + 1).scatter_reduce(0, slot, iou.flatten(), "amax")
    quality = metric.flatten() / (max_t[slot] + eps) * max_u[slot]
    return quality.view_as(metric).where(positive, 0)


@dataclass
class _Matches:
    """The batch's assignment, ``[B, N]`` per anchor (``gt``: index into the image's usable GTs, -1 on the
    negatives) and ``[B, G, k]`` per GT slot."""

    gt: Tensor
    metric: Tensor
    pred_iou: Tensor
    quality: Tensor
    anchor_iou: Tensor
    candidates: Tensor
    candidate_metric: Tensor

    def result(self, image: int, keep: Tensor, gt_labels: Tensor) -> AssignResult:
        """Image ``image``'s :class:`AssignResult`; ``keep [G']``: its usable GTs among ``gt_labels [G]``."""
        num_kept, num_given = len(keep), len(gt_labels)
        details = {
            "candidates": gt_columns_to_all(self.candidates[image, :num_kept].T, keep, num_given, fill=-1),
            "candidate_metric": gt_columns_to_all(
                self.candidate_metric[image, :num_kept].T, keep, num_given, fill=float("nan")
            ),
            "metric": self.metric[image],
            "pred_iou": self.pred_iou[image],
        }
        return AssignResult.from_gt_inds(
            self.gt[image] + 1,  # -1 (negative) -> 0, GT j -> j + 1
            self.anchor_iou[image],
            gt_labels,
            kept=keep,
            details=details,
            quality=self.quality[image],
        )


def _all_negative(anchors: Tensor, num_gts: int) -> AssignResult:
    """Every anchor background, with a soft target of 0 (an image without usable GT, or no anchor)."""
    return replace(AssignResult.all_negative(anchors, num_gts), quality=anchors.new_zeros(len(anchors)))
