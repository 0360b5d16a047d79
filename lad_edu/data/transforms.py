"""The COCO recipe's image transforms: keep-ratio resize, horizontal flip, and padding a batch to /32.

Boxes follow the pixels: every transform maps ``boxes`` and ``crowd_boxes`` (``[G, 4]`` xyxy) exactly as
it maps the image, and records the new ``size``. The resize factors are kept (``scale_factor``, ``(w, h)``)
so detections can be mapped back to the original image for evaluation.

The images stay raw (RGB, 0..255) and the padding :func:`collate` adds is a placeholder: the network
normalises first and then sets the padding to 0 (:meth:`lad_edu.model.Detector.normalize`), which is
MMDetection's order. Resizing follows MMDetection too: the new side is ``int(side · scale + 0.5)`` and each
axis keeps its own factor ``new_side / side`` (the two differ slightly after rounding).
"""

from __future__ import annotations

import math

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor

__all__ = ["resize", "hflip", "TrainTransform", "EvalTransform", "collate"]


def resize(image: Tensor, target: dict, short_side: int, max_size: int) -> tuple[Tensor, dict]:
    """Scale so the short side is ``short_side`` and the long side at most ``max_size``, keeping the ratio.

    Args:
        image: ``[3, H, W]``; target: with ``boxes``, ``crowd_boxes`` (xyxy), ``size``.
        short_side, max_size: COCO's recipe uses 800 and 1333.

    Returns:
        The resized image and a new target whose ``scale_factor`` ``(w, h)`` is multiplied by this resize's.
    """
    height, width = image.shape[1:]
    scale = min(short_side / min(height, width), max_size / max(height, width))
    new_size = (max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5)))
    image = TF.resize(image, list(new_size), antialias=False)  # bilinear, as cv2 (MMDetection)
    scale_w, scale_h = new_size[1] / width, new_size[0] / height
    target = dict(target)
    for key in ("boxes", "crowd_boxes"):  # scaled per axis, then clipped to the image (MMDetection's Resize)
        factors = torch.tensor([scale_w, scale_h, scale_w, scale_h], device=target[key].device)
        boxes = target[key] * factors  # a new floating-point tensor, also for integer boxes
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, new_size[1])
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, new_size[0])
        target[key] = boxes
    target["size"] = new_size
    old_w, old_h = target.get("scale_factor", (1.0, 1.0))
    target["scale_factor"] = (old_w * scale_w, old_h * scale_h)
    return image, target


def hflip(image: Tensor, target: dict) -> tuple[Tensor, dict]:
    """Mirror the image left-right; a box ``(x1, y1, x2, y2)`` becomes ``(W - x2, y1, W - x1, y2)``."""
    width = image.shape[2]
    target = dict(target)
    for key in ("boxes", "crowd_boxes"):
        boxes = target[key]
        target[key] = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
    return TF.horizontal_flip(image), target


class TrainTransform:
    """Training: a short side drawn from ``short_sides`` (several: multi-scale), a flip with ``flip_prob``.

    Random choices come from the ``generator`` passed in, so a seeded loader gives the same batches.
    """

    def __init__(self, short_sides: tuple[int, ...] = (800,), max_size: int = 1333, flip_prob: float = 0.5):
        self.short_sides, self.max_size, self.flip_prob = tuple(short_sides), max_size, flip_prob

    def __call__(
        self, image: Tensor, target: dict, generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict]:
        pick = int(torch.randint(len(self.short_sides), (1,), generator=generator))
        image, target = resize(image, target, self.short_sides[pick], self.max_size)
        if float(torch.rand((), generator=generator)) < self.flip_prob:
            image, target = hflip(image, target)
        return image, target


class EvalTransform:
    """Evaluation: the fixed resize only."""

    def __init__(self, short_side: int = 800, max_size: int = 1333):
        self.short_side, self.max_size = short_side, max_size

    def __call__(self, image: Tensor, target: dict) -> tuple[Tensor, dict]:
        return resize(image, target, self.short_side, self.max_size)


def collate(batch: list[tuple[Tensor, dict]], size_divisor: int = 32) -> tuple[Tensor, list[dict]]:
    """Stack images into ``[B, 3, H, W]``, padded at the bottom and right to a multiple of ``size_divisor``.

    Padding at the bottom-right leaves every box where it was; each target keeps its unpadded ``size``,
    which the network needs to zero the padding after normalising (pass ``[t["size"] for t in targets]``).
    """
    height = max(image.shape[1] for image, _ in batch)
    width = max(image.shape[2] for image, _ in batch)
    height, width = (math.ceil(s / size_divisor) * size_divisor for s in (height, width))
    images = batch[0][0].new_zeros((len(batch), 3, height, width))
    for i, (image, _) in enumerate(batch):
        images[i, :, : image.shape[1], : image.shape[2]] = image
    return images, [target for _, target in batch]
