"""Training snapshots: how the assignment of a few fixed validation images moves as the network learns.

PAA scores its candidates with the network's own predictions (eq. 2), so its positives change as the
network trains: early on the costs barely separate, later a low-cost component splits off (paper Fig. 2a).
LAD takes the same costs from a frozen teacher (section 3.2), CoLAD from the better of two networks
(section 3.4). A snapshot records what the run's assigner decided for the validation images
``snapshot.images``, and why, after ``epoch`` epochs (0: the untrained network)::

    lad-edu train --config classroom_paa --set snapshot.images=[0,3] --set snapshot.every=1

writes one line of strict JSON per (epoch, image) to ``RUN_DIR/snapshots.jsonl`` (a few kilobytes):
``epoch``, ``image`` (the index into the validation split), ``image_id``, ``size`` (the resized
``(h, w)``), ``assigner``, ``mode`` (``distill.mode``), CoLAD's ``choice`` (``rho_1``, ``rho_2``,
``teacher_2``, ``teacher_share_2``, decided on this image alone) and ``gts``, one entry per GT:

=====================================  =======================================================================
every assigner                         ``box`` (xyxy, resized pixels), ``label`` (0..C-1), ``positives``
                                       (the anchors that learn it), ``max_iou`` (its best IoU with any anchor)
PAA, LAD, CoLAD (a ``PAAAssigner``)    ``candidates`` (the top-k per level that enter the GMM, by cost),
                                       ``levels``, ``costs`` (eq. 2 of the network that decides: the student
                                       for PAA, the teacher for LAD), ``component`` (0 = low cost),
                                       ``gmm_weights``, ``gmm_means``, ``gmm_variances`` (``[2]`` each),
                                       ``cut`` (the largest positive cost; null without positive)
CoLAD                                  ``costs_1``, ``costs_2``: each network's costs of the same candidates
ATSS                                   ``candidates`` (top-k nearest per level), ``levels``, ``ious``,
                                       ``threshold`` (mean + std of ``ious``)
=====================================  =======================================================================

Anchor indices are into the resized image's anchors (level-major). Floats are rounded to 5 significant
digits. :func:`load` reads the file back as :class:`Snapshot` objects, and
:func:`lad_edu.viz.animate_cost_gmm` draws one GT's costs, GMM and cut moving over the epochs.

**How a snapshot is taken** (:func:`take_snapshots`, called by the engine before the first epoch, every
``snapshot.every`` epochs and after the last): each image alone, resized as for evaluation
(``data.eval_short_side``, the training size of every shipped config), never flipped, padded as a batch of
one; then the step's own :meth:`~lad_edu.train.learner.Learner.predict` and
:meth:`~lad_edu.train.learner.Learner.label`, without gradients and in eval mode (BatchNorm's running
statistics, as :mod:`lad_edu.train.labels`), after which training mode is restored. Nothing random is
drawn, so a run trains the same numbers with and without snapshots. Every process computes them (the
forward may run through DDP, which every process must join); rank 0 writes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from lad_edu.anchors import Anchors, level_ids
from lad_edu.assign import ATSSAssigner, PAAAssigner, Predictions
from lad_edu.assign.result import AssignResult
from lad_edu.boxes import box_iou
from lad_edu.data.coco import CocoDetection
from lad_edu.data.transforms import EvalTransform, collate
from lad_edu.train.config import ConfigError, TrainConfig
from lad_edu.train.learner import Learner
from lad_edu.train.run_dir import strict_json

if TYPE_CHECKING:
    from lad_edu.train.engine import Run

__all__ = [
    "SNAPSHOTS_FILE",
    "GTSnapshot",
    "Snapshot",
    "check_snapshot_images",
    "load",
    "snapshot_due",
    "snapshot_image",
    "take_snapshots",
]

SNAPSHOTS_FILE = "snapshots.jsonl"
SIGNIFICANT_DIGITS = 5  # ~1e-5 relative: kilobytes per epoch, far below what the GMM's tol=1e-3 resolves


# taking snapshots


def check_snapshot_images(cfg: TrainConfig, val_set: CocoDetection) -> None:
    """A ``ConfigError`` for an index of ``snapshot.images`` that is not an image of the validation split."""
    outside = [index for index in cfg.snapshot.images if index >= len(val_set)]
    if outside:
        raise ConfigError(
            f"snapshot.images: {outside} out of range: {val_set.annotation_file} has {len(val_set)} images "
            f"(indices 0 to {len(val_set) - 1}); pick others, or take no snapshots: --set snapshot.images=[]"
        )


def snapshot_due(cfg: TrainConfig, epoch: int) -> bool:
    """Whether the run of ``cfg`` takes a snapshot after ``epoch`` epochs: epoch 0, every
    ``snapshot.every``-th, and the last."""
    every, images = cfg.snapshot.every, cfg.snapshot.images
    return bool(images) and (epoch % every == 0 or epoch == cfg.optim.epochs)


def take_snapshots(run: Run) -> None:
    """Snapshot the run after ``run.epoch`` epochs, if :func:`snapshot_due`: rank 0 writes one line per image.

    The run's first snapshot (at iteration 0) starts the file afresh; the later ones are appended.
    """
    cfg = run.cfg
    if not snapshot_due(cfg, run.epoch):
        return
    resize = EvalTransform(cfg.data.eval_short_side, cfg.data.max_size)
    was_training = run.networks.training
    run.networks.eval()
    rows = []
    for index in cfg.snapshot.images:
        image, target = resize(*run.val_set[index])
        row = snapshot_image(run.learner, image, target, run.autocast, run.dist.device)
        rows.append({"kind": "snapshot", "epoch": run.epoch, "image": index, **row})
    run.networks.train(was_training)
    if run.dist.is_main:
        with (run.run_dir / SNAPSHOTS_FILE).open("w" if run.global_iter == 0 else "a") as f:
            f.writelines(strict_json(row, significant=SIGNIFICANT_DIGITS) + "\n" for row in rows)


@torch.no_grad()
def snapshot_image(
    learner: Learner, image: Tensor, target: dict, autocast, device: torch.device | str = "cpu"
) -> dict:
    """What ``learner``'s assigner decides for one image now, and why: a row of ``snapshots.jsonl``
    without its position (see the module docstring). The networks' mode (eval) is the caller's.

    Args:
        image: ``[3, H, W]``, resized; target: its ``boxes [G, 4]`` xyxy, ``labels [G]``, ``crowd_boxes``,
            ``size`` and ``image_id``, as the loaders give them.
        autocast: the forward's precision (``contextlib.nullcontext`` for none).
    """
    images, targets = collate([(image, target)])
    images = images.to(device).float()
    predictions, anchors = learner.predict(images, [target["size"]], autocast)
    networks = [p for p, _ in predictions]
    (result,), choice, _ = learner.label(images, targets, networks, anchors, autocast)
    cfg = learner.cfg
    row = {"image_id": target["image_id"], "size": list(target["size"])}
    row |= {"assigner": cfg.assign.assigner, "mode": cfg.distill.mode}
    gts = _gt_rows(result, anchors, target["boxes"].to(device), target["labels"])
    if isinstance(learner.assigner, PAAAssigner):  # PAA, and LAD's and CoLAD's PAA
        _add_paa_fields(gts, result.details, anchors)
    if isinstance(learner.assigner, ATSSAssigner):
        _add_atss_fields(gts, result.details, anchors)
    if learner.colad is not None:
        _add_colad_costs(gts, learner.assigner, anchors, target, networks)
        row["choice"] = choice
    return row | {"gts": gts}


def _gt_rows(result: AssignResult, anchors: Anchors, gt_boxes: Tensor, gt_labels: Tensor) -> list[dict]:
    """Per GT what every assigner has: its box and class, the anchors that learn it, its best anchor IoU."""
    best_iou = box_iou(gt_boxes, anchors.anchors).amax(dim=1)  # [G]
    return [
        {
            "box": gt_boxes[j].tolist(),
            "label": int(gt_labels[j]),
            "positives": (result.gt_inds == j + 1).nonzero().flatten().tolist(),
            "max_iou": float(best_iou[j]),
        }
        for j in range(len(gt_boxes))
    ]


def _add_paa_fields(gts: list[dict], details: dict[str, Tensor], anchors: Anchors) -> None:
    """PAA's view of each GT (``AssignResult.details`` of :class:`PAAAssigner`): the candidates that enter
    the GMM, sorted by cost, their eq. 2 costs and components, the mixture and the cut."""
    level = level_ids(anchors.num_level_anchors, device=anchors.anchors.device)
    for j, gt in enumerate(gts):
        valid = details["candidates"][j] >= 0  # the row is padded with -1
        candidates = details["candidates"][j][valid]
        gt |= {"candidates": candidates.tolist(), "levels": level[candidates].tolist()}
        gt |= {key: details[key][j][valid].tolist() for key in ("costs", "component")}
        gt |= {key: details[key][j].tolist() for key in ("gmm_weights", "gmm_means", "gmm_variances", "cut")}


def _add_atss_fields(gts: list[dict], details: dict[str, Tensor], anchors: Anchors) -> None:
    """ATSS's view of each GT: its top-k nearest anchors per level, their IoU and the threshold mean + std."""
    level = level_ids(anchors.num_level_anchors, device=anchors.anchors.device)
    for j, gt in enumerate(gts):
        if not details:  # no usable GT in the image (all degenerate): nothing was computed
            gt |= {"candidates": [], "levels": [], "ious": [], "threshold": math.nan}
            continue
        valid = details["candidates"][:, j] >= 0  # a degenerate GT's column is -1
        candidates = details["candidates"][:, j][valid]
        gt |= {"candidates": candidates.tolist(), "levels": level[candidates].tolist()}
        gt |= {
            "ious": details["candidate_iou"][:, j][valid].tolist(),
            "threshold": float(details["threshold"][j]),
        }


def _add_colad_costs(
    gts: list[dict], paa: PAAAssigner, anchors: Anchors, target: dict, networks: list[Predictions]
) -> None:
    """CoLAD: both networks' eq. 2 costs of each GT's candidates (``costs_1``, ``costs_2``), the two sets
    of costs the criterion ρ compares (eq. 3)."""
    device = anchors.anchors.device
    gt_boxes, gt_labels = [target["boxes"].to(device)], [target["labels"].to(device)]
    candidates = paa.candidates(anchors.anchors, gt_boxes, gt_labels)
    for k, predictions in enumerate(networks, start=1):
        # one image: flat anchor = anchor; the pre-assignment gives an anchor to one GT at most, so a cost
        # per anchor is enough
        cost = torch.full((len(anchors.anchors),), math.nan, device=device)
        cost[candidates.anchor] = paa.costs(candidates, gt_boxes, gt_labels, predictions).float()
        for gt in gts:
            gt[f"costs_{k}"] = cost[torch.tensor(gt["candidates"], dtype=torch.long, device=device)].tolist()


# reading them back


@dataclass
class GTSnapshot:
    """One GT in a snapshot (the fields of the module docstring's table; None where the assigner has none).

    Arrays are numpy: ``box [4]`` xyxy, ``positives [P]`` anchor indices, ``candidates``, ``levels``,
    ``costs``, ``component``, ``ious``, ``costs_1``, ``costs_2`` ``[M]``, ``gmm_*`` ``[2]``; a null number
    is NaN.
    """

    box: np.ndarray
    label: int
    positives: np.ndarray
    max_iou: float
    candidates: np.ndarray | None = None
    levels: np.ndarray | None = None
    costs: np.ndarray | None = None
    component: np.ndarray | None = None
    gmm_weights: np.ndarray | None = None
    gmm_means: np.ndarray | None = None
    gmm_variances: np.ndarray | None = None
    cut: float | None = None
    costs_1: np.ndarray | None = None
    costs_2: np.ndarray | None = None
    ious: np.ndarray | None = None
    threshold: float | None = None

    @classmethod
    def from_row(cls, row: dict) -> GTSnapshot:
        integers = ("positives", "candidates", "levels", "component")
        values = {}
        for key, value in row.items():
            if isinstance(value, list):
                values[key] = np.array(value, dtype=np.int64 if key in integers else np.float64)
            else:
                values[key] = math.nan if value is None else value
        return cls(**values)


@dataclass
class Snapshot:
    """One image after ``epoch`` epochs (0: the untrained network).

    Attributes:
        image: the index into the validation split; image_id: its COCO id.
        size: ``(h, w)`` of the resized image, the pixels of every box.
        assigner, mode: the run's ``assign.assigner`` and ``distill.mode``.
        gts: one :class:`GTSnapshot` per GT of the image.
        choice: CoLAD's ``rho_1``, ``rho_2``, ``teacher_2``, ``teacher_share_2`` on this image; else None.
    """

    epoch: int
    image: int
    image_id: int
    size: tuple[int, int]
    assigner: str
    mode: str
    gts: list[GTSnapshot]
    choice: dict[str, float] | None = None

    @classmethod
    def from_row(cls, row: dict) -> Snapshot:
        row = {key: value for key, value in row.items() if key != "kind"}
        row["gts"] = [GTSnapshot.from_row(gt) for gt in row["gts"]]
        row["size"] = tuple(row["size"])
        return cls(**row)


def load(run_dir: str | Path) -> list[Snapshot]:
    """The snapshots of the run in ``run_dir``, in the order taken (by epoch, then as in ``snapshot.images``).

    Raises:
        FileNotFoundError: the run took no snapshots (the message says how to turn them on).
        ValueError: a line that is not a snapshot row, naming the file and the line.
    """
    path = Path(run_dir) / SNAPSHOTS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: the run took no snapshots; turn them on with "
            "--set snapshot.images=[0,3] (indices into the validation split) and train again"
        )
    snapshots = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            snapshots.append(Snapshot.from_row(json.loads(line)))
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{path}, line {number} is not a snapshot row ({error}); a line cut short by a killed run is "
                "dropped by lad-edu train --resume"
            ) from None
    return snapshots
