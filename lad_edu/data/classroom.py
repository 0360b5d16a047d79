"""The classroom dataset: handwritten digits and shapes on noisy canvases, written in COCO's layout.

Small enough to train a detector on a laptop CPU in minutes, and built to make the assignment rules
disagree: object sides span more than 10x (6 to ~80 px on 128 px images), some scenes are crowded, some
images are empty (pure negatives). Everything follows from the seed.

Classes: the ten digits ``"0"``-``"9"`` (real 8x8 handwriting from ``sklearn.datasets.load_digits``,
stretched to the box) and ``"ellipse"``, ``"rectangle"``. Layout, as COCO's::

    ROOT/annotations/instances_train.json    ROOT/train/000000.png ...
    ROOT/annotations/instances_val.json      ROOT/val/000000.png ...

>>> import tempfile
>>> root = make_classroom_dataset(tempfile.mkdtemp(), num_train=3, num_val=2, seed=0, progress=False)
>>> sorted(p.name for p in (root / "annotations").iterdir())
['instances_train.json', 'instances_val.json']
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from lad_edu.atomic import atomic_open
from lad_edu.scenes import render

__all__ = ["CLASSES", "ClassroomConfig", "make_classroom_dataset", "sample_boxes"]

CLASSES = [str(d) for d in range(10)] + ["ellipse", "rectangle"]  # category id = index + 1


@dataclass(frozen=True)
class ClassroomConfig:
    """How the scenes are drawn (the defaults make the classroom dataset)."""

    image_size: int = 128  # square images, pixels
    min_side: float = 6.0  # smallest object side, pixels
    max_side: float = 80.0  # largest object side (>= 10x min_side)
    empty_fraction: float = 0.1  # images with no object
    crowded_fraction: float = 0.15  # images with 8-14 objects instead of 1-4


def sample_boxes(
    rng: np.random.Generator, config: ClassroomConfig
) -> list[tuple[float, float, float, float]]:
    """Boxes of one scene (xyxy): a number of objects, sides log-uniform in ``[min_side, max_side]``."""
    draw = rng.random()
    if draw < config.empty_fraction:
        return []
    crowded = draw < config.empty_fraction + config.crowded_fraction
    count = int(rng.integers(8, 15)) if crowded else int(rng.integers(1, 5))
    boxes = []
    for _ in range(count):
        side = math.exp(rng.uniform(math.log(config.min_side), math.log(config.max_side)))
        aspect = math.exp(rng.uniform(-0.5, 0.5))  # w / h within [0.6, 1.65]
        w = min(side * math.sqrt(aspect), config.image_size - 1.0)
        h = min(side / math.sqrt(aspect), config.image_size - 1.0)
        x1 = rng.uniform(0, config.image_size - w)
        y1 = rng.uniform(0, config.image_size - h)
        boxes.append((round(x1, 2), round(y1, 2), round(x1 + w, 2), round(y1 + h, 2)))
    return boxes


def _write_split(
    root: Path, split: str, num_images: int, config: ClassroomConfig, seed: int, progress: bool
) -> None:
    rng = np.random.default_rng(seed)
    (root / split).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id in tqdm(range(num_images), desc=f"classroom {split}", disable=not progress):
        boxes = sample_boxes(rng, config)
        classes = [int(rng.integers(len(CLASSES))) for _ in boxes]
        shapes = [c if c < 10 else CLASSES[c] for c in classes]  # a digit class, or the shape's name
        image = render(
            boxes, (config.image_size, config.image_size), seed=int(rng.integers(2**31)), shapes=shapes
        )
        file_name = f"{image_id:06d}.png"
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(root / split / file_name)
        images.append(
            {"id": image_id, "file_name": file_name, "width": config.image_size, "height": config.image_size}
        )
        for (x1, y1, x2, y2), c in zip(boxes, classes, strict=True):
            w, h = round(x2 - x1, 2), round(y2 - y1, 2)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": c + 1,
                    "bbox": [x1, y1, w, h],
                    "area": round(w * h, 2),
                    "iscrowd": 0,
                }
            )
    categories = [
        {"id": i + 1, "name": name, "supercategory": "digit" if i < 10 else "shape"}
        for i, name in enumerate(CLASSES)
    ]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    path = root / "annotations" / f"instances_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:  # an interrupted run leaves no half file
        json.dump(coco, f)


def make_classroom_dataset(
    root: str | os.PathLike,
    num_train: int = 400,
    num_val: int = 100,
    seed: int = 0,
    config: ClassroomConfig = ClassroomConfig(),
    progress: bool = True,
) -> Path:
    """Write the classroom dataset under ``root`` in COCO's layout; the same seed writes the same files.

    Args:
        root: the dataset folder (created).
        num_train, num_val: images per split.
        seed: the train split uses ``seed``, the val split ``seed + 1``.
        config: scene parameters.
        progress: show a tqdm bar per split.

    Returns:
        ``root`` as a ``Path``.
    """
    if num_train < 0 or num_val < 0:
        raise ValueError(f"num_train and num_val must be >= 0, got {num_train} and {num_val}")
    if config.max_side < 10 * config.min_side:
        raise ValueError(f"max_side ({config.max_side}) must be >= 10x min_side ({config.min_side})")
    root = Path(root)
    _write_split(root, "train", num_train, config, seed, progress)
    _write_split(root, "val", num_val, config, seed + 1, progress)
    return root


DEFAULT_DATA = Path("data") / "classroom"  # where the commands look for (and write) the classroom data


def data_root(data: str | os.PathLike | None, configured: str) -> str:
    """The dataset a command reads: ``data`` (``--data``) if given, else the config's ``data.root``; the
    default classroom dataset (:data:`DEFAULT_DATA`) is written there on first use."""
    if data is not None:
        return str(data)
    if Path(configured) == DEFAULT_DATA and not (DEFAULT_DATA / "annotations").is_dir():
        print(f"writing the classroom dataset to {DEFAULT_DATA} (first use)")
        make_classroom_dataset(DEFAULT_DATA)
    return configured
