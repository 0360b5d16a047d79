"""RetinaNet's fixed label mapping: an anchor is positive when its IoU with a GT is high enough.

The rule (Lin et al., *Focal Loss for Dense Object Detection*, 2017; LAD paper section 2.1): with
``pos_iou_thr = 0.5`` and ``neg_iou_thr = 0.4``, an anchor whose best IoU with any GT is

* ``>= 0.5`` is a positive of that GT,
* ``< 0.4`` is a negative,
* in between, ``[0.4, 0.5)``, is *ignored*: it is neither taught "object" nor "background".

Then the *low-quality matches* (Faster R-CNN, Ren et al. 2015, section 3.1.2): every GT takes its own
best anchor(s), even below 0.4, so that no object is left without a positive. The GTs are visited in
order and a later GT overwrites an earlier one, so an anchor that was a positive of GT 0 can end as a
positive of GT 1. With ``gt_max_assign_all`` every anchor that *exactly* ties the GT's best IoU is taken.

Worked example (IoU of 2 GTs × 4 anchors)::

    anchor:      a0    a1    a2    a3
    GT 0:       0.70  0.45  0.10  0.30
    GT 1:       0.60  0.20  0.35  0.30

    best IoU:   0.70  0.45  0.35  0.30      ->  pos(GT0), ignore, neg, neg
    low quality: GT 0's best anchor is a0 (0.70): unchanged.
                 GT 1's best anchor is a0 too (0.60): a0 becomes a positive of GT 1 (later GT wins).
    gt_inds:      2    -1     0     0       (1-based: 2 = GT 1; -1 = ignore; 0 = negative)

GT 0 ends with no positive: the price of a greedy, order-dependent rule. (PAA uses this assigner with
``0.1 / 0.1`` as its pre-assignment.)

Degenerate GTs: a zero-area GT has IoU 0 with every anchor, so its "best" anchors are *all* anchors
(every one ties at 0), and the low-quality step hands it the whole image. MMDetection does exactly that
(a zero-width GT among 3 real ones takes all 12 276 anchors; its COCO loader hides this by dropping such
boxes). Here ``drop_degenerate_gts=True`` (the default) removes GTs with zero or negative width or height
before matching and gives no low-quality match to a GT that overlaps no anchor at all; set it to False
for the reference behaviour. In both modes a GT with a NaN or infinite coordinate, or a negative label
(or one ``>= num_classes`` when that is given), is a ``ValueError`` naming ``gt_boxes`` / ``gt_labels``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lad_edu.assign.interface import Predictions, assign_each_image, check_batch
from lad_edu.assign.result import AssignResult, check_assign_inputs
from lad_edu.boxes import box_iou

__all__ = ["FixedIoUAssigner", "low_quality_positives", "max_iou_assign"]


def max_iou_assign(
    iou: Tensor,
    pos_iou_thr: float,
    neg_iou_thr: float | tuple[float, float],
    min_pos_iou: float = 0.0,
    match_low_quality: bool = True,
    gt_max_assign_all: bool = True,
    require_overlap: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """The fixed-IoU rule on a precomputed IoU matrix.

    Args:
        iou: ``[G, N]`` IoU of every GT with every anchor (``G >= 1``).
        pos_iou_thr: best IoU ``>=`` this makes a positive.
        neg_iou_thr: best IoU ``<`` this makes a negative; a pair ``(lo, hi)`` makes only ``lo <= IoU < hi``
            negative.
        min_pos_iou: a GT takes low-quality matches only if its best IoU is ``>=`` this.
        match_low_quality: give every GT its best anchor(s), overwriting earlier decisions.
        gt_max_assign_all: take every anchor that ties a GT's best IoU exactly, not only the first.
        require_overlap: a GT whose best IoU is 0 takes no low-quality match.

    Returns:
        ``gt_inds [N]`` long (0 negative, -1 ignore, ``k`` = GT ``k-1``) and ``max_iou [N]``, each anchor's
        best IoU over the GTs, taken before the low-quality step, and ``low_quality [N]`` bool, the
        anchors whose label the low-quality step decided.
    """
    max_iou, argmax_gt = iou.max(dim=0)  # per anchor: its best GT
    lo, hi = neg_iou_thr if isinstance(neg_iou_thr, tuple) else (0.0, neg_iou_thr)
    gt_inds = argmax_gt + 1  # positive of its best GT ...
    gt_inds.masked_fill_(max_iou < pos_iou_thr, -1)  # ... unless below pos_iou_thr: ignore ...
    # ... or negative in [lo, hi); a positive wins if the two ranges overlap
    negative = max_iou < min(hi, pos_iou_thr)
    if lo > 0:
        negative &= max_iou >= lo
    gt_inds.masked_fill_(negative, 0)
    low_quality = torch.zeros_like(negative)

    if match_low_quality:
        gt_max, gt_argmax = iou.max(dim=1)  # per GT: its best anchor
        if gt_max_assign_all:  # every exact tie of the GT's best IoU
            gt_idx, anchor_idx = (iou == gt_max[:, None]).nonzero(as_tuple=True)
        else:
            gt_idx = torch.arange(len(gt_max), device=iou.device)
            anchor_idx = gt_argmax
        allowed = gt_max[gt_idx] >= min_pos_iou
        if require_overlap:
            allowed &= gt_max[gt_idx] > 0
        gt_idx, anchor_idx = gt_idx[allowed], anchor_idx[allowed]
        # A loop over GTs in index order, each overwriting the last, leaves every claimed anchor with the
        # highest GT index that claimed it: one scatter with "amax" (ignoring the old value) does the same.
        gt_inds.scatter_reduce_(0, anchor_idx, gt_idx + 1, reduce="amax", include_self=False)
        low_quality[anchor_idx] = True
    return gt_inds, max_iou, low_quality


class FixedIoUAssigner:
    """RetinaNet's MaxIoU assignment with the ignore band and low-quality matches (see the module docstring).

    Args:
        pos_iou_thr: positive when the best IoU is ``>=`` this (RetinaNet 0.5; PAA's pre-assignment 0.1).
        neg_iou_thr: negative when the best IoU is ``<`` this (RetinaNet 0.4), or a ``(lo, hi)`` band.
        min_pos_iou: smallest best-IoU for which a GT gets low-quality matches (0: always).
        match_low_quality: give every GT its best anchor(s) even below ``neg_iou_thr``.
        gt_max_assign_all: take every anchor tied at a GT's best IoU, not just one.
        drop_degenerate_gts: ignore GTs of zero or negative width/height, and give no low-quality match
            to a GT with IoU 0 to every anchor. False reproduces MMDetection, where such a GT takes every
            anchor.
        num_classes: when given, a GT label ``>= num_classes`` is a ``ValueError`` (a negative one always is).

    >>> import torch
    >>> anchors = torch.tensor([[0., 0., 10., 10.], [5., 0., 15., 10.], [20., 20., 30., 30.]])
    >>> gts = torch.tensor([[0., 0., 10., 10.]])
    >>> FixedIoUAssigner().assign(anchors, gts, torch.tensor([3])).gt_inds
    tensor([1, 0, 0])
    """

    uses_predictions = False  # boxes only: the network's predictions never enter the rule

    def __init__(
        self,
        pos_iou_thr: float = 0.5,
        neg_iou_thr: float | tuple[float, float] = 0.4,
        min_pos_iou: float = 0.0,
        match_low_quality: bool = True,
        gt_max_assign_all: bool = True,
        drop_degenerate_gts: bool = True,
        num_classes: int | None = None,
    ):
        self.pos_iou_thr = pos_iou_thr
        self.neg_iou_thr = neg_iou_thr
        self.min_pos_iou = min_pos_iou
        self.match_low_quality = match_low_quality
        self.gt_max_assign_all = gt_max_assign_all
        self.drop_degenerate_gts = drop_degenerate_gts
        self.num_classes = num_classes

    def __repr__(self) -> str:
        return (
            f"FixedIoUAssigner(pos_iou_thr={self.pos_iou_thr}, neg_iou_thr={self.neg_iou_thr}, "
            f"min_pos_iou={self.min_pos_iou}, match_low_quality={self.match_low_quality}, "
            f"gt_max_assign_all={self.gt_max_assign_all}, drop_degenerate_gts={self.drop_degenerate_gts}, "
            f"num_classes={self.num_classes})"
        )

    def assign(self, anchors: Tensor, gt_boxes: Tensor, gt_labels: Tensor) -> AssignResult:
        """Label every anchor of one image.

        Args:
            anchors: ``[N, 4]`` xyxy.
            gt_boxes: ``[G, 4]`` xyxy.
            gt_labels: ``[G]`` integer class ids, ``>= 0`` (and ``< num_classes`` when that was given).

        Returns:
            An :class:`AssignResult` on the device of ``anchors``; all negative when there is no usable GT,
            empty when there are no anchors. ``details["low_quality"]`` (``[N]`` bool) marks the anchors
            whose label the low-quality step decided.
        """
        keep = check_assign_inputs(
            anchors,
            gt_boxes,
            gt_labels,
            drop_degenerate_gts=self.drop_degenerate_gts,
            num_classes=self.num_classes,
        )
        if len(keep) == 0 or len(anchors) == 0:
            return AssignResult.all_negative(anchors, num_gts=len(gt_boxes))

        gt_inds, max_iou, low_quality = max_iou_assign(
            box_iou(gt_boxes[keep], anchors),  # [G', N]
            self.pos_iou_thr,
            self.neg_iou_thr,
            self.min_pos_iou,
            self.match_low_quality,
            self.gt_max_assign_all,
            require_overlap=self.drop_degenerate_gts,
        )
        return AssignResult.from_gt_inds(
            gt_inds, max_iou, gt_labels, kept=keep, details={"low_quality": low_quality}
        )

    def assign_batch(
        self,
        anchors: Tensor,
        num_level_anchors: list[int],
        gt_boxes: list[Tensor],
        gt_labels: list[Tensor],
        predictions: Predictions | None = None,
    ) -> list[AssignResult]:
        """:meth:`assign` for every image of a batch (the call shape of :mod:`lad_edu.assign.interface`).

        ``num_level_anchors`` is only checked (the rule has no levels) and ``predictions`` are ignored.
        A ``ValueError`` about one image's GTs starts with ``"image b: "``.
        """
        check_batch(anchors, num_level_anchors, gt_boxes, gt_labels)
        return assign_each_image(
            lambda boxes, labels: self.assign(anchors, boxes, labels), gt_boxes, gt_labels
        )


def low_quality_positives(result: AssignResult, pos_iou_thr: float = 0.5) -> Tensor:
    """``[N]`` bool: the positives only the low-quality step gave, below ``pos_iou_thr`` (a small or thin
    object's best anchor(s), often several tied ones). False everywhere for a result without that step
    (another assigner, or an image without a usable GT)."""
    if "low_quality" not in result.details:
        return torch.zeros_like(result.pos)
    return result.pos & result.details["low_quality"] & (result.max_iou < pos_iou_thr)
