"""Classroom-style pictures: handwritten digits and simple shapes on a noisy canvas, for boxes you choose.

The notebooks need an image to draw anchors on, and the demo needs objects whose sizes make the
assignment rules disagree. :data:`DEMO_SCENE` lists such objects (a dot, a thin bar, overlapping squares,
...); :func:`render` paints any list of boxes: a real 8x8 digit from ``sklearn.datasets.load_digits``
(shipped with scikit-learn, no download) stretched to the box, or a filled ellipse or rectangle.

>>> image = render([(10.0, 10.0, 40.0, 50.0)], image_size=(64, 64), seed=0)
>>> image.shape, image.dtype
(torch.Size([3, 64, 64]), torch.uint8)
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import Tensor

__all__ = ["DEMO_IMAGE_SIZE", "DEMO_SCENE", "demo_scene", "render"]

DEMO_IMAGE_SIZE = (320, 320)  # (height, width)

# (name, xyxy box): from a 5 px dot to a 200 px object, with an elongated one and an overlapping pair
DEMO_SCENE = [
    ("dot", (146.0, 26.0, 151.0, 31.0)),  # no multiple of 8 inside: no anchor centre
    ("small digit", (20.0, 20.0, 40.0, 44.0)),
    ("digit", (60.0, 70.0, 108.0, 130.0)),
    ("thin bar", (130.0, 90.0, 290.0, 102.0)),
    ("square", (180.0, 150.0, 260.0, 230.0)),
    ("overlapping", (210.0, 180.0, 300.0, 290.0)),
    ("big shape", (10.0, 150.0, 210.0, 310.0)),
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
