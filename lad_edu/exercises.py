"""Is my answer right? One ``check_*`` function per notebook exercise that has an answer to check.

Each check computes the right answer with the library, on the notebook's own scene, anchors and seeds
(never from a stored number), prints one line, ``right: ...`` or ``not yet: <a hint>``, and returns
``True`` or ``False``. The notebooks show the call under each exercise and call it again in the worked
solution, so running a notebook proves that every solution passes its own check::

    from lad_edu.exercises import check_ignored_anchors
    check_ignored_anchors(your_answer, pos_iou_thr=0.6, neg_iou_thr=0.5)

>>> check_ignored_anchors(-1, pos_iou_thr=0.5, neg_iou_thr=0.4)
not yet: count the anchors whose gt_inds is -1 (result.ignored.sum())
False

Notebook 01 (RetinaNet's anchors on the demo scene), 02 (``single()`` anchors, ATSS) and 03 (PAA on the
constructed predictions of ``lad_edu.scenes.constructed_predictions``) each have a section below, and so
do the notebooks on trained networks: 04 and 05 (the shipped reference's PAA network and CoLAD run,
:mod:`lad_edu.reference`, on validation scenes written again from their seed), 06 (the comparison's
validation batches, passed in by the notebook) and 07 (the COCO reader's checks, the paper's commands).
Exercises whose answer is an opinion, a plot or a timing have no check; their worked solution is in the
notebook.
"""

from __future__ import annotations

import functools
import json
import shlex
import tempfile
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lad_edu.anchors import level_ids, retinanet, single
from lad_edu.assign import ATSSAssigner, FixedIoUAssigner, PAAAssigner
from lad_edu.assign.paa import paa_positives
from lad_edu.assign.result import AssignResult
from lad_edu.assign.switch import CRITERIA, group_choice, merge_costs_per_group
from lad_edu.boxes import box_centers, centers_inside
from lad_edu.data import check_dataset, make_classroom_dataset
from lad_edu.data.classroom import CLASSES
from lad_edu.data.coco import CocoDetection
from lad_edu.data.transforms import EvalTransform, collate
from lad_edu.model import build_detector
from lad_edu.reference import load_reference_detector, reference_run
from lad_edu.scenes import DEMO_IMAGE_SIZE, constructed_predictions, demo_scene
from lad_edu.train import load_config, snapshots
from lad_edu.train.config import TrainConfig
from lad_edu.train.labels import labeller
from lad_edu.train.paper import PAPER_RUNS

__all__ = [
    "ANNOTATION_EDITS",
    "check_atss_without_positive",
    "check_biased_std_positives",
    "check_candidate_count",
    "check_center_eps_gainers",
    "check_cop_ratio",
    "check_demo_paa_positives",
    "check_far_box_positives",
    "check_fisher_prefers_teacher",
    "check_flatter_rule",
    "check_front_zero_width_positives",
    "check_groups_against_teacher",
    "check_gts_without_positive",
    "check_ignored_anchors",
    "check_invariant_criteria",
    "check_large_without_positive",
    "check_lone_candidate",
    "check_moved_dot_positives",
    "check_no_positive_without_low_quality",
    "check_original_paa_cut",
    "check_refused_edits",
    "check_table3_files",
    "check_zero_positive_box",
]

ZERO_WIDTH_BOX = (100.0, 200.0, 100.0, 240.0)  # notebook 01's zero-width GT: x1 == x2
# notebook 01, exercise 5: a box that no anchor of the 320 px image touches
FAR_BOX = (2000.0, 2000.0, 2040.0, 2040.0)
# notebook 02, exercise 3: the 5 x 5 dot moved around the anchor centre (144, 32)
MOVED_DOT = (142.0, 30.0, 147.0, 35.0)
# notebook 02: a 48 x 48 GT inside nine 64 px anchors of a 64 x 64 image
TIED_SQUARE = (8.0, 8.0, 56.0, 56.0)


# helpers


def _verdict(ok: bool, right: str, hint: str) -> bool:
    """Print ``right: ...`` or ``not yet: ...`` and return ``ok``."""
    print(f"right: {right}" if ok else f"not yet: {hint}")
    return ok


def _differing(given: dict, right: dict) -> list:
    """The keys of ``right`` whose value ``given`` gets wrong, in ``right``'s order."""
    return [key for key in right if given[key] != right[key]]


def _demo_objects() -> tuple[Tensor, Tensor, list[str]]:
    """The demo scene's ``gt_boxes [7, 4]`` xyxy, ``gt_labels [7]`` and names (notebooks 01-03)."""
    _, gt_boxes, gt_labels, names = demo_scene()
    return gt_boxes, gt_labels, names


def _unknown_names(answer: set[str], names: list[str]) -> str | None:
    """A hint when ``answer`` holds a name that is not one of the demo objects, else None."""
    unknown = answer - set(names)
    return f"{sorted(unknown)} are not demo objects; they are {names}" if unknown else None


def _slope(x: Tensor, y: Tensor) -> float:
    """The least-squares slope of ``y`` against ``x`` (both ``[n]``): cov(x, y) / var(x)."""
    covariance = torch.cov(torch.stack([x, y]))
    return float(covariance[0, 1] / covariance[0, 0])


def _same_mask(given: Tensor | Sequence, right: Tensor) -> bool:
    """Whether ``given`` (0/1 or bool, any nesting) holds exactly the mask ``right``."""
    given = torch.as_tensor(given).bool()
    return given.numel() == right.numel() and torch.equal(given.reshape(right.shape), right)


# notebook 01: anchors and the fixed IoU rule (RetinaNet's nine anchors per location)


def check_ignored_anchors(answer: int, *, pos_iou_thr: float, neg_iou_thr: float) -> bool:
    """Exercise 01.1: the anchors ``FixedIoUAssigner(pos_iou_thr, neg_iou_thr)`` ignores on the demo scene."""
    gt_boxes, gt_labels, _ = _demo_objects()
    anchors, _ = retinanet()(DEMO_IMAGE_SIZE)
    assigner = FixedIoUAssigner(pos_iou_thr=pos_iou_thr, neg_iou_thr=neg_iou_thr)
    ignored = int(assigner.assign(anchors, gt_boxes, gt_labels).ignored.sum())
    return _verdict(
        int(answer) == ignored,
        f"{ignored} anchors ignored at {pos_iou_thr} / {neg_iou_thr}: in the band, no object's best anchor",
        "count the anchors whose gt_inds is -1 (result.ignored.sum())",
    )


def check_no_positive_without_low_quality(answer: Sequence[str]) -> bool:
    """Exercise 01.2: the demo objects that get no positive without the low-quality matches.

    The rule is ``FixedIoUAssigner(match_low_quality=False)``; ``answer``: the objects' names
    (``demo_scene``'s), in any order.
    """
    gt_boxes, gt_labels, names = _demo_objects()
    anchors, _ = retinanet()(DEMO_IMAGE_SIZE)
    result = FixedIoUAssigner(match_low_quality=False).assign(anchors, gt_boxes, gt_labels)
    right = {names[k] for k in (result.positives_per_gt() == 0).nonzero().flatten().tolist()}
    given = set(answer)
    return _verdict(
        given == right,
        f"{sorted(right)} reach IoU 0.5 with no anchor; only the low-quality step gives them positives",
        _unknown_names(given, names) or "list every object whose positives_per_gt() is 0 without the step",
    )


def check_zero_positive_box(boxes: Tensor | Sequence[Sequence[float]], index: int) -> bool:
    """Exercise 01.3: box ``index`` of ``boxes [G, 4]`` xyxy, inside the demo image, gets no positive.

    The boxes are labelled alone by ``FixedIoUAssigner()`` (RetinaNet's rule) on the demo image's anchors.
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    height, width = DEMO_IMAGE_SIZE
    if not -len(boxes) <= index < len(boxes):
        return _verdict(False, "", f"index {index} is not a box of the {len(boxes)} given")
    x1, y1, x2, y2 = boxes[index].tolist()
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        return _verdict(
            False,
            "",
            f"box {index} must lie inside the {width} x {height} image with positive width and height "
            "(a box that no anchor touches is exercise 5)",
        )
    anchors, _ = retinanet()(DEMO_IMAGE_SIZE)
    labels = torch.zeros(len(boxes), dtype=torch.long)
    positives = FixedIoUAssigner().assign(anchors, boxes, labels).positives_per_gt()
    return _verdict(
        int(positives[index]) == 0,
        f"box {index} ends with no positive (positives per box: {positives.tolist()})",
        f"box {index} keeps {int(positives[index])} positive(s): a later box must tie all its best anchors",
    )


def check_front_zero_width_positives(answer: int) -> bool:
    """Exercise 01.4: the positives of the zero-width box put *first*, under the reference's rule.

    The reference is ``FixedIoUAssigner(drop_degenerate_gts=False)`` (MMDetection) on the demo scene, with
    :data:`ZERO_WIDTH_BOX` in front of the seven objects.
    """
    gt_boxes, _, _ = _demo_objects()
    boxes = torch.cat([torch.tensor([ZERO_WIDTH_BOX]), gt_boxes])
    anchors, _ = retinanet()(DEMO_IMAGE_SIZE)
    reference = FixedIoUAssigner(drop_degenerate_gts=False).assign(anchors, boxes, torch.arange(len(boxes)))
    taken = int(reference.positives_per_gt()[0])
    return _verdict(
        int(answer) == taken,
        f"{taken} of {len(anchors)} anchors: the later objects take back only their own tied best anchors",
        "first the box takes every anchor, then each later object takes back its best anchor(s): count them",
    )


def check_far_box_positives(*, reference: int, lad_edu: int) -> bool:
    """Exercise 01.5: positives of :data:`FAR_BOX`, alone on the demo image's anchors, in both modes.

    ``reference``: ``FixedIoUAssigner(drop_degenerate_gts=False)``; ``lad_edu``: ``FixedIoUAssigner()``.
    """
    anchors, _ = retinanet()(DEMO_IMAGE_SIZE)
    box, label = torch.tensor([FAR_BOX]), torch.tensor([0])
    right = {
        "reference": int(FixedIoUAssigner(drop_degenerate_gts=False).assign(anchors, box, label).num_pos),
        "lad_edu": int(FixedIoUAssigner().assign(anchors, box, label).num_pos),
    }
    given = {"reference": int(reference), "lad_edu": int(lad_edu)}
    wrong = _differing(given, right)
    return _verdict(
        not wrong,
        f"the reference gives it all {right['reference']} anchors (every one ties at IoU 0), lad_edu "
        f"{right['lad_edu']} (no low-quality match without overlap)",
        f"recount {' and '.join(wrong)}: what is the box's best IoU, and how many anchors tie at it?",
    )


# notebook 02: ATSS (one 8·stride square per location, single())


def check_candidate_count(answer: int, *, topk: int) -> bool:
    """Exercise 02.1: ``K``, the candidates per GT of ``ATSSAssigner(topk)`` on the demo image's anchors."""
    gt_boxes, gt_labels, _ = _demo_objects()
    anchors, num_level_anchors = single()(DEMO_IMAGE_SIZE)
    result = ATSSAssigner(topk=topk).assign(anchors, num_level_anchors, gt_boxes, gt_labels)
    count = len(result.details["candidates"])  # [K, G]
    return _verdict(
        int(answer) == count,
        f"K = {count} = sum over the levels of min({topk}, anchors on the level) {num_level_anchors}",
        "K sums min(topk, n_l) over the levels: how many anchors has the coarsest level?",
    )


def check_center_eps_gainers(answer: Sequence[str], *, center_eps: float = -4.0) -> bool:
    """Exercise 02.2: the demo objects that gain positives with ``ATSSAssigner(center_eps=center_eps)``."""
    gt_boxes, gt_labels, names = _demo_objects()
    anchors, num_level_anchors = single()(DEMO_IMAGE_SIZE)
    before, after = (
        ATSSAssigner(center_eps=eps)
        .assign(anchors, num_level_anchors, gt_boxes, gt_labels)
        .positives_per_gt()
        for eps in (0.01, center_eps)
    )
    right = {names[k] for k in (after > before).nonzero().flatten().tolist()}
    given = set(answer)
    return _verdict(
        given == right,
        f"{sorted(right)} gain positives: candidates whose centres lie just outside them now count as inside",
        _unknown_names(given, names) or "compare positives_per_gt() with center_eps=0.01 and the new margin",
    )


def check_moved_dot_positives(*, atss: int, fixed: int) -> bool:
    """Exercise 02.3: the positives of the dot moved to :data:`MOVED_DOT`, under ATSS and the fixed rule.

    Both on the demo scene's ``single()`` anchors, the other six objects in place.
    """
    gt_boxes, gt_labels, names = _demo_objects()
    dot = names.index("dot")
    gt_boxes[dot] = torch.tensor(MOVED_DOT)
    anchors, num_level_anchors = single()(DEMO_IMAGE_SIZE)
    atss_result = ATSSAssigner().assign(anchors, num_level_anchors, gt_boxes, gt_labels)
    fixed_result = FixedIoUAssigner().assign(anchors, gt_boxes, gt_labels)
    right = {
        "atss": int(atss_result.positives_per_gt()[dot]),
        "fixed": int(fixed_result.positives_per_gt()[dot]),
    }
    given = {"atss": int(atss), "fixed": int(fixed)}
    wrong = _differing(given, right)
    return _verdict(
        not wrong,
        f"the moved dot gets {right['atss']} ATSS positive(s), an anchor centre now lies inside it, and "
        f"{right['fixed']} from the fixed rule, all tied low-quality matches",
        f"recount {' and '.join(wrong)}: result.positives_per_gt() of the dot, moved",
    )


def check_biased_std_positives(answer: int) -> bool:
    """Exercise 02.4: positives of :data:`TIED_SQUARE` (strides 8 and 16) with ``mean + std(correction=0)``.

    What a NumPy re-implementation with ``np.std``'s default ``ddof=0`` would keep: the candidates at or
    above the biased threshold whose centre lies inside the GT (the other ATSS steps unchanged).
    """
    anchors, num_level_anchors = single(strides=(8, 16))((64, 64))
    gt = torch.tensor([TIED_SQUARE])
    result = ATSSAssigner().assign(anchors, num_level_anchors, gt, torch.tensor([0]))
    iou = result.details["candidate_iou"][:, 0]  # [K]
    biased = iou.mean() + iou.std(correction=0)  # ATSS step 2 with ddof=0
    inside = centers_inside(box_centers(anchors[result.details["candidates"][:, 0]]), gt)  # ATSS step 3
    count = int(((iou >= biased) & inside).sum())
    return _verdict(
        int(answer) == count,
        f"{count} positives where ATSS gives {result.num_pos}: biased threshold {float(biased):.7f}, "
        f"tied IoU {float(iou.max()):.7f} (float32)",
        f"compare the tied IoU with mean + std(correction=0) of the {len(iou)} candidate IoUs, and count",
    )


def check_flatter_rule(answer: str, scenes: Sequence[Tensor]) -> bool:
    """Exercise 02.5: ``"fixed"`` or ``"atss"``, the rule whose positives per object depend least on size.

    Both rules label every scene (``[G, 4]`` xyxy boxes on the demo image's ``single()`` anchors, as the
    notebook's last plot); the slope of positives against ``log(sqrt(area))``, fitted by least squares
    over all objects, closer to 0 wins.
    """
    anchors, num_level_anchors = single()(DEMO_IMAGE_SIZE)
    sizes, positives = [], {"fixed": [], "atss": []}
    for boxes in scenes:
        labels = torch.zeros(len(boxes), dtype=torch.long)
        positives["fixed"].append(FixedIoUAssigner().assign(anchors, boxes, labels).positives_per_gt())
        positives["atss"].append(
            ATSSAssigner().assign(anchors, num_level_anchors, boxes, labels).positives_per_gt()
        )
        sizes.append((boxes[:, 2:] - boxes[:, :2]).prod(dim=1).sqrt())
    log_size = torch.cat(sizes).log().double()
    slopes = {rule: _slope(log_size, torch.cat(counts).double()) for rule, counts in positives.items()}
    flatter = min(slopes, key=lambda rule: abs(slopes[rule]))
    return _verdict(
        str(answer).lower() == flatter,
        f"{flatter}: slope {slopes[flatter]:+.1f} positives per unit of log(sqrt(area)), against "
        + ", ".join(f"{slope:+.1f} for {rule}" for rule, slope in slopes.items() if rule != flatter),
        'answer "fixed" or "atss": fit both lines (e.g. torch.cov) and compare the slopes\' absolute values',
    )


# notebook 03: PAA on constructed predictions (eq. 2's cost, the two-Gaussian split)


def check_demo_paa_positives(
    answer: Sequence[int], *, quality: float = 0.5, topk: int = 9, seed: int = 0
) -> bool:
    """Exercises 03.1 and 03.2: positives per GT of ``PAAAssigner(topk=topk)`` on the demo scene.

    The predictions are notebook 03's: ``constructed_predictions(quality=quality, seed=seed)`` with 80
    classes on the ``single()`` anchors. ``answer``: 7 counts in the demo scene's order.
    """
    gt_boxes, gt_labels, names = _demo_objects()
    anchors, num_level_anchors = single()(DEMO_IMAGE_SIZE)
    cls_logits, pred_boxes = constructed_predictions(anchors, gt_boxes, gt_labels, quality=quality, seed=seed)
    result = PAAAssigner(topk=topk).assign(
        anchors, num_level_anchors, gt_boxes, gt_labels, cls_logits, pred_boxes
    )
    right = result.positives_per_gt().tolist()
    given = [int(n) for n in answer]
    wrong = [names[k] for k in range(len(names)) if k >= len(given) or given[k] != right[k]]
    return _verdict(
        not wrong and len(given) == len(right),
        f"positives per GT at quality {quality}, topk {topk}: {dict(zip(names, right, strict=True))}",
        f"recount {wrong or 'the extra entries'}: positives_per_gt() lists the {len(names)} GTs in order",
    )


def check_original_paa_cut(
    costs: Tensor | Sequence,
    component: Tensor | Sequence,
    score: Tensor | Sequence,
    *,
    mmdetection: Tensor | Sequence,
    original: Tensor | Sequence,
) -> bool:
    """Exercise 03.3: which candidates MMDetection's cut and the original PAA's cut keep.

    Args:
        costs: ``[G, M]`` (or ``[M]`` for one GT) candidate costs, ascending along a row.
        component: ``[G, M]`` GMM component per candidate (0 = low cost, 1).
        score: ``[G, M]`` log-likelihood of each candidate under the mixture.
        mmdetection, original: ``[G, M]`` 0/1 or bool, the candidates each rule keeps. MMDetection's rule
            (:func:`~lad_edu.assign.paa.paa_positives`) keeps component 0 up to the cost of its most likely
            candidate; the original PAA keeps every candidate up to that cost, component 1 included.
    """
    costs = torch.atleast_2d(torch.as_tensor(costs, dtype=torch.float64))
    component = torch.atleast_2d(torch.as_tensor(component, dtype=torch.long))
    score = torch.atleast_2d(torch.as_tensor(score, dtype=torch.float64))
    if not (costs.shape == component.shape == score.shape) or not (costs.diff(dim=1) >= 0).all():
        return _verdict(
            False, "", "costs, component and score need one shape, the costs ascending along a row"
        )
    valid = torch.ones_like(costs, dtype=torch.bool)
    kept = paa_positives(costs, valid, component, score)  # [G, M], MMDetection's scheme (c)
    cut = torch.where(kept, costs, -torch.inf).amax(dim=1, keepdim=True)  # the cost of component 0's mode
    kept_original = valid & (costs <= cut)
    if torch.equal(kept, kept_original):
        return _verdict(
            False, "", "both rules keep the same here: put a component-1 candidate below the mode"
        )
    answers = {"mmdetection": (mmdetection, kept), "original": (original, kept_original)}
    wrong = [rule for rule, (given, right) in answers.items() if not _same_mask(given, right)]
    return _verdict(
        not wrong,
        f"MMDetection keeps {kept.int().tolist()}, the original PAA {kept_original.int().tolist()}",
        f"recheck {' and '.join(wrong)}: find component 0's most likely candidate (highest score) first",
    )


# notebook 04: LAD, the reference PAA network as the teacher, the untrained network as the early student


@functools.lru_cache(maxsize=2)
def _teacher_and_student(num_images: int, seed: int) -> tuple[list[AssignResult], list[AssignResult]]:
    """Notebook 04, section 1: PAA's labels of the first ``num_images`` validation scenes (one result each).

    The teacher is the reference's trained PAA network (``paa.pt``), the early student the same network
    untrained, its weights drawn from ``seed``; both label as a training step does (eval mode).
    """
    cfg, state, _ = load_reference_detector()
    with tempfile.TemporaryDirectory(prefix="lad_edu_check_04_") as folder:
        data = make_classroom_dataset(folder, num_train=0, num_val=num_images, progress=False)
        val_set = CocoDetection(data, cfg.data.val_split, min_size=cfg.data.min_box_size)
        resize = EvalTransform(cfg.data.eval_short_side, cfg.data.max_size)
        images, targets = collate([resize(*val_set[i]) for i in range(num_images)])
    teacher, _, _ = labeller(cfg, val_set.category_ids, state, source="the reference's paa.pt")(
        images, targets
    )
    student, _, _ = labeller(replace(cfg, seed=seed), val_set.category_ids)(images, targets)
    return teacher, student


def _without_positive(results: Sequence[AssignResult]) -> set[tuple[int, int]]:
    """``(image, GT)`` of every GT that no anchor learns."""
    return {
        (i, k)
        for i, r in enumerate(results)
        for k in (r.positives_per_gt() == 0).nonzero().flatten().tolist()
    }


def check_gts_without_positive(
    *,
    teacher: Collection[Sequence[int]],
    student: Collection[Sequence[int]],
    num_images: int = 8,
    seed: int = 0,
) -> bool:
    """Exercise 04.2: the GTs that get no positive from the teacher and from the early student.

    ``teacher``, ``student``: ``(image, GT)`` pairs, 0-based, over the first ``num_images`` validation
    scenes (notebook 04's ``NUM_IMAGES``; ``seed``: its ``SEED``).
    """
    results = dict(zip(("teacher", "student"), _teacher_and_student(num_images, seed), strict=True))
    right = {name: _without_positive(r) for name, r in results.items()}
    given = {"teacher": {tuple(pair) for pair in teacher}, "student": {tuple(pair) for pair in student}}
    wrong = _differing(given, right)
    return _verdict(
        not wrong,
        f"the teacher misses {sorted(right['teacher'])}, the early student {sorted(right['student'])}",
        f"recheck {' and '.join(wrong)}: list (image, k) for every k whose positives_per_gt() is 0",
    )


def _fisher_per_gt(result: AssignResult) -> Tensor:
    """``[G]`` the Fisher score of each GT's candidate costs (NaN: fewer than 2 candidates)."""
    costs = result.details["costs"]  # [G, M], NaN-padded
    return CRITERIA["fisher"](costs.nan_to_num(0.0), ~costs.isnan())


def check_fisher_prefers_teacher(answer: int, *, num_images: int = 8, seed: int = 0) -> bool:
    """Exercise 04.3: for how many GTs the teacher's costs have the higher Fisher score (eq. 3, right).

    Counted over the GTs where both networks' scores are finite, on notebook 04's ``num_images`` scenes.
    """
    teacher, student = (
        torch.cat([_fisher_per_gt(r) for r in results]) for results in _teacher_and_student(num_images, seed)
    )
    both = teacher.isfinite() & student.isfinite()
    count = int((teacher > student)[both].sum())
    return _verdict(
        int(answer) == count,
        f"Fisher prefers the teacher for {count} of the {int(both.sum())} GTs both can score",
        "count the GTs whose teacher score is the higher, among those where both scores are finite",
    )


# notebook 05: the reference CoLAD run's snapshots (both networks' costs of the same candidates)

SCALE_FACTOR, SHIFT = 10.0, 1.0  # exercise 05.2: network 1's costs x 10, network 2's + 1
LONE = (3, 0)  # exercise 05.3: (validation image, GT) of the reference CoLAD run with a lone candidate


@functools.cache
def _colad_snapshots() -> tuple[TrainConfig, dict[tuple[int, int], snapshots.Snapshot]]:
    """The reference CoLAD run's config and its snapshots by ``(image, epoch)``."""
    run_dir = reference_run("colad")
    return load_config(str(run_dir / "config.yaml")), {(s.image, s.epoch): s for s in snapshots.load(run_dir)}


def _snapshot_costs(shot: snapshots.Snapshot) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A snapshot's candidates over all its GTs: anchor ``[K]``, 0-based GT ``[K]``, network 1's and
    network 2's eq. 2 costs ``[K]`` (float64)."""
    anchor = torch.from_numpy(np.concatenate([gt.candidates for gt in shot.gts]))
    gt = torch.cat([torch.full((len(g.candidates),), k) for k, g in enumerate(shot.gts)])
    costs_1, costs_2 = (
        torch.from_numpy(np.concatenate([getattr(g, f"costs_{n}") for g in shot.gts])) for n in (1, 2)
    )
    return anchor, gt, costs_1, costs_2


def check_invariant_criteria(*, under_scale: Collection[str], under_shift: Collection[str]) -> bool:
    """Exercise 05.2: the criteria whose ρ stays the same when the costs are scaled, and when shifted.

    On the reference CoLAD run's costs of its first snapshot image after the last epoch: network 1's costs
    times :data:`SCALE_FACTOR`, network 2's plus :data:`SHIFT`. ``under_scale``, ``under_shift``: names of
    :data:`lad_edu.assign.switch.CRITERIA` (``"std_mean"``, ``"fisher"``).
    """
    cfg, shots = _colad_snapshots()
    last = max(epoch for _, epoch in shots)
    _, _, costs_1, costs_2 = _snapshot_costs(shots[cfg.snapshot.images[0], last])

    def unchanged(change: Callable[[Tensor], Tensor], costs: Tensor) -> set[str]:
        return {
            name
            for name, rho in CRITERIA.items()
            if torch.isclose(rho(change(costs)[None]), rho(costs[None]), rtol=1e-6, atol=0.0).all()
        }

    right = {
        "under_scale": unchanged(lambda c: SCALE_FACTOR * c, costs_1),
        "under_shift": unchanged(lambda c: c + SHIFT, costs_2),
    }
    given = {"under_scale": set(under_scale), "under_shift": set(under_shift)}
    unknown = (given["under_scale"] | given["under_shift"]) - set(CRITERIA)
    wrong = _differing(given, right)
    return _verdict(
        not wrong and not unknown,
        f"unchanged by x {SCALE_FACTOR:g}: {sorted(right['under_scale'])}; by + {SHIFT:g}: "
        f"{sorted(right['under_shift'])}",
        f"the criteria are {sorted(CRITERIA)}"
        if unknown
        else f"recompute both rho before and after, for {' and '.join(wrong)}",
    )


def _lone_candidate_network() -> int:
    """The network whose cost a lone candidate takes in the authors' switch: the hand-made case of
    ``tests/test_switch.py``, network 1's cost 0.9 against network 2's 0.5."""
    _, from_2 = merge_costs_per_group(
        torch.tensor([0.9]), torch.tensor([0.5]), torch.tensor([0]), torch.tensor([0]), [1]
    )
    return 2 if bool(from_2[0]) else 1


def check_lone_candidate(*, network: int, candidates: Sequence[int], positives: int) -> bool:
    """Exercise 05.3: a lone candidate, by hand and in the reference CoLAD run.

    Args:
        network: whose cost (1 or 2) the hand-made lone candidate takes in ``merge_costs_per_group``.
        candidates: the candidates of GT :data:`LONE` in each snapshot of the run, epoch after epoch.
        positives: its positives over all those snapshots together.
    """
    _, shots = _colad_snapshots()
    image, k = LONE
    lone = [shots[image, epoch].gts[k] for epoch in sorted(epoch for i, epoch in shots if i == image)]
    right = {
        "network": _lone_candidate_network(),
        "candidates": [len(gt.candidates) for gt in lone],
        "positives": sum(len(gt.positives) for gt in lone),
    }
    given = {"network": int(network), "candidates": [int(n) for n in candidates], "positives": int(positives)}
    wrong = _differing(given, right)
    return _verdict(
        not wrong,
        f"network {right['network']}'s lower cost; GT {k} of image {image} has {right['candidates']} "
        f"candidate(s) per epoch and {right['positives']} positive(s) in all",
        f"recheck {' and '.join(wrong)}: by_key[{image}, epoch].gts[{k}] for every epoch of the run",
    )


def _groups_against_teacher(shot: snapshots.Snapshot, cfg: TrainConfig) -> tuple[int, int]:
    """``(against, groups)``: the (GT, level) groups of a snapshot whose σ/μ picks the network that did
    not teach the image, and the groups with a candidate."""
    anchor, gt, costs_1, costs_2 = _snapshot_costs(shot)
    padded = [-(-side // 32) * 32 for side in shot.size]  # collate's padding to a multiple of 32
    generator = single(strides=tuple(cfg.model.strides), octave_base_scale=cfg.model.octave_base_scale)
    num_level_anchors = generator(tuple(padded)).num_level_anchors
    recorded = torch.from_numpy(np.concatenate([g.levels for g in shot.gts]))
    if not torch.equal(level_ids(num_level_anchors)[anchor], recorded):
        raise RuntimeError(f"the anchors of a {shot.size} image are not those of the snapshot")
    choice = group_choice(costs_1, costs_2, anchor, gt, num_level_anchors)
    used = choice.count > 0
    against = used & (choice.second_wins != (shot.choice["teacher_2"] >= 0.5))
    return int(against.sum()), int(used.sum())


def check_groups_against_teacher(
    *, early: Sequence[int], late: Sequence[int], last_early_epoch: int = 12
) -> bool:
    """Exercise 05.4: ``(against, groups)`` up to ``last_early_epoch`` (``early``) and after (``late``).

    Over every snapshot of the reference CoLAD run: the (GT, level) groups with a candidate, and those of
    them whose σ/μ picks the network that did not teach the image (``group_choice``).
    """
    cfg, shots = _colad_snapshots()
    right = {"early": [0, 0], "late": [0, 0]}
    for (_, epoch), shot in shots.items():
        counts = right["early" if epoch <= last_early_epoch else "late"]
        for j, n in enumerate(_groups_against_teacher(shot, cfg)):
            counts[j] += n
    given = {"early": [int(n) for n in early], "late": [int(n) for n in late]}
    wrong = _differing(given, right)
    return _verdict(
        not wrong,
        f"against the image's teacher: {right['early'][0]} of {right['early'][1]} groups up to epoch "
        f"{last_early_epoch}, {right['late'][0]} of {right['late'][1]} after",
        f"recount {' and '.join(wrong)}: group_choice on each snapshot, groups with count > 0",
    )


def check_cop_ratio(
    answer: float, images: Tensor, image_sizes: Sequence[tuple[int, int]], *, seed: int = 0
) -> bool:
    """Exercise 05.5: mean class probability of an untrained COP network over the same network without COP.

    Both are the reference CoLAD run's ``model`` (``cop`` on and off), their weights drawn from ``seed``,
    on ``images [B, 3, H, W]`` (notebook 05's section-5 batch) of ``image_sizes``; two decimals suffice.
    """
    cfg, _ = _colad_snapshots()
    mean_probability = []
    for cop in (False, True):
        torch.manual_seed(seed)
        network = build_detector(replace(cfg.model, cop=cop), len(CLASSES)).eval()
        with torch.no_grad():
            mean_probability.append(network(images.float(), list(image_sizes)).cls_logits.sigmoid().mean())
    ratio = float(mean_probability[1] / mean_probability[0])
    return _verdict(
        abs(float(answer) - ratio) < 0.01,
        f"{ratio:.3f}: eq. 4 averages 9 neighbours weighted by o = sigmoid(~0) = 1/2, missing ones count 0",
        "divide the COP network's mean sigmoid(cls_logits) by the plain network's",
    )


# notebook 06: the comparison's validation batches, labelled by the rules that need no network


# validation batches as the evaluation sees them: (images [B, 3, H, W], one target dict per image)
Batches = Sequence[tuple[Tensor, Sequence[dict]]]


def _box_rule_results(
    batches: Batches, strategy: str, assigner=None
) -> list[tuple[Tensor, dict, AssignResult]]:
    """``(anchors [N, 4], target, result)`` per validation image: the reference run ``strategy``'s anchors,
    and its assigner (or ``assigner``), which looks at the boxes only, on the image's boxes."""
    cfg = load_config(str(reference_run(strategy) / "config.yaml"))
    assigner = assigner or cfg.assign.build_assigner(len(CLASSES))
    generator = single(strides=tuple(cfg.model.strides), octave_base_scale=cfg.model.octave_base_scale)
    rows = []
    for images, targets in batches:
        anchors, num_level_anchors = generator(tuple(images.shape[-2:]))
        boxes, labels = [t["boxes"] for t in targets], [t["labels"] for t in targets]
        results = assigner.assign_batch(anchors, num_level_anchors, boxes, labels)
        rows += [(anchors, target, result) for target, result in zip(targets, results, strict=True)]
    return rows


def check_large_without_positive(
    answer: int, batches: Batches, *, pos_iou_thr: float, neg_iou_thr: float, min_size: float = 32.0
) -> bool:
    """Exercise 06.2: objects of ``sqrt(area) >= min_size`` px left without a positive by the fixed rule.

    ``FixedIoUAssigner(pos_iou_thr, neg_iou_thr)`` (its other options RetinaNet's) on the comparison's
    anchors, every object of ``batches`` (notebook 06's validation batches).
    """
    rule = FixedIoUAssigner(pos_iou_thr=pos_iou_thr, neg_iou_thr=neg_iou_thr)
    count = 0
    for _, target, result in _box_rule_results(batches, "fixed", rule):
        large = (target["boxes"][:, 2:] - target["boxes"][:, :2]).prod(dim=1).sqrt() >= min_size
        count += int((large & (result.positives_per_gt() == 0)).sum())
    return _verdict(
        int(answer) == count,
        f"{count} objects of {min_size:g} px or more have no positive at {pos_iou_thr} / {neg_iou_thr}",
        f"count the objects of sqrt(area) >= {min_size:g} whose positives_per_gt() is 0 at these thresholds",
    )


def _atss_failure(anchors: Tensor, box: Tensor, result: AssignResult, k: int) -> str:
    """Why ATSS gave GT ``k`` (``box [4]``) no positive: ``"no_centre_inside"`` (no candidate's centre lies
    in it), ``"lost_to_another"`` (candidates passed both tests, and another GT with a higher IoU took
    them all: ATSS step 4) or ``"below_threshold"`` (every candidate inside is below its threshold)."""
    candidates = result.details["candidates"][:, k]  # [K] anchor indices
    inside = centers_inside(box_centers(anchors[candidates]), box[None])
    if not inside.any():
        return "no_centre_inside"
    passed = inside & (result.details["candidate_iou"][:, k] >= result.details["threshold"][k])
    return "lost_to_another" if passed.any() else "below_threshold"


def check_atss_without_positive(*, no_centre_inside: int, lost_to_another: int, batches: Batches) -> bool:
    """Exercise 06.3: why the reference's ATSS leaves objects of ``batches`` without a positive.

    ``no_centre_inside``: objects none of whose candidates has its centre inside them; ``lost_to_another``:
    objects with a candidate passing both tests (IoU >= threshold, centre inside), taken by another object.
    """
    reasons = [
        _atss_failure(anchors, target["boxes"][k], result, k)
        for anchors, target, result in _box_rule_results(batches, "atss")
        for k in (result.positives_per_gt() == 0).nonzero().flatten().tolist()
    ]
    right = {name: reasons.count(name) for name in ("no_centre_inside", "lost_to_another")}
    given = {"no_centre_inside": int(no_centre_inside), "lost_to_another": int(lost_to_another)}
    wrong = _differing(given, right)
    return _verdict(
        not wrong,
        f"of {len(reasons)} objects without a positive: {right['no_centre_inside']} with no candidate centre "
        f"inside, {right['lost_to_another']} that lost every passing candidate to another object"
        + (
            f", {reasons.count('below_threshold')} below their threshold"
            if "below_threshold" in reasons
            else ""
        ),
        f"recount {' and '.join(wrong)}: centers_inside of the candidates, then IoU >= details['threshold']",
    )


# notebook 07: the COCO reader's checks, and the paper's commands


def _first_annotation(**fields) -> Callable[[dict], None]:
    """An edit that sets ``fields`` of the first annotation."""
    return lambda data: data["annotations"][0].update(fields)


def _ids_with_gaps(data: dict) -> None:  # category k becomes 10 k, as if the others had been deleted
    for category in data["categories"]:
        category["id"] *= 10
    for annotation in data["annotations"]:
        annotation["category_id"] *= 10


def _duplicate_annotation_id(data: dict) -> None:
    data["annotations"][1]["id"] = data["annotations"][0]["id"]


# exercise 07.1: edits of a classroom dataset's annotations, by name
ANNOTATION_EDITS: dict[str, Callable[[dict], None]] = {
    "category_id 999": _first_annotation(category_id=999),
    "iscrowd 2": _first_annotation(iscrowd=2),
    "box outside its image": _first_annotation(bbox=[500, 500, 10, 10]),  # the images are 128 x 128 px
    "negative width": _first_annotation(bbox=[5, 5, -3, 10]),
    "category ids with gaps": _ids_with_gaps,
    "duplicate annotation id": _duplicate_annotation_id,
}


def _refused(edit: Callable[[dict], None]) -> bool:
    """Whether ``check_dataset`` stops with an error on a fresh 2 + 2 image dataset after ``edit`` of both
    splits' annotations (both: two splits with different categories are an error of their own)."""
    with tempfile.TemporaryDirectory(prefix="lad_edu_check_07_") as folder:
        root = make_classroom_dataset(folder, 2, 2, progress=False)
        for split in ("train", "val"):
            path = root / "annotations" / f"instances_{split}.json"
            data = json.loads(path.read_text())
            edit(data)
            path.write_text(json.dumps(data))
        try:
            check_dataset(root)
        except (FileNotFoundError, ValueError):
            return True
    return False


@functools.cache
def _refused_edits() -> frozenset[str]:
    """The names of :data:`ANNOTATION_EDITS` that ``check_dataset`` refuses."""
    return frozenset(name for name, edit in ANNOTATION_EDITS.items() if _refused(edit))


def check_refused_edits(answer: Collection[str]) -> bool:
    """Exercise 07.1: which of :data:`ANNOTATION_EDITS` make ``check_dataset`` stop with an error.

    The others it accepts: it counts the boxes it will not train on, or maps the category ids to labels.
    """
    unknown = set(answer) - set(ANNOTATION_EDITS)
    right = _refused_edits()
    return _verdict(
        not unknown and set(answer) == right,
        f"refused: {sorted(right)}; accepted and reported: {sorted(set(ANNOTATION_EDITS) - right)}",
        f"the edits are {sorted(ANNOTATION_EDITS)}"
        if unknown
        else "apply each edit to a broken_copy and run check_dataset",
    )


def check_table3_files(answer: Collection[str]) -> bool:
    """Exercise 07.4: the weight files the Table 3 LAD command (``lad_r101_paa_r50_1x`` with MMDetection's
    PAA-R50 as the teacher) needs in ``weights/``; ``answer``: file names, with or without their folder."""
    run = next(run for run in PAPER_RUNS if run.config == "lad_r101_paa_r50_1x")
    words = shlex.split(run.command(mmdet_teacher=True))
    right = {Path(word.split("=", 1)[1]).name for word in words if "=" in word and word.endswith(".pth")}
    given = {Path(name).name for name in answer}
    return _verdict(
        given == right,
        f"{sorted(right)}: the student's ImageNet start and the teacher",
        "read the --set values of run.command(mmdet_teacher=True) that name a file",
    )
