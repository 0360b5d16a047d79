"""Brute-force references: the reference implementations' pseudocode transcribed as plain loops.

Slow and obvious on purpose (docs/reference_behaviour.md describes the rules); the tests check the
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


def paa_predict_loop(
    cls_logits, box_deltas, iou_logits, anchors, num_level_anchors, img_shape, scale_factor, coder
):
    """MMDetection's PAA test time for one image, step by step (``predict_by_feat_single``, then
    ``_bbox_post_process`` with ``rescale=True``, ``multiclass_nms`` and the per-class ``score_voting`` loop),
    with the default test settings: ``nms_pre=1000``, ``score_thr=0.05``, NMS 0.6, 100 detections.

    Tensors in (``[N, C]``, ``[N, 4]``, ``[N]``, ``[N, 4]``), ``(boxes [K, 4], scores [K], labels [K])`` out.
    """
    import torch
    import torchvision

    nms_pre, score_thr, nms_iou, max_per_img = 1000, 0.05, 0.6, 100
    mlvl_boxes, mlvl_scores, mlvl_factors, start = [], [], [], 0
    for count in num_level_anchors:
        scores = cls_logits[start : start + count].sigmoid()
        factor = iou_logits[start : start + count].sigmoid()
        priors, deltas = anchors[start : start + count], box_deltas[start : start + count]
        if 0 < nms_pre < count:
            top = (scores * factor[:, None]).sqrt().max(dim=1).values.topk(nms_pre).indices
            priors, deltas, scores, factor = priors[top], deltas[top], scores[top], factor[top]
        mlvl_boxes.append(coder.decode(priors, deltas, max_shape=img_shape))
        mlvl_scores.append(scores)
        mlvl_factors.append(factor)
        start += count
    boxes = torch.cat(mlvl_boxes) / torch.tensor(scale_factor).repeat(2)  # rescale before NMS
    nms_scores = (torch.cat(mlvl_scores) * torch.cat(mlvl_factors)[:, None]).sqrt()  # [M, C]

    # multiclass_nms: every (box, class) pair above score_thr, NMS per class, the best 100 by score
    kept = []
    for c in range(nms_scores.shape[1]):
        inds = torch.nonzero(nms_scores[:, c] > score_thr).flatten()
        for i in torchvision.ops.nms(boxes[inds], nms_scores[inds, c], nms_iou):
            kept.append((float(nms_scores[inds[i], c]), int(inds[i]), c))
    kept = sorted(kept, key=lambda k: -k[0])[:max_per_img]

    # score voting, class by class, each detection in score order
    voted_boxes, voted_scores, voted_labels = [], [], []
    for c in range(nms_scores.shape[1]):
        candidates = torch.nonzero(nms_scores[:, c] > score_thr).flatten()
        for score, index, label in kept:
            if label != c:
                continue
            ious = torchvision.ops.box_iou(boxes[index][None], boxes[candidates])[0]
            near = ious > 0.01
            p = torch.exp(-((1 - ious[near]) ** 2) / 0.025) * nms_scores[candidates[near], c]
            voted_boxes.append((p[:, None] * boxes[candidates[near]]).sum(dim=0) / p.sum())
            voted_scores.append(score)
            voted_labels.append(c)
    if not voted_boxes:
        return torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long)
    return torch.stack(voted_boxes), torch.tensor(voted_scores), torch.tensor(voted_labels)
