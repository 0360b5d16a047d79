"""One training step of any mode: the network(s), the assigner that labels the anchors, and the losses.

This is the only place where a model, an assigner and the losses meet (see ARCHITECTURE.md). The modes:

==========  ==============================================================================================
``fixed``   RetinaNet's MaxIoU rule (0.5 / 0.4, low-quality matches) on the single anchors of the PAA head
``atss``    ATSS (top-9 per level, mean + std of the IoUs)
``paa``     PAA on the network's own predictions (eq. 2, GMM split)
+ ``soft``  PAA labels plus soft-label distillation from a frozen teacher (eq. 1, section 3.1)
+ ``lad``   the frozen teacher's predictions choose the labels (section 3.2)
+ ``solad`` both (Table 2)
+ ``colad`` two networks trained together; the better teacher at each step labels both (section 3.4)
==========  ==============================================================================================

The head and losses are the same for every assigner, so a comparison between modes compares assignment
and nothing else. As in MMDetection, the LAD student's box loss is not IoU-weighted (``LADHead``); every
other mode uses PAA's IoU weighting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor, nn

from lad_edu.assign import ATSSAssigner, CoLADAssigner, FixedIoUAssigner, LADAssigner, PAAAssigner
from lad_edu.assign.result import AssignResult, ignore_crowd
from lad_edu.losses import detection_losses, distillation_losses
from lad_edu.model import Detector, build_detector, load_mmdet_state_dict
from lad_edu.model.checkpoint import load_strict
from lad_edu.train.checkpoint import (
    check_category_ids,
    check_run_checkpoint,
    is_run_checkpoint,
    load_checkpoint,
)
from lad_edu.train.config import ConfigError, TrainConfig, config_from_dict, shipped_configs
from lad_edu.train.stats import assignment_counts

__all__ = ["Learner", "Networks", "load_teacher"]


class Networks(nn.Module):
    """What the optimiser trains: the detector (``model``) and, for CoLAD, its partner (``partner``)."""

    def __init__(self, model: Detector, partner: Detector | None = None):
        super().__init__()
        self.model, self.partner = model, partner

    def detectors(self) -> list[Detector]:
        return [self.model] if self.partner is None else [self.model, self.partner]

    def forward(self, images: Tensor, image_sizes: list[tuple[int, int]]) -> list:
        return [detector(images, image_sizes) for detector in self.detectors()]


def load_teacher(
    cfg: TrainConfig, category_ids: Sequence[int], student: Detector, device: torch.device
) -> Detector:
    """The frozen teacher of ``soft`` / ``lad`` / ``solad``, from ``distill.teacher_checkpoint``.

    A lad_edu run checkpoint carries its model config and the category ids it was trained on, which must
    be the student's data's ``category_ids``; any other file is read as an MMDetection PAA checkpoint with
    backbone ``distill.teacher_backbone`` and the student's other settings. Loaded strictly.
    """
    path = cfg.distill.teacher_checkpoint
    if not path:
        raise ConfigError(
            f"distill.mode={cfg.distill.mode!r} needs distill.teacher_checkpoint (a trained PAA run)"
        )
    if not Path(path).is_file():
        run = Path(path).parent
        config = run.name if run.name in shipped_configs() else "<the teacher's config>"
        raise ConfigError(
            f"distill.teacher_checkpoint {path} does not exist: train it first: "
            f"lad-edu train --config {config} --out {run} (or point it to an MMDetection PAA .pth file)"
        )
    state = load_checkpoint(path)
    if is_run_checkpoint(state):
        check_run_checkpoint(state, path)
        check_category_ids(state["category_ids"], category_ids, f"teacher {path}", "the student's data")
        teacher = build_detector(config_from_dict(state["config"]).model, len(category_ids))
        load_strict(teacher, state["model"], f"teacher {path}")
    else:
        teacher = build_detector(replace(cfg.model, backbone=cfg.distill.teacher_backbone), len(category_ids))
        load_mmdet_state_dict(teacher, path)
    if teacher.anchor_generator != student.anchor_generator:
        raise ConfigError(
            f"teacher {path} uses anchors {teacher.anchor_generator}, the student "
            f"{student.anchor_generator}: the teacher must predict on the student's anchors"
        )
    teacher.requires_grad_(False)
    return teacher.to(device).eval()


class Learner:
    """Computes one step's losses for the mode of ``cfg`` (see the module docstring).

    Args:
        cfg: the run's config.
        networks: the trained network(s), possibly wrapped in DistributedDataParallel (``forward`` is
            called through ``trained``; anchors and decoding through ``networks``).
        teacher: the frozen teacher of soft / lad / solad, else None.
    """

    def __init__(self, cfg: TrainConfig, networks: Networks, trained: nn.Module, teacher: Detector | None):
        self.cfg, self.networks, self.trained, self.teacher = cfg, networks, trained, teacher
        a, d = cfg.assign, cfg.distill
        self.paa = PAAAssigner(
            topk=a.topk,
            bbox_weight=a.bbox_weight,
            loc_loss=a.loc_loss,
            keep_single_candidate=a.keep_single_candidate,
            all_if_no_fg=a.all_if_no_fg,
        )
        self.fixed = FixedIoUAssigner(pos_iou_thr=a.pos_iou_thr, neg_iou_thr=a.neg_iou_thr)
        self.atss = ATSSAssigner(topk=a.topk)
        self.colad = CoLADAssigner(self.paa, d.criterion, d.granularity) if d.mode == "colad" else None
        self.lad = LADAssigner(teacher.dense_predictions, self.paa) if teacher is not None else None
        self.iou_weighted_bbox = d.mode not in ("lad", "solad")

    def assign(
        self,
        anchors: Tensor,
        num_level_anchors: list[int],
        gt_boxes: list[Tensor],
        gt_labels: list[Tensor],
        predictions: list[tuple[Tensor, Tensor]],
        teacher_predictions: tuple[Tensor, Tensor] | None,
    ) -> tuple[list[AssignResult], dict[str, float]]:
        """The labels of this step, and what the choice was (CoLAD's ρ and teacher)."""
        mode, assigner = self.cfg.distill.mode, self.cfg.assign.assigner
        if mode == "colad":
            results, choice = self.colad.assign_batch(
                anchors, num_level_anchors, gt_boxes, gt_labels, predictions[0], predictions[1]
            )
            return results, {
                "rho_1": choice.rho_1,
                "rho_2": choice.rho_2,
                "teacher_2": float(choice.teacher == 2),
                "teacher_share_2": choice.share_2,
            }
        if mode in ("lad", "solad"):
            return self.paa.assign_batch(
                anchors, num_level_anchors, gt_boxes, gt_labels, *teacher_predictions
            ), {}
        if assigner == "paa":
            return self.paa.assign_batch(anchors, num_level_anchors, gt_boxes, gt_labels, *predictions[0]), {}
        if assigner == "atss":
            return [
                self.atss.assign(anchors, num_level_anchors, g, c)
                for g, c in zip(gt_boxes, gt_labels, strict=True)
            ], {}
        return [self.fixed.assign(anchors, g, c) for g, c in zip(gt_boxes, gt_labels, strict=True)], {}

    def step(self, images: Tensor, targets: list[dict], autocast) -> tuple[Tensor, dict[str, float], dict]:
        """Forward, assignment and losses of one batch.

        Args:
            images: ``[B, 3, H, W]`` on the training device, padded; targets: ``boxes``, ``labels``,
                ``crowd_boxes`` and ``size`` (each image's ``(h, w)`` before padding).
            autocast: a context manager factory for mixed precision (``contextlib.nullcontext`` for none).

        Returns:
            ``(total loss, {loss name: value, CoLAD's choice}, assignment counts)``; a NaN loss and empty
            dicts when the predictions are not finite (the caller stops the run).
        """
        device = images.device
        image_sizes = [t["size"] for t in targets]  # the padding is zeroed after normalising
        with autocast():
            outputs = self.trained(images, image_sizes)
        detector = self.networks.model
        anchors, num_level_anchors = detector.anchors(tuple(images.shape[-2:]), device)
        # assignment and losses in float32, whatever the forward ran in
        predictions = []
        for out, net in zip(outputs, self.networks.detectors(), strict=True):
            boxes = net.decode(anchors, out.box_deltas.float())
            predictions.append((out.cls_logits.float(), boxes, out.iou_logits.float()))
        if not all(torch.isfinite(p).all() for prediction in predictions for p in prediction):
            return torch.tensor(float("nan"), device=device), {}, {}  # diverged: nothing to assign
        teacher_predictions = None
        if self.teacher is not None:
            with autocast():
                teacher_cls, teacher_boxes = self.lad.teacher_predictions(images, image_sizes)
            teacher_predictions = (teacher_cls.float(), teacher_boxes.float())

        gt_boxes = [t["boxes"].to(device) for t in targets]
        gt_labels = [t["labels"].to(device) for t in targets]
        detached = [(cls.detach(), boxes.detach()) for cls, boxes, _ in predictions]
        assignments, choice = self.assign(
            anchors, num_level_anchors, gt_boxes, gt_labels, detached, teacher_predictions
        )
        assignments = [
            ignore_crowd(a, anchors, t["crowd_boxes"].to(device), self.cfg.assign.crowd_iof_thr)
            for a, t in zip(assignments, targets, strict=True)
        ]

        losses: dict[str, Tensor] = {}
        for i, (cls, boxes, iou) in enumerate(predictions):
            suffix = "" if i == 0 else "_2"  # CoLAD: the partner's losses, trained on the same labels
            terms = detection_losses(
                cls, boxes, iou, assignments, gt_boxes, iou_weighted_bbox=self.iou_weighted_bbox
            )
            losses.update({name + suffix: value for name, value in terms.items()})
        if self.cfg.distill.mode in ("soft", "solad"):
            cls, boxes, _ = predictions[0]
            losses.update(
                distillation_losses(
                    cls,
                    boxes,
                    *teacher_predictions,
                    assignments,
                    gt_boxes,
                    gamma=self.cfg.distill.soft_gamma,
                    weight=self.cfg.distill.soft_weight,
                )
            )
        total = sum(losses.values())
        logs = {name: float(value.detach()) for name, value in losses.items()} | choice
        return total, logs, assignment_counts(assignments, anchors, num_level_anchors, gt_boxes)
