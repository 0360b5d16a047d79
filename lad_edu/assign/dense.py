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
>>> chunks(num_images=4, max_gts=3, num_anchors=10, max_pairs=60)      # 2 images (60 triples) at a time
[(slice(0, 2, None), slice(0, 3, None)), (slice(2, 4, None), slice(0, 3, None))]
>>> chunks(num_images=2, max_gts=3, num_anchors=10, max_pairs=20)      # one image is too big: 2 GTs
[(slice(0, 1, None), slice(0, 2, None)), (slice(0, 1, None), slice(2, 3, None)), (slice(1, 2, None), slice(0, 2, None)), (slice(1, 2, None), slice(2, 3, None))]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lad_edu.assign.result import first_non_finite

__all__ = ["DEFAULT_MAX_PAIRS", "check_finite_predictions", "chunks", "padded_gts"]

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


def check_finite_predictions(cls_logits: Tensor, pred_boxes: Tensor, image: int | None = None) -> None:
    """Raise a ``ValueError`` naming the field and the anchor when a logit or a predicted box coordinate is
    NaN or infinite (a diverged network): a cost built from it would silently decide nothing.

    Args:
        cls_logits: ``[..., N, C]``; pred_boxes: ``[..., N, 4]`` (one image, or a batch ``[B, N, ...]``).
        image: the image's index in its batch, for the message.
    """
    where = "" if image is None else f"image {image}: "
    for name, values in (("cls_logits", cls_logits), ("pred_boxes", pred_boxes)):
        rows = values.reshape(-1, values.shape[-1])
        bad = first_non_finite(rows)
        if bad is not None:
            anchor = bad % values.shape[-2]
            batch = "" if values.dim() == 2 else f"image {bad // values.shape[-2]}, "
            raise ValueError(
                f"{where}{name} must be finite, got {rows[bad].tolist()} at {batch}anchor {anchor}: the network "
                "has diverged (lower the learning rate, or use a checkpoint from before the NaN)"
            )
