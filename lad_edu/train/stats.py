"""Assignment statistics, logged during training: what each assigner actually did to the anchors.

Per logging window (summed over iterations, then turned into rates by :func:`summarize`):

* ``pos_per_gt`` — positives per GT (RetinaNet's MaxIoU gives big objects many, small ones few);
* ``gts_without_pos`` — the share of GTs that no anchor learns (PAA drops lone candidates, MaxIoU
  leaves small objects out unless low-quality matching rescues them);
* ``pos_iou`` — the mean IoU of a positive anchor with the GT it learns;
* ``pos_share_l{i}`` — the share of positives on pyramid level ``i`` (P3 = level 0).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lad_edu.anchors import level_ids
from lad_edu.assign.result import AssignResult
from lad_edu.boxes import aligned_box_iou

__all__ = ["assignment_counts", "summarize"]


def assignment_counts(
    assignments: list[AssignResult], anchors: Tensor, num_level_anchors: list[int], gt_boxes: list[Tensor]
) -> dict[str, Tensor]:
    """Sums over a batch that add up across iterations: ``{num_gts, num_pos, gts_without_pos, iou_sum,
    level_pos [L]}`` (float64 tensors on the CPU).

    Args:
        assignments: one result per image; anchors: ``[N, 4]`` xyxy; num_level_anchors: per level.
        gt_boxes: one ``[G_b, 4]`` per image.
    """
    levels = level_ids(num_level_anchors, device=anchors.device)
    level_pos = torch.zeros(len(num_level_anchors), dtype=torch.float64)
    num_gts = num_pos = without = iou_sum = 0.0
    for result, boxes in zip(assignments, gt_boxes, strict=True):
        pos = result.pos.nonzero().squeeze(1)
        num_gts += result.num_gts
        num_pos += len(pos)
        without += float((result.positives_per_gt() == 0).sum())
        gt = result.gt_inds[pos] - 1
        iou_sum += float(aligned_box_iou(anchors[pos], boxes[gt].to(anchors.dtype)).sum())
        level_pos += torch.bincount(levels[pos], minlength=len(num_level_anchors)).cpu().double()
    sums = {"num_gts": num_gts, "num_pos": num_pos, "gts_without_pos": without, "iou_sum": iou_sum}
    return {**{k: torch.tensor(v, dtype=torch.float64) for k, v in sums.items()}, "level_pos": level_pos}


def _rate(count: float, total: float) -> float:
    return count / total if total else float("nan")


def summarize(counts: dict[str, Tensor]) -> dict[str, float]:
    """Rates from summed :func:`assignment_counts`: ``pos_per_gt``, ``gts_without_pos`` (a share),
    ``pos_iou``, ``pos_share_l{i}``. A rate with nothing to count (no GT, no positive) is NaN."""
    num_gts, num_pos = float(counts["num_gts"]), float(counts["num_pos"])
    out = {
        "pos_per_gt": _rate(num_pos, num_gts),
        "gts_without_pos": _rate(float(counts["gts_without_pos"]), num_gts),
        "pos_iou": _rate(float(counts["iou_sum"]), num_pos),
    }
    for i, n in enumerate(counts["level_pos"].tolist()):
        out[f"pos_share_l{i}"] = _rate(n, num_pos)
    return out
