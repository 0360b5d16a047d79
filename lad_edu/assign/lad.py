"""LAD: Label Assignment Distillation, where a frozen teacher's predictions decide the student's labels.

PAA scores each candidate anchor with the network's *own* predictions (eq. 2) and splits the costs with a
GMM (paper Fig. 2a). LAD (section 3.2, Fig. 2b) changes one thing: the costs come from a *teacher*,

    c_i = FL(p_i^T, C) + (1 - IoU(b_i^T, B))

and the resulting labels train the student, which never runs its own assignment. The teacher is not
imitated (no soft targets): it only chooses which anchors are positive. Because that choice is all it
gives, a weaker teacher can still help a stronger student (Table 3: PAA-R50 teaching R101, +0.7 AP).

**The design.** LAD is not a new assignment rule, so it is not a new assigner: it is *any*
prediction-based assigner (``uses_predictions``: PAA here, the paper's choice) given the teacher's
:class:`~lad_edu.assign.Predictions` instead of the student's, in the one call shape of every assigner::

    teacher = Teacher(detector.dense_predictions)             # frozen: eval mode, no gradient
    results = assigner.assign_batch(anchors, num_level_anchors, gt_boxes, gt_labels,
                                    teacher(images, image_sizes))

:class:`Teacher` holds what makes a network a teacher, as in MMDetection and the authors' code: it runs in
eval mode (BatchNorm uses its running statistics) on every call, without gradients, and its parameters are
never updated by the student's loss. :class:`LADAssigner` is the two lines above as one object. Training
(:class:`lad_edu.train.learner.Learner`) runs them apart, because the teacher's forward belongs under the
run's mixed precision while the assignment runs in float32, and because SoLAD's soft-label loss reads the
same teacher predictions; loading the teacher from a checkpoint, and the student's box loss without IoU
weighting (MMDetection's ``LADHead``), are decided there too, next to each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from lad_edu.assign.interface import Predictions
from lad_edu.assign.paa import PAAAssigner
from lad_edu.assign.result import AssignResult

__all__ = ["LADAssigner", "Teacher"]

# images [B, 3, H, W], image_sizes (each image's (h, w) before padding, or None when not padded)
#   -> cls_logits [B, N, C], boxes [B, N, 4] decoded xyxy, on the student's anchors
PredictFunction = Callable[[Tensor, Sequence[tuple[int, int]] | None], tuple[Tensor, Tensor]]


class Teacher:
    """A frozen network whose predictions label a student's anchors.

    Args:
        predict: a network mapping ``(images, image_sizes)`` to ``(cls_logits [B, N, C], boxes [B, N, 4])``
            on the student's anchors, or a network's method that does (``Detector.dense_predictions``), or
            any such callable. The network (the callable, or the module its method is bound to) is put in
            eval mode before every call.

    >>> class Constant(nn.Module):  # a network: (images, image_sizes) -> (cls_logits, boxes) on 5 anchors
    ...     def forward(self, images, image_sizes=None):
    ...         return torch.zeros(len(images), 5, 3), torch.zeros(len(images), 5, 4)
    >>> network = Constant().train()
    >>> predictions = Teacher(network)(torch.zeros(2, 3, 8, 8))
    >>> network.training, tuple(predictions.cls_logits.shape)
    (False, (2, 5, 3))
    """

    def __init__(self, predict: PredictFunction):
        self.predict = predict
        owner = getattr(predict, "__self__", predict)  # a bound method's object, else the callable itself
        self.network = owner if isinstance(owner, nn.Module) else None

    def __repr__(self) -> str:
        return f"Teacher({type(self.network or self.predict).__name__})"

    @torch.no_grad()
    def __call__(self, images: Tensor, image_sizes: Sequence[tuple[int, int]] | None = None) -> Predictions:
        """The teacher's predictions on ``images [B, 3, H, W]``, in eval mode, detached."""
        if self.network is not None:
            self.network.eval()  # every call: a caller's .train() on a parent module must not reach it
        cls_logits, boxes = self.predict(images, image_sizes)
        return Predictions(cls_logits.detach(), boxes.detach(), image_sizes)


class LADAssigner:
    """A prediction-based assigner fed a frozen teacher's predictions (see the module docstring).

    Args:
        teacher: a :class:`Teacher`, or what :class:`Teacher` accepts.
        assigner: an assigner that uses predictions (default ``PAAAssigner()``, MMDetection's settings).

    >>> from lad_edu.anchors import single
    >>> anchors, num_level_anchors = single(strides=(8, 16))((32, 32))
    >>> def teacher(images, image_sizes):  # an untrained teacher: flat scores, every box on its anchor
    ...     return torch.zeros(len(images), len(anchors), 3), anchors.expand(len(images), -1, -1)
    >>> results = LADAssigner(teacher).assign_batch(torch.zeros(1, 3, 32, 32), anchors, num_level_anchors,
    ...                                             [torch.tensor([[4., 4., 28., 28.]])], [torch.tensor([2])])
    >>> results[0].labels.unique().tolist()
    [-1, 2]
    """

    def __init__(self, teacher: Teacher | PredictFunction, assigner=None):
        assigner = assigner if assigner is not None else PAAAssigner()
        if not assigner.uses_predictions:
            raise ValueError(
                f"assigner must use predictions: LAD hands it the teacher's, and {type(assigner).__name__} "
                "ignores them"
            )
        self.teacher = teacher if isinstance(teacher, Teacher) else Teacher(teacher)
        self.assigner = assigner

    def __repr__(self) -> str:
        return f"LADAssigner(teacher={self.teacher!r}, assigner={self.assigner!r})"

    def assign_batch(
        self,
        images: Tensor,
        anchors: Tensor,
        num_level_anchors: list[int],
        gt_boxes: list[Tensor],
        gt_labels: list[Tensor],
        image_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> list[AssignResult]:
        """Label the student's anchors for a batch from the teacher's view of the same images.

        Args:
            images: ``[B, 3, H, W]``, the batch the student trains on; image_sizes: each image's ``(h, w)``
                before padding (None: not padded).
            anchors: ``[N, 4]`` xyxy; num_level_anchors: anchors per level.
            gt_boxes, gt_labels: one ``[G_b, 4]`` and one ``[G_b]`` tensor per image.

        Returns:
            One :class:`AssignResult` per image: what ``assigner.assign_batch`` gives on the teacher's
            predictions.
        """
        predictions = self.teacher(images, image_sizes)
        return self.assigner.assign_batch(anchors, num_level_anchors, gt_boxes, gt_labels, predictions)
