"""Is a dataset ready to train on? Open every split with the COCO reader and count what it would train on.

    ROOT/annotations/instances_<split>.json      ROOT/<split>/<file_name>

:func:`check_dataset` opens each split with :class:`~lad_edu.data.coco.CocoDetection`, so a dataset passes
exactly when training would accept it, and fails with the reader's one-line error (a missing annotation
file, a missing image file, a duplicate id, ...). What the reader accepts but a user should know is
counted in a :class:`SplitReport`: boxes it drops and why, images without an object, crowd boxes, and
category ids that are not ``1 .. C`` (they map to labels ``0 .. C-1`` in increasing id order).

>>> import tempfile
>>> from lad_edu.data.classroom import make_classroom_dataset
>>> with tempfile.TemporaryDirectory() as folder:
...     report = check_dataset(make_classroom_dataset(folder, 4, 2, progress=False))
>>> for split in report.splits:
...     print(split.summary())
train: 4 images, 11 boxes (11 trained on), 12 categories (ids 1..12), 0 images without objects
val: 2 images, 5 boxes (5 trained on), 12 categories (ids 1..12), 0 images without objects
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lad_edu.data.coco import REASONS, SMALL, CocoDetection, drop_reason, load_json

__all__ = ["DatasetReport", "SplitReport", "check_dataset", "find_splits"]


@dataclass
class SplitReport:
    """What the reader makes of one split.

    ``dropped`` counts the boxes not trained on, by the reader's reason (``"outside its image"``, ...;
    boxes below ``min_size`` pixels stay in the evaluation's ground truth). ``objects`` are the boxes
    trained on, crowd boxes left out.
    """

    split: str
    annotation_file: Path
    images: int
    boxes: int  # every entry of 'annotations'
    objects: int  # boxes trained on (CocoDetection.num_objects)
    crowd: int  # iscrowd boxes: ignored regions, never positives
    category_ids: list[int]
    images_without_objects: int
    min_size: float = 1.0
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def contiguous(self) -> bool:
        """Whether the category ids are ``1 .. C`` (COCO's are not: 80 ids from 1 to 90)."""
        return self.category_ids == list(range(1, len(self.category_ids) + 1))

    def summary(self) -> str:
        """One line: images, boxes, categories, images without objects."""
        ids = f"ids {self.category_ids[0]}..{self.category_ids[-1]}"
        if not self.contiguous:
            ids += f" with gaps, mapped to labels 0..{len(self.category_ids) - 1} in id order"
        return (
            f"{self.split}: {self.images} images, {self.boxes} boxes ({self.objects} trained on), "
            f"{len(self.category_ids)} categories ({ids}), "
            f"{self.images_without_objects} images without objects"
        )

    def lines(self) -> list[str]:
        """The summary, then one indented line per crowd count and drop reason that occurs."""
        out = [self.summary()]
        if self.crowd:
            out.append(f"  {self.crowd} crowd boxes (ignored regions)")
        for reason, count in self.dropped.items():
            kept = " (kept for evaluation)" if reason == SMALL.format(min_size=self.min_size) else ""
            out.append(f"  {count} boxes not trained on: {reason}{kept}")
        return out


@dataclass
class DatasetReport:
    """One :class:`SplitReport` per split of ``root``."""

    root: Path
    splits: list[SplitReport]

    def __str__(self) -> str:
        lines = [
            f"{self.root}: {len(self.splits)} splits, the same {len(self.splits[0].category_ids)} categories"
        ]
        return "\n".join(lines + [line for split in self.splits for line in split.lines()])


def find_splits(root: str | Path) -> list[str]:
    """The splits of ``root``: one per ``annotations/instances_<split>.json``, in name order.

    Raises:
        FileNotFoundError: naming ``root/annotations`` when it holds no such file.
    """
    folder = Path(root) / "annotations"
    splits = sorted(p.stem.removeprefix("instances_") for p in folder.glob("instances_*.json"))
    if not splits:
        raise FileNotFoundError(
            f"{folder}: no instances_<split>.json found; expected the COCO layout "
            "ROOT/annotations/instances_<split>.json with images in ROOT/<split>/"
        )
    return splits


def _split_report(root: Path, split: str, min_size: float) -> SplitReport:
    """Open ``split`` with the reader (its errors propagate), then count from its annotation file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reader's "dropped N boxes" warning: counted below instead
        dataset = CocoDetection(root, split, min_size=min_size)
    data = load_json(dataset.annotation_file)  # every box, also those the reader removed
    images = {image["id"]: image for image in data["images"]}
    reasons = {a["id"]: drop_reason(a["bbox"], images[a["image_id"]], min_size) for a in data["annotations"]}
    counts = Counter(reasons.values())
    with_objects = {
        a["image_id"] for a in data["annotations"] if reasons[a["id"]] is None and not a.get("iscrowd", 0)
    }
    return SplitReport(
        split=split,
        annotation_file=dataset.annotation_file,
        images=len(dataset),
        boxes=len(data["annotations"]),
        objects=dataset.num_objects,
        crowd=sum(1 for a in data["annotations"] if a.get("iscrowd", 0)),
        category_ids=list(dataset.category_ids),
        images_without_objects=len(images.keys() - with_objects),
        min_size=min_size,
        dropped={reason.format(min_size=min_size): counts[reason] for reason in REASONS if counts[reason]},
    )


def check_dataset(
    root: str | Path, *, splits: tuple[str, ...] | None = None, min_size: float = 1.0
) -> DatasetReport:
    """Open every split of ``root`` as training would and report what it holds.

    Args:
        root: the dataset folder (``ROOT`` in the module docstring).
        splits: the splits to check (``("train2017", "val2017")``); None: every annotation file found
            (:func:`find_splits`).
        min_size: the reader's ``min_size`` (``data.min_box_size``): boxes narrower or lower are not
            trained on.

    Raises:
        FileNotFoundError / ValueError: the reader's one-line error for the first problem found (a missing
            annotation or image file, malformed JSON, a duplicate id, ...); a ``ValueError`` naming both
            files when two splits list different categories (a detector needs one label set).
    """
    root = Path(root)
    reports = [_split_report(root, split, min_size) for split in (splits or find_splits(root))]
    first = reports[0]
    for other in reports[1:]:
        if other.category_ids != first.category_ids:
            raise ValueError(
                f"{first.annotation_file} and {other.annotation_file} list different categories "
                f"({first.category_ids} vs {other.category_ids}); a detector needs one label set"
            )
    return DatasetReport(root, reports)
