"""LAD: Label Assignment Distillation, where a teacher's predictions decide the student's labels.

PAA scores each candidate anchor with the network's *own* predictions (eq. 2) and splits the costs with a
GMM. LAD (paper section 3.2, Fig. 2b) changes one thing: the costs come from a *teacher*,

    c_i = FL(p_i^T, C) + (1 - IoU(b_i^T, B))

and the resulting labels train the student, which never runs its own assignment. The teacher is not
imitated (no soft targets): it only chooses which anchors are positive. Because that choice is all it
gives, a weaker teacher can still help a stronger student (Table 3: PAA-R50 teaching R101, +0.7 AP).

As in MMDetection and the authors' code, the teacher runs in eval mode (BatchNorm uses its running
statistics) and without gradients, and its own parameters are never updated by the student's loss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from lad_edu.assign.paa import PAAAssigner
from lad_edu.assign.result import AssignResult

__all__ = ["LADAssigner"]

# teacher(images [B, 3, H, W], image_sizes) -> (cls_logits [B, N, C], pred_boxes [B, N, 4] decoded xyxy),
# anchors in the student's order (level-major, as lad_edu.anchors lays them out); image_sizes: each image's
# (h, w) before padding, or None when the batch is not padded
Teacher = Callable[[Tensor, Sequence[tuple[int, int]] | None], tuple[Tensor, Tensor]]


class LADAssigner:
    """PAA's assignment computed from a teacher's predictions, for a student.

    Args:
        teacher: a network (or any callable) mapping images ``[B, 3, H, W]`` and their unpadded sizes to
            ``cls_logits [B, N, C]`` and decoded ``pred_boxes [B, N, 4]`` on the student's anchors
            (``Detector.dense_predictions``). An ``nn.Module`` teacher is put
            in eval mode before every call.
        paa: the PAA rule applied to the teacher's costs (default ``PAAAssigner()``, MMDetection's settings).

    >>> import torch
    >>> from lad_edu.anchors import single
    >>> anchors, num_level_anchors = single(strides=(8, 16))((32, 32))
    >>> def teacher(images, image_sizes):  # an untrained teacher: flat scores, every box on its anchor
    ...     return torch.zeros(len(images), len(anchors), 3), anchors.expand(len(images), -1, -1)
    >>> results = LADAssigner(teacher).assign_batch(torch.zeros(1, 3, 32, 32), anchors, num_level_anchors,
    ...                                             [torch.tensor([[4., 4., 28., 28.]])], [torch.tensor([2])])
    >>> results[0].labels.unique().tolist()
    [-1, 2]
    """

    def __init__(self, teacher: Teacher, paa: PAAAssigner | None = None):
        self.teacher = teacher
        self.paa = paa if paa is not None else PAAAssigner()

    def __repr__(self) -> str:
        return f"LADAssigner(teacher={type(self.teacher).__name__}, paa={self.paa!r})"

    @torch.no_grad()
    def teacher_predictions(
        self, images: Tensor, image_sizes: Sequence[tuple[int, int]] | None = None
    ) -> tuple[Tensor, Tensor]:
        """The teacher's ``cls_logits [B, N, C]`` and ``pred_boxes [B, N, 4]``, in eval mode, no gradients."""
        if isinstance(self.teacher, nn.Module):
            self.teacher.eval()
        cls_logits, pred_boxes = self.teacher(images, image_sizes)
        return cls_logits.detach(), pred_boxes.detach()

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
            One :class:`AssignResult` per image, exactly what :meth:`PAAAssigner.assign_batch` gives on the
            teacher's predictions.
        """
        cls_logits, pred_boxes = self.teacher_predictions(images, image_sizes)
        return self.paa.assign_batch(anchors, num_level_anchors, gt_boxes, gt_labels, cls_logits, pred_boxes)
