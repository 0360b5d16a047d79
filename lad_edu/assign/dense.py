"""Dense batch work for the prediction-based rules: GTs padded to ``[B, G_max]``, and a bound on memory.

Task-aligned, SimOTA and Hungarian assignment score every (image, GT, anchor) triple of a batch with the
network's predictions, so the natural layout is a dense ``[B, G_max, N]`` tensor: image ``b``'s GT list
padded to the batch's longest one, a ``valid [B, G_max]`` mask saying which GT slots are real. One call on
the whole batch is what makes them fast on a GPU; it is also what runs out of memory at COCO scale
(16 images × 300 GTs × 20k anchors = 96 M triples, several GiB per float tensor in flight). So the work is
cut into :func:`chunks`: groups of images, and when one image alone is too big, groups of GTs of that
image, each at most ``max_pairs`` triples, computed one after the other **on the same device** (never
moved to the CPU, as ultralytics does on out-of-memory). Each rule decides per GT and then settles
conflicts between GTs with a running best over the GT chunks, so chunked and unchunked results are equal.

>>> boxes, labels, valid = padded_gts([torch.ones(2, 4), torch.ones(0, 4)], [torch.tensor([3, 1]),
...                                   torch.zeros(0, dtype=torch.long)])
>>> boxes.shape, labels.tolist(), valid.tolist()
(torch.Size([2, 2, 4]), [[3, 1], [0, 0]], [[True, True], [False, False]])
>>> def show(pieces):  # (images, GTs) of each piece, as ranges
...     return [(f"{i.start}:{i.stop}", f"{g.start}:{g.stop}") for i, g in pieces]
>>> show(chunks(num_images=4, max_gts=3, num_anchors=10, max_pairs=60))   # 2 images (60 triples) at a time
[('0:2', '0:3'), ('2:4', '0:3')]
>>> show(chunks(num_images=2, max_gts=3, num_anchors=10, max_pairs=20))   # one image is too big: 2 GTs
[('0:1', '0:2'), ('0:1', '2:3'), ('1:2', '0:2'), ('1:2', '2:3')]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lad_edu.assign.interface import Predictions, check_batch, check_predictions, require_predictions
from lad_edu.assign.result import check_assign_inputs, first_non_finite

__all__ = [
    "DEFAULT_MAX_PAIRS",
    "check_dense_inputs",
    "check_finite_predictions",
    "chunks",
    "padded_gts",
]

# 2^24 (image, GT, anchor) triples: ~64 MiB per float32 [B, G, N] tensor in flight. A classroom batch
# (8 images × ≤ 10 GTs × 1.3k anchors = 0.1 M) is never chunked; a COCO batch of 16 images with 30 GTs
# each on 20k anchors (9.7 M) is not either; 300 GTs per image (96 M) is cut into 6 pieces.
DEFAULT_MAX_PAIRS = 2**24


def padded_gts(gt_boxes: Sequence[Tensor], gt_labels: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Every image's GTs in one padded tensor.

    Args:
        gt_boxes, gt_labels: one ``[G_b, 4]`` and one ``[G_b]`` tensor per image (at least one image).

    Returns:
        ``boxes [B, G_max, 4]`` (padding: zeros), ``labels [B, G_max]`` long (padding: 0) and
        ``valid [B, G_max]`` bool (False on padding), on the GTs' device.
    """
    num_images = len(gt_boxes)
    max_gts = max((len(b) for b in gt_boxes), default=0)
    reference = gt_boxes[0]
    boxes = reference.new_zeros((num_images, max_gts, 4))
    labels = torch.zeros((num_images, max_gts), dtype=torch.long, device=reference.device)
    valid = torch.zeros((num_images, max_gts), dtype=torch.bool, device=reference.device)
    for b, (image_boxes, image_labels) in enumerate(zip(gt_boxes, gt_labels, strict=True)):
        count = len(image_boxes)
        boxes[b, :count] = image_boxes
        labels[b, :count] = image_labels
        valid[b, :count] = True
    return boxes, labels, valid


def chunks(*, num_images: int, max_gts: int, num_anchors: int, max_pairs: int) -> list[tuple[slice, slice]]:
    """The pieces ``(images, gts)`` in which to do ``[B, G_max, N]`` work with at most ``max_pairs`` triples
    at a time (see the module docstring): whole images while at least one fits, else GT groups of one image.

    Always at least one piece, and every (image, GT) slot in exactly one; a piece may exceed ``max_pairs``
    only when a single (image, GT) row of ``N`` anchors does.
    """
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
    per_image = max(max_gts, 1) * max(num_anchors, 1)
    if per_image <= max_pairs or max_gts <= 1:
        step = max(1, max_pairs // per_image)
        return [(slice(b, min(b + step, num_images)), slice(0, max_gts)) for b in range(0, num_images, step)]
    gt_step = max(1, max_pairs // max(num_anchors, 1))
    return [
        (slice(b, b + 1), slice(g, min(g + gt_step, max_gts)))
        for b in range(num_images)
        for g in range(0, max_gts, gt_step)
    ]


def check_finite_predictions(cls_logits: Tensor, pred_boxes: Tensor) -> None:
    """Raise a ``ValueError`` naming the field and the anchor when one image's logit or predicted box
    coordinate is NaN or infinite (a diverged network): a cost built from it would silently decide nothing.

    Args:
        cls_logits: ``[N, C]``; pred_boxes: ``[N, 4]`` (one image: a batch's caller adds ``"image b: "``).
    """
    for name, values in (("cls_logits", cls_logits), ("pred_boxes", pred_boxes)):
        bad = first_non_finite(values)
        if bad is not None:
            raise ValueError(
                f"{name} must be finite, got {values[bad].tolist()} at anchor {bad}: the network has "
                "diverged (lower the learning rate, or use a checkpoint from before the NaN)"
            )


def check_dense_inputs(
    assigner: object,
    anchors: Tensor,
    num_level_anchors: list[int],
    gt_boxes: Sequence[Tensor],
    gt_labels: Sequence[Tensor],
    predictions: Predictions | None,
) -> tuple[Predictions, list[Tensor]]:
    """The checks of a prediction-based rule's ``assign_batch``, before any work.

    The batch must fit together (:func:`~lad_edu.assign.interface.check_batch`), ``predictions`` must be
    given, for these images and anchors and on their device; each image's GTs must be finite with labels in
    ``[0, C)`` (and ``< assigner.num_classes`` when that is set), and its predictions finite. A ``ValueError``
    about image ``b`` starts with ``"image b: "``.

    Returns:
        The predictions, and per image the indices ``[G'_b]`` of its non-degenerate GTs (the ones to match).
    """
    predictions = require_predictions(assigner, predictions)
    check_batch(anchors, num_level_anchors, gt_boxes, gt_labels)
    check_predictions(predictions, len(gt_boxes), len(anchors))
    if predictions.boxes.device != anchors.device:
        raise ValueError(f"predictions are on {predictions.boxes.device}, anchors on {anchors.device}")
    num_classes = predictions.cls_logits.shape[-1]
    if getattr(assigner, "num_classes", None) is not None:
        num_classes = min(num_classes, assigner.num_classes)
    kept = []
    for b, (boxes, labels) in enumerate(zip(gt_boxes, gt_labels, strict=True)):
        try:
            kept.append(
                check_assign_inputs(anchors, boxes, labels, num_level_anchors, num_classes=num_classes)
            )
            check_finite_predictions(predictions.cls_logits[b], predictions.boxes[b])
        except ValueError as error:  # the checks know one image: say which one of the batch
            raise ValueError(f"image {b}: {error}") from error
    return predictions, kept
