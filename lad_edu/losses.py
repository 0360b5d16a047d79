"""The training losses of PAA and LAD, with the reference's weights and normalisations.

Given the labels an assigner chose (an :class:`~lad_edu.assign.AssignResult` per image), a dense head
with classification logits, decoded boxes and an IoU-prediction logit per anchor is trained with
(MMDetection's ``PAAHead`` / ``LADHead``; docs/reference_behaviour.md, "PAA"):

====================  ==========================================  =====================================
term                  loss                                        normalised by
====================  ==========================================  =====================================
classification        sigmoid focal (γ 2, α 0.25) on every        ``max(num_pos, num_images)``
                      anchor that is not ignored
box                   ``1.3 · (1 - GIoU)`` on positives; PAA      PAA: ``Σ IoU``; LAD: ``num_pos``
                      weights each by its IoU target, LAD not
IoU branch            ``0.5 · BCE(iou_logit, IoU(pred, gt))``     ``num_pos``
                      on positives, target detached
====================  ==========================================  =====================================

When the assigner gives a soft target per positive (``AssignResult.quality``: task-aligned assignment's
normalised alignment metric, SimOTA's IoU) and ``soft_target`` is on, the classification term is the
quality focal loss (:func:`quality_focal_loss`, as TOOD trains with its metric) on the target "``quality`` at
the GT's class, 0 elsewhere" instead of the focal loss on a one-hot target.

``num_pos`` counts the positives of the whole batch; ``max(num_pos, num_images)`` keeps an image without
objects from dividing by zero, and with no positive at all the box and IoU terms are exactly 0 (still
connected to the graph, so every parameter gets a gradient of 0, as DDP needs).

:func:`soft_label_kl` is the soft-label distillation loss of the LAD paper (eq. 1);
:func:`distillation_losses` applies it, with the paper's box distillation, in soft-label distillation and
SoLAD.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision.ops
from torch import Tensor

from lad_edu.assign.batch import BatchLayout
from lad_edu.assign.result import AssignResult
from lad_edu.boxes import aligned_box_iou, box_iou

__all__ = ["LossWeights", "detection_losses", "distillation_losses", "quality_focal_loss", "soft_label_kl"]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the three terms (MMDetection's PAA and LAD configs) and the focal loss's parameters."""

    cls: float = 1.0
    bbox: float = 1.3
    iou: float = 0.5
    gamma: float = 2.0
    alpha: float = 0.25
    quality_beta: float = 2.0  # quality focal loss's exponent (GFL, TOOD)


def quality_focal_loss(logits: Tensor, target: Tensor, beta: float = 2.0) -> Tensor:
    """Quality focal loss (GFL, Li et al. 2020, eq. 5; TOOD's and MMDetection's ``QualityFocalLoss``).

    ``QFL(σ, y) = BCE(σ, y) · |y − σ|^β`` per logit, with a soft target ``y ∈ [0, 1]`` (an anchor's quality at
    its GT's class, 0 elsewhere). With a one-hot ``y`` it is the focal loss without α; an anchor whose score
    already equals its target costs nothing. E.g. ``σ = 0.5, y = 0.8``: ``BCE = 0.693``, ``|y − σ|² = 0.09``,
    ``QFL = 0.0624``.

    Args:
        logits, target: the same shape (``[..., C]``); ``target`` is not differentiated.

    Returns:
        The elementwise loss, the shape of ``logits``.
    """
    target = target.detach()
    scale = (target - logits.sigmoid()).abs().pow(beta)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none") * scale


def detection_losses(
    cls_logits: Tensor,
    pred_boxes: Tensor,
    iou_logits: Tensor,
    assignments: list[AssignResult],
    gt_boxes: list[Tensor],
    weights: LossWeights = LossWeights(),
    iou_weighted_bbox: bool = True,
    soft_target: bool = True,
) -> dict[str, Tensor]:
    """The classification, box and IoU-branch losses of a batch, from its assignments.

    Args:
        cls_logits: ``[B, N, C]`` classification logits per anchor.
        pred_boxes: ``[B, N, 4]`` decoded predicted boxes, xyxy.
        iou_logits: ``[B, N]`` IoU-prediction logits.
        assignments: one result per image (``gt_inds [N]``: 0 negative, -1 ignored, ``k`` GT ``k - 1``;
            ``labels [N]`` the class of positives).
        gt_boxes: one ``[G_b, 4]`` tensor per image.
        weights: the terms' weights.
        iou_weighted_bbox: weight each positive's box loss by its IoU target and normalise by their sum
            (PAA); False averages over the positives (LAD's student, and the authors' code).
        soft_target: when an assignment carries ``quality``, train classification with the quality focal
            loss on it (see the module docstring); False keeps the one-hot focal loss.

    Returns:
        ``{"loss_cls", "loss_bbox", "loss_iou"}``, scalars, finite for images without objects.
    """
    num_images, num_anchors, num_classes = cls_logits.shape
    if len(assignments) != num_images or len(gt_boxes) != num_images:
        raise ValueError(f"need one assignment and one gt_boxes per image ({num_images})")
    gt_inds = torch.stack([a.gt_inds for a in assignments])  # [B, N]
    labels = torch.stack([a.labels for a in assignments])  # [B, N]
    if gt_inds.shape != (num_images, num_anchors):
        raise ValueError(
            f"assignments label {tuple(gt_inds.shape[1:])} anchors, the predictions {num_anchors}"
        )
    pos = gt_inds > 0
    num_pos = int(pos.sum())

    # classification on every non-ignored anchor: target 1 (or the positive's quality) at its GT's class
    target = torch.zeros_like(cls_logits)
    target[pos] = F.one_hot(labels[pos], num_classes).to(cls_logits.dtype)
    if soft_target and any(a.quality is not None for a in assignments):
        # an image whose assignment carries no quality (one without GTs, say) keeps its one-hot target
        quality = [a.pos.to(target.dtype) if a.quality is None else a.quality for a in assignments]
        target = target * torch.stack(quality).to(target.dtype)[..., None]
        per_logit = quality_focal_loss(cls_logits, target, beta=weights.quality_beta)
    else:
        per_logit = torchvision.ops.sigmoid_focal_loss(
            cls_logits, target, alpha=weights.alpha, gamma=weights.gamma
        )
    cls_avg = max(num_pos, num_images)
    loss_cls = weights.cls * per_logit[gt_inds >= 0].sum() / cls_avg

    if num_pos == 0:  # 0, but on the graph: every parameter still receives a (zero) gradient
        zero = pred_boxes.sum() * 0 + iou_logits.sum() * 0
        return {"loss_cls": loss_cls, "loss_bbox": zero, "loss_iou": zero}

    # every positive of the batch (flat anchor b·N + i) and the GT it learns (flat GT of the batch)
    pos_anchor, pos_gt = BatchLayout.of(num_anchors, [len(g) for g in gt_boxes]).positives(gt_inds)
    target_boxes = torch.cat(gt_boxes).to(pred_boxes.dtype).index_select(0, pos_gt)  # [P, 4]
    pos_boxes = pred_boxes.flatten(0, 1)[pos_anchor]  # [P, 4]

    # IoU branch: learn to predict the IoU the box actually reaches (target detached)
    iou_target = aligned_box_iou(pos_boxes.detach(), target_boxes)  # [P]
    pos_iou_logits = iou_logits.flatten()[pos_anchor]
    loss_iou = weights.iou * F.binary_cross_entropy_with_logits(pos_iou_logits, iou_target, reduction="sum")
    loss_iou = loss_iou / num_pos

    # box: GIoU loss, PAA weighting each positive by its IoU target
    giou = torchvision.ops.generalized_box_iou_loss(pos_boxes, target_boxes, reduction="none")  # [P]
    if iou_weighted_bbox:
        box_weight = iou_target.clamp(min=1e-12)
        loss_bbox = weights.bbox * (giou * box_weight).sum() / box_weight.sum()
    else:
        loss_bbox = weights.bbox * giou.sum() / num_pos
    return {"loss_cls": loss_cls, "loss_bbox": loss_bbox, "loss_iou": loss_iou}


def soft_label_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    gamma: float = 0.5,
    avg_factor: float = 1.0,
    eps: float = 1e-6,
) -> Tensor:
    """Soft-label distillation (LAD paper, eq. 1): a focal-weighted binary KL per class.

    ``KL(p_t, p_s) = Σ_c w_c [p_t log(p_t / p_s) + (1 - p_t) log((1 - p_t) / (1 - p_s))]`` with
    ``w_c = |p_t - p_s|^γ`` (γ = 0.5 in Table 2's best soft-label and SoLAD runs); ``p = sigmoid(logit)``.
    With a one-hot ``p_t`` it is the focal loss without α.

    Args:
        student_logits: ``[N, C]``, trained.
        teacher_logits: ``[N, C]``, detached here.
        gamma: the focal exponent.
        avg_factor: the sum is divided by this (e.g. the number of positives).
        eps: probabilities are clamped to ``[eps, 1 - eps]`` inside the logarithms.

    Returns:
        A scalar; 0 when the two predictions agree.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student {tuple(student_logits.shape)} and teacher {tuple(teacher_logits.shape)} differ"
        )
    p_s = student_logits.sigmoid()
    p_t = teacher_logits.detach().sigmoid()
    focal = (p_t - p_s).abs().clamp(min=eps).pow(gamma)  # |x|^γ, γ < 1, has an infinite slope at 0
    kl = p_t * (p_t.clamp(eps, 1 - eps).log() - p_s.clamp(eps, 1 - eps).log()) + (1 - p_t) * (
        (1 - p_t).clamp(eps, 1 - eps).log() - (1 - p_s).clamp(eps, 1 - eps).log()
    )
    return (focal * kl).sum() / avg_factor


def distillation_losses(
    student_cls: Tensor,
    student_boxes: Tensor,
    teacher_cls: Tensor,
    teacher_boxes: Tensor,
    assignments: list[AssignResult],
    gt_boxes: list[Tensor],
    gamma: float = 0.5,
    weight: float = 1.0,
    box_iou_thr: float = 0.5,
) -> dict[str, Tensor]:
    """Soft-label distillation (paper section 3.1): imitate the teacher's scores and its good boxes.

    * ``loss_soft_cls``: eq. 1 (:func:`soft_label_kl`) on every anchor that is not ignored, normalised
      like the focal loss by ``max(num_pos, num_images)``;
    * ``loss_soft_bbox``: ``1 - GIoU`` between the student's and the teacher's box, averaged over the
      anchors whose *teacher* box has IoU > ``box_iou_thr`` with its nearest GT ("we select the predicted
      boxes having IoU > 0.5 w.r.t. its nearest ground truth box for localization distilling").

    Args:
        student_cls, teacher_cls: ``[B, N, C]`` logits; student_boxes, teacher_boxes: ``[B, N, 4]`` xyxy.
        assignments: the labels this step trains with (their ignored anchors are skipped, their positives
            count for the normalisation).
        gt_boxes: one ``[G_b, 4]`` per image.
        gamma: eq. 1's focal exponent; weight: multiplies both terms.
    """
    gt_inds = torch.stack([a.gt_inds for a in assignments])  # [B, N]
    num_pos = int((gt_inds > 0).sum())
    avg = max(num_pos, len(assignments))
    keep = gt_inds >= 0
    loss_cls = soft_label_kl(student_cls[keep], teacher_cls[keep], gamma=gamma, avg_factor=avg)

    teacher_boxes = teacher_boxes.detach()
    good = torch.zeros_like(keep)
    for b, boxes in enumerate(gt_boxes):
        if len(boxes):
            good[b] = box_iou(teacher_boxes[b], boxes.to(teacher_boxes.dtype)).amax(dim=1) > box_iou_thr
    if good.any():
        giou = torchvision.ops.generalized_box_iou_loss(
            student_boxes[good], teacher_boxes[good], reduction="mean"
        )
    else:  # nothing to imitate: 0, still on the graph
        giou = student_boxes.sum() * 0
    return {"loss_soft_cls": weight * loss_cls, "loss_soft_bbox": weight * giou}
