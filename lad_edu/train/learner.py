"""One training step of any mode: the network(s), the assigner that labels the anchors, and the losses.

This is the only place where a model, an assigner and the losses meet (see docs/ARCHITECTURE.md). The
assigner is the config's (``assign.assigner``: :meth:`~lad_edu.train.config.AssignConfig.build_assigner`);
the distillation mode decides only *whose* predictions it reads and which losses are added:

==========  ==============================================================================================
``none``    the network's own predictions (PAA: Fig. 2a; fixed IoU and ATSS read none)
``soft``    the network's own, plus soft-label distillation from a frozen teacher (eq. 1, section 3.1)
``lad``     the frozen teacher's predictions instead of the student's (section 3.2, Fig. 2b)
``solad``   both: the teacher's predictions label, and are imitated (Table 2)
``colad``   two networks trained together; whichever the criterion picks labels both (section 3.4, Fig. 3)
==========  ==============================================================================================

The head and losses are the same for every assigner, so a comparison between modes compares assignment
and nothing else, with one exception that belongs to LAD (see :class:`Learner`): as in MMDetection's
``LADHead``, the LAD student's box loss is not IoU-weighted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from lad_edu.anchors import Anchors
from lad_edu.assign import CoLADAssigner, Predictions, Teacher
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
from lad_edu.train.config import ConfigError, TrainConfig, config_from_dict, other_network, shipped_configs
from lad_edu.train.stats import assignment_counts

__all__ = ["Learner", "Networks", "ignore_crowds", "load_teacher"]


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
        teacher = build_detector(other_network(cfg, imagenet=False), len(category_ids))
        load_mmdet_state_dict(teacher, path)
    if teacher.anchor_generator != student.anchor_generator:
        raise ConfigError(
            f"teacher {path} uses anchors {teacher.anchor_generator}, the student "
            f"{student.anchor_generator}: the teacher must predict on the student's anchors"
        )
    teacher.requires_grad_(False)
    return teacher.to(device).eval()


def ignore_crowds(
    assignments: list[AssignResult], anchors: Tensor, targets: Sequence[dict], iof_thr: float
) -> list[AssignResult]:
    """Every image's negatives inside its crowd regions (``target["crowd_boxes"]``) ignored, as in training
    (:func:`lad_edu.assign.result.ignore_crowd`, ``assign.crowd_iof_thr``)."""
    return [
        ignore_crowd(result, anchors, target["crowd_boxes"].to(anchors.device), iof_thr)
        for result, target in zip(assignments, targets, strict=True)
    ]


class Learner:
    """Computes one step's losses for the mode of ``cfg`` (see the module docstring).

    A step reads like the paper: the trained network(s) predict; the assigner labels the anchors from the
    predictions the mode names (the student's own, the frozen teacher's, or the better of two networks');
    negatives in crowd regions are ignored; the losses follow.

    Args:
        cfg: the run's config.
        networks: the trained network(s), possibly wrapped in DistributedDataParallel (``forward`` is
            called through ``trained``; anchors and decoding through ``networks``).
        teacher: the frozen teacher of soft / lad / solad (:func:`load_teacher`), else None.
    """

    def __init__(self, cfg: TrainConfig, networks: Networks, trained: nn.Module, teacher: Detector | None):
        self.cfg, self.networks, self.trained = cfg, networks, trained
        self.assigner = cfg.assign.build_assigner(networks.model.num_classes)
        mode = cfg.distill.mode
        # LAD (section 3.2, lad_edu.assign.lad): a frozen teacher (eval mode, no gradient: Teacher) predicts,
        # its predictions instead of the student's feed the assigner, and the student's box loss is not
        # IoU-weighted, as in MMDetection's LADHead.
        self.teacher = Teacher(teacher.dense_predictions) if teacher is not None else None
        self.labels_from_teacher = mode in ("lad", "solad")
        self.iou_weighted_bbox = not self.labels_from_teacher
        # CoLAD (section 3.4): the assigner reads the predictions of whichever network the criterion picks
        self.colad = None
        if mode == "colad":
            self.colad = CoLADAssigner(self.assigner, cfg.distill.criterion, cfg.distill.granularity)

    def assign(
        self,
        anchors: Tensor,
        num_level_anchors: list[int],
        gt_boxes: list[Tensor],
        gt_labels: list[Tensor],
        predictions: list[Predictions],
        teacher_predictions: Predictions | None,
    ) -> tuple[list[AssignResult], dict[str, float]]:
        """The labels of this step (before crowd regions), and CoLAD's choice (logged).

        Args:
            predictions: the trained networks' (detached): the student's, and CoLAD's partner's.
            teacher_predictions: the frozen teacher's, for soft / lad / solad, else None.
        """
        if self.colad is not None:
            results, choice = self.colad.assign_batch(
                anchors, num_level_anchors, gt_boxes, gt_labels, *predictions
            )
            return results, choice.metrics()
        labelling = teacher_predictions if self.labels_from_teacher else predictions[0]
        return self.assigner.assign_batch(anchors, num_level_anchors, gt_boxes, gt_labels, labelling), {}

    def predict(
        self, images: Tensor, image_sizes: list[tuple[int, int]], autocast
    ) -> tuple[list[tuple[Predictions, Tensor]], Anchors]:
        """The trained networks' forward: per network ``(Predictions, iou_logits [B, N])`` in float32 (the
        assignment and losses run in float32, whatever the forward ran in), and the anchors."""
        with autocast():
            outputs = self.trained(images, image_sizes)
        anchors = self.networks.model.anchors(tuple(images.shape[-2:]), images.device)
        predictions = []
        for out, net in zip(outputs, self.networks.detectors(), strict=True):
            boxes = net.decode(anchors.anchors, out.box_deltas.float())
            predictions.append(
                (Predictions(out.cls_logits.float(), boxes, image_sizes), out.iou_logits.float())
            )
        return predictions, anchors

    def label(
        self,
        images: Tensor,
        targets: list[dict],
        predictions: list[Predictions],
        anchors: Anchors,
        autocast,
    ) -> tuple[list[AssignResult], dict[str, float], Predictions | None]:
        """The labels of a batch: the assigner on the predictions the mode names, crowd regions ignored.

        Args:
            images: ``[B, 3, H, W]``, padded; targets: as in :meth:`step`.
            predictions: the trained networks' on ``anchors`` (the student's, and CoLAD's partner's).
            anchors: ``[N, 4]`` and the anchors per level.
            autocast: the forward's precision, for the teacher.

        Returns:
            One :class:`AssignResult` per image, CoLAD's choice (logged), and the teacher's predictions
            (None without a teacher).
        """
        teacher_predictions = None
        if self.teacher is not None:
            with autocast():
                teacher_predictions = self.teacher(images, [t["size"] for t in targets])
            teacher_predictions = teacher_predictions.float()
        gt_boxes = [t["boxes"].to(images.device) for t in targets]
        gt_labels = [t["labels"].to(images.device) for t in targets]
        detached = [p.detach() for p in predictions]
        assignments, choice = self.assign(*anchors, gt_boxes, gt_labels, detached, teacher_predictions)
        assignments = ignore_crowds(assignments, anchors.anchors, targets, self.cfg.assign.crowd_iof_thr)
        return assignments, choice, teacher_predictions

    def step(self, images: Tensor, targets: list[dict], autocast) -> tuple[Tensor, dict[str, float], dict]:
        """Forward, assignment and losses of one batch.

        Args:
            images: ``[B, 3, H, W]`` on the training device, padded; targets: ``boxes``, ``labels``,
                ``crowd_boxes`` and ``size`` (each image's ``(h, w)`` before padding).
            autocast: a context manager factory for mixed precision (``contextlib.nullcontext`` for none).

        Returns:
            ``(total loss, {loss name: value, CoLAD's choice}, assignment counts)``.

        Raises:
            FloatingPointError: a network's predictions are not finite (the step diverged: nothing to
                assign). The engine stops the run on every process.
        """
        image_sizes = [t["size"] for t in targets]  # the padding is zeroed after normalising
        predictions, anchors = self.predict(images, image_sizes, autocast)
        for i, (p, iou_logits) in enumerate(predictions):
            for name, values in (
                ("cls_logits", p.cls_logits),
                ("boxes", p.boxes),
                ("iou_logits", iou_logits),
            ):
                if not bool(torch.isfinite(values).all()):
                    raise FloatingPointError(f"the predictions of network {i + 1} are not finite ({name})")
        assignments, choice, teacher_predictions = self.label(
            images, targets, [p for p, _ in predictions], anchors, autocast
        )
        gt_boxes = [t["boxes"].to(images.device) for t in targets]
        losses = self.losses(predictions, assignments, gt_boxes, teacher_predictions)
        total = sum(losses.values())
        logs = {name: float(value.detach()) for name, value in losses.items()} | choice
        return total, logs, assignment_counts(assignments, *anchors, gt_boxes)

    def losses(
        self,
        predictions: list[tuple[Predictions, Tensor]],
        assignments: list[AssignResult],
        gt_boxes: list[Tensor],
        teacher_predictions: Predictions | None,
    ) -> dict[str, Tensor]:
        """Every trained network's detection losses on the step's labels (CoLAD's partner's with the suffix
        ``_2``), and soft-label distillation for soft / solad."""
        losses: dict[str, Tensor] = {}
        for i, (p, iou_logits) in enumerate(predictions):
            suffix = "" if i == 0 else "_2"  # CoLAD: the partner's losses, trained on the same labels
            terms = detection_losses(
                p.cls_logits,
                p.boxes,
                iou_logits,
                assignments,
                gt_boxes,
                iou_weighted_bbox=self.iou_weighted_bbox,
                soft_target=self.cfg.assign.soft_target,
            )
            losses.update({name + suffix: value for name, value in terms.items()})
        if self.cfg.distill.mode in ("soft", "solad"):
            student = predictions[0][0]
            losses.update(
                distillation_losses(
                    student.cls_logits,
                    student.boxes,
                    teacher_predictions.cls_logits,
                    teacher_predictions.boxes,
                    assignments,
                    gt_boxes,
                    gamma=self.cfg.distill.soft_gamma,
                    weight=self.cfg.distill.soft_weight,
                )
            )
        return losses
