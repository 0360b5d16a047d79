"""A detection dataset in COCO's layout, read with pycocotools, checked before it is used.

    ROOT/annotations/instances_<split>.json      ROOT/<split>/<file_name>

* Category ids may be anything (COCO's are 1..90 with gaps): they map to contiguous training labels
  ``0 .. C-1`` in increasing id order, and :attr:`CocoDetection.category_ids` maps them back.
* ``iscrowd`` boxes are returned apart (``crowd_boxes``), to be ignored in training, never as positives.
* Images without objects stay: they are pure negatives.
* Boxes with width or height below ``min_size`` (1 px) are dropped, and counted in one warning.
* A missing file, malformed JSON, an annotation pointing to an unknown image or category, or a malformed
  box raises a ``ValueError`` / ``FileNotFoundError`` naming the file and the entry.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import torch
from PIL import Image
from pycocotools.coco import COCO
from torch import Tensor
from torchvision.transforms.v2.functional import pil_to_tensor

__all__ = ["CocoDetection"]


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: annotation file not found; expected ROOT/annotations/instances_<split>.json "
            "(for the classroom data, run `lad-edu make-data`)"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}: malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None
    if not isinstance(data, dict) or any(
        not isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise ValueError(
            f"{path}: a COCO annotation file needs the lists 'images', 'annotations' and 'categories'"
        )
    return data


def _validate(path: Path, data: dict, image_dir: Path) -> None:
    """Check every entry the dataset relies on, naming the first bad one."""
    image_ids = set()
    for image in data["images"]:
        if not {"id", "file_name"} <= image.keys():
            raise ValueError(f"{path}: image entry {image} needs 'id' and 'file_name'")
        image_ids.add(image["id"])
        if not (image_dir / image["file_name"]).is_file():
            raise FileNotFoundError(
                f"{path}: image {image['id']} refers to {image_dir / image['file_name']}, which is missing"
            )
    category_ids = {c["id"] for c in data["categories"]}
    for ann in data["annotations"]:
        where = f"{path}: annotation {ann.get('id', '?')}"
        if ann.get("image_id") not in image_ids:
            raise ValueError(f"{where} points to image {ann.get('image_id')!r}, which is not in 'images'")
        if ann.get("category_id") not in category_ids:
            raise ValueError(f"{where} has category {ann.get('category_id')!r}, which is not in 'categories'")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox)):
            raise ValueError(f"{where} has bbox {bbox!r}; expected [x, y, width, height] numbers")


class CocoDetection(torch.utils.data.Dataset):
    """Images and boxes of one split of a COCO-layout dataset.

    Args:
        root: the dataset folder (``ROOT`` above).
        split: ``"train2017"``, ``"val2017"``, ``"train"``, ...
        min_size: boxes whose width or height is below this (pixels) are dropped.

    Item ``i`` is ``(image [3, H, W] uint8, target)`` with ``target`` holding ``boxes [G, 4]`` xyxy float32,
    ``labels [G]`` long (contiguous), ``crowd_boxes [K, 4]``, ``image_id`` and ``size`` ``(H, W)``.
    """

    def __init__(self, root: str | Path, split: str, min_size: float = 1.0):
        self.root = Path(root)
        self.split = split
        self.image_dir = self.root / split
        self.annotation_file = self.root / "annotations" / f"instances_{split}.json"
        data = _load_json(self.annotation_file)
        _validate(self.annotation_file, data, self.image_dir)
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
            self.coco = COCO()
            self.coco.dataset = data
            self.coco.createIndex()
        self.image_ids = sorted(self.coco.imgs)
        self.category_ids = sorted(self.coco.cats)  # label k <-> category id category_ids[k]
        self.category_names = [self.coco.cats[c]["name"] for c in self.category_ids]
        self._label_of = {c: k for k, c in enumerate(self.category_ids)}
        self.min_size = min_size
        small = sum(1 for a in data["annotations"] if min(a["bbox"][2:]) < min_size)
        if small:
            warnings.warn(
                f"{self.annotation_file}: {small} boxes with width or height < {min_size} px are dropped",
                stacklevel=2,
            )

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        with Image.open(self.image_dir / info["file_name"]) as im:
            image = pil_to_tensor(im.convert("RGB"))
        boxes, labels, crowd = [], [], []
        for ann in self.coco.imgToAnns.get(image_id, []):
            x, y, w, h = ann["bbox"]
            if min(w, h) < self.min_size:
                continue
            if ann.get("iscrowd", 0):
                crowd.append([x, y, x + w, y + h])
            else:
                boxes.append([x, y, x + w, y + h])
                labels.append(self._label_of[ann["category_id"]])
        target = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.long),
            "crowd_boxes": torch.tensor(crowd, dtype=torch.float32).reshape(-1, 4),
            "image_id": image_id,
            "size": tuple(image.shape[1:]),
        }
        return image, target

    def category_id(self, label: int) -> int:
        """The original category id of contiguous training label ``label`` (for COCO results files)."""
        return self.category_ids[label]
