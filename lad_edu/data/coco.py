"""A detection dataset in COCO's layout, read with pycocotools, checked before it is used.

    ROOT/annotations/instances_<split>.json      ROOT/<split>/<file_name>

* Category ids may be anything (COCO's are 1..90 with gaps): they map to contiguous training labels
  ``0 .. C-1`` in increasing id order, and :attr:`CocoDetection.category_ids` maps them back.
* ``iscrowd`` boxes are returned apart (``crowd_boxes``), to be ignored in training, never as positives.
* Images without objects stay: they are pure negatives. :attr:`CocoDetection.num_objects` counts the
  usable boxes, so that a caller can warn about a split that has none.
* Wrong boxes are dropped: non-finite numbers (Python's ``json`` reads ``NaN`` and ``Infinity``), a
  negative width or height, or a box entirely outside its image (no overlap, as MMDetection's
  ``CocoDataset`` checks; only where the image's entry has ``width`` and ``height``). They are not trained
  on, and they are removed from :attr:`CocoDetection.coco`, the ground truth ``COCOeval`` reads: no
  detection can match them, so they would count as misses forever (a NaN box makes no sense as an area
  or an IoU). A box partially outside its image stays, as in MMDetection: the transforms clip it.
* Boxes with width or height below ``min_size`` (1 px) are real objects: they are not trained on, but
  they stay in the ground truth, as in COCO's own evaluation.
* Every dropped box is counted in one warning per split, per reason.
* Annotation ids numbered from 0 are renumbered from 1 (``COCOeval`` takes id 0 for "no match").
* Images are decoded to RGB uint8 from any PIL mode (:func:`_to_rgb`): 16-bit grayscale is scaled, not
  clipped to white; palette images give their palette colours; an alpha channel is dropped.

Wrong data is named, not trained on: a ``ValueError`` / ``FileNotFoundError`` with a one-line message that
starts with the file, names the entry, and says what to do.

* When the split is opened: a missing file; malformed JSON or not UTF-8; an empty ``images`` or
  ``categories`` list; an entry without an integer ``id``, or with one used twice (pycocotools would keep
  the last silently: the boxes of one image would land on another, and ``COCOeval`` would count some
  twice); an annotation pointing to an unknown image or category; a bbox that is not four numbers; an
  ``iscrowd`` other than 0 or 1; a ``width`` / ``height`` that is not a positive number; a missing image
  file.
* When an image is read: a file PIL cannot decode (truncated, not an image), or whose size differs from
  the ``width`` / ``height`` of its entry.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import reprlib
import warnings
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pycocotools.coco import COCO
from torch import Tensor
from torchvision.transforms.v2.functional import pil_to_tensor

__all__ = ["CocoDetection"]

# Why a box is dropped, in the order they are checked: a box counts under the first that applies.
NON_FINITE, NEGATIVE, OUTSIDE, SMALL = (
    "non-finite",
    "with negative width or height",
    "outside its image",
    "with width or height below {min_size:g} px",
)
REASONS = (NON_FINITE, NEGATIVE, OUTSIDE, SMALL)
# What PIL raises on a broken file, found by corrupting PNG, JPEG, GIF, BMP, TIFF, WebP and PPM files:
# OSError for a truncated file ("image file is truncated") and for a non-image (UnidentifiedImageError).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def load_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: annotation file not found; expected ROOT/annotations/instances_<split>.json "
            "(for the classroom data, run `lad-edu make-data`)"
        )
    try:
        data = json.loads(path.read_bytes())  # bytes: JSON is UTF-8 whatever the locale
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}: malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text (byte {error.start}); is it a JSON file?") from None
    if not isinstance(data, dict) or any(
        not isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise ValueError(
            f"{path}: a COCO annotation file needs the lists 'images', 'annotations' and 'categories'"
        )
    if not data["images"]:
        raise ValueError(f"{path}: the 'images' list is empty; there is nothing to train or evaluate on")
    if not data["categories"]:
        raise ValueError(f"{path}: the 'categories' list is empty; a detector needs at least one class")
    return data


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _index(path: Path, data: dict, key: str, shown: str | None = None) -> dict[int, dict]:
    """``{id: entry}`` of the list ``data[key]`` ('images', ...), whose ids must be unique integers.

    ``shown`` is the field that tells two entries with the same id apart in the message ('file_name').
    """
    index = {}
    for position, entry in enumerate(data[key]):
        if not (isinstance(entry, dict) and _is_int(entry.get("id"))):
            raise ValueError(f"{path}: '{key}'[{position}] = {reprlib.repr(entry)} needs an integer 'id'")
        first = index.setdefault(entry["id"], entry)
        if first is not entry:
            both = f" (by {first.get(shown)!r} and {entry.get(shown)!r})" if shown else ""
            raise ValueError(f"{path}: id {entry['id']} is used twice in '{key}'{both}; ids must be unique")
    return index


def _check_image(path: Path, image: dict, image_dir: Path) -> None:
    where = f"{path}: image {image['id']}"
    if not isinstance(image.get("file_name"), str):
        raise ValueError(f"{where} has file_name {image.get('file_name')!r}; expected a file name")
    for key in ("width", "height"):
        if key in image and not (_is_number(image[key]) and 0 < image[key] < math.inf):
            raise ValueError(f"{where} has {key} {image[key]!r}; expected a positive number of pixels")
    if not (image_dir / image["file_name"]).is_file():
        raise FileNotFoundError(f"{where} refers to {image_dir / image['file_name']}, which is missing")


def _check_annotation(path: Path, ann: dict, images: dict, categories: dict) -> None:
    where = f"{path}: annotation {ann['id']}"
    image_id, category_id, bbox = ann.get("image_id"), ann.get("category_id"), ann.get("bbox")
    if not (_is_int(image_id) and image_id in images):
        raise ValueError(f"{where} points to image {image_id!r}, which is not in 'images'")
    if not (_is_int(category_id) and category_id in categories):
        raise ValueError(f"{where} has category {category_id!r}, which is not in 'categories'")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        raise ValueError(f"{where} has bbox {bbox!r}; expected [x, y, width, height] numbers")
    if ann.get("iscrowd", 0) not in (0, 1):
        raise ValueError(f"{where} has iscrowd {ann['iscrowd']!r}; expected 0 or 1")


def _validate(path: Path, data: dict, image_dir: Path) -> dict[int, dict]:
    """Check every entry the dataset relies on, naming the first bad one; returns the images by id."""
    images = _index(path, data, "images", shown="file_name")
    categories = _index(path, data, "categories", shown="name")
    _index(path, data, "annotations")  # pycocotools and COCOeval key on annotation ids too
    for image in images.values():
        _check_image(path, image, image_dir)
    for category in categories.values():
        if not isinstance(category.get("name"), str):
            raise ValueError(f"{path}: category {category['id']} needs a 'name' string")
    for ann in data["annotations"]:
        _check_annotation(path, ann, images, categories)
    return images


def drop_reason(bbox: list, image: dict, min_size: float) -> str | None:
    """Why the box ``[x, y, w, h]`` of ``image`` is not trained on (one of the reasons above), or None."""
    x, y, w, h = bbox
    if not all(math.isfinite(v) for v in bbox):
        return NON_FINITE
    if w < 0 or h < 0:
        return NEGATIVE
    if {"width", "height"} <= image.keys() and (
        x >= image["width"] or y >= image["height"] or x + w <= 0 or y + h <= 0
    ):
        return OUTSIDE
    if min(w, h) < min_size:
        return SMALL
    return None


def _dropped_message(path: Path, reasons: Iterable[str], min_size: float) -> str:
    """The one warning of a split: how many boxes are dropped, per reason."""
    counts = Counter(reasons)
    parts = ", ".join(f"{counts[r]} {r.format(min_size=min_size)}" for r in REASONS if counts[r])
    total = counts.total()
    return f"{path}: dropped {total} {'box' if total == 1 else 'boxes'}: {parts}"


def _to_rgb(im: Image.Image) -> Tensor:
    """The decoded image ``im`` as ``[3, H, W]`` uint8 RGB, from any PIL mode.

    * Integer grayscale wider than 8 bits: ``I;16``, ``I;16B``, ... and 32-bit ``I`` (how PIL reads 16-bit
      PNG and TIFF files) are taken in ``0 .. 65535`` (values outside are clipped) and mapped to the nearest
      8-bit value, ``(v + 128) // 257``: the exact inverse of the usual widening ``v * 257``. (PIL's own
      ``convert`` clips them to 255, which makes a 16-bit image all white.)
    * Float ``F`` is taken in ``[0, 1]``, the convention of float images (torchvision, scikit-image):
      ``round(255 v)``, clipped; NaN becomes 0.
    * Every other mode goes through PIL's ``convert("RGB")``: a palette image gives its palette colours,
      ``1`` gives 0 / 255, ``CMYK`` is converted naively, and an alpha channel or a transparent colour is
      dropped, keeping the colours under it (as OpenCV's and torchvision's RGB decoding do).
    """
    if im.mode.startswith("I") or im.mode == "F":
        values = np.asarray(im)
        if im.mode == "F":
            gray = np.clip(np.rint(np.nan_to_num(values) * 255), 0, 255)
        else:
            gray = (np.clip(values.astype(np.int64), 0, 65535) + 128) // 257
        return torch.from_numpy(gray.astype(np.uint8)).expand(3, *gray.shape).contiguous()
    if "transparency" in im.info:  # through RGBA: PIL warns when it drops a transparent palette directly
        im = im.convert("RGBA")
    return pil_to_tensor(im.convert("RGB"))


class CocoDetection(torch.utils.data.Dataset):
    """Images and boxes of one split of a COCO-layout dataset.

    Args:
        root: the dataset folder (``ROOT`` above).
        split: ``"train2017"``, ``"val2017"``, ``"train"``, ...
        min_size: boxes whose width or height is below this (pixels) are not trained on.

    Item ``i`` is ``(image [3, H, W] uint8, target)`` with ``target`` holding ``boxes [G, 4]`` xyxy float32,
    ``labels [G]`` long (contiguous), ``crowd_boxes [K, 4]``, ``image_id`` and ``size`` ``(H, W)``.

    Attributes:
        coco: the pycocotools ``COCO`` of the split, without the wrong boxes (the evaluation's ground truth).
        num_objects: how many boxes are trained on, crowd boxes left out (0: the split has nothing to learn
            or to measure).
    """

    def __init__(self, root: str | Path, split: str, min_size: float = 1.0):
        self.root = Path(root)
        self.split = split
        self.image_dir = self.root / split
        self.annotation_file = self.root / "annotations" / f"instances_{split}.json"
        self.min_size = min_size
        data = load_json(self.annotation_file)
        images = _validate(self.annotation_file, data, self.image_dir)
        if any(a["id"] == 0 for a in data["annotations"]):
            # COCOeval stores a match as the GT's id, so a GT with id 0 could never be found (some export
            # tools number from 0). The ids are internal to the reader and COCOeval: number them from 1.
            data["annotations"] = [{**a, "id": i} for i, a in enumerate(data["annotations"], start=1)]
        dropped = {  # annotation id -> why
            a["id"]: why
            for a in data["annotations"]
            if (why := drop_reason(a["bbox"], images[a["image_id"]], min_size))
        }
        if dropped:
            warnings.warn(_dropped_message(self.annotation_file, dropped.values(), min_size), stacklevel=2)
        # Boxes too small stay in the ground truth but are not trained on; wrong boxes leave it.
        self._too_small = {i for i, why in dropped.items() if why == SMALL}
        wrong = dropped.keys() - self._too_small
        data["annotations"] = [a for a in data["annotations"] if a["id"] not in wrong]
        self.num_objects = sum(
            1 for a in data["annotations"] if a["id"] not in dropped and not a.get("iscrowd", 0)
        )
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
            self.coco = COCO()
            self.coco.dataset = data
            self.coco.createIndex()
        self.image_ids = sorted(self.coco.imgs)
        self.category_ids = sorted(self.coco.cats)  # label k <-> category id category_ids[k]
        self.category_names = [self.coco.cats[c]["name"] for c in self.category_ids]
        self._label_of = {c: k for k, c in enumerate(self.category_ids)}

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        image_id = self.image_ids[index]
        image = self._read_image(self.coco.imgs[image_id])
        boxes, labels, crowd = [], [], []
        for ann in self.coco.imgToAnns.get(image_id, []):
            if ann["id"] in self._too_small:
                continue
            x, y, w, h = ann["bbox"]
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

    def _read_image(self, info: dict) -> Tensor:
        """The image of entry ``info``, ``[3, H, W]`` uint8, or a one-line ``ValueError`` naming the file."""
        path = self.image_dir / info["file_name"]
        where = f"{path}: image {info['id']}"
        try:
            with Image.open(path) as im:
                im.load()  # PIL opens lazily: decode now, so that a truncated file fails inside the try
                image = _to_rgb(im)
        except DECODE_ERRORS as error:
            reason = "not an image PIL can read" if isinstance(error, UnidentifiedImageError) else error
            reason = " ".join(str(reason).split()) or type(error).__name__
            raise ValueError(
                f"{where} cannot be read ({reason}); replace the file, or remove the image from "
                f"{self.annotation_file.name}"
            ) from None
        height, width = image.shape[1:]
        if {"width", "height"} <= info.keys() and (width, height) != (info["width"], info["height"]):
            raise ValueError(
                f"{where} is {width}x{height} pixels, but {self.annotation_file.name} says "
                f"{info['width']}x{info['height']}; correct its 'width' and 'height'"
            )
        return image

    def category_id(self, label: int) -> int:
        """The original category id of contiguous training label ``label`` (for COCO results files)."""
        return self.category_ids[label]
