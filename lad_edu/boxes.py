"""Box geometry: IoU, GIoU, centres, the centre-inside test, delta encoding, degenerate boxes.

Every box in lad_edu is ``xyxy`` (``x1, y1, x2, y2``) in input-image pixels, with no ``+1`` in widths
or areas (the MMDetection >= 2.0 convention). A box is *degenerate* when its width or height is not
positive; such a box has area 0 and IoU 0 with everything.

>>> import torch
>>> a = torch.tensor([[0., 0., 10., 10.]])
>>> b = torch.tensor([[5., 0., 15., 10.], [3., 3., 3., 8.]])   # the second box has zero width
>>> box_iou(a, b)
tensor([[0.3333, 0.0000]])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torchvision.ops
from torch import Tensor

__all__ = [
    "box_iof",
    "check_boxes",
    "box_iou",
    "box_giou",
    "aligned_box_iou",
    "aligned_box_giou",
    "box_centers",
    "centers_inside",
    "valid_box_mask",
    "DeltaXYWHCoder",
]


# helpers


def check_boxes(boxes: Tensor, name: str = "boxes") -> None:
    """Raise a ``ValueError`` unless ``boxes`` is a floating tensor of shape ``[n, 4]`` (xyxy)."""
    if not isinstance(boxes, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [n, 4] (xyxy), got {type(boxes).__name__}")
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape [n, 4] (x1, y1, x2, y2), got shape {tuple(boxes.shape)}")
    if not boxes.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor (xyxy pixels), got dtype {boxes.dtype}")


# geometry


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU of two sets of xyxy boxes.

    Args:
        boxes1: ``[N, 4]`` xyxy.
        boxes2: ``[M, 4]`` xyxy.

    Returns:
        ``[N, M]`` IoU in [0, 1]. A pair with zero union (two zero-area boxes) has IoU 0, never NaN,
        as in MMDetection's ``overlap / max(union, eps)``.
    """
    return torchvision.ops.box_iou(boxes1, boxes2).nan_to_num_(nan=0.0)


def box_giou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalised IoU (Rezatofighi et al., 2019): ``IoU - |C \\ (A ∪ B)| / |C|``.

    Args:
        boxes1: ``[N, 4]`` xyxy.
        boxes2: ``[M, 4]`` xyxy.

    Returns:
        ``[N, M]`` GIoU in [-1, 1]. Two identical zero-area boxes (empty hull) give 0, not NaN.
    """
    return torchvision.ops.generalized_box_iou(boxes1, boxes2).nan_to_num_(nan=0.0)


def box_iof(boxes1: Tensor, regions: Tensor) -> Tensor:
    """Intersection over foreground: the share of each box's area that lies inside each region.

    MMDetection's ``mode='iof'``, used to ignore anchors covered by a crowd region.

    Args:
        boxes1: ``[N, 4]`` xyxy (the anchors).
        regions: ``[M, 4]`` xyxy.

    Returns:
        ``[N, M]`` in [0, 1]; 0 for a zero-area box.

    >>> box_iof(torch.tensor([[0., 0., 10., 10.]]), torch.tensor([[5., 0., 20., 20.]]))
    tensor([[0.5000]])
    """
    top_left = torch.maximum(boxes1[:, None, :2], regions[None, :, :2])
    bottom_right = torch.minimum(boxes1[:, None, 2:], regions[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)  # [N, M]
    area = torchvision.ops.box_area(boxes1)[:, None]
    return (inter / area).nan_to_num(0.0)


def aligned_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of ``boxes1[i]`` with ``boxes2[i]``: ``[K, 4]``, ``[K, 4]`` -> ``[K]`` (0 for an empty union)."""
    wh = (torch.min(boxes1[:, 2:], boxes2[:, 2:]) - torch.max(boxes1[:, :2], boxes2[:, :2])).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = torchvision.ops.box_area(boxes1) + torchvision.ops.box_area(boxes2) - inter
    return (inter / union).nan_to_num_(nan=0.0)


def aligned_box_giou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """GIoU of box ``i`` of ``boxes1`` with box ``i`` of ``boxes2``: ``[K, 4]``, ``[K, 4]`` -> ``[K]``.

    ``1 - torchvision.ops.generalized_box_iou_loss``, whose ``eps = 1e-7`` keeps degenerate pairs finite.
    """
    return 1 - torchvision.ops.generalized_box_iou_loss(boxes1, boxes2, reduction="none")


def box_centers(boxes: Tensor) -> Tensor:
    """Box midpoints: ``[N, 4]`` xyxy -> ``[N, 2]`` (cx, cy)."""
    return (boxes[:, :2] + boxes[:, 2:]) / 2


def centers_inside(points: Tensor, boxes: Tensor, eps: float = 0.01) -> Tensor:
    """Whether points lie strictly inside boxes, by more than ``eps`` pixels on every side.

    This is ATSS's centre test: ``min(cx - x1, cy - y1, x2 - cx, y2 - cy) > eps`` with ``eps = 0.01``.
    A point on a box edge is outside; a zero-width or zero-height box contains no point.

    Args:
        points: ``[..., 2]`` (x, y).
        boxes: ``[..., 4]`` xyxy, broadcastable against ``points``; for every point against every box
            pass ``points[:, None]`` (``[N, 1, 2]``) and ``boxes[None]`` (``[1, G, 4]``).

    Returns:
        bool of the broadcast shape (``[N, G]`` in the example above).
    """
    x, y = points[..., 0], points[..., 1]
    margins = torch.stack(
        [x - boxes[..., 0], y - boxes[..., 1], boxes[..., 2] - x, boxes[..., 3] - y], dim=-1
    )
    return margins.amin(dim=-1) > eps


def valid_box_mask(boxes: Tensor, min_size: float = 0.0) -> Tensor:
    """Which boxes are usable: finite coordinates and width and height both ``> min_size``.

    Args:
        boxes: ``[N, 4]`` xyxy.
        min_size: smallest allowed side in pixels (0 keeps every box of positive area).

    Returns:
        ``[N]`` bool; False for zero-area, inverted (x2 < x1 or y2 < y1) and NaN/inf boxes.
    """
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return torch.isfinite(boxes).all(dim=1) & (widths > min_size) & (heights > min_size)


# delta encoding


@dataclass(frozen=True)
class DeltaXYWHCoder:
    """Encode a box relative to an anchor as ``(dx, dy, dw, dh)``, normalised by ``means`` and ``stds``.

    ``dx = (gx - ax) / aw``, ``dy = (gy - ay) / ah``, ``dw = log(gw / aw)``, ``dh = log(gh / ah)``, then
    ``(d - means) / stds``; centres are box midpoints and widths have no ``+1`` (MMDetection's
    ``DeltaXYWHBBoxCoder``). RetinaNet uses ``stds = (1, 1, 1, 1)``, PAA and LAD ``(0.1, 0.1, 0.2, 0.2)``.

    Decoding clamps ``dw`` and ``dh`` to ``±|log(wh_ratio_clip)|`` (±4.135 for the default 16/1000) so an
    untrained head cannot produce a box ``exp(100)`` pixels wide.

    >>> coder = DeltaXYWHCoder(stds=(0.1, 0.1, 0.2, 0.2))
    >>> anchors = torch.tensor([[0., 0., 64., 64.]])
    >>> gt = torch.tensor([[8., 4., 40., 68.]])
    >>> torch.allclose(coder.decode(anchors, coder.encode(anchors, gt)), gt)
    True
    """

    means: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    stds: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    wh_ratio_clip: float = 16 / 1000

    def encode(self, anchors: Tensor, boxes: Tensor) -> Tensor:
        """``[N, 4]`` anchors and ``[N, 4]`` target boxes (both xyxy, aligned) -> ``[N, 4]`` deltas."""
        aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
        gw, gh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        a_ctr, g_ctr = box_centers(anchors), box_centers(boxes)
        deltas = torch.stack(
            [
                (g_ctr[:, 0] - a_ctr[:, 0]) / aw,
                (g_ctr[:, 1] - a_ctr[:, 1]) / ah,
                torch.log(gw / aw),
                torch.log(gh / ah),
            ],
            dim=1,
        )
        return (deltas - deltas.new_tensor(self.means)) / deltas.new_tensor(self.stds)

    def decode(self, anchors: Tensor, deltas: Tensor, max_shape: tuple[int, int] | None = None) -> Tensor:
        """``[N, 4]`` anchors and ``[N, 4]`` deltas -> ``[N, 4]`` xyxy boxes.

        Args:
            anchors: ``[N, 4]`` xyxy.
            deltas: ``[N, 4]`` normalised ``(dx, dy, dw, dh)``.
            max_shape: optional ``(height, width)``; boxes are clipped to the image when given.
        """
        d = deltas * deltas.new_tensor(self.stds) + deltas.new_tensor(self.means)
        max_ratio = abs(math.log(self.wh_ratio_clip))
        dwh = d[:, 2:].clamp(min=-max_ratio, max=max_ratio)
        awh = anchors[:, 2:] - anchors[:, :2]
        ctr = box_centers(anchors) + awh * d[:, :2]
        half_wh = awh * dwh.exp() / 2
        boxes = torch.cat([ctr - half_wh, ctr + half_wh], dim=1)
        if max_shape is not None:
            height, width = max_shape
            boxes[:, 0::2] = boxes[:, 0::2].clamp(min=0, max=width)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(min=0, max=height)
        return boxes
