"""ATSS: an IoU threshold chosen per object from the statistics of its candidates.

Adaptive Training Sample Selection (Zhang et al., CVPR 2020; LAD paper Table 1) replaces RetinaNet's
fixed 0.5 with a threshold of each GT's own:

1. **Candidates**: on every FPN level, the ``topk = 9`` anchors whose centres are nearest the GT's centre
   (``min(topk, anchors in the level)`` on a level with fewer anchors).
2. **Threshold**: ``mean + std`` of the candidates' IoU with the GT, pooled over levels; ``std`` is the
   *unbiased* estimate (``N - 1``, PyTorch's default; ``np.std``'s default ``ddof=0`` gives a lower
   threshold and more positives).
3. **Positives**: candidates with IoU ``>=`` that threshold whose centre lies strictly inside the GT
   (by more than 0.01 px).
4. **Conflicts**: an anchor that is a positive of several GTs goes to the one it overlaps most (an exact
   tie goes to the lower GT index).

Everything else is negative: ATSS has no ignore band and no low-quality fallback, so a GT can end with
no positive at all, e.g. a 4×4 box that falls between stride-8 anchor centres.

Worked example (one GT, 5 candidates with IoU 0.1, 0.2, 0.3, 0.56, 0.6): mean 0.352, unbiased std 0.220,
threshold 0.572, so only the 0.6 candidate passes; with ``ddof=0`` the std would be 0.197 and the
threshold 0.549, and the 0.56 candidate would wrongly become a positive too.

A pitfall worth seeing: when a small GT lies wholly inside several equal anchors, their IoUs tie, the
std is driven by the other levels, and ``mean + std`` can land just above the tied value, so the GT gets
no positive at all (a 48×48 box on the stride-8 grid of a 64×64 image, with strides 8 and 16 only, does
this; with all five levels the extra candidates lower the threshold and it gets 9).

Differences from MMDetection's ``ATSSAssigner``: ties in centre distance at the top-k boundary go to the
lower anchor index (MMDetection's ``topk`` leaves them implementation-defined, so CPU and CUDA can
differ), ``max_iou`` is each anchor's best IoU with any GT (MMDetection reports ``-1e8`` for
non-positives), and degenerate (zero-area) GTs are removed first, which changes nothing else since they
can never pass the centre test. A GT with a NaN or infinite coordinate, or a negative label (or one
``>= num_classes`` when that is given), is a ``ValueError`` naming ``gt_boxes`` / ``gt_labels``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lad_edu.assign.interface import Predictions, assign_each_image, check_batch
from lad_edu.assign.result import AssignResult, check_assign_inputs, gt_columns_to_all
from lad_edu.boxes import box_centers, box_iou, centers_inside

__all__ = ["ATSSAssigner", "atss_candidates"]


def nearest_k(distances: Tensor, k: int) -> Tensor:
    """The ``k`` smallest entries of every column, ties at the k-th distance broken by the lower row.

    The same set as the first ``k`` rows of a stable sort, without sorting: everything nearer than the
    k-th distance, then as many of the rows *at* that distance as are still needed, in row order.

    Args:
        distances: ``[n, G]``.
        k: ``1 <= k <= n``.

    Returns:
        ``[k, G]`` long row indices, in increasing row order within each column.
    """
    kth = distances.kthvalue(k, dim=0, keepdim=True).values  # [1, G]
    nearer = distances < kth
    at_kth = distances == kth
    still_needed = k - nearer.sum(dim=0, keepdim=True)  # [1, G]
    chosen = nearer | (at_kth & (at_kth.cumsum(dim=0) <= still_needed))  # exactly k per column
    return chosen.T.nonzero()[:, 1].view(-1, k).T  # nonzero lists (column, row) pairs column by column


def atss_candidates(distances: Tensor, num_level_anchors: list[int], topk: int) -> Tensor:
    """The ``topk`` nearest anchors of every GT on every level.

    Args:
        distances: ``[N, G]`` distance from each anchor centre to each GT centre, anchors level-major.
        num_level_anchors: anchors per level (sums to N).
        topk: candidates per level; a level with fewer anchors gives all of them.

    Returns:
        ``[K, G]`` long anchor indices, ``K = sum_l min(topk, n_l)``; ties in distance go to the lower index.
    """
    candidates, start = [], 0
    for n_level in num_level_anchors:
        k = min(topk, n_level)
        if k > 0:
            candidates.append(nearest_k(distances[start : start + n_level], k) + start)
        start += n_level
    return torch.cat(candidates)


class ATSSAssigner:
    """Adaptive Training Sample Selection (see the module docstring).

    Args:
        topk: candidates per level and GT (9 in the paper).
        center_eps: how far, in pixels, a candidate's centre must lie inside the GT (0.01 in MMDetection).
        num_classes: when given, a GT label ``>= num_classes`` is a ``ValueError`` (a negative one always is).

    >>> import torch
    >>> from lad_edu.anchors import single
    >>> anchors, num_level_anchors = single(strides=(8, 16))((64, 64))
    >>> result = ATSSAssigner().assign(anchors, num_level_anchors, torch.tensor([[4., 10., 60., 50.]]),
    ...                                torch.tensor([0]))
    >>> result.pos.nonzero().flatten().tolist()    # three stride-8 anchors stacked vertically
    [28, 36, 44]
    """

    uses_predictions = False  # boxes only: the network's predictions never enter the rule

    def __init__(self, topk: int = 9, center_eps: float = 0.01, num_classes: int | None = None):
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.topk = topk
        self.center_eps = center_eps
        self.num_classes = num_classes

    def __repr__(self) -> str:
        return f"ATSSAssigner(topk={self.topk}, center_eps={self.center_eps}, num_classes={self.num_classes})"

    def assign(
        self, anchors: Tensor, num_level_anchors: list[int], gt_boxes: Tensor, gt_labels: Tensor
    ) -> AssignResult:
        """Label every anchor of one image.

        Args:
            anchors: ``[N, 4]`` xyxy, level-major (as :mod:`lad_edu.anchors` makes them).
            num_level_anchors: anchors per FPN level.
            gt_boxes: ``[G, 4]`` xyxy.
            gt_labels: ``[G]`` integer class ids, ``>= 0`` (and ``< num_classes`` when that was given).

        Returns:
            An :class:`AssignResult` with ``gt_inds`` in {0, k >= 1} (ATSS ignores nothing) and ``details``:
            ``candidates [K, G]`` anchor indices, ``candidate_iou [K, G]``, ``threshold [G]`` (mean + std),
            with -1 / NaN in the columns of degenerate GTs.
        """
        keep = check_assign_inputs(
            anchors, gt_boxes, gt_labels, num_level_anchors, num_classes=self.num_classes
        )
        if len(keep) == 0 or len(anchors) == 0:
            return AssignResult.all_negative(anchors, num_gts=len(gt_boxes))
        gts = gt_boxes[keep]  # [G, 4]
        num_anchors, num_gts = len(anchors), len(gts)

        iou = box_iou(anchors, gts)  # [N, G]
        anchor_ctr = box_centers(anchors)  # [N, 2]
        distances = (anchor_ctr[:, None, :] - box_centers(gts)[None]).pow(2).sum(-1).sqrt()  # [N, G]

        # 1. candidates: topk nearest per level        [K, G]
        candidates = atss_candidates(distances, num_level_anchors, self.topk)
        candidate_iou = iou.gather(0, candidates)  # [K, G]

        # 2. threshold per GT: mean + unbiased std of its candidates' IoU (one candidate: std undefined)
        if len(candidates) >= 2:
            threshold = candidate_iou.mean(dim=0) + candidate_iou.std(dim=0, correction=1)  # [G]
        else:
            threshold = torch.full((num_gts,), float("inf"), dtype=iou.dtype, device=iou.device)

        # 3. positives: above the threshold and centre strictly inside the GT
        is_pos = candidate_iou >= threshold[None]
        is_pos &= centers_inside(anchor_ctr[candidates], gts[None], eps=self.center_eps)  # [K, G]

        # 4. conflicts: an anchor positive for several GTs keeps the one with the highest IoU
        pos_iou = torch.full((num_anchors, num_gts), float("-inf"), dtype=iou.dtype, device=iou.device)
        pos_iou.scatter_(0, candidates, candidate_iou.masked_fill(~is_pos, float("-inf")))
        best_iou, best_gt = pos_iou.max(dim=1)  # first index on exact ties
        gt_inds = torch.where(best_iou > float("-inf"), best_gt + 1, 0)

        num_given = len(gt_boxes)
        details = {
            "candidates": gt_columns_to_all(candidates, keep, num_given, fill=-1),
            "candidate_iou": gt_columns_to_all(candidate_iou, keep, num_given, fill=float("nan")),
            "threshold": gt_columns_to_all(threshold, keep, num_given, fill=float("nan")),
        }
        return AssignResult.from_gt_inds(
            gt_inds, iou.max(dim=1).values, gt_labels, kept=keep, details=details
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

        ``predictions`` are ignored. A ``ValueError`` about one image's GTs starts with ``"image b: "``.
        """
        check_batch(anchors, num_level_anchors, gt_boxes, gt_labels)
        return assign_each_image(
            lambda boxes, labels: self.assign(anchors, num_level_anchors, boxes, labels), gt_boxes, gt_labels
        )
