"""Brute-force references: the reference implementations' pseudocode transcribed as plain loops.

Slow and obvious on purpose (``../shared/reference/assigners.md`` sections 1 and 2); the tests check the
vectorised assigners against them. The IoU matrix is taken as given (``box_iou`` has its own tests), so
exact float ties are the same on both sides.
"""

import numpy as np


def max_iou_loop(iou, pos_thr, neg_thr, min_pos_iou=0.0, match_low_quality=True, gt_max_assign_all=True):
    """MMDetection's MaxIoUAssigner on a ``[G, N]`` numpy IoU matrix -> ``gt_inds [N]``."""
    num_gts, num_anchors = iou.shape
    gt_inds = np.full(num_anchors, -1)
    max_ov, argmax_ov = iou.max(axis=0), iou.argmax(axis=0)
    for i in range(num_anchors):
        if 0 <= max_ov[i] < neg_thr:
            gt_inds[i] = 0
        if max_ov[i] >= pos_thr:
            gt_inds[i] = argmax_ov[i] + 1
    if match_low_quality:
        for g in range(num_gts):  # sequential: a later GT overwrites
            gt_max = iou[g].max()
            if gt_max >= min_pos_iou:
                if gt_max_assign_all:
                    for i in range(num_anchors):
                        if iou[g, i] == gt_max:
                            gt_inds[i] = g + 1
                else:
                    gt_inds[iou[g].argmax()] = g + 1
    return gt_inds


def atss_loop(iou, anchor_ctr, gt_boxes, num_level_anchors, topk=9, eps=0.01):
    """ATSS per GT with numpy (unbiased std, ``ddof=1``) -> ``gt_inds [N]``.

    ``iou [N, G]``, ``anchor_ctr [N, 2]``, ``gt_boxes [G, 4]``; distance ties go to the lower anchor index.
    """
    num_anchors, num_gts = iou.shape
    best = np.full(num_anchors, -np.inf)
    gt_inds = np.zeros(num_anchors, dtype=np.int64)
    for g in range(num_gts):
        x1, y1, x2, y2 = gt_boxes[g]
        gt_ctr = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
        dist = np.sqrt(((anchor_ctr - gt_ctr) ** 2).sum(axis=1))
        cand, start = [], 0
        for n in num_level_anchors:
            order = np.argsort(dist[start : start + n], kind="stable")
            cand += list(order[: min(topk, n)] + start)
            start += n
        cand_iou = iou[cand, g]
        if len(cand) < 2:
            continue
        thr = cand_iou.mean() + cand_iou.std(ddof=1)
        for a, v in zip(cand, cand_iou, strict=True):
            cx, cy = anchor_ctr[a]
            inside = min(cx - x1, cy - y1, x2 - cx, y2 - cy) > eps
            if v >= thr and inside and v > best[a]:  # strict: an exact tie keeps the lower GT index
                best[a] = v
                gt_inds[a] = g + 1
    return gt_inds
