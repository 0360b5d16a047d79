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
from lad_edu.assign.batch import BatchLayout
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
    layout = BatchLayout.of(len(anchors), [len(boxes) for boxes in gt_boxes])
    # every positive of the batch, as a flat anchor b·N + i, and the flat GT it learns
    pos_anchor, pos_gt = layout.positives(torch.stack([result.gt_inds for result in assignments]))
    _, anchor = layout.image_and_anchor(pos_anchor)
    targets = torch.cat(gt_boxes).to(anchors.dtype).index_select(0, pos_gt)
    iou = aligned_box_iou(anchors.index_select(0, anchor), targets)
    positives_per_gt = torch.bincount(pos_gt, minlength=layout.num_gts)
    levels = level_ids(num_level_anchors, device=anchors.device).index_select(0, anchor)
    sums = {
        "num_gts": layout.num_gts,
        "num_pos": len(pos_anchor),
        "gts_without_pos": int((positives_per_gt == 0).sum()),
        "iou_sum": float(iou.double().sum()),
    }
    level_pos = torch.bincount(levels, minlength=len(num_level_anchors)).cpu().double()
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
