"""PAA at test time: from dense predictions to at most 100 boxes per image (docs/reference_behaviour.md).

For one image, as MMDetection's ``PAAHead.predict_by_feat`` does:

1. per level, keep the ``nms_pre`` (1000) anchors with the highest ``max_c sqrt(sigmoid(cls_c) ·
   sigmoid(iou))``, and decode their boxes, clipped to the image;
2. score every (box, class) pair by ``sqrt(sigmoid(cls_c) · sigmoid(iou))``: the geometric mean of the
   class probability and the predicted IoU, so a confident class on a badly placed box ranks low;
3. drop pairs scoring ``<= score_thr`` (0.05), run NMS per class at IoU ``nms_iou`` (0.6), keep the best
   ``max_per_img`` (100);
4. *score voting* (PAA paper, section 3.5 of the reference): replace each kept box by an average of the
   pre-NMS boxes of its class around it, weighted by their score and their IoU with it. The score is kept.

Every function here is pure: tensors in, tensors out.

>>> import torch
>>> boxes = torch.tensor([[0., 0., 10., 10.], [1., 0., 11., 10.], [50., 50., 60., 60.]])
>>> scores = torch.tensor([[0.9, 0.0], [0.8, 0.0], [0.0, 0.7]])
>>> kept_boxes, kept_scores, labels = multiclass_nms(boxes, scores, 0.05, nms_iou=0.6, max_per_img=100)
>>> kept_scores, labels   # the second box overlaps the first by 0.82 > 0.6: suppressed
(tensor([0.9000, 0.7000]), tensor([0, 1]))
"""

from __future__ import annotations

import torch
import torchvision.ops
from torch import Tensor

from lad_edu.boxes import DeltaXYWHCoder, box_iou

__all__ = ["topk_per_level", "multiclass_nms", "score_voting", "postprocess_image"]

VOTING_MIN_IOU = 0.01  # candidates overlapping a kept box by less than this do not vote
VOTING_SIGMA = 0.025  # weight exp(-(1 - IoU)^2 / VOTING_SIGMA)


def topk_per_level(scores: Tensor, num_level_anchors: list[int], k: int) -> Tensor:
    """Indices of the ``k`` highest ``scores`` inside each level (all of a level with ``<= k`` anchors).

    Args:
        scores: ``[N]``, level-major.
        num_level_anchors: anchors per level, summing to ``N``.
        k: kept per level; ``k <= 0`` keeps everything.

    Returns:
        ``[K]`` long indices into ``N``, level by level, in descending score inside a level.
    """
    kept, start = [], 0
    for count in num_level_anchors:
        level_scores = scores[start : start + count]
        if 0 < k < count:
            kept.append(level_scores.topk(k).indices + start)
        else:
            kept.append(torch.arange(start, start + count, device=scores.device))
        start += count
    return torch.cat(kept)


def multiclass_nms(
    boxes: Tensor, scores: Tensor, score_thr: float, nms_iou: float, max_per_img: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Class-wise NMS of the (box, class) pairs scoring above ``score_thr`` (as ``multiclass_nms``).

    Args:
        boxes: ``[M, 4]`` xyxy, one per candidate anchor, shared by all classes.
        scores: ``[M, C]``.
        score_thr: pairs with ``score <= score_thr`` are dropped before NMS.
        nms_iou: a pair is suppressed by a higher-scoring pair of the same class overlapping it by more.
        max_per_img: at most this many detections are returned (all of them when ``<= 0``).

    Returns:
        ``boxes [K, 4]``, ``scores [K]`` (descending), ``labels [K]`` long.
    """
    anchor_ids, labels = torch.nonzero(scores > score_thr, as_tuple=True)
    pair_boxes, pair_scores = boxes[anchor_ids], scores[anchor_ids, labels]
    keep = torchvision.ops.batched_nms(pair_boxes, pair_scores, labels, nms_iou)  # sorted by score
    if max_per_img > 0:
        keep = keep[:max_per_img]
    return pair_boxes[keep], pair_scores[keep], labels[keep]


def score_voting(
    det_boxes: Tensor, det_labels: Tensor, boxes: Tensor, scores: Tensor, score_thr: float
) -> Tensor:
    """PAA's score voting: each kept box becomes an average of the pre-NMS boxes of its class around it.

    For a detection ``d`` of class ``c``, the candidates are the pre-NMS boxes ``b_i`` with
    ``scores[i, c] > score_thr`` and ``IoU(d, b_i) > 0.01``; with ``p_i = exp(-(1 - IoU_i)^2 / 0.025) ·
    scores[i, c]`` the new box is ``Σ p_i b_i / Σ p_i``. A detection is one of its own candidates, so
    ``Σ p_i > 0``, except for a zero-area box (IoU 0 with itself), which is returned unchanged.

    Args:
        det_boxes: ``[K, 4]`` xyxy, the boxes kept by NMS.
        det_labels: ``[K]`` their classes.
        boxes: ``[M, 4]`` xyxy, every pre-NMS candidate box.
        scores: ``[M, C]`` the candidates' scores.
        score_thr: candidates scoring ``<= score_thr`` for the class do not vote.

    Returns:
        ``[K, 4]`` the voted boxes, in the order of ``det_boxes``.
    """
    ious = box_iou(det_boxes, boxes)  # [K, M]
    class_scores = scores[:, det_labels].T  # [K, M]: each candidate's score for the detection's class
    votes = (class_scores > score_thr) & (ious > VOTING_MIN_IOU)
    weights = torch.exp(-((1 - ious) ** 2) / VOTING_SIGMA) * class_scores * votes  # [K, M]
    total = weights.sum(dim=1, keepdim=True)  # [K, 1]
    voted = weights @ boxes / total.clamp(min=torch.finfo(total.dtype).tiny)
    return torch.where(total > 0, voted, det_boxes)


def postprocess_image(
    cls_logits: Tensor,
    box_deltas: Tensor,
    iou_logits: Tensor,
    anchors: Tensor,
    num_level_anchors: list[int],
    image_size: tuple[int, int],
    coder: DeltaXYWHCoder,
    *,
    scale_factor: tuple[float, float] | None = None,
    nms_pre: int = 1000,
    score_thr: float = 0.05,
    nms_iou: float = 0.6,
    max_per_img: int = 100,
    voting: bool = True,
    voting_order: str = "score",
) -> dict[str, Tensor]:
    """One image's detections from its dense predictions (MMDetection's PAA ``test_cfg`` as defaults).

    Args:
        cls_logits: ``[N, C]`` classification logits.
        box_deltas: ``[N, 4]`` box deltas.
        iou_logits: ``[N]`` IoU-prediction logits.
        anchors: ``[N, 4]`` xyxy, level-major; num_level_anchors: anchors per level.
        image_size: ``(height, width)`` of the image before padding; boxes are clipped to it.
        coder: decodes deltas into boxes.
        scale_factor: ``(w, h)`` by which the image was resized; the clipped boxes are divided by it
            before NMS, as MMDetection's ``rescale=True`` does. None keeps input pixels.
        nms_pre, score_thr, nms_iou, max_per_img: see the module docstring.
        voting: apply :func:`score_voting` to the kept boxes.
        voting_order: ``"score"`` keeps NMS's order (descending score); ``"class"`` returns the voted
            detections grouped by class, in increasing label order, as MMDetection's score voting does.

    Returns:
        ``{"boxes": [K, 4] xyxy, "scores": [K], "labels": [K] long}``, ``K <= max_per_img``.
    """
    cls_prob, iou_prob = cls_logits.sigmoid(), iou_logits.sigmoid()
    rank = (cls_prob * iou_prob[:, None]).sqrt().amax(dim=1)  # [N]
    kept = topk_per_level(rank, num_level_anchors, nms_pre)
    boxes = coder.decode(anchors[kept], box_deltas[kept], max_shape=image_size)  # [M, 4]
    if scale_factor is not None:
        boxes = boxes / boxes.new_tensor(scale_factor).repeat(2)  # (w, h, w, h)
    scores = (cls_prob[kept] * iou_prob[kept, None]).sqrt()  # [M, C]
    det_boxes, det_scores, det_labels = multiclass_nms(boxes, scores, score_thr, nms_iou, max_per_img)
    if voting and len(det_boxes):
        det_boxes = score_voting(det_boxes, det_labels, boxes, scores, score_thr)
        if voting_order == "class":  # a stable sort keeps the score order inside each class
            order = torch.sort(det_labels, stable=True).indices
            det_boxes, det_scores, det_labels = det_boxes[order], det_scores[order], det_labels[order]
    return {"boxes": det_boxes, "scores": det_scores, "labels": det_labels}
