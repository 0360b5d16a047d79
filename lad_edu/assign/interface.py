"""The one call shape every assigner has, and the predictions some of them read.

torchvision's ``Matcher`` is the model: a narrow interface that says nothing about how an assigner
decides. Every assigner of :mod:`lad_edu.assign` is an object with

* ``assign_batch(anchors, num_level_anchors, gt_boxes, gt_labels, predictions=None) -> list[AssignResult]``:
  the labels of ``B`` images that share one anchor set, one :class:`~lad_edu.assign.AssignResult` per image;
* ``uses_predictions``, a class attribute: whether ``predictions`` enter the decision. The fixed-IoU rule
  and ATSS look at boxes only and ignore them; PAA scores its candidates with them (eq. 2) and raises a
  ``ValueError`` when they are missing.

Image ``b`` of a batch always gets exactly what it would get alone: batching is for speed (PAA fits every
GT of the batch in one call), never a change of result (only PAA's per-GT slot tables in ``details`` are
padded to the batch's widest row). The per-image methods (``FixedIoUAssigner.assign``,
``ATSSAssigner.assign``, ``PAAAssigner.assign``) stay for reading one image at a time.

With one call shape, what distinguishes PAA, LAD and CoLAD (paper Fig. 2a, Fig. 2b, Fig. 3) is only
*whose* :class:`Predictions` the assigner is given: the network's own, a frozen teacher's
(:mod:`lad_edu.assign.lad`), or those of whichever of two networks teaches this step
(:mod:`lad_edu.assign.colad`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

from lad_edu.assign.result import AssignResult

__all__ = [
    "Assigner",
    "Predictions",
    "assign_each_image",
    "check_batch",
    "check_predictions",
    "one_image_predictions",
    "require_predictions",
]


@dataclass(frozen=True, eq=False)
class Predictions:
    """A network's dense predictions for a batch, on the anchors' order (level-major).

    Attributes:
        cls_logits: ``[B, N, C]`` raw classification logits (before the sigmoid).
        boxes: ``[B, N, 4]`` decoded boxes, xyxy in input pixels, not clipped.
        image_sizes: each image's ``(h, w)`` before padding, or None. An assigner that needs an image's
            size and gets None takes the extent of the anchor grid (level-0 grid × stride).

    Raises:
        ValueError: naming the field, for a wrong shape or a device that differs.
    """

    cls_logits: Tensor
    boxes: Tensor
    image_sizes: tuple[tuple[int, int], ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.cls_logits, Tensor) or self.cls_logits.dim() != 3:
            shape = getattr(self.cls_logits, "shape", type(self.cls_logits).__name__)
            raise ValueError(f"cls_logits must be a [B, N, C] tensor, got {tuple(shape)}")
        num_images, num_anchors = self.cls_logits.shape[:2]
        if not isinstance(self.boxes, Tensor) or self.boxes.shape != (num_images, num_anchors, 4):
            shape = getattr(self.boxes, "shape", type(self.boxes).__name__)
            raise ValueError(
                f"boxes must be [B, N, 4] with cls_logits' B={num_images} and N={num_anchors}, "
                f"got {tuple(shape)}"
            )
        if self.boxes.device != self.cls_logits.device:
            raise ValueError(f"boxes are on {self.boxes.device}, cls_logits on {self.cls_logits.device}")
        if self.image_sizes is not None:
            sizes = tuple((int(h), int(w)) for h, w in self.image_sizes)
            if len(sizes) != num_images:
                raise ValueError(
                    f"image_sizes must hold one (h, w) per image ({num_images}), got {len(sizes)}"
                )
            object.__setattr__(self, "image_sizes", sizes)  # frozen: a tuple, whatever sequence was given

    @property
    def num_images(self) -> int:
        return self.cls_logits.shape[0]

    @property
    def num_anchors(self) -> int:
        return self.cls_logits.shape[1]

    def detach(self) -> Predictions:
        """The same values, cut from the autograd graph (what an assigner reads)."""
        return Predictions(self.cls_logits.detach(), self.boxes.detach(), self.image_sizes)

    def float(self) -> Predictions:
        """The same values in float32 (a forward under autocast gives bfloat16 or float16)."""
        return Predictions(self.cls_logits.float(), self.boxes.float(), self.image_sizes)


class Assigner(Protocol):
    """What every assigner is (see the module docstring)."""

    uses_predictions: bool

    def assign_batch(
        self,
        anchors: Tensor,
        num_level_anchors: list[int],
        gt_boxes: Sequence[Tensor],
        gt_labels: Sequence[Tensor],
        predictions: Predictions | None = None,
    ) -> list[AssignResult]:
        """Label every anchor of ``B`` images.

        Args:
            anchors: ``[N, 4]`` xyxy, level-major, shared by the images.
            num_level_anchors: anchors per level (sums to ``N``).
            gt_boxes, gt_labels: one ``[G_b, 4]`` and one ``[G_b]`` tensor per image.
            predictions: the network's predictions on ``anchors`` for the ``B`` images, for the assigners
                that use them.
        """
        ...


def check_batch(
    anchors: Tensor, num_level_anchors: list[int], gt_boxes: Sequence[Tensor], gt_labels: Sequence[Tensor]
) -> None:
    """Raise a ``ValueError`` naming the argument unless the batch fits together: one GT list per image
    (at least one image) and ``num_level_anchors`` summing to the anchors. Each image's GTs are checked by
    the assigner (:func:`lad_edu.assign.result.check_assign_inputs`)."""
    if len(gt_boxes) == 0 or len(gt_boxes) != len(gt_labels):
        raise ValueError(
            f"gt_boxes and gt_labels must hold one tensor per image (at least one image), got "
            f"{len(gt_boxes)} and {len(gt_labels)}"
        )
    if any(n < 0 for n in num_level_anchors) or sum(num_level_anchors) != len(anchors):
        raise ValueError(
            f"num_level_anchors {list(num_level_anchors)} must be non-negative and sum to the "
            f"number of anchors ({len(anchors)})"
        )


def check_predictions(
    predictions: Predictions, num_images: int, num_anchors: int, name: str = "predictions"
) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``predictions`` are :class:`Predictions` for
    ``num_images`` images and ``num_anchors`` anchors (CoLAD's are ``predictions_1``, ``predictions_2``)."""
    if not isinstance(predictions, Predictions):
        raise ValueError(f"{name} must be a lad_edu.assign.Predictions, got {type(predictions).__name__}")
    if (predictions.num_images, predictions.num_anchors) != (num_images, num_anchors):
        raise ValueError(
            f"{name}.cls_logits must be [B={num_images}, N={num_anchors}, C] (one row per image and "
            f"anchor), got {tuple(predictions.cls_logits.shape)}"
        )


def require_predictions(assigner: object, predictions: Predictions | None) -> Predictions:
    """``predictions``, or a ``ValueError`` saying that ``assigner`` needs them."""
    if predictions is None:
        raise ValueError(
            f"{type(assigner).__name__} scores anchors with a network's predictions (uses_predictions=True): "
            "pass predictions=Predictions(cls_logits [B, N, C], boxes [B, N, 4])"
        )
    return predictions


def assign_each_image(
    assign_one: Callable[[Tensor, Tensor], AssignResult],
    gt_boxes: Sequence[Tensor],
    gt_labels: Sequence[Tensor],
) -> list[AssignResult]:
    """``assign_one(boxes, labels)`` for every image: the batch of an assigner that decides image by image.

    A ``ValueError`` of image ``b`` is raised again as ``"image b: <message>"``.
    """
    results = []
    for image, (boxes, labels) in enumerate(zip(gt_boxes, gt_labels, strict=True)):
        try:
            results.append(assign_one(boxes, labels))
        except ValueError as error:  # the checks know one image: say which one of the batch
            raise ValueError(f"image {image}: {error}") from error
    return results


def one_image_predictions(
    anchors: Tensor, cls_logits: Tensor, pred_boxes: Tensor, image_size: tuple[int, int] | None = None
) -> Predictions:
    """A per-image ``assign``'s ``cls_logits [N, C]`` and ``pred_boxes [N, 4]`` as a batch of one, or a
    ``ValueError`` naming the argument whose shape does not fit ``anchors [N, 4]``."""
    for values, name, width in ((cls_logits, "cls_logits", "C"), (pred_boxes, "pred_boxes", "4")):
        if not isinstance(values, Tensor) or values.dim() != 2 or len(values) != len(anchors):
            shape = tuple(getattr(values, "shape", ()))
            raise ValueError(f"{name} must be [N={len(anchors)}, {width}], got {shape}")
    return Predictions(cls_logits[None], pred_boxes[None], None if image_size is None else (image_size,))
