"""Brute-force references: the reference implementations' pseudocode transcribed as plain loops.

Slow and obvious on purpose (docs/reference_behaviour.md and docs/assigners/ describe the rules); the tests
check the vectorised assigners against them. For the fixed-IoU rule and ATSS the IoU matrix is taken as given
(``box_iou`` has its own tests), so exact float ties are the same on both sides; the task-aligned, SimOTA and
Hungarian transcriptions compute every IoU, cost and score one pair at a time, as MMDetection 3.3's
per-image code (``TaskAlignedAssigner`` with TOOD's normalisation, ultralytics' ``TaskAlignedAssigner``,
``SimOTAAssigner``, ``HungarianAssigner`` with DINO's costs) defines them.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor


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


def _iou(a, b, eps=1e-6):
    """MMDetection's ``bbox_overlaps(mode='iou')`` of two xyxy boxes: union clamped at ``eps``."""
    w = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    h = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / max(union, eps)


def _ciou(gt, pred, eps=1e-7):
    """ultralytics' ``bbox_iou(gt, pred, xywh=False, CIoU=True)`` of two xyxy boxes."""
    w1, h1 = gt[2] - gt[0], gt[3] - gt[1] + eps
    w2, h2 = pred[2] - pred[0], pred[3] - pred[1] + eps
    inter = max(min(gt[2], pred[2]) - max(gt[0], pred[0]), 0.0) * max(
        min(gt[3], pred[3]) - max(gt[1], pred[1]), 0.0
    )
    iou = inter / (w1 * h1 + w2 * h2 - inter + eps)
    cw = max(gt[2], pred[2]) - min(gt[0], pred[0])
    ch = max(gt[3], pred[3]) - min(gt[1], pred[1])
    c2 = cw**2 + ch**2 + eps
    rho2 = ((pred[0] + pred[2] - gt[0] - gt[2]) ** 2 + (pred[1] + pred[3] - gt[1] - gt[3]) ** 2) / 4
    v = 4 / math.pi**2 * (math.atan(w2 / h2) - math.atan(w1 / h1)) ** 2
    alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def _inside(point, box, eps):
    """Whether ``point`` lies inside ``box`` by more than ``eps`` on all four sides."""
    x, y = point
    return min(x - box[0], y - box[1], box[2] - x, box[3] - y) > eps


def tal_mmdet_loop(scores, pred_boxes, anchors, gt_boxes, gt_labels, topk=13, alpha=1.0, beta=6.0):
    """MMDetection 3.3's ``TaskAlignedAssigner.assign`` for one image, then the per-GT normalisation of
    ``TOODHead._get_targets_single`` (``t / (max t + 10e-8) * max u`` over the GT's positives).

    Args:
        scores: ``[N, C]`` probabilities; pred_boxes, anchors: ``[N, 4]``; gt_boxes: ``[G, 4]``;
            gt_labels: ``[G]`` (numpy).

    Returns:
        ``gt_inds [N]`` (0 negative, k >= 1 GT k - 1), ``metric [N]`` (``assign_metrics``), ``pred_iou [N]``
        (``max_overlaps`` of the positives, 0 elsewhere) and ``quality [N]`` (the normalised metric).
    """
    num_anchors, num_gts = len(anchors), len(gt_boxes)
    gt_inds = np.zeros(num_anchors, dtype=np.int64)
    metric_out, iou_out, quality = np.zeros(num_anchors), np.zeros(num_anchors), np.zeros(num_anchors)
    if num_gts == 0 or num_anchors == 0:
        return gt_inds, metric_out, iou_out, quality
    overlaps = np.array(
        [[_iou(pred_boxes[i], gt_boxes[g]) for g in range(num_gts)] for i in range(num_anchors)]
    )
    metric = np.array(
        [
            [scores[i, gt_labels[g]] ** alpha * overlaps[i, g] ** beta for g in range(num_gts)]
            for i in range(num_anchors)
        ]
    )
    k = min(topk, num_anchors)
    best = np.full(num_anchors, -np.inf)
    for g in range(num_gts):
        for i in np.argsort(-metric[:, g], kind="stable")[:k]:
            centre = ((anchors[i, 0] + anchors[i, 2]) / 2, (anchors[i, 1] + anchors[i, 3]) / 2)
            positive = metric[i, g] > 0 and _inside(centre, gt_boxes[g], eps=0.01)
            if positive and overlaps[i, g] > best[i]:  # strict: an exact tie keeps the lower GT index
                best[i], gt_inds[i] = overlaps[i, g], g + 1
    for i in range(num_anchors):
        if gt_inds[i] > 0:
            metric_out[i], iou_out[i] = metric[i, gt_inds[i] - 1], overlaps[i, gt_inds[i] - 1]
    for g in range(num_gts):
        members = [i for i in range(num_anchors) if gt_inds[i] == g + 1]
        if members:
            max_t, max_u = max(metric_out[members]), max(iou_out[members])
            for i in members:
                quality[i] = metric_out[i] / (max_t + 10e-8) * max_u
    return gt_inds, metric_out, iou_out, quality


def tal_ultralytics_loop(scores, pred_boxes, points, gt_boxes, gt_labels, topk=10, alpha=0.5, beta=6.0):
    """``ultralytics.utils.tal.TaskAlignedAssigner.forward`` (YOLOv8) for one image: ``get_pos_mask``,
    ``select_highest_overlaps`` and the normalisation of ``target_scores``, with ``eps = 1e-9``.

    Args:
        scores: ``[N, C]`` probabilities; pred_boxes: ``[N, 4]``; points: ``[N, 2]`` anchor points;
            gt_boxes: ``[G, 4]``; gt_labels: ``[G]`` (numpy).

    Returns:
        ``gt_inds [N]`` (0 negative, k >= 1 GT k - 1), ``metric [N]`` and ``pred_iou [N]`` (the clamped CIoU)
        of each positive with its GT (0 elsewhere), and ``quality [N]`` (``norm_align_metric``).
    """
    eps, num_anchors, num_gts = 1e-9, len(points), len(gt_boxes)
    gt_inds = np.zeros(num_anchors, dtype=np.int64)
    metric_out, iou_out, quality = np.zeros(num_anchors), np.zeros(num_anchors), np.zeros(num_anchors)
    if num_gts == 0 or num_anchors == 0:
        return gt_inds, metric_out, iou_out, quality
    inside = np.array(
        [[_inside(points[i], gt_boxes[g], eps) for i in range(num_anchors)] for g in range(num_gts)]
    )
    overlaps, metric = np.zeros((num_gts, num_anchors)), np.zeros((num_gts, num_anchors))
    for g in range(num_gts):
        for i in range(num_anchors):
            if inside[g, i]:  # score and overlap are only filled in for anchor points inside the GT
                overlaps[g, i] = max(_ciou(gt_boxes[g], pred_boxes[i]), 0.0)
                metric[g, i] = scores[i, gt_labels[g]] ** alpha * overlaps[g, i] ** beta
    mask_pos = np.zeros((num_gts, num_anchors), dtype=bool)
    for g in range(num_gts):
        for i in np.argsort(-metric[g], kind="stable")[: min(topk, num_anchors)]:
            mask_pos[g, i] = inside[g, i]
    for i in range(num_anchors):
        if mask_pos[:, i].sum() > 1:  # select_highest_overlaps: argmax over all GTs
            mask_pos[:, i] = False
            mask_pos[int(np.argmax(overlaps[:, i])), i] = True
    for i in range(num_anchors):
        if mask_pos[:, i].any():
            g = int(np.argmax(mask_pos[:, i]))
            gt_inds[i], metric_out[i], iou_out[i] = g + 1, metric[g, i], overlaps[g, i]
    for g in range(num_gts):
        members = [i for i in range(num_anchors) if mask_pos[g, i]]
        if members:
            max_t, max_u = max(metric[g, members]), max(overlaps[g, members])
            for i in members:
                quality[i] = metric[g, i] * max_u / (max_t + eps)
    return gt_inds, metric_out, iou_out, quality


def simota_reference(
    priors: Tensor,
    scores: Tensor,
    pred_boxes: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    center_radius: float = 2.5,
    candidate_topk: int = 10,
    iou_weight: float = 3.0,
    cls_weight: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """MMDetection 3.3 ``SimOTAAssigner.assign`` (with ``get_in_gt_and_in_center_info`` and
    ``dynamic_k_matching``, mmdet/models/task_modules/assigners/sim_ota_assigner.py) for one image, GT by GT.

    Written out with a loop over the GTs (vectorised over priors only) and a loop over the priors for the
    conflicts. One choice MMDetection leaves open is fixed: where ``torch.topk`` picks among equal costs at
    the k-th place, the lower prior index is taken (a stable sort).

    Args:
        priors: ``[N, 4]`` ``(cx, cy, stride_w, stride_h)``.
        scores: ``[N, C]`` class probabilities (the sigmoid of the logits).
        pred_boxes: ``[N, 4]`` decoded xyxy; gt_boxes: ``[G, 4]`` xyxy; gt_labels: ``[G]``.

    Returns:
        ``gt_inds [N]`` (0 negative, ``j + 1`` GT ``j``), ``matched_iou [N]`` (MMDetection's ``max_overlaps``
        on positives, 0 elsewhere where MMDetection writes ``-1e5`` or 0) and ``dynamic_k [G]`` (0 when no
        prior is valid: MMDetection returns before computing it).
    """
    num_priors, num_gts = len(priors), len(gt_boxes)
    gt_inds = torch.zeros(num_priors, dtype=torch.long)
    matched_iou = pred_boxes.new_zeros(num_priors)
    dynamic_k = torch.zeros(num_gts, dtype=torch.long)
    if num_gts == 0 or num_priors == 0:
        return gt_inds, matched_iou, dynamic_k

    # get_in_gt_and_in_center_info: strictly inside the box / the centre square, one GT at a time
    x, y, stride_x, stride_y = priors.unbind(dim=1)
    in_box = torch.zeros(num_priors, num_gts, dtype=torch.bool)
    in_centre = torch.zeros(num_priors, num_gts, dtype=torch.bool)
    for j in range(num_gts):
        x1, y1, x2, y2 = gt_boxes[j]
        in_box[:, j] = torch.stack([x - x1, y - y1, x2 - x, y2 - y]).min(dim=0).values > 0
        cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        left, top = cx - center_radius * stride_x, cy - center_radius * stride_y
        right, bottom = cx + center_radius * stride_x, cy + center_radius * stride_y
        in_centre[:, j] = torch.stack([x - left, y - top, right - x, bottom - y]).min(dim=0).values > 0
    valid = in_box.any(dim=1) | in_centre.any(dim=1)
    valid_index = valid.nonzero().squeeze(1)
    num_valid = len(valid_index)
    if num_valid == 0:
        return gt_inds, matched_iou, dynamic_k
    candidate = in_box[valid] & in_centre[valid]  # [V, G]

    # the cost of every valid prior for every GT
    boxes = pred_boxes[valid]
    cost = torch.zeros(num_valid, num_gts, dtype=torch.promote_types(scores.dtype, pred_boxes.dtype))
    ious = torch.zeros(num_valid, num_gts, dtype=torch.promote_types(pred_boxes.dtype, gt_boxes.dtype))
    for j in range(num_gts):
        # bbox_overlaps(boxes, gt), mode 'iou': the union clamped at eps = 1e-6
        x1, y1, x2, y2 = gt_boxes[j]
        width = (torch.minimum(boxes[:, 2], x2) - torch.maximum(boxes[:, 0], x1)).clamp(min=0)
        height = (torch.minimum(boxes[:, 3], y2) - torch.maximum(boxes[:, 1], y1)).clamp(min=0)
        overlap = width * height
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        ious[:, j] = overlap / torch.clamp(area + (x2 - x1) * (y2 - y1) - overlap, min=1e-6)
        onehot = F.one_hot(gt_labels[j].long(), scores.shape[1]).float().expand(num_valid, -1)
        bce = F.binary_cross_entropy(scores[valid].float(), onehot, reduction="none")
        cls_cost = bce.sum(dim=-1).to(scores.dtype)
        iou_cost = -torch.log(ious[:, j] + 1e-7)
        cost[:, j] = cls_cost * cls_weight + iou_cost * iou_weight + (~candidate[:, j]) * 100000.0

    # dynamic_k_matching: k from the top IoUs, then each GT's k cheapest valid priors
    top = min(candidate_topk, num_valid)
    matching = torch.zeros(num_valid, num_gts, dtype=torch.long)
    for j in range(num_gts):
        top_ious = torch.topk(ious[:, j], top).values
        dynamic_k[j] = max(int(top_ious.sum()), 1)
        cheapest = torch.sort(cost[:, j], stable=True).indices[: dynamic_k[j]]
        matching[cheapest, j] = 1
    for v in range(num_valid):
        if matching[v].sum() > 1:  # a prior taken twice: the GT of lowest cost among all, the first on ties
            best = 0
            for j in range(1, num_gts):
                if cost[v, j] < cost[v, best]:
                    best = j
            matching[v] = 0
            matching[v, best] = 1
        if matching[v].sum() == 1:
            j = int(matching[v].argmax())
            gt_inds[valid_index[v]] = j + 1
            matched_iou[valid_index[v]] = ious[v, j]
    return gt_inds, matched_iou, dynamic_k


def hungarian_loop(
    cls_logits,
    pred_boxes,
    gt_boxes,
    gt_labels,
    img_shape,
    cls_weight=2.0,
    l1_weight=5.0,
    giou_weight=2.0,
    alpha=0.25,
    gamma=2.0,
):
    """MMDetection 3.3's ``HungarianAssigner.assign`` (``mmdet/models/task_modules/assigners/
    hungarian_assigner.py``) with the match costs ``FocalLossCost(weight=cls_weight)``,
    ``BBoxL1Cost(weight=l1_weight, box_format='xywh')`` and ``IoUCost(iou_mode='giou', weight=giou_weight)``
    (``match_cost.py``; the GIoU of ``bbox_overlaps``, union and hull floored at ``eps = 1e-6``).

    Args:
        cls_logits: ``[N, C]`` raw logits; pred_boxes: ``[N, 4]`` xyxy pixels (numpy or anything indexable).
        gt_boxes: ``[G, 4]`` xyxy pixels; gt_labels: ``[G]`` class ids.
        img_shape: ``(h, w)``, ``img_meta['img_shape']``.

    Returns:
        ``gt_inds [N]`` (0 negative, ``k >= 1`` GT ``k - 1``) and the cost matrix ``[N, G]``.
    """
    num_preds, num_gts = len(pred_boxes), len(gt_boxes)
    cost = np.zeros((num_preds, num_gts))
    if num_gts == 0 or num_preds == 0:  # MMDetection: all background (no prediction: nothing to label)
        return np.zeros(num_preds, dtype=np.int64), cost
    img_h, img_w = img_shape
    for i in range(num_preds):
        for j in range(num_gts):
            # FocalLossCost: (pos_cost - neg_cost) at the GT's class
            p = 1.0 / (1.0 + math.exp(-float(cls_logits[i][gt_labels[j]])))
            neg_cost = -math.log(1 - p + 1e-12) * (1 - alpha) * p**gamma
            pos_cost = -math.log(p + 1e-12) * alpha * (1 - p) ** gamma
            focal = (pos_cost - neg_cost) * cls_weight

            # BBoxL1Cost, box_format='xywh': xyxy -> cxcywh, divided by (w, h, w, h)
            px1, py1, px2, py2 = (float(v) for v in pred_boxes[i])
            gx1, gy1, gx2, gy2 = (float(v) for v in gt_boxes[j])
            pred = [
                (px1 + px2) / 2 / img_w,
                (py1 + py2) / 2 / img_h,
                (px2 - px1) / img_w,
                (py2 - py1) / img_h,
            ]
            gt = [(gx1 + gx2) / 2 / img_w, (gy1 + gy2) / 2 / img_h, (gx2 - gx1) / img_w, (gy2 - gy1) / img_h]
            l1 = sum(abs(a - b) for a, b in zip(pred, gt, strict=True)) * l1_weight

            # IoUCost, iou_mode='giou': bbox_overlaps(pred, gt, mode='giou'), eps 1e-6
            overlap = max(min(px2, gx2) - max(px1, gx1), 0) * max(min(py2, gy2) - max(py1, gy1), 0)
            union = max((px2 - px1) * (py2 - py1) + (gx2 - gx1) * (gy2 - gy1) - overlap, 1e-6)
            hull = max(max(px2, gx2) - min(px1, gx1), 0) * max(max(py2, gy2) - min(py1, gy1), 0)
            hull = max(hull, 1e-6)
            giou = overlap / union - (hull - union) / hull

            cost[i, j] = focal + l1 + (-giou) * giou_weight

    rows, cols = linear_sum_assignment(cost)  # [N, G], on the CPU
    gt_inds = np.zeros(num_preds, dtype=np.int64)  # every prediction background first ...
    gt_inds[rows] = cols + 1  # ... then the matched ones get their GT
    return gt_inds, cost
