"""What every assigner returns, and the input checks they share.

An assignment answers one question per anchor: *which ground-truth box, if any, does this anchor
learn?* The answer is encoded as in MMDetection:

================  ===========================================================
``gt_inds[i]``    meaning
================  ===========================================================
``0``             negative: anchor ``i`` is background
``-1``            ignored: anchor ``i`` contributes no loss
``k >= 1``        positive: anchor ``i`` learns GT ``k - 1`` (1-based index)
================  ===========================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from lad_edu.boxes import box_iof, check_boxes, valid_box_mask

__all__ = [
    "AssignResult",
    "check_assign_inputs",
    "check_labels",
    "first_non_finite",
    "gt_columns_to_all",
    "ignore_crowd",
]


@dataclass
class AssignResult:
    """The label of every anchor of one image.

    Attributes:
        gt_inds: ``[N]`` long. 0 = negative, -1 = ignore, ``k >= 1`` = positive for GT ``k - 1``.
        max_iou: ``[N]`` float. Each anchor's highest IoU with any (non-degenerate) GT, 0 when there is none.
            For a positive it need not be the IoU with its own GT (a low-quality match, an ATSS conflict).
        labels: ``[N]`` long. The class of the matched GT for positives, -1 otherwise.
        num_gts: the number of GTs that were given (degenerate ones included: ``gt_inds`` indexes them).
        details: what an assigner computed on the way, for plots and statistics (documented by each
            assigner; GT-indexed entries cover all ``num_gts`` GTs). Empty when there was nothing to compute
            (no anchor, or no usable GT for the fixed-IoU and ATSS rules).
        quality: ``[N]`` float in ``[0, 1]``, or None: a soft classification target for the positives, set by
            the rules whose detectors train with one (TOOD's normalised alignment metric for task-aligned
            assignment, the predicted box's IoU for SimOTA); 0 on anchors that are not positive.
            :func:`lad_edu.losses.detection_losses` uses it in place of the one-hot target when present.
    """

    gt_inds: Tensor
    max_iou: Tensor
    labels: Tensor
    num_gts: int
    details: dict[str, Tensor] = field(default_factory=dict)
    quality: Tensor | None = None

    @property
    def pos(self) -> Tensor:
        """``[N]`` bool: positive anchors."""
        return self.gt_inds > 0

    @property
    def neg(self) -> Tensor:
        """``[N]`` bool: negative anchors."""
        return self.gt_inds == 0

    @property
    def ignored(self) -> Tensor:
        """``[N]`` bool: anchors with no loss."""
        return self.gt_inds < 0

    @property
    def num_pos(self) -> int:
        return int(self.pos.sum())

    def positives_per_gt(self) -> Tensor:
        """``[num_gts]`` long: how many anchors each GT received."""
        return torch.bincount(self.gt_inds[self.pos] - 1, minlength=self.num_gts)

    @classmethod
    def from_gt_inds(
        cls,
        gt_inds: Tensor,
        max_iou: Tensor,
        gt_labels: Tensor,
        kept: Tensor | None = None,
        details: dict[str, Tensor] | None = None,
        quality: Tensor | None = None,
    ) -> AssignResult:
        """Build a result from ``gt_inds`` and fill ``labels``: the positive's GT class, -1 elsewhere.

        Args:
            gt_inds: ``[N]`` long, in the 0 / -1 / 1-based convention.
            max_iou: ``[N]`` float.
            gt_labels: ``[G]`` class ids of all the GTs that were given.
            kept: ``[G']`` long, when ``gt_inds`` counts only these GTs (the non-degenerate ones):
                ``gt_inds == k`` then means GT ``kept[k - 1]`` and is renumbered accordingly.
            details, quality: see the class docstring.
        """
        if kept is not None and len(kept) != len(gt_labels):  # some GTs were dropped: renumber
            renumber = torch.cat([torch.tensor([-1, 0], device=kept.device), kept + 1])  # [-1, 0, kept + 1]
            gt_inds = renumber.index_select(0, gt_inds + 1)
        # a lookup table indexed by gt_inds + 1: ignore (-1) and negative (0) -> -1, GT k -> its class
        table = torch.cat([torch.full((2,), -1, device=gt_inds.device), gt_labels.to(torch.long)])
        labels = table.index_select(0, gt_inds + 1)  # index_select: ~4x faster than table[...] on CPU
        return cls(gt_inds, max_iou, labels, num_gts=len(gt_labels), details=details or {}, quality=quality)

    @classmethod
    def all_negative(cls, anchors: Tensor, num_gts: int) -> AssignResult:
        """Every anchor background (an image with no usable GT); empty when there are no anchors."""
        n = len(anchors)
        return cls(
            gt_inds=torch.zeros(n, dtype=torch.long, device=anchors.device),
            max_iou=anchors.new_zeros(n),
            labels=torch.full((n,), -1, dtype=torch.long, device=anchors.device),
            num_gts=num_gts,
        )


def first_non_finite(values: Tensor) -> int | None:
    """The first row of ``values [R, ...]`` (floating) holding a NaN or an infinity; None when all are finite.

    When all is well this costs one ``sum``: NaN and infinities carry through a sum, and a finite sum means
    finite values. The exact ``isfinite`` test runs only when the sum is not (a bad value, or an overflow):
    on PAA's ``[K, C]`` candidate logits it takes ~50x the time of the sum on one CPU thread.
    """
    if bool(torch.isfinite(values.sum())):
        return None
    finite = torch.isfinite(values).reshape(len(values), -1).all(dim=1)  # [R]
    return None if bool(finite.all()) else int(finite.logical_not().nonzero()[0])


def check_labels(gt_labels: Tensor, num_classes: int | None = None) -> None:
    """Raise a ``ValueError`` naming ``gt_labels`` unless every label of ``gt_labels [G]`` is a class id in
    ``[0, num_classes)`` (only ``>= 0`` when ``num_classes`` is None).

    -1 is what :attr:`AssignResult.labels` writes on anchors that are not positive, never a GT's class.
    """
    if len(gt_labels) == 0:
        return
    low, high = torch.stack(gt_labels.aminmax()).tolist()  # one pass, one transfer
    if low < 0 or (num_classes is not None and high >= num_classes):
        classes = ">= 0" if num_classes is None else f"in [0, {num_classes})"
        raise ValueError(f"gt_labels must be class ids {classes}, got {low if low < 0 else high}")


def check_assign_inputs(
    anchors: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    num_level_anchors: list[int] | None = None,
    drop_degenerate_gts: bool = True,
    num_classes: int | None = None,
) -> Tensor:
    """Validate an assigner's inputs and return the indices ``[G']`` of the GTs to match.

    With ``drop_degenerate_gts`` only GTs of positive width and height are kept (see
    :func:`lad_edu.boxes.valid_box_mask`); otherwise all of them.

    Raises:
        ValueError: naming the argument and what was expected, for a wrong shape, dtype, length or
            device, a NaN or infinite GT coordinate (with the GT's index), a label outside
            ``[0, num_classes)`` (negative ones even when ``num_classes`` is None), or
            ``num_level_anchors`` that does not add up to the number of anchors.
    """
    check_boxes(anchors, "anchors")
    check_boxes(gt_boxes, "gt_boxes")
    if not isinstance(gt_labels, Tensor) or gt_labels.dim() != 1:
        shape = tuple(gt_labels.shape) if isinstance(gt_labels, Tensor) else type(gt_labels).__name__
        raise ValueError(f"gt_labels must be a 1-D integer tensor [num_gts], got {shape}")
    if gt_labels.is_floating_point() or gt_labels.dtype == torch.bool or gt_labels.is_complex():
        raise ValueError(f"gt_labels must be an integer tensor (class ids), got dtype {gt_labels.dtype}")
    if len(gt_labels) != len(gt_boxes):
        raise ValueError(f"gt_labels has {len(gt_labels)} entries but gt_boxes has {len(gt_boxes)} boxes")
    devices = {anchors.device, gt_boxes.device, gt_labels.device}
    if len(devices) > 1:
        raise ValueError(
            f"anchors, gt_boxes and gt_labels must be on one device, got {sorted(map(str, devices))}"
        )
    if num_level_anchors is not None:
        if any(n < 0 for n in num_level_anchors) or sum(num_level_anchors) != len(anchors):
            raise ValueError(
                f"num_level_anchors {list(num_level_anchors)} must be non-negative and sum to the "
                f"number of anchors ({len(anchors)})"
            )
    bad_gt = first_non_finite(gt_boxes)  # the reference mode too: NaN has no MMDetection behaviour to keep
    if bad_gt is not None:
        raise ValueError(f"gt_boxes must be finite, got {gt_boxes[bad_gt].tolist()} for GT {bad_gt}")
    check_labels(gt_labels, num_classes)
    if not drop_degenerate_gts:
        return torch.arange(len(gt_boxes), device=gt_boxes.device)
    return valid_box_mask(gt_boxes).nonzero().squeeze(1)


def gt_columns_to_all(values: Tensor, kept: Tensor, num_gts: int, fill: float) -> Tensor:
    """Spread per-GT values computed on the kept GTs (last dim ``G'``) over all ``num_gts`` GTs.

    Args:
        values: ``[..., G']``, column ``j`` belonging to GT ``kept[j]``.
        kept: ``[G']`` long indices into the caller's GTs.
        num_gts: ``G``, the number of GTs the caller gave.
        fill: the value for GTs that were not kept (degenerate ones).

    Returns:
        ``[..., G]``.
    """
    out = values.new_full((*values.shape[:-1], num_gts), fill)
    out[..., kept] = values
    return out


def ignore_crowd(
    result: AssignResult, anchors: Tensor, crowd_boxes: Tensor, iof_thr: float = 0.5
) -> AssignResult:
    """Turn negatives lying inside a crowd region (COCO ``iscrowd``) into ignored anchors.

    A crowd box marks "many objects here, not annotated one by one": an anchor there is neither a fair
    positive nor a fair negative, so it gets no loss. Positives are left alone; a negative whose area lies
    more than ``iof_thr`` inside a crowd box (:func:`lad_edu.boxes.box_iof`) becomes ``-1``, as
    MMDetection's ``ignore_iof_thr`` does.

    Args:
        result: one image's assignment.
        anchors: ``[N, 4]`` xyxy; crowd_boxes: ``[R, 4]`` xyxy (may be empty).
        iof_thr: the share of an anchor's area that must lie inside a crowd box.
    """
    if len(crowd_boxes) == 0:
        return result
    covered = box_iof(anchors, crowd_boxes).amax(dim=1) > iof_thr  # [N]
    gt_inds = torch.where(result.neg & covered, -1, result.gt_inds)
    return AssignResult(
        gt_inds, result.max_iou, result.labels, result.num_gts, result.details, result.quality
    )
