"""Classroom-style pictures: handwritten digits and simple shapes on a noisy canvas, for boxes you choose.

The notebooks need an image to draw anchors on, and the demo needs objects whose sizes make the
assignment rules disagree. :data:`DEMO_SCENE` lists such objects (a dot, a thin bar, five digits from 20 to
200 px, two of them overlapping); :func:`render` paints any list of boxes: a real 8x8 digit from
``sklearn.datasets.load_digits`` (shipped with scikit-learn, no download) stretched to the box, or a filled
ellipse or rectangle. PAA's cost needs a network's predictions: :func:`constructed_predictions` builds
those of a detector of any quality, without a network.

>>> image = render([(10.0, 10.0, 40.0, 50.0)], image_size=(64, 64), seed=0)
>>> image.shape, image.dtype
(torch.Size([3, 64, 64]), torch.uint8)
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import Tensor

from lad_edu.boxes import DeltaXYWHCoder, box_iou

__all__ = ["DEMO_IMAGE_SIZE", "DEMO_SCENE", "constructed_predictions", "demo_scene", "render"]

DEMO_IMAGE_SIZE = (320, 320)  # (height, width)

# (name, xyxy box): from a 5 px dot to a 200 px digit, with an elongated bar and two overlapping digits;
# demo_scene paints the dot as an ellipse, the bar as a rectangle and every other object as a digit
DEMO_SCENE = [
    ("dot", (146.0, 26.0, 151.0, 31.0)),  # no multiple of 8 inside: no anchor centre
    ("small digit", (20.0, 20.0, 40.0, 44.0)),
    ("digit", (60.0, 70.0, 108.0, 130.0)),
    ("thin bar", (130.0, 90.0, 290.0, 102.0)),
    ("square digit", (180.0, 150.0, 260.0, 230.0)),
    ("overlapping digit", (210.0, 180.0, 300.0, 290.0)),  # covers a third of the square digit
    ("large digit", (10.0, 150.0, 210.0, 310.0)),
]

SHAPES = ("digit", "ellipse", "rectangle")


def render(
    boxes: list[tuple[float, float, float, float]] | Tensor,
    image_size: tuple[int, int],
    seed: int = 0,
    shapes: list[str | int] | None = None,
) -> Tensor:
    """Paint one object per box on a grey, noisy canvas.

    Args:
        boxes: ``[G, 4]`` xyxy pixels.
        image_size: ``(height, width)``.
        seed: for the noise, the colours, the digits chosen and (when ``shapes`` is None) the shapes.
        shapes: per box one of ``"digit"`` (a random one), ``"ellipse"``, ``"rectangle"``, or an int 0-9 for
            a handwritten digit of that class; random by default.

    Returns:
        ``[3, H, W]`` uint8 image.
    """
    rng = np.random.default_rng(seed)
    height, width = image_size
    canvas = 0.5 + 0.06 * rng.standard_normal((height, width, 3))
    dataset = load_digits()
    digits, digit_classes = dataset.images / 16.0, dataset.target  # [1797, 8, 8] in [0, 1], [1797]
    boxes = [tuple(float(v) for v in box) for box in (boxes.tolist() if isinstance(boxes, Tensor) else boxes)]
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        shape = shapes[i] if shapes is not None else SHAPES[rng.integers(len(SHAPES))]
        if shape not in SHAPES and shape not in range(10):
            raise ValueError(f"shapes[{i}] must be one of {SHAPES} or a digit 0-9, got {shape!r}")
        colour = rng.uniform(0.0, 1.0, 3)
        c1, r1 = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
        c2, r2 = min(int(np.ceil(x2)), width), min(int(np.ceil(y2)), height)
        if c2 <= c1 or r2 <= r1:
            continue  # a box outside the canvas or of zero area paints nothing
        ys, xs = np.mgrid[r1:r2, c1:c2]
        u = (xs + 0.5 - x1) / max(x2 - x1, 1e-6)  # position inside the box, [0, 1]
        v = (ys + 0.5 - y1) / max(y2 - y1, 1e-6)
        if shape == "digit" or isinstance(shape, int):
            pool = np.arange(len(digits)) if shape == "digit" else np.flatnonzero(digit_classes == shape)
            glyph = digits[pool[rng.integers(len(pool))]]  # for "digit": the same draw as before
            alpha = glyph[np.clip((v * 8).astype(int), 0, 7), np.clip((u * 8).astype(int), 0, 7)]
        elif shape == "ellipse":
            alpha = (((u - 0.5) ** 2 + (v - 0.5) ** 2) <= 0.25).astype(float)
        else:
            alpha = np.ones_like(u)
        patch = canvas[r1:r2, c1:c2]
        canvas[r1:r2, c1:c2] = patch * (1 - alpha[..., None]) + colour * alpha[..., None]
    image = np.clip(canvas * 255, 0, 255).astype(np.uint8)
    return torch.from_numpy(image).permute(2, 0, 1).contiguous()


def demo_scene(seed: int = 0) -> tuple[Tensor, Tensor, Tensor, list[str]]:
    """The demo's objects painted: ``image [3, H, W]``, ``gt_boxes [G, 4]``, ``gt_labels [G]``, names."""
    names = [name for name, _ in DEMO_SCENE]
    gt_boxes = torch.tensor([box for _, box in DEMO_SCENE])
    shapes = ["ellipse" if name == "dot" else "rectangle" if "bar" in name else "digit" for name in names]
    image = render(gt_boxes, DEMO_IMAGE_SIZE, seed=seed, shapes=shapes)
    return image, gt_boxes, torch.arange(len(names)), names


# constructed predictions: how far a box moves towards its GT and how confident its class gets, per quality
PAA_CODER = DeltaXYWHCoder(stds=(0.1, 0.1, 0.2, 0.2))  # PAA's and LAD's box coder
BACKGROUND_LOGIT = -4.0  # every class starts unlikely: sigmoid(-4) = 0.018


def constructed_predictions(
    anchors: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    *,
    quality: float = 0.5,
    seed: int = 0,
    num_classes: int = 80,
) -> tuple[Tensor, Tensor]:
    """What a detector of a given ``quality`` predicts at every anchor, constructed without a network.

    PAA's cost (eq. 2) scores a network's predictions; these stand in for them. Each anchor looks at the GT
    it overlaps most (IoU ``u``) and blends that GT's ideal box and class with seeded noise of scale
    ``s = 2 (1 - quality)``:

    * box: ``min(1, quality (0.6 + u))`` of the way towards the GT box, plus ``s`` times Gaussian noise
      (both as :class:`~lad_edu.boxes.DeltaXYWHCoder` deltas with PAA's stds ``(0.1, 0.1, 0.2, 0.2)``);
    * class logits: ``-4`` plus ``s`` times noise for every class, and ``16 quality u`` (plus noise) more
      for the GT's class: the better the anchor sits on an object, the surer it is.

    ``quality = 0`` is an untrained network (boxes stay on their anchors, scores are noise), ``0.5`` a
    partly trained one (notebook 03), ``1`` a sharp one: noise-free, and every anchor with ``u >= 0.4``
    predicts its GT's box exactly.

    Args:
        anchors: ``[N, 4]`` xyxy.
        gt_boxes: ``[G, 4]`` xyxy (``G = 0``: every anchor predicts its own box, and background).
        gt_labels: ``[G]`` class ids in ``[0, num_classes)``.
        quality: in ``[0, 1]``.
        seed: for the noise (same seed, same predictions).
        num_classes: the classifier's width ``C``.

    Returns:
        ``cls_logits [N, C]`` and ``pred_boxes [N, 4]`` xyxy.

    >>> anchors = torch.tensor([[0.0, 0.0, 64.0, 64.0]])
    >>> _, boxes = constructed_predictions(anchors, torch.tensor([[8.0, 8.0, 56.0, 56.0]]), torch.tensor([0]),
    ...                                    quality=1.0)
    >>> boxes
    tensor([[ 8.,  8., 56., 56.]])
    """
    if not 0.0 <= quality <= 1.0:
        raise ValueError(f"quality must lie in [0, 1] (0: untrained, 1: sharp), got {quality}")
    g = torch.Generator().manual_seed(seed)
    n, noise = len(anchors), 2.0 * (1.0 - quality)
    if len(gt_boxes):
        best_iou, best_gt = box_iou(anchors, gt_boxes).max(dim=1)  # [N]: the GT each anchor overlaps most
        to_gt = PAA_CODER.encode(anchors, gt_boxes[best_gt])  # [N, 4]: the deltas that would hit it exactly
    else:
        best_iou, to_gt = anchors.new_zeros(n), anchors.new_zeros(n, 4)  # no GT: stay on the anchor
    pull = (quality * (0.6 + best_iou)).clamp(max=1.0)  # [N]: the share of the way towards the GT
    deltas = to_gt * pull[:, None] + noise * torch.randn(n, 4, generator=g)
    cls_logits = noise * torch.randn(n, num_classes, generator=g) + BACKGROUND_LOGIT
    if len(gt_boxes):  # the GT's class gains confidence with the IoU
        bonus = 16.0 * quality * best_iou + noise * torch.randn(n, generator=g)
        cls_logits[torch.arange(n), gt_labels[best_gt]] += bonus
    return cls_logits, PAA_CODER.decode(anchors, deltas)
