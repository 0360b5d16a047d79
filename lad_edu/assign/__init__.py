"""Label assignment: which anchor learns which ground-truth box?

>>> from lad_edu.assign import AssignResult, Predictions, build_assigner

Every assigner has one call shape (:mod:`lad_edu.assign.interface`)::

    assigner = build_assigner("paa", topk=9)    # or "fixed", "atss", "tal", "simota", "hungarian"
    results = assigner.assign_batch(anchors, num_level_anchors, gt_boxes, gt_labels,
                                    predictions=Predictions(cls_logits, boxes))   # one AssignResult per image

and says whether it reads the predictions (``uses_predictions``). LAD and CoLAD are not new rules but new
sources of predictions: a frozen teacher's (:class:`LADAssigner`, :class:`Teacher`), or whichever of two
networks teaches this step (:class:`CoLADAssigner`). The per-image methods (``FixedIoUAssigner.assign``,
``ATSSAssigner.assign``, ``PAAAssigner.assign``, ...) label one image at a time.

Beyond the paper, the rules of newer detectors in the same call shape (docs/assigners/): the task-aligned
assigner of TOOD and YOLOv8 (:class:`TaskAlignedAssigner`), YOLOX's SimOTA (:class:`SimOTAAssigner`) and
DETR's one-to-one Hungarian matching (:class:`HungarianAssigner`). All three read predictions, so each also
serves as a LAD teacher's rule.

Modules, in the order they build on each other: ``result`` (what an assigner returns), ``interface`` (the
call shape, :class:`Predictions`), ``batch`` (a batch's flat layout), ``dense`` (padded ``[B, G, N]`` work
under a memory bound), ``fixed_iou``, ``atss``, ``paa``, ``tal``, ``simota``, ``hungarian``, ``build``
(:func:`build_assigner`), ``switch`` and ``colad``, ``lad``.
"""

from lad_edu.assign.atss import ATSSAssigner
from lad_edu.assign.batch import BatchLayout
from lad_edu.assign.build import ASSIGNERS, assigner_class, assigner_options, build_assigner
from lad_edu.assign.colad import CoLADAssigner, CoLADChoice
from lad_edu.assign.fixed_iou import FixedIoUAssigner, low_quality_positives
from lad_edu.assign.hungarian import HungarianAssigner
from lad_edu.assign.interface import Assigner, Predictions
from lad_edu.assign.lad import LADAssigner, Teacher
from lad_edu.assign.paa import PAAAssigner
from lad_edu.assign.result import AssignResult
from lad_edu.assign.simota import SimOTAAssigner
from lad_edu.assign.tal import TaskAlignedAssigner

__all__ = [
    "ASSIGNERS",
    "ATSSAssigner",
    "AssignResult",
    "Assigner",
    "BatchLayout",
    "CoLADAssigner",
    "CoLADChoice",
    "FixedIoUAssigner",
    "HungarianAssigner",
    "LADAssigner",
    "PAAAssigner",
    "Predictions",
    "SimOTAAssigner",
    "TaskAlignedAssigner",
    "Teacher",
    "assigner_class",
    "assigner_options",
    "low_quality_positives",
    "build_assigner",
]
