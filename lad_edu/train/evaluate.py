"""COCO box evaluation with pycocotools: detections -> results JSON -> the 12 numbers of ``COCOeval``.

The flow follows torchvision's ``references/detection/coco_eval.py``, without its distributed gathering:

1. :func:`to_coco_results` turns one image's detections (``[K, 4]`` xyxy in *input* pixels, contiguous
   labels) into COCO's results format: boxes back in *original* image pixels, ``[x, y, w, h]``, and the
   dataset's own category ids (COCO's are 1..90 with gaps; a results file with training labels in their
   place evaluates silently and wrongly, so :func:`coco_evaluate` refuses unknown category ids).
2. :func:`coco_evaluate` runs ``COCOeval(coco_gt, coco_dt, "bbox")`` and returns the 12 numbers of
   ``COCOeval.stats`` by name (:data:`COCO_STAT_NAMES`), optionally writing ``detections.json`` and
   ``coco_stats.json``.
3. :func:`format_stats` prints them as pycocotools' ``summarize()`` does.

Where pycocotools stumbles, we decide, and the decision is the one pycocotools itself would make:

* An **empty results list** makes ``COCO.loadRes([])`` fail (it reads ``anns[0]``). We evaluate an
  empty detection set instead, which is what pycocotools would report if it accepted one: ``0.0`` for
  every number that has ground truth to find (AP and AR of a detector that finds nothing), ``-1.0``
  where there is none (e.g. ``APl`` when no GT box is large).
* A ground truth with **no annotations at all** evaluates, as in pycocotools, to ``-1.0`` everywhere:
  ``-1`` is pycocotools' "nothing to measure", not a score.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor

from lad_edu.atomic import atomic_open

__all__ = ["COCO_STAT_NAMES", "to_coco_results", "coco_evaluate", "format_stats"]

# The 12 entries of COCOeval.stats for boxes, in order (pycocotools cocoeval.py, summarize()).
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

# How each of them is computed: (AP or AR, IoU threshold or None for 0.50:0.95, area range, max detections).
_STAT_SETTINGS = (
    ("AP", None, "all", 100),
    ("AP", 0.5, "all", 100),
    ("AP", 0.75, "all", 100),
    ("AP", None, "small", 100),
    ("AP", None, "medium", 100),
    ("AP", None, "large", 100),
    ("AR", None, "all", 1),
    ("AR", None, "all", 10),
    ("AR", None, "all", 100),
    ("AR", None, "small", 100),
    ("AR", None, "medium", 100),
    ("AR", None, "large", 100),
)

# Precision of the results file (torchvision's coco_eval.py keeps full floats): 1/100 pixel and 1e-5 in
# score keep the file small; the rounding is far below the IoU steps (0.05) AP is measured at.
BOX_DECIMALS = 2
SCORE_DECIMALS = 5


def to_coco_results(
    image_id: int,
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    category_ids: Sequence[int],
    scale: float | tuple[float, float] = 1.0,
) -> list[dict]:
    """One image's detections in COCO's results format, in the original image's pixels.

    Args:
        image_id: the COCO image id (``target["image_id"]``).
        boxes: ``[K, 4]`` xyxy in the pixels the model saw (after resizing).
        scores: ``[K]`` confidences.
        labels: ``[K]`` contiguous training labels ``0 .. C-1``.
        category_ids: label ``k`` -> original category id ``category_ids[k]``
            (:attr:`lad_edu.data.CocoDetection.category_ids`).
        scale: the resize factor the transform recorded, one number or ``(w, h)``
            (``target["scale_factor"]``); boxes are divided by it. 1.0 when the boxes are already in the
            original pixels (``Detector.predict(..., scale_factors=...)``).

    Returns:
        ``K`` dicts ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` of python numbers.

    >>> to_coco_results(42, torch.tensor([[10.0, 20.0, 50.0, 80.0]]), torch.tensor([0.9]),
    ...                 torch.tensor([1]), category_ids=[3, 7], scale=2.0)
    [{'image_id': 42, 'category_id': 7, 'bbox': [5.0, 10.0, 20.0, 30.0], 'score': 0.9}]
    """
    if not (boxes.ndim == 2 and boxes.shape[1] == 4 and len(scores) == len(labels) == len(boxes)):
        raise ValueError(
            f"expected boxes [K, 4], scores [K], labels [K]; got {tuple(boxes.shape)}, "
            f"{tuple(scores.shape)}, {tuple(labels.shape)}"
        )
    scale_w, scale_h = (scale, scale) if isinstance(scale, int | float) else scale
    boxes = boxes.detach().double().cpu() / torch.tensor([scale_w, scale_h, scale_w, scale_h]).double()
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)
    return [
        {
            "image_id": int(image_id),
            "category_id": int(category_ids[label]),
            "bbox": [round(v, BOX_DECIMALS) for v in box],
            "score": round(score, SCORE_DECIMALS),
        }
        for box, score, label in zip(
            xywh.tolist(), scores.detach().double().cpu().tolist(), labels.tolist(), strict=True
        )
    ]


def _check(coco_gt: COCO, results: list[dict]) -> None:
    """Refuse what pycocotools would crash on deep inside, or evaluate silently and wrongly."""
    for ann in coco_gt.anns.values():
        if not {"area", "iscrowd"} <= ann.keys():
            raise ValueError(f"ground-truth annotation {ann.get('id', '?')} needs 'area' and 'iscrowd'")
    unknown_images = {r["image_id"] for r in results} - set(coco_gt.imgs)
    if unknown_images:
        raise ValueError(f"results refer to images not in the ground truth: {sorted(unknown_images)[:10]}")
    unknown_categories = {r["category_id"] for r in results} - set(coco_gt.cats)
    if unknown_categories:
        raise ValueError(
            f"results use category ids {sorted(unknown_categories)} that the ground truth does not have "
            f"({sorted(coco_gt.cats)}); map contiguous labels back with category_ids"
        )


def _load_results(coco_gt: COCO, results: list[dict]) -> COCO:
    """``coco_gt.loadRes(results)``, also for an empty list (a detection set with no detections)."""
    if results:
        # loadRes adds keys ('area', 'id', 'iscrowd', 'segmentation') to the dicts: give it copies.
        return coco_gt.loadRes([dict(r) for r in results])
    coco_dt = COCO()
    coco_dt.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": list(coco_gt.dataset["categories"]),
        "annotations": [],
    }
    coco_dt.createIndex()
    return coco_dt


def coco_evaluate(
    coco_gt: COCO,
    results: list[dict],
    out_dir: str | Path | None = None,
    image_ids: Sequence[int] | None = None,
) -> dict[str, float]:
    """Box AP and AR of ``results`` against ``coco_gt``, as pycocotools' ``COCOeval`` computes them.

    Args:
        coco_gt: the ground truth (:attr:`lad_edu.data.CocoDetection.coco`).
        results: detections in COCO's results format (:func:`to_coco_results`), possibly empty.
        out_dir: if given, ``out_dir/detections.json`` (``results``) and ``out_dir/coco_stats.json``
            (the returned dict) are written, each atomically.
        image_ids: evaluate on these images only (e.g. a subset of the split); default all images.

    Returns:
        ``{name: value}`` for the 12 :data:`COCO_STAT_NAMES`, in ``[0, 1]``, or ``-1.0`` where the
        ground truth has nothing to measure (see the module docstring).
    """
    _check(coco_gt, results)
    if image_ids is not None and len(image_ids) == 0:
        raise ValueError("image_ids is empty: there is nothing to evaluate")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and the table
        coco_eval = COCOeval(coco_gt, _load_results(coco_gt, results), iouType="bbox")
        if image_ids is not None:
            coco_eval.params.imgIds = [int(i) for i in image_ids]
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    stats = {name: float(value) for name, value in zip(COCO_STAT_NAMES, coco_eval.stats, strict=True)}
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, data in (("detections.json", results), ("coco_stats.json", stats)):
            with atomic_open(out_dir / name) as f:
                json.dump(data, f)
    return stats


def format_stats(stats: dict[str, float]) -> str:
    """The 12 lines pycocotools' ``COCOeval.summarize()`` prints, from :func:`coco_evaluate`'s dict.

    >>> print(format_stats(dict.fromkeys(COCO_STAT_NAMES, 0.5)).splitlines()[0])
     Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.500
    """
    line = " {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}"  # pycocotools' iStr
    return "\n".join(
        line.format(
            "Average Precision" if kind == "AP" else "Average Recall",
            f"({kind})",
            "0.50:0.95" if iou is None else f"{iou:0.2f}",
            area,
            max_dets,
            stats[name],
        )
        for name, (kind, iou, area, max_dets) in zip(COCO_STAT_NAMES, _STAT_SETTINGS, strict=True)
    )
